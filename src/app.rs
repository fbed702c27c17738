//! The daemon, assembled in one place.
//!
//! `serve`, `intake`, `demo` and the tests all start the daemon the same
//! way: [`AppConfig`] from the settings, [`Application::build`] (binds the
//! listeners: port 0 works, and the bound addresses can be read back), then
//! [`Application::run_until_stopped`]. Startup and shutdown read top to
//! bottom in this file:
//!
//! 1. bind the operations endpoint and the intake: a taken port fails here,
//!    naming the listener;
//! 2. serve `/healthz`, `/readyz` and `/metrics` at once, so an
//!    orchestrator can see *why* the daemon is not ready yet;
//! 3. serve the intake (it needs only the broker);
//! 4. connect the database, retrying with backoff while `/readyz` says what
//!    is wrong; then run the worker;
//! 5. on the shutdown signal: not ready any more, stop taking deliveries,
//!    finish the work in flight within the deadline, stop the listeners,
//!    close the broker connections.
//!
//! Every task started here (listeners, watchers, gauges, sweep) is tracked
//! (`Tasks`): at shutdown, once the worker has drained, the listeners and
//! the loops, all cancelled by the same token, are awaited together within
//! `close-timeout` (each loop closes its own broker connection on its way
//! out); one still running then is named in a warning and aborted. Then the
//! intake's publishing connection closes, and
//! [`Application::run_until_stopped`] returns with no task of its own left.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::console::{Clock, Console, ConsoleSettings};
use crate::domain::sweep::SweepPolicy;
use crate::health::{self, Health};
use crate::intake::{Intake, IntakeSettings};
use crate::ipn::KeyRing;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::queue::{AmqpSettings, Publisher, Sealer};
use crate::settings::{Loaded, SettingsError};
use crate::store::{DatabaseSettings, SchemaPolicy, Store, StoreError};
use crate::worker::{RunSummary, Worker, WorkerSettings};

/// How often the database is pinged for `/readyz` and the metrics.
const DATABASE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Everything the daemon runs, resolved from the settings (key files read,
/// addresses parsed). Public so tests and the demo can adjust it.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub pipeline: PipelineConfig,
    pub amqp: AmqpSettings,
    /// The keys that seal bodies in the broker (`seal-key-file`): the
    /// intake seals with the current one, the worker opens and seals its
    /// copies again (also opening, during the migration, what earlier
    /// versions sealed with keys derived from `pipeline`'s key ring).
    pub seal: Sealer,
    /// The database; `None` for the standalone intake.
    pub database: Option<DatabaseSettings>,
    /// The worker; `None` for the standalone intake.
    pub worker: Option<WorkerSettings>,
    /// The processor-facing listener; `None` for a worker only.
    pub intake: Option<(SocketAddr, IntakeSettings)>,
    /// The operations endpoint; `None`: not served.
    pub ops_addr: Option<SocketAddr>,
    /// How long closing a listener may take at shutdown.
    pub close_timeout: Duration,
    /// How often the gauges read from the database and the broker are
    /// refreshed (`gauge-refresh-interval`).
    pub gauge_refresh: Duration,
    /// The finance console (`console-addr`); `None`: not served.
    pub console: Option<ConsoleSettings>,
    /// How often the sweep runs and what it looks for (`sweep-interval`,
    /// `stale-order-age`, `settlement-days`); `None`: no sweep (the demo
    /// sweeps by itself).
    pub sweep: Option<(Duration, SweepPolicy)>,
    /// How often the books are audited (`audit-interval`); `None`: never.
    pub audit: Option<Duration>,
}

impl AppConfig {
    /// `serve`: worker, operations endpoint, and the intake unless
    /// `no-intake`.
    pub fn serve(loaded: &Loaded) -> Result<Self, SettingsError> {
        Self::serve_with_keys(loaded, loaded.keys()?)
    }

    /// Like [`AppConfig::serve`], with keys that do not come from a file
    /// (the demo's public key); the seal keys still come from
    /// `seal-key-file`.
    pub fn serve_with_keys(loaded: &Loaded, keys: KeyRing) -> Result<Self, SettingsError> {
        Self::serve_with(loaded, keys, loaded.sealer()?)
    }

