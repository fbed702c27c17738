//! `ipn-reconciler bench` and `bench intake`, small: the lines a script
//! reads parse, the JSON has the documented fields, the chart is an SVG,
//! every notification sent was committed, and nothing is left behind.

use std::collections::BTreeSet;

use assert_cmd::Command;
use serde_json::Value;

use crate::helpers::server_url;

/// Databases whose names say a bench made them.
async fn bench_databases() -> BTreeSet<String> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server_url()), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'ipn\\_bench\\_%'",
            &[],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The number after `prefix` on the line that starts with it.
fn figure(stdout: &str, prefix: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}...` in:\n{stdout}"));
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{line}`"))
}

#[tokio::test]
async fn bench_prints_parsable_figures_and_commits_every_notification() {
    let out = tempfile::tempdir().expect("tempdir");
    let before = bench_databases().await;
    let output = Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env_remove("RUST_LOG")
        .args([
            "bench",
            "--notifications",
            "300",
            "--offered-rate",
            "100",
            "--offered-seconds",
            "2",
            "--sweep-notifications",
            "100",
        ])
        .arg("--database-url")
        .arg(format!("{}/postgres", server_url()))
        .arg("--out")
        .arg(out.path())
        .timeout(std::time::Duration::from_secs(240))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let ratio = figure(&stdout, "ratio ");
    let speedup = figure(&stdout, "speedup ");
    let p99 = figure(&stdout, "p99 ");
    assert!(ratio > 0.0 && ratio.is_finite(), "{stdout}");
    assert!(speedup > 0.0 && speedup.is_finite(), "{stdout}");
    assert!(p99 > 0.0, "{stdout}");
    assert!(!stdout.contains("MISSING"), "{stdout}");

    let json: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bench.json")).expect("bench.json"))
            .expect("bench.json is JSON");
    assert_eq!(json["notifications"], 300);
    for field in ["broker_ceiling", "database_ceiling"] {
        assert!(
            json[field]["per_second"].as_f64().unwrap_or(0.0) > 0.0,
            "{field}: {json}"
        );
    }
    assert_eq!(json["worker"]["handled"], 300);
    assert_eq!(json["worker_batch_1"]["handled"], 300);
    let worker = json["worker"]["per_second"].as_f64().expect("worker rate");
    let ceiling = json["broker_ceiling"]["per_second"]
        .as_f64()
        .unwrap_or(0.0)
        .min(
            json["database_ceiling"]["per_second"]
                .as_f64()
                .unwrap_or(0.0),
        );
    let expected_ratio = worker / ceiling;
    assert!(
        (json["ratio"].as_f64().unwrap_or(0.0) - expected_ratio).abs() < 1e-9,
        "ratio is worker / min(ceilings): {json}"
    );
    assert!((format!("{expected_ratio:.2}").parse::<f64>().unwrap_or(0.0) - ratio).abs() < 1e-9);
    assert!(json["peak_rss_mib"].as_f64().unwrap_or(0.0) > 1.0, "{json}");
    assert_eq!(json["offered"]["publisher"]["published"], 200);
    assert_eq!(json["offered"]["worker"]["handled"], 200);
    assert!(
        json["offered"]["worker"]["latency_samples"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{json}"
    );
    // Each latency is the sum of its two legs: none is longer than the
    // longest whole, and the longest whole is no longer than both
    // longest legs together.
    let max = |leg: &str| {
        json["offered"]["worker"][leg]["max"]
            .as_f64()
            .unwrap_or(-1.0)
    };
    let (total, to_delivery, to_commit) = (
        max("latency_ms"),
        max("to_delivery_ms"),
        max("to_commit_ms"),
    );
    assert!(to_delivery >= 0.0 && to_commit > 0.0, "{json}");
    assert!(total + 1e-6 >= to_delivery.max(to_commit), "{json}");
    assert!(total <= to_delivery + to_commit + 1e-6, "{json}");
    // How the machine's CPUs spent the offered run, in shares that add up.
    let cpu = &json["offered"]["cpu"];
    let shares: Vec<f64> = ["busy_pct", "idle_pct", "steal_pct"]
        .iter()
        .map(|share| cpu[share].as_f64().unwrap_or(-1.0))
        .collect();
    assert!(shares.iter().all(|s| (0.0..=100.0).contains(s)), "{cpu}");
    assert!((shares.iter().sum::<f64>() - 100.0).abs() < 1e-6, "{cpu}");
    assert!(stdout.contains("CPU of the machine: busy"), "{stdout}");
    // Every run recorded every distinct body it was sent; the stream has
    // exact duplicates, so fewer rows than deliveries.
    let committed = json["committed"].as_array().expect("committed");
    assert!(committed.len() >= 5, "{json}");
    for run in committed {
        assert_eq!(run["recorded"], run["expected"], "{run}");
        assert_eq!(run["handled"], run["sent"], "{run}");
    }
    let main = committed
        .iter()
        .find(|run| run["phase"] == "worker")
        .expect("the worker's run");
    let distinct = main["expected"].as_u64().expect("distinct");
    assert!(distinct < 300 && distinct > 200, "{main}");
    for phase in ["batch1", "database ceiling"] {
        let run = committed
            .iter()
            .find(|run| run["phase"] == phase)
            .unwrap_or_else(|| panic!("no {phase} run"));
        assert_eq!(run["recorded"].as_u64(), Some(distinct), "{run}");
    }
    let sweep = json["sweep"].as_array().expect("sweep");
    assert!(sweep.len() >= 4, "{json}");

    let svg = std::fs::read_to_string(out.path().join("bench.svg")).expect("bench.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("notifications/s") && svg.contains("p99"));

    let left: Vec<String> = bench_databases()
        .await
        .difference(&before)
        .cloned()
        .collect();
    assert!(left.is_empty(), "databases left behind: {left:?}");
}

#[tokio::test]
async fn bench_intake_answers_no_receipt_without_a_queued_message() {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: wrk is not installed (apt-get install wrk); .ci/run installs it");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let output = Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env_remove("RUST_LOG")
        .args([
            "bench",
            "intake",
            "--seconds",
            "2",
            "--connections",
            "8",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(out.path())
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench intake failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let ratio = figure(&stdout, "intake ratio ");
    assert!(ratio > 0.0 && ratio.is_finite(), "{stdout}");
    let json: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("intake.json")).expect("intake.json"),
    )
    .expect("intake.json is JSON");
    let receipts = json["receipts"].as_u64().expect("receipts");
    let queued = json["queued"].as_u64().expect("queued");
    assert!(receipts > 10, "{json}");
    assert!(
        queued >= receipts,
        "a receipt without a queued message: {json}"
    );
    assert!(
        json["publish_ceiling"]["per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(json["wrk"]["p99_us"].as_u64().unwrap_or(0) > 0, "{json}");
}
