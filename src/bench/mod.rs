//! `ipn-reconciler bench`: the worker's throughput and latency against
//! the real RabbitMQ and PostgreSQL, beside the ceilings of both measured
//! in the same run, so that the figures compare on a busy machine too.
//!
//! One run, phase by phase, each on a fresh copy of one template database
//! (migrated, simulated orders imported) and on queues of its own:
//!
//! 1. the broker ceiling: a bare consumer acks the N messages
//!    ([`ceilings::broker`]);
//! 2. the database ceiling: the same writes in the same batches, without
//!    the broker ([`ceilings::database`]);
//! 3. the worker draining the same N pre-published messages, in a child
//!    process ([`measure`]): its rate, latencies and peak RSS;
//! 4. the same worker with batch size 1 (the speedup);
//! 5. a sweep of batch sizes and concurrencies on a sample (the chart);
//! 6. an offered load: messages published at a steady rate while the
//!    worker runs, and their publish-to-commit latencies.
//!
//! Then it checks that every run recorded every distinct body it was sent,
//! prints the figures ([`report`]), writes `bench.json` and `bench.svg`
//! ([`chart`]), and drops its databases and queues. `bench intake`
//! ([`intake`]) measures the intake under a real HTTP load generator.

pub mod ceilings;
pub mod chart;
pub mod intake;
pub mod measure;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;

use crate::ipn::KeyRing;
use crate::pipeline::Pipeline;
use crate::queue::{Publisher, QueueError};
use crate::secret::SecretUrl;
use crate::settings::{Settings, SettingsError};
use crate::store::StoreError;
use measure::{WorkerRun, WorkerSpec};
use report::{BenchReport, Committed, OfferedRun, SweepPoint, Tuning};
use workload::{BENCH_KEY, Resources, SealedBody, Workload, distinct_bodies};