    /// Like [`AppConfig::serve_with_keys`], with seal keys that do not come
    /// from a file either (the demo's, which live and die with its queues).
    pub fn serve_with(loaded: &Loaded, keys: KeyRing, seal: Sealer) -> Result<Self, SettingsError> {
        let pipeline = loaded.pipeline_with_keys(keys)?;
        let s = &loaded.settings;
        Ok(Self {
            pipeline,
            seal,
            amqp: loaded.amqp()?,
            database: Some({
                let mut database = loaded.database()?;
                // Without migrations at start, the schema must be there.
                database.schema = database.schema.require_unless_migrating();
                database
            }),
            worker: Some(loaded.worker()?),
            intake: if s.worker.no_intake {
                None
            } else {
                Some((s.intake.intake_addr, loaded.intake()?))
            },
            ops_addr: Some(s.operations.http_addr),
            close_timeout: s.operations.close_timeout.get(),
            gauge_refresh: s.operations.gauge_refresh_interval.get(),
            console: loaded.console()?,
            sweep: Some((s.settlement.sweep_interval.get(), loaded.sweep_policy())),
            audit: s.operations.audit_interval.get(),
        })
    }

    /// `intake`: the processor-facing listener and the operations
    /// endpoint, without database or worker.
    pub fn intake(loaded: &Loaded) -> Result<Self, SettingsError> {
        Self::intake_with_keys(loaded, loaded.keys()?)
    }

    /// Like [`AppConfig::intake`], with keys that do not come from a file;
    /// the seal keys still come from `seal-key-file`.
    pub fn intake_with_keys(loaded: &Loaded, keys: KeyRing) -> Result<Self, SettingsError> {
        Self::intake_with(loaded, keys, loaded.sealer()?)
    }

    /// Like [`AppConfig::intake_with_keys`], with seal keys that do not
    /// come from a file either (`bench intake`).
    pub fn intake_with(
        loaded: &Loaded,
        keys: KeyRing,
        seal: Sealer,
    ) -> Result<Self, SettingsError> {
        let s = &loaded.settings;
        Ok(Self {
            pipeline: loaded.pipeline_with_keys(keys)?,
            seal,
            amqp: loaded.amqp()?,
            database: None,
            worker: None,
            intake: Some((s.intake.intake_addr, loaded.intake()?)),
            ops_addr: Some(s.operations.http_addr),
            close_timeout: s.operations.close_timeout.get(),
            gauge_refresh: s.operations.gauge_refresh_interval.get(),
            console: None,
            sweep: None,
            audit: None,
        })
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr} for the {listener}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The daemon with its listeners bound, ready to run.
pub struct Application {
    config: AppConfig,
    metrics: Metrics,
    health: Health,
    tasks: Tasks,
    ops: Option<TcpListener>,
    intake: Option<TcpListener>,
    console: Option<TcpListener>,
}

/// The daemon's background tasks: each one tracked, so shutdown can wait
/// for all of them, and named, so one that does not end in time can be
/// said in the log.
#[derive(Clone, Default)]
struct Tasks {
    tracker: TaskTracker,
    named: Arc<Mutex<Vec<(&'static str, AbortHandle)>>>,
}

impl Tasks {
    fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tracker.spawn(task);
        self.named
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, handle.abort_handle()));
    }

    /// Takes no new task, and waits up to `timeout` for every task to end.
    /// Those still running then are aborted, and waited for (an aborted
    /// task ends at its next await point); their names are returned.
    async fn close(&self, timeout: Duration) -> Vec<&'static str> {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let late: Vec<&'static str> = self
            .named
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, handle)| !handle.is_finished())
            .map(|(name, handle)| {
                handle.abort();
                *name
            })
            .collect();
        self.tracker.wait().await;
        late
    }
}

/// The daemon's background tasks seen from outside (tests): how many are
/// running, and whether shutdown has closed the set.
#[derive(Clone, Debug)]
pub struct TaskMonitor(TaskTracker);

impl TaskMonitor {
    /// Tasks started and not ended yet.
    pub fn running(&self) -> usize {
        self.0.len()
    }

