//! `bench intake`: the intake under a real HTTP load generator (`wrk`),
//! beside the ceiling of a bare publisher with confirms measured in the
//! same run.
//!
//! `wrk` POSTs valid signed bodies (simulated, cycled by a Lua script
//! written to the output directory) to `POST /ipn` of an intake running in
//! this process, with its own queues. Every answer with a receipt must
//! stand for a message the broker confirmed: after the run the queue must
//! hold at least as many messages as there were 2xx answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ceilings::{self, Rate};
use super::workload::{BENCH_KEY, Resources, Workload, bench_sealer, seal_all};
use super::{BenchError, Progress};
use crate::app::{AppConfig, Application};
use crate::ipn::KeyRing;
use crate::secret::SecretUrl;
use crate::settings::Settings;
use crate::settings::{BrokerSection, IntakeSection, OperationsSection};

/// The bench's target: the intake reaches this share of the publisher's
/// ceiling.
pub const TARGET_INTAKE_RATIO: f64 = 0.6;

/// What to run.
#[derive(Debug, Clone)]
pub struct IntakeBenchConfig {
    pub database_url: SecretUrl,
    pub amqp_url: SecretUrl,
    /// Connections the load generator keeps open (requests in flight).
    pub connections: usize,
    /// Load generator threads.
    pub threads: usize,
    pub seconds: u32,
    /// The `wrk` binary.
    pub wrk: PathBuf,
    pub out: PathBuf,
}

/// What `wrk` measured (its `done` callback's JSON line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WrkSummary {
    pub requests: u64,
    pub duration_us: u64,
    pub non_2xx: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The figures of one intake bench.
#[derive(Debug, Clone, Serialize)]
pub struct IntakeReport {
    pub connections: usize,
    pub threads: usize,
    pub seconds: u32,
    pub cores: usize,
    pub load_before: f64,
    pub load_after: f64,
    pub wrk: WrkSummary,
    /// Answers with a receipt per second.
    pub per_second: f64,
    /// Answered 2xx (with a receipt).
    pub receipts: u64,
    /// Messages in the intake's queue after the run (the warm-up's too).
    pub queued: u64,
    pub publish_ceiling: Rate,
    /// intake / publish ceiling.
    pub ratio: f64,
}

impl IntakeReport {
    /// Whether every receipt stands for a confirmed message.
    pub fn receipts_confirmed(&self) -> bool {
        self.queued >= self.receipts
    }

    pub fn render(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "bench intake: wrk {} threads, {} connections, {} s; {} cores, load average {:.2} before, {:.2} after",
            self.threads,
            self.connections,
            self.seconds,
            self.cores,
            self.load_before,
            self.load_after
        )?;
        writeln!(
            out,
            "publish ceiling {:>8.0} messages/s  (bare publisher, confirms, {} in flight)",
            self.publish_ceiling.per_second, self.connections
        )?;
        writeln!(
            out,
            "intake          {:>8.0} requests/s  ({} answered with a receipt, {} non-2xx, {} socket errors)",
            self.per_second,
            self.receipts,
            self.wrk.non_2xx,
            self.wrk.connect + self.wrk.read + self.wrk.write + self.wrk.timeout
        )?;
        writeln!(
            out,
            "intake latency  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.wrk.p50_us as f64 / 1000.0,
            self.wrk.p90_us as f64 / 1000.0,
            self.wrk.p99_us as f64 / 1000.0,
            self.wrk.max_us as f64 / 1000.0
        )?;
        writeln!(
            out,
            "queued {} messages for {} receipts{}",
            self.queued,
            self.receipts,
            if self.receipts_confirmed() {
                ""
            } else {
                "  RECEIPTS WITHOUT A MESSAGE"
            }
        )?;
        writeln!(out, "intake ratio {:.2}", self.ratio)?;
        if self.ratio >= TARGET_INTAKE_RATIO {
            writeln!(out, "target met: intake ratio >= {TARGET_INTAKE_RATIO}")
        } else {
            writeln!(
                out,
                "target missed: intake ratio {:.2} < {TARGET_INTAKE_RATIO}",
                self.ratio
            )
        }
    }
}

/// Runs the intake bench; removes its queues whatever happens.
pub async fn run(
    config: &IntakeBenchConfig,
    progress: &Progress,
) -> Result<IntakeReport, BenchError> {
    if config.connections == 0 || config.threads == 0 || config.seconds == 0 {
        return Err(BenchError::Usage(
            "--connections, --threads and --seconds must be at least 1".to_owned(),
        ));
    }
    std::fs::create_dir_all(&config.out).map_err(|source| BenchError::Output {
        path: config.out.clone(),
        source,
    })?;
    let mut resources = Resources::new(config.database_url.clone(), config.amqp_url.clone());
    let result = measure(config, &mut resources, progress).await;
    progress.phase("deleting the bench's queues", 0);
    for problem in resources.cleanup().await {
        tracing::warn!("{problem}");
    }
    progress.finish();
    result
}

