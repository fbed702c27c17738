//! Measuring the worker: it runs in a child process of its own (`bench
//! worker`, the same `Worker` as `serve`), so that its peak RSS (`VmHWM`
//! from `/proc/self/status`) is the worker's alone and not the bench's,
//! which holds every simulated body. The child drains its queue until it
//! has handled the number of deliveries it was told, then prints one JSON
//! line: how long it took, its peak RSS and every publish-to-commit
//! latency's percentiles.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::BenchError;
use super::workload::{BENCH_KEY, SealedBody};
use crate::health::Health;
use crate::ipn::KeyRing;
use crate::metrics::{CommitLatency, Metrics, Role};
use crate::pipeline::Pipeline;
use crate::queue::{AmqpSettings, Publisher, RetryDelays};
use crate::secret::SecretUrl;
use crate::settings::Settings;
use crate::settings::{BrokerSection, DatabaseSection, OperationsSection, WorkerSection, positive};
use crate::store::Store;
use crate::worker::Worker;

/// How one worker is run: its database, queues and tuning, and when it is
/// done.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub database_url: SecretUrl,
    pub amqp_url: SecretUrl,
    /// Base name of its queues.
    pub queue: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub concurrency: usize,
    pub prefetch: u16,
    pub pool_size: usize,
    /// Stop once this many deliveries are handled.
    pub expect: u64,
    /// Stop anyway after this long (the report then says how many).
    pub timeout: Duration,
}

impl WorkerSpec {
    /// The command line of `bench worker` for this spec. The URLs go in
    /// the environment, never on a command line others can read.
    fn command(&self, exe: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(exe);
        command
            .args(["bench", "worker", "--queue", &self.queue])
            .args(["--batch-size", &self.batch_size.to_string()])
            .args(["--batch-wait-ms", &self.batch_wait.as_millis().to_string()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--prefetch", &self.prefetch.to_string()])
            .args(["--pool-size", &self.pool_size.to_string()])
            .args(["--expect", &self.expect.to_string()])
            .args(["--timeout-secs", &self.timeout.as_secs().max(1).to_string()])
            .env("BENCH_DATABASE_URL", self.database_url.expose())
            .env("BENCH_AMQP_URL", self.amqp_url.expose())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `samples` (seconds), in milliseconds.
pub fn percentiles(samples: &[f64]) -> Percentiles {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return Percentiles::default();
    }
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[index.clamp(1, sorted.len()) - 1] * 1000.0
    };
    Percentiles {
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: sorted[sorted.len() - 1] * 1000.0,
    }
}

/// What one worker run measured (the child's JSON line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerRun {
    /// Deliveries handled (acked, retried or parked).
    pub handled: u64,
    /// From the start of consuming to the last delivery handled.
    pub seconds: f64,
    pub per_second: f64,
    /// Publish (`x-received-at`) to commit, of every notification
    /// committed.
    pub latency_ms: Percentiles,
    /// Its first leg: publish until the worker took the delivery from the
    /// broker (the broker's queue, and the worker's prefetch being full).
    #[serde(default)]
    pub to_delivery_ms: Percentiles,
    /// Its second leg: taken from the broker until committed (the batch
    /// filling, waiting for a free slot, the transaction).
    #[serde(default)]
    pub to_commit_ms: Percentiles,
    pub latency_samples: usize,
    /// Peak resident set of the worker process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

/// The child side of `bench worker`: runs a [`Worker`] until it has
/// handled `spec.expect` deliveries, and reports.
pub async fn worker_main(spec: WorkerSpec) -> Result<WorkerRun, BenchError> {
    let settings = Settings {
        database: DatabaseSection {
            database_url: spec.database_url.clone(),
            auto_migrate: false,
            db_pool_size: positive("db-pool-size", spec.pool_size as u64)?,
            ..Default::default()
        },
        broker: BrokerSection {
            amqp_url: spec.amqp_url.clone(),
            amqp_queue: spec.queue.clone(),
            retry_delays: RetryDelays::new(vec![Duration::from_secs(1)]),
            ..Default::default()
        },
        worker: WorkerSection {
            prefetch: positive("prefetch", u64::from(spec.prefetch))?,
            concurrency: positive("concurrency", spec.concurrency as u64)?,
            batch_size: positive("batch-size", spec.batch_size as u64)?,
            batch_wait: spec.batch_wait,
            ..Default::default()
        },
        operations: OperationsSection {
            ack_settle_grace: Duration::from_millis(100),
            ..Default::default()
        },
        ..Settings::default()
    };
    let loaded = settings.loaded()?;
    let pipeline = loaded.pipeline_with_keys(KeyRing::single(BENCH_KEY))?;
    let store = Store::connect(loaded.database()?).await?;
    // Open the pool's connections before the clock starts.
    let mut warm = Vec::new();
    for _ in 0..spec.pool_size.max(1) {
        warm.push(store.conn().await?);
    }
    drop(warm);
    let worker_settings = loaded.worker()?;
    let metrics = Metrics::new(Role::Serve {
        retry_delays: worker_settings.amqp.topology.retry_delays().clone(),
    });
    metrics.keep_commit_latencies();
    let health = Health::new(&metrics);
    let worker = Worker::new(
        Pipeline::new(pipeline, store),
        super::workload::bench_sealer(),
        worker_settings,
        metrics.clone(),
        health,
    );
    let started = Instant::now();
    let finished = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let stop = {
        let metrics = metrics.clone();
        let finished = finished.clone();
        async move {
            let deadline = started + spec.timeout;
            while metrics.handled() < spec.expect && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if let Ok(mut at) = finished.lock() {
                *at = Some(started.elapsed());
            }
        }
    };
    worker.run(stop).await;
    let seconds = finished
        .lock()
        .ok()
        .and_then(|at| *at)
        .unwrap_or_else(|| started.elapsed())
        .as_secs_f64();
    let handled = metrics.handled().min(spec.expect);
    let samples = metrics.commit_latencies();
    Ok(WorkerRun {
        handled,
        seconds,
        per_second: handled as f64 / seconds.max(1e-9),
        latency_ms: percentiles(&samples.iter().map(CommitLatency::total).collect::<Vec<_>>()),
        to_delivery_ms: percentiles(&samples.iter().map(|s| s.to_delivery).collect::<Vec<_>>()),
        to_commit_ms: percentiles(&samples.iter().map(|s| s.to_commit).collect::<Vec<_>>()),
        latency_samples: samples.len(),
        peak_rss_kib: peak_rss_kib().unwrap_or(0),
    })
}

/// `VmHWM` of this process, KiB (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A worker running in a child process.
pub struct ChildWorker {
    child: tokio::process::Child,
    log: PathBuf,
}

/// Starts `bench worker` for `spec`; its log (warnings only) goes to `log`.
pub fn spawn_worker(exe: &Path, spec: &WorkerSpec, log: &Path) -> Result<ChildWorker, BenchError> {
    let stderr = std::fs::File::create(log).map_err(|err| BenchError::Output {
        path: log.to_owned(),
        source: err,
    })?;
    let child = spec
        .command(exe)
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|err| BenchError::Worker(format!("cannot start {}: {err}", exe.display())))?;
    Ok(ChildWorker {
        child,
        log: log.to_owned(),
    })
}

impl ChildWorker {
    /// Waits for the child to end and reads its report.
    pub async fn finish(mut self) -> Result<WorkerRun, BenchError> {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout)
                .await
                .map_err(|err| BenchError::Worker(err.to_string()))?;
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|err| BenchError::Worker(err.to_string()))?;
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        match (status.success(), line) {
            (true, Some(line)) => serde_json::from_str(line)
                .map_err(|err| BenchError::Worker(format!("unreadable report: {err}"))),
            _ => Err(BenchError::Worker(format!(
                "the worker ended with {status}; its log is {}",
                self.log.display()
            ))),
        }
    }
}