    /// Whether shutdown has begun waiting for the tasks (no new one can
    /// start).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl Application {
    /// Binds the listeners. Nothing connects yet: that happens in
    /// [`Application::run_until_stopped`], observable through `/readyz`.
    pub async fn build(config: AppConfig) -> Result<Self, StartupError> {
        let ops = match config.ops_addr {
            Some(addr) => Some(bind("operations endpoint", addr).await?),
            None => None,
        };
        let intake = match &config.intake {
            Some((addr, _)) => Some(bind("intake", *addr).await?),
            None => None,
        };
        let console = match &config.console {
            Some(settings) => Some(bind("console", settings.addr).await?),
            None => None,
        };
        let metrics = Metrics::new(match &config.worker {
            Some(worker) => crate::metrics::Role::Serve {
                retry_delays: worker.amqp.topology.retry_delays().clone(),
            },
            None => crate::metrics::Role::Intake,
        });
        let health = Health::new(&metrics);
        Ok(Self {
            config,
            metrics,
            health,
            tasks: Tasks::default(),
            ops,
            intake,
            console,
        })
    }

    /// Where the operations endpoint listens (the real port when 0 was asked).
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the intake listens.
    pub fn intake_addr(&self) -> Option<SocketAddr> {
        self.intake.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the finance console listens.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The background tasks [`Application::run_until_stopped`] starts:
    /// every one has ended by the time it returns.
    pub fn tasks(&self) -> TaskMonitor {
        TaskMonitor(self.tasks.tracker.clone())
    }

    /// Runs until `shutdown` completes, then drains and closes everything.
    ///
    /// Outages are waited out (and shown on `/readyz`), never returned;
    /// the only error is one no waiting can fix (a failed migration).
    /// Either way, every task it started has ended when it returns (see the
    /// module docs).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, StartupError> {
        let Self {
            config,
            metrics,
            health,
            tasks,
            ops,
            intake,
            console,
        } = self;
        let token = CancellationToken::new();

        if let (Some(listener), Some(settings), Some(database)) =
            (console, &config.console, &config.database)
        {
            tasks.spawn(
                "console",
                listening(
                    "console",
                    run_console(
                        listener,
                        settings.clone(),
                        database.clone(),
                        (config.amqp.clone(), config.seal.clone()),
                        config.pipeline.pseudonym_key.clone(),
                        health.clone(),
                        token.clone(),
                    ),
                ),
            );
        }

        if let Some(listener) = ops {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "operations endpoint listening");
            }
            let state = crate::http::OpsState {
                metrics: metrics.clone(),
                health: health.clone(),
                needs_database: config.database.is_some(),
            };
            tasks.spawn(
                "operations endpoint",
                listening(
                    "operations endpoint",
                    crate::http::serve(listener, state, token.clone().cancelled_owned()),
                ),
            );
        }

        // Its own publishing connection: intake traffic never waits behind
        // the worker's retries.
        let intake_publisher = Arc::new(Publisher::new(config.amqp.clone(), "intake"));
        if let (Some(listener), Some((_, settings))) = (intake, &config.intake) {
            start_intake(
                &tasks,
                listener,
                settings.clone(),
                &config,
                intake_publisher.clone(),
                &metrics,
                &token,
            );
        }
        if config.intake.is_some() {
            // Keeps the intake's connection up, so a request never waits
            // for a broker that is away. Without a consumer, it is also
            // what reports the broker's health.
            tasks.spawn(
                "intake publisher watch",
                watch_publisher(
                    intake_publisher.clone(),
                    config.worker.is_none().then(|| health.clone()),
                    token.clone(),
                ),
            );
        }
        if config.worker.is_none() {
            tasks.spawn(
                "queue gauges",
                refresh_queue_gauges(
                    config.amqp.clone(),
                    metrics.clone(),
                    config.gauge_refresh,
                    token.clone(),
                ),
            );
        }

        let work = async {
            let result = run_worker(&config, &metrics, &health, &tasks, &token).await;
            // Whatever ended the work ends the rest too.
            token.cancel();
            result
        };
        let signal = async {
            tokio::select! {
                () = shutdown => {
                    tracing::info!("shutting down");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
            health.set_stopping();
        };
        let (summary, ()) = tokio::join!(work, signal);

        // The worker has drained; the listeners and the loops saw the same
        // token and are on their way out.
        let late = tasks.close(config.close_timeout).await;
        if !late.is_empty() {
            tracing::warn!(
                tasks = ?late,
                close_timeout = ?config.close_timeout,
                "background tasks did not end within close-timeout; aborted"
            );
        }
        intake_publisher.close().await;
        summary
    }
}