async fn measure(
    config: &IntakeBenchConfig,
    resources: &mut Resources,
    progress: &Progress,
) -> Result<IntakeReport, BenchError> {
    let load_before = super::report::load_average();
    let workload = Workload::new(2000, 11)?;
    let bodies = &workload.bodies[..2000];
    let sealed = Arc::new(seal_all(bodies)?);
    let duration = Duration::from_secs(u64::from(config.seconds));

    progress.phase("publish ceiling: a bare publisher with confirms", 0);
    let ceiling_amqp = resources.topology("publish").await?;
    let publish_ceiling =
        ceilings::publisher(&ceiling_amqp, sealed, config.connections, duration).await?;

    let amqp = resources.topology("intake").await?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let loaded = Settings {
        broker: BrokerSection {
            amqp_url: config.amqp_url.clone(),
            amqp_queue: amqp.topology.base().to_owned(),
            ..Default::default()
        },
        intake: IntakeSection {
            intake_addr: loopback,
            intake_max_connections: crate::settings::positive(
                "intake-max-connections",
                config.connections.saturating_mul(2).saturating_add(16) as u64,
            )?,
            // wrk is one client: all of its connections come from one
            // address.
            intake_max_connections_per_client: crate::settings::positive(
                "intake-max-connections-per-client",
                config.connections.saturating_mul(2).saturating_add(16) as u64,
            )?,
            ..Default::default()
        },
        operations: OperationsSection {
            http_addr: loopback,
            ..Default::default()
        },
        ..Settings::default()
    }
    .loaded()?;
    let app = Application::build(
        AppConfig::intake_with(&loaded, KeyRing::single(BENCH_KEY), bench_sealer())
            .map_err(BenchError::Settings)?,
    )
    .await
    .map_err(|err| BenchError::Worker(err.to_string()))?;
    let addr = app
        .intake_addr()
        .ok_or_else(|| BenchError::Worker("the intake did not bind".to_owned()))?;
    let token = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until_stopped(token.clone().cancelled_owned()));
    let url = format!("http://{addr}/ipn");
    let measured = async {
        let warmups = warm_up(&url, &bodies[0]).await?;
        let script = write_script(&config.out, bodies)?;
        progress.phase(
            &format!(
                "intake: wrk, {} connections for {} s",
                config.connections, config.seconds
            ),
            0,
        );
        let wrk = run_wrk(config, &script, &url).await?;
        Ok::<_, BenchError>((warmups, wrk))
    }
    .await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), daemon).await;
    let (warmups, wrk) = measured?;
    let queued = queue_depth(&amqp).await?;
    let receipts = wrk.requests.saturating_sub(wrk.non_2xx) + warmups;
    let per_second =
        wrk.requests.saturating_sub(wrk.non_2xx) as f64 / (wrk.duration_us as f64 / 1e6).max(1e-9);
    Ok(IntakeReport {
        connections: config.connections,
        threads: config.threads,
        seconds: config.seconds,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        load_before,
        load_after: super::report::load_average(),
        ratio: super::report::ratio(per_second, publish_ceiling.per_second),
        wrk,
        per_second,
        receipts,
        queued,
        publish_ceiling,
    })
}

/// POSTs one body until the intake answers 200 (it connects to the broker
/// on first use); returns how many were answered 200 (queued).
async fn warm_up(url: &str, body: &[u8]) -> Result<u64, BenchError> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let answered = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec())
            .send()
            .await;
        if answered.is_ok_and(|response| response.status().is_success()) {
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Worker(format!(
        "the intake at {url} never answered 200"
    )))
}

/// The bodies (one a line: a form body has no raw line break) and the Lua
/// script that cycles through them and reports as JSON.
fn write_script(out: &Path, bodies: &[Vec<u8>]) -> Result<PathBuf, BenchError> {
    let dir = out.join("intake-wrk");
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| BenchError::Output {
            path: path.to_owned(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Output {
        path: dir.clone(),
        source,
    })?;
    let bodies_path = dir.join("bodies.txt");
    let mut lines = Vec::new();
    for body in bodies {
        lines.extend_from_slice(body);
        lines.push(b'\n');
    }
    write(&bodies_path, &lines)?;
    let script = dir.join("post.lua");
    let lua = format!(
        r#"-- Written by `ipn-reconciler bench intake`: POSTs the simulated bodies.
local bodies = {{}}
for line in io.lines("{bodies}") do bodies[#bodies + 1] = line end
local next_body = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests":%d,"duration_us":%d,"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#,
        bodies = bodies_path
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    write(&script, lua.as_bytes())?;
    Ok(script)
}

async fn run_wrk(
    config: &IntakeBenchConfig,
    script: &Path,
    url: &str,
) -> Result<WrkSummary, BenchError> {
    let output = tokio::process::Command::new(&config.wrk)
        .arg("-t")
        .arg(config.threads.to_string())
        .arg("-c")
        .arg(config.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", config.seconds))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| {
            BenchError::LoadGenerator(format!(
                "cannot run {} ({err}); install it with `apt-get install wrk`",
                config.wrk.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.starts_with('{'));
    match (output.status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line)
            .map_err(|err| BenchError::LoadGenerator(format!("unreadable summary: {err}"))),
        _ => Err(BenchError::LoadGenerator(format!(
            "wrk ended with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

async fn queue_depth(amqp: &crate::queue::AmqpSettings) -> Result<u64, BenchError> {
    let connection = amqp.connect("bench-probe").await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            amqp.topology.work_queue().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let _ = connection.close(200, "probed".into()).await;
    Ok(u64::from(declared.message_count()))
}