/// Why a bench could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot simulate the workload: {0}")]
    Workload(String),
    #[error("database: {0}")]
    Database(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("worker: {0}")]
    Worker(String),
    #[error("load generator: {0}")]
    LoadGenerator(String),
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    /// A usage or configuration error (exit 2), not an operational one.
    pub fn is_usage(&self) -> bool {
        matches!(self, BenchError::Usage(_) | BenchError::Settings(_))
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The PostgreSQL server (the database name in it is replaced by the
    /// bench's own).
    pub database_url: SecretUrl,
    pub amqp_url: SecretUrl,
    pub notifications: usize,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub concurrency: usize,
    pub prefetch: u16,
    pub pool_size: usize,
    /// Offered load: messages per second and for how long (0: no run).
    pub offered_rate: u32,
    pub offered_seconds: u32,
    /// Notifications per sweep point (0: no sweep).
    pub sweep_notifications: usize,
    pub seed: u64,
    /// Where the worker's logs, `bench.json` and `bench.svg` go.
    pub out: PathBuf,
    /// The binary that runs `bench worker` (this one).
    pub worker_exe: PathBuf,
}

impl BenchConfig {
    /// The daemon's defaults for the worker's tuning, so that the bench
    /// measures what an operator gets.
    pub fn new(database_url: SecretUrl, amqp_url: SecretUrl, notifications: usize) -> Self {
        let defaults = Settings::default();
        Self {
            database_url,
            amqp_url,
            notifications,
            batch_size: defaults.worker.batch_size.get(),
            batch_wait: defaults.worker.batch_wait,
            concurrency: defaults.worker.concurrency.get(),
            prefetch: defaults.worker.prefetch.get(),
            pool_size: defaults.database.db_pool_size.get(),
            offered_rate: 1000,
            offered_seconds: 20,
            sweep_notifications: 4000,
            seed: 2026,
            out: PathBuf::from("bench-out"),
            worker_exe: PathBuf::from("ipn-reconciler"),
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let positive = [
            ("--notifications", self.notifications),
            ("--batch-size", self.batch_size),
            ("--concurrency", self.concurrency),
            ("--pool-size", self.pool_size),
            ("--prefetch", usize::from(self.prefetch)),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(BenchError::Usage(format!("{name} must be at least 1")));
            }
        }
        let offered = self.offered_rate as usize * self.offered_seconds as usize;
        if self.notifications > 1_000_000 || offered > 1_000_000 {
            return Err(BenchError::Usage(
                "at most 1,000,000 notifications per phase".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Progress of the long phases on standard error (hidden when it is not a
/// terminal).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    /// A phase with `len` steps (0: a spinner).
    pub fn phase(&self, message: &str, len: u64) {
        let template = if len > 0 {
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})"
        } else {
            "{spinner} {msg} ({elapsed})"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.reset();
        self.bar.set_length(len);
        self.bar.set_message(message.to_owned());
    }

    pub fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs every phase, then removes the databases and queues it made
/// (whatever happened).
pub async fn run(config: &BenchConfig, progress: &Progress) -> Result<BenchReport, BenchError> {
    config.validate()?;
    std::fs::create_dir_all(&config.out).map_err(|source| BenchError::Output {
        path: config.out.clone(),
        source,
    })?;
    let mut resources = Resources::new(config.database_url.clone(), config.amqp_url.clone());
    let result = phases(config, &mut resources, progress).await;
    progress.phase("dropping the bench's databases and queues", 0);
    for problem in resources.cleanup().await {
        tracing::warn!("{problem}");
    }
    progress.finish();
    result
}

async fn phases(
    config: &BenchConfig,
    resources: &mut Resources,
    progress: &Progress,
) -> Result<BenchReport, BenchError> {
    let load_before = report::load_average();
    let n = config.notifications;
    let offered_count = config.offered_rate as usize * config.offered_seconds as usize;
    let sweep_count = config.sweep_notifications.min(n);
    progress.phase("simulating notifications", 0);
    let workload = Workload::new(n.max(offered_count).max(sweep_count), config.seed)?;
    let sealed = Arc::new(workload::seal_all(&workload.bodies)?);
    let main = &workload.bodies[..n];
    progress.phase("creating the template database", 0);
    resources.create_template(&workload.orders).await?;
    let mut committed = Vec::new();

    // 1. The broker's ceiling.
    let amqp = resources.topology("broker").await?;
    publish_phase(&amqp, &sealed[..n], progress, "broker ceiling: publishing").await?;
    progress.phase("broker ceiling: a bare consumer acks", 0);
    let broker_ceiling = ceilings::broker(&amqp, config.prefetch, n).await?;

    // 2. The database's ceiling.
    progress.phase("database ceiling: the same writes without the broker", 0);
    let url = resources.database("dbceiling").await?;
    let store = resources.store(&url, config.pool_size).await?;
    let pipeline_config = Settings::default()
        .loaded()?
        .pipeline_with_keys(KeyRing::single(BENCH_KEY))?;
    let pipeline = Pipeline::new(pipeline_config, store);
    let (database_ceiling, refused) =
        ceilings::database(&pipeline, main, config.batch_size, config.concurrency).await?;
    drop(pipeline);
    committed.push(Committed {
        phase: "database ceiling".to_owned(),
        recorded: count_notifications(&url).await?,
        expected: distinct_bodies(main),
        handled: (n - refused) as u64,
        sent: n,
    });

    // 3. and 4. The worker, batched and one by one.
    let worker = drain(
        config,
        resources,
        progress,
        &sealed,
        main,
        (config.batch_size, config.concurrency),
        "worker",
        &mut committed,
    )
    .await?;
    let worker_batch_1 = drain(
        config,
        resources,
        progress,
        &sealed,
        main,
        (1, config.concurrency),
        "batch1",
        &mut committed,
    )
    .await?;

    // 5. The sweep, on a sample.
    let mut sweep = vec![
        SweepPoint {
            batch_size: config.batch_size,
            concurrency: config.concurrency,
            notifications: n,
            per_second: worker.per_second,
        },
        SweepPoint {
            batch_size: 1,
            concurrency: config.concurrency,
            notifications: n,
            per_second: worker_batch_1.per_second,
        },
    ];
    if sweep_count > 0 {
        let sample = &workload.bodies[..sweep_count];
        let mut points: Vec<(usize, usize)> = [8, 32, 128, 256]
            .into_iter()
            .map(|b| (b, config.concurrency))
            .chain([1, 2, 8].into_iter().map(|c| (config.batch_size, c)))
            .collect();
        points.retain(|p| *p != (config.batch_size, config.concurrency) && p.0 != 1);
        points.dedup();
        for (batch_size, concurrency) in points {
            let run = drain(
                config,
                resources,
                progress,
                &sealed,
                sample,
                (batch_size, concurrency),
                &format!("sweep_b{batch_size}_c{concurrency}"),
                &mut committed,
            )
            .await?;
            sweep.push(SweepPoint {
                batch_size,
                concurrency,
                notifications: sweep_count,
                per_second: run.per_second,
            });
        }
    }

    // 6. The offered load.
    let offered = if offered_count > 0 {
        Some(
            offer(
                config,
                resources,
                progress,
                &sealed,
                &workload.bodies,
                &mut committed,
            )
            .await?,
        )
    } else {
        None
    };

    let min_ceiling = broker_ceiling.per_second.min(database_ceiling.per_second);
    Ok(BenchReport {
        notifications: n,
        distinct_bodies: distinct_bodies(main),
        orders: workload.orders.len(),
        tuning: Tuning {
            batch_size: config.batch_size,
            batch_wait_ms: config.batch_wait.as_millis() as u64,
            concurrency: config.concurrency,
            prefetch: config.prefetch,
            pool_size: config.pool_size,
        },
        load_before,
        load_after: report::load_average(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        broker_ceiling,
        database_ceiling,
        ratio: report::ratio(worker.per_second, min_ceiling),
        speedup: report::ratio(worker.per_second, worker_batch_1.per_second),
        peak_rss_mib: worker.peak_rss_kib as f64 / 1024.0,
        worker,
        worker_batch_1,
        offered,
        sweep,
        committed,
    })
}

async fn publish_phase(
    amqp: &crate::queue::AmqpSettings,
    bodies: &[SealedBody],
    progress: &Progress,
    message: &str,
) -> Result<(), BenchError> {
    progress.phase(message, bodies.len() as u64);
    let publisher = Publisher::connect(amqp.clone(), "bench-publisher").await?;
    let published = workload::publish(&publisher, bodies, |n| progress.inc(n)).await;
    publisher.close().await;
    published
}

fn spec(
    config: &BenchConfig,
    url: SecretUrl,
    amqp: &crate::queue::AmqpSettings,
    (batch_size, concurrency): (usize, usize),
    expect: usize,
) -> WorkerSpec {
    WorkerSpec {
        database_url: url,
        amqp_url: config.amqp_url.clone(),
        queue: amqp.topology.base().to_owned(),
        batch_size,
        batch_wait: config.batch_wait,
        concurrency,
        prefetch: config.prefetch,
        pool_size: config.pool_size,
        expect: expect as u64,
        timeout: Duration::from_secs(120 + expect as u64 / 50),
    }
}

/// A worker draining `bodies`, pre-published, on a fresh database.
#[allow(clippy::too_many_arguments)]
async fn drain(
    config: &BenchConfig,
    resources: &mut Resources,
    progress: &Progress,
    sealed: &[SealedBody],
    bodies: &[Vec<u8>],
    tuning: (usize, usize),
    phase: &str,
    committed: &mut Vec<Committed>,
) -> Result<WorkerRun, BenchError> {
    let url = resources.database(phase).await?;
    let amqp = resources.topology(phase).await?;
    let label = format!("batch size {}, concurrency {}", tuning.0, tuning.1);
    publish_phase(
        &amqp,
        &sealed[..bodies.len()],
        progress,
        &format!("{label}: publishing"),
    )
    .await?;
    progress.phase(
        &format!("{label}: the worker drains {} notifications", bodies.len()),
        0,
    );
    let log = config.out.join(format!("worker-{phase}.log"));
    let child = measure::spawn_worker(
        &config.worker_exe,
        &spec(config, url.clone(), &amqp, tuning, bodies.len()),
        &log,
    )?;
    let run = child.finish().await?;
    committed.push(Committed {
        phase: phase.to_owned(),
        recorded: count_notifications(&url).await?,
        expected: distinct_bodies(bodies),
        handled: run.handled,
        sent: bodies.len(),
    });
    Ok(run)
}

/// The worker under a steady offered load.
async fn offer(
    config: &BenchConfig,
    resources: &mut Resources,
    progress: &Progress,
    sealed: &Arc<Vec<SealedBody>>,
    bodies: &[Vec<u8>],
    committed: &mut Vec<Committed>,
) -> Result<OfferedRun, BenchError> {
    let count = config.offered_rate as usize * config.offered_seconds as usize;
    let url = resources.database("offered").await?;
    let amqp = resources.topology("offered").await?;
    let log = config.out.join("worker-offered.log");
    let child = measure::spawn_worker(
        &config.worker_exe,
        &spec(
            config,
            url.clone(),
            &amqp,
            (config.batch_size, config.concurrency),
            count,
        ),
        &log,
    )?;
    measure::wait_for_consumer(&amqp, Duration::from_secs(60)).await?;
    progress.phase(
        &format!(
            "offered load: {}/s for {} s",
            config.offered_rate, config.offered_seconds
        ),
        0,
    );
    let publisher = Arc::new(Publisher::connect(amqp.clone(), "bench-offered").await?);
    let cpu_before = report::CpuTimes::now();
    let published = measure::offer(
        publisher.clone(),
        sealed.clone(),
        count,
        config.offered_rate,
    )
    .await;
    publisher.close().await;
    let published = published?;
    let worker = child.finish().await?;
    let cpu = cpu_before
        .zip(report::CpuTimes::now())
        .and_then(|(before, after)| before.shares_until(&after));
    committed.push(Committed {
        phase: "offered".to_owned(),
        recorded: count_notifications(&url).await?,
        expected: distinct_bodies(&bodies[..count]),
        handled: worker.handled,
        sent: count,
    });
    Ok(OfferedRun {
        rate: config.offered_rate,
        seconds: config.offered_seconds,
        publisher: published,
        worker,
        cpu,
    })
}

/// Rows in `notifications`: one per distinct body recorded.
async fn count_notifications(url: &SecretUrl) -> Result<i64, BenchError> {
    let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
        .await
        .map_err(|err| BenchError::Database(crate::store::describe_connect_error(&err)))?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .map_err(|err| BenchError::Database(err.to_string()))?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}