/// A listener's task: says so when it ends in an error (the others end
/// when the token is cancelled).
async fn listening(name: &'static str, serve: impl Future<Output = std::io::Result<()>>) {
    if let Err(err) = serve.await {
        tracing::error!(listener = name, error = %err, "listener failed");
    }
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            listener,
            addr,
            source,
        })
}

fn start_intake(
    tasks: &Tasks,
    listener: TcpListener,
    settings: IntakeSettings,
    config: &AppConfig,
    publisher: Arc<Publisher>,
    metrics: &Metrics,
    token: &CancellationToken,
) {
    let pipeline = &config.pipeline;
    let intake = Arc::new(Intake {
        settings,
        sealer: config.seal.clone(),
        keys: pipeline.keys.clone(),
        signatures: pipeline.signatures,
        expected_fields: pipeline.expected_fields.clone(),
        currencies: pipeline.currencies.clone(),
        pseudonym_key: pipeline.pseudonym_key.clone(),
        publisher,
        metrics: metrics.clone(),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, path = %intake.settings.path, lcn_path = %intake.settings.lcn_path, "intake listening");
    }
    tasks.spawn(
        "intake",
        listening(
            "intake",
            crate::intake::serve(listener, intake, token.clone().cancelled_owned()),
        ),
    );
}

/// Connects the database (waiting it out; `/readyz` shows the worker's
/// view of it), then serves the finance console until the token is
/// cancelled.
async fn run_console(
    listener: TcpListener,
    settings: ConsoleSettings,
    database: DatabaseSettings,
    (amqp, sealer): (AmqpSettings, Sealer),
    pseudonym_key: Option<crate::domain::PseudonymKey>,
    health: Health,
    token: CancellationToken,
) -> std::io::Result<()> {
    // The worker creates and migrates the database; two migrators at once
    // would race, so the console only connects (and retries until it can).
    let database = DatabaseSettings {
        schema: SchemaPolicy::ConnectOnly {
            create_database: false,
        },
        ..database
    };
    let store = tokio::select! {
        store = connect_store(database, &health) => match store {
            Ok(store) => store,
            Err(err) => {
                tracing::error!(error = %err, "the console cannot reach the database");
                return Ok(());
            }
        },
        () = token.cancelled() => return Ok(()),
    };
    let console = Console {
        store,
        settings,
        clock: Clock::system(),
        amqp: Some(amqp),
        sealer: Some(sealer),
        pseudonym_key: pseudonym_key.map(Arc::new),
    };
    crate::console::serve(listener, console, token.cancelled_owned()).await
}

/// Connects the database (waiting it out), then runs the worker until the
/// token is cancelled. Without a worker, waits for the token.
async fn run_worker(
    config: &AppConfig,
    metrics: &Metrics,
    health: &Health,
    tasks: &Tasks,
    token: &CancellationToken,
) -> Result<RunSummary, StartupError> {
    let (Some(database), Some(worker)) = (&config.database, &config.worker) else {
        token.cancelled().await;
        return Ok(RunSummary::default());
    };
    // Until the database is there the worker does not consume: `/readyz`
    // names the database as what is missing, not the broker.
    health
        .broker()
        .set_waiting("not consuming yet: waiting for the database");
    let store = tokio::select! {
        store = connect_store(database.clone(), health) => store?,
        () = token.cancelled() => return Ok(RunSummary::default()),
    };
    health.database().set_up();
    health.broker().set_waiting("not consuming yet: connecting");
    tasks.spawn(
        "database watch",
        health::watch_database(
            store.clone(),
            health.clone(),
            DATABASE_CHECK_INTERVAL,
            database.acquire_timeout,
            token.clone(),
        ),
    );
    tasks.spawn(
        "gauges",
        refresh_gauges(
            store.clone(),
            worker.amqp.clone(),
            metrics.clone(),
            config.gauge_refresh,
            token.clone(),
        ),
    );
    if let Some((interval, policy)) = config.sweep {
        tasks.spawn(
            "sweep",
            sweep_every(store.clone(), interval, policy, token.clone()),
        );
    }
    metrics
        .audit_interval_seconds
        .set(config.audit.map_or(0, |every| {
            i64::try_from(every.as_secs()).unwrap_or(i64::MAX)
        }));
    if let Some(interval) = config.audit {
        tasks.spawn(
            "audit",
            audit_every(store.clone(), interval, metrics.clone(), token.clone()),
        );
    }
    let worker = Worker::new(
        Pipeline::new(config.pipeline.clone(), store),
        config.seal.clone(),
        worker.clone(),
        metrics.clone(),
        health.clone(),
    );
    Ok(worker.run(token.clone().cancelled_owned()).await)
}