/// Waits until a consumer reads `queue` (the child worker is up).
pub async fn wait_for_consumer(amqp: &AmqpSettings, within: Duration) -> Result<(), BenchError> {
    let connection = amqp.connect("bench-probe").await?;
    let deadline = Instant::now() + within;
    let result = loop {
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
        let _ = channel.close(200, "probed".into()).await;
        if declared.consumer_count() > 0 {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(BenchError::Worker(format!(
                "no worker consumed {} within {within:?}",
                amqp.topology.work_queue()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = connection.close(200, "probed".into()).await;
    result
}

/// What the offered-load publisher achieved.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Offered {
    pub published: usize,
    pub seconds: f64,
    pub per_second: f64,
}

/// Publishes the first `count` of `bodies` at `rate` per second (in ticks of 10 ms, each
/// message stamped when it is sent, confirms awaited in the background so
/// that a slow confirm never slows the pace).
pub async fn offer(
    publisher: Arc<Publisher>,
    bodies: Arc<Vec<SealedBody>>,
    count: usize,
    rate: u32,
) -> Result<Offered, BenchError> {
    let count = count.min(bodies.len());
    const TICK: Duration = Duration::from_millis(10);
    let per_tick = f64::from(rate) * TICK.as_secs_f64();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut owed = 0.0f64;
    let mut tasks = Vec::new();
    while sent < count {
        interval.tick().await;
        owed += per_tick;
        let take = (owed.floor() as usize).min(count - sent);
        owed -= take as f64;
        if take == 0 {
            continue;
        }
        let range = sent..sent + take;
        sent += take;
        let publisher = publisher.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let messages = bodies[range]
                .iter()
                .map(SealedBody::message)
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, BenchError>(publisher.publish_notifications(&messages).await?)
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    for task in tasks {
        let confirmed = task
            .await
            .map_err(|err| BenchError::Worker(err.to_string()))??;
        for result in confirmed {
            result?;
        }
    }
    Ok(Offered {
        published: sent,
        seconds,
        per_second: sent as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let samples: Vec<f64> = (1..=100).map(|ms| f64::from(ms) / 1000.0).collect();
        let p = percentiles(&samples);
        assert!((p.p50 - 50.0).abs() < 1e-9, "{p:?}");
        assert!((p.p95 - 95.0).abs() < 1e-9, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 1e-9, "{p:?}");
        assert!((p.max - 100.0).abs() < 1e-9, "{p:?}");
        assert_eq!(percentiles(&[]), Percentiles::default());
        let one = percentiles(&[0.004]);
        assert!((one.p99 - 4.0).abs() < 1e-9);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_kib().is_some_and(|kib| kib > 0));
    }
}