/// Connects the store, retrying with backoff while the database cannot be
/// used; each new reason shows on `/readyz` and in one log line. Only a
/// failed migration ends start-up: waiting will not fix it.
async fn connect_store(settings: DatabaseSettings, health: &Health) -> Result<Store, StoreError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    (|| Store::connect(settings.clone()))
        .retry(backoff)
        .when(|err| !matches!(err, StoreError::Migration(_)))
        .notify(|err, _after| health.database().set_down(&err.to_string()))
        .await
}

/// Keeps the intake's publisher connected, and the broker's state
/// current when `health` is given (the standalone intake). Beside `serve`'s
/// worker, whose consumer is what `/readyz` reports, the intake's own
/// connection is still said lost and back in the log, once each.
async fn watch_publisher(
    publisher: Arc<Publisher>,
    health: Option<Health>,
    token: CancellationToken,
) {
    let mut connected_before: Option<bool> = None;
    loop {
        // A connection attempt to a broker that does not answer lasts up
        // to amqp-heartbeat: shutdown does not wait for it.
        let connected = tokio::select! {
            () = token.cancelled() => return,
            connected = publisher.ensure_connected() => connected,
        };
        match (&health, &connected) {
            (Some(health), Ok(())) => health.broker().set_up(),
            (Some(health), Err(err)) => health.broker().set_down(&err.to_string()),
            (None, Ok(())) => {
                if connected_before == Some(false) {
                    tracing::info!("the intake's broker connection is back");
                }
            }
            (None, Err(err)) => {
                if connected_before != Some(false) {
                    tracing::warn!(reason = %err, "the intake's broker connection is lost");
                }
            }
        }
        connected_before = Some(connected.is_ok());
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(DATABASE_CHECK_INTERVAL) => {}
        }
    }
}

/// Refreshes the gauges that need a query, every `interval` on this task
/// (a scrape reads the last values and never queries, so a storm of
/// scrapes costs the database nothing): open exceptions by kind and their
/// oldest (overall and per kind), money at risk per currency, and the
/// queues' depths and the work queue's consumers.
async fn refresh_gauges(
    store: Store,
    amqp: AmqpSettings,
    metrics: Metrics,
    interval: Duration,
    token: CancellationToken,
) {
    let publisher = Publisher::new(amqp.clone(), "gauges");
    loop {
        // A round waits on the database and the broker: shutdown does not.
        tokio::select! {
            () = token.cancelled() => break,
            () = refresh_gauges_once(&store, &amqp, &metrics, &publisher) => {}
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    publisher.close().await;
}

/// One round of [`refresh_gauges`].
async fn refresh_gauges_once(
    store: &Store,
    amqp: &AmqpSettings,
    metrics: &Metrics,
    publisher: &Publisher,
) {
    match store.open_review_counts().await {
        Ok(counts) => {
            let now = chrono::Utc::now();
            let oldest = counts
                .iter()
                .filter_map(|c| c.oldest_open_at)
                .min()
                .map(|at| (now - at).num_seconds())
                .unwrap_or(0);
            let by_kind: Vec<(String, i64)> = counts
                .iter()
                .filter_map(|c| Some((c.kind.clone(), (now - c.oldest_open_at?).num_seconds())))
                .collect();
            metrics.set_oldest_open_by_kind(&by_kind);
            let counts: Vec<(String, i64)> = counts.into_iter().map(|c| (c.kind, c.open)).collect();
            metrics.set_open_review_items(&counts, oldest);
        }
        Err(err) => tracing::debug!(error = %err, "cannot count open review items"),
    }
    match store.resolutions_by_action().await {
        Ok(counts) => metrics.set_review_resolutions(&counts),
        Err(err) => tracing::debug!(error = %err, "cannot count review resolutions"),
    }
    match store.money_at_risk().await {
        Ok(risks) => {
            let amounts: Vec<(String, String, u32, i64)> = risks
                .into_iter()
                .map(|r| {
                    (
                        r.kind.to_owned(),
                        r.currency.as_str().to_owned(),
                        r.currency.exponent(),
                        r.minor,
                    )
                })
                .collect();
            metrics.set_money_at_risk(&amounts);
        }
        Err(err) => tracing::debug!(error = %err, "cannot sum the money at risk"),
    }
    metrics.refresh_queues(publisher, &amqp.topology).await;
}

/// The standalone intake's gauges, every `interval`: the queues alone (it
/// has no database), so the work queue's depth and consumers are known
/// while no worker runs.
async fn refresh_queue_gauges(
    amqp: AmqpSettings,
    metrics: Metrics,
    interval: Duration,
    token: CancellationToken,
) {
    let publisher = Publisher::new(amqp.clone(), "gauges");
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            () = metrics.refresh_queues(&publisher, &amqp.topology) => {}
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    publisher.close().await;
}

/// Sweeps every `interval` (the first time one interval after start):
/// stale orders, unsettled payments, refunds not debited become review
/// items. Every instance runs this task; the sweep's advisory lock lets one
/// of them work at a time, and the others skip that round.
async fn sweep_every(
    store: Store,
    interval: Duration,
    policy: SweepPolicy,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match crate::services::sweep::sweep(&store, chrono::Utc::now(), &policy).await {
            Ok(outcome) if outcome.ran => {
                if !outcome.opened.is_empty() || outcome.closed > 0 {
                    tracing::info!(
                        opened = outcome.opened.len(),
                        closed = outcome.closed,
                        "sweep"
                    );
                }
            }
            Ok(_) => tracing::debug!("another instance is sweeping"),
            Err(err) => tracing::warn!(error = %err, "sweep failed; trying again next round"),
        }
    }
}

/// Audits the books (`audit verify`) once at start and then every
/// `interval`: the hash chains recomputed, every order re-derived. A
/// finding is logged as an error with the rows named and counted in
/// `ipn_audit_failures_total`; a pass sets
/// `ipn_audit_last_ok_timestamp_seconds`. An audit that cannot run (the
/// database away) is only logged: the gauge going stale says it. Shutdown
/// cancels an audit in progress (it only reads).
async fn audit_every(store: Store, interval: Duration, metrics: Metrics, token: CancellationToken) {
    loop {
        let audit = store.audit(&|_| {});
        let outcome = tokio::select! {
            () = token.cancelled() => return,
            outcome = audit => outcome,
        };
        match outcome {
            Ok(report) if report.passed() => {
                metrics.audited(true, chrono::Utc::now().timestamp());
                tracing::debug!(
                    rows = report.total_rows(),
                    orders = report.orders,
                    "audit passed"
                );
            }
            Ok(report) => {
                metrics.audited(false, chrono::Utc::now().timestamp());
                for finding in &report.findings {
                    tracing::error!(finding = %finding, "audit: the books differ from what was written");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "audit could not run; trying again next round")
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its drops: a task that holds one has ended once it is dropped.
    struct Ended(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn closing_waits_for_every_task_and_aborts_and_names_the_late_ones() {
        let tasks = Tasks::default();
        let monitor = TaskMonitor(tasks.tracker.clone());
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let token = CancellationToken::new();
        let obedient = {
            let (token, ended) = (token.clone(), Ended(ended.clone()));
            async move {
                token.cancelled().await;
                drop(ended);
            }
        };
        let deaf = {
            let ended = Ended(ended.clone());
            async move {
                std::future::pending::<()>().await;
                drop(ended);
            }
        };
        tasks.spawn("obedient", obedient);
        tasks.spawn("deaf", deaf);
        assert_eq!(monitor.running(), 2);
        assert!(!monitor.is_closed());

        token.cancel();
        let late = tasks.close(Duration::from_millis(200)).await;
        assert_eq!(late, ["deaf"]);
        assert!(monitor.is_closed());
        assert_eq!(monitor.running(), 0);
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn tasks_that_end_in_time_are_not_named() {
        let tasks = Tasks::default();
        let token = CancellationToken::new();
        for name in ["one", "two"] {
            let token = token.clone();
            tasks.spawn(name, async move { token.cancelled().await });
        }
        token.cancel();
        assert!(tasks.close(Duration::from_secs(30)).await.is_empty());
        assert_eq!(tasks.tracker.len(), 0);
    }
}
