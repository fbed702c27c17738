//! Helpers for the worker tests: a broker topology of its own per test
//! (deleted on drop), an in-process worker, signed bodies, polling.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use ipn_reconciler::domain::{Currencies, PseudonymKey, ReconcilePolicy};
use ipn_reconciler::health::Health;
use ipn_reconciler::ipn::{Algorithm, FormBody, FormLimits, SecretKey, SignaturePolicy, sign};
use ipn_reconciler::metrics::{Metrics, Role};
use ipn_reconciler::pipeline::{Pipeline, PipelineConfig};
use ipn_reconciler::queue::{AmqpSettings, MessageMeta, Publisher, RetryDelays, Sealer, Topology};
use ipn_reconciler::secret::SecretUrl;
use ipn_reconciler::settings::Settings;
use ipn_reconciler::store::Store;
use ipn_reconciler::worker::{RunSummary, Worker, WorkerSettings};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use super::repo_path;
use ipn_reconciler::settings::{
    BrokerSection, IntakeSection, NotificationSection, OperationsSection, WorkerSection,
};
use std::num::NonZero;

/// The broker the tests use; override with `TEST_AMQP_URL`.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The host and port of the broker the tests use (for a proxy in front).
pub fn broker_addr() -> std::net::SocketAddr {
    let url = amqp_url();
    let authority = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    host_port
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("broker address")
}

/// [`amqp_url`] with its host and port replaced by `addr` (a proxy).
pub fn amqp_url_via(addr: std::net::SocketAddr) -> String {
    let url = amqp_url();
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, "%2f"));
    let credentials = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{credentials}{addr}/{path}")
}

/// Exchange and queues named `ipn.test.<uuid>...`, deleted on drop.
pub struct TestQueue {
    pub base: String,
    pub delays: String,
    pub settings: AmqpSettings,
}

impl TestQueue {
    pub fn new(delays: &str) -> Self {
        let base = format!("ipn.test.{}", uuid::Uuid::new_v4().simple());
        let settings = Self::daemon_settings_for(&base, delays)
            .loaded()
            .expect("settings")
            .amqp()
            .expect("amqp settings");
        Self {
            base,
            delays: delays.to_owned(),
            settings,
        }
    }

    fn daemon_settings_for(base: &str, delays: &str) -> Settings {
        Settings {
            broker: BrokerSection {
                amqp_url: SecretUrl::new(amqp_url()),
                amqp_queue: base.to_owned(),
                retry_delays: RetryDelays::parse(delays).expect("delays"),
                ..Default::default()
            },
            ..Settings::default()
        }
    }

    /// The daemon's settings for this queue, with the fixtures' keys and
    /// listeners on free ports (bound by the daemon, read back from it).
    pub fn daemon_settings(&self) -> Settings {
        let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Settings {
            broker: BrokerSection {
                seal_key_file: Some(repo_path(SEAL_KEYS)),
                ..Self::daemon_settings_for(&self.base, &self.delays).broker
            },
            notifications: NotificationSection {
                key_file: Some(repo_path("fixtures/keys/test.keys")),
                pseudonym_key_file: Some(repo_path("fixtures/keys/pseudonym.key")),
                ..Self::daemon_settings_for(&self.base, &self.delays).notifications
            },
            intake: IntakeSection {
                intake_addr: any_port,
                ..Self::daemon_settings_for(&self.base, &self.delays).intake
            },
            operations: OperationsSection {
                http_addr: any_port,
                ..Self::daemon_settings_for(&self.base, &self.delays).operations
            },
            ..Self::daemon_settings_for(&self.base, &self.delays)
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.settings.topology
    }

    /// Environment for a `serve`/`publish`/`parked` subprocess (the seal
    /// keys included: they go with the broker).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AMQP_URL", amqp_url()),
            ("AMQP_QUEUE", self.base.clone()),
            ("IPN_RETRY_DELAYS", self.delays.clone()),
            (
                "IPN_SEAL_KEYS_FILE",
                repo_path(SEAL_KEYS).display().to_string(),
            ),
        ]
    }

    /// Publishes bodies to the work exchange with confirms, in clear (as
    /// another program may).
    pub async fn publish(&self, bodies: &[Vec<u8>]) {
        let publisher = Publisher::connect(self.settings.clone(), "test-publisher")
            .await
            .expect("connect publisher");
        let messages: Vec<_> = bodies
            .iter()
            .map(|body| (body.clone(), MessageMeta::received(Utc::now(), None)))
            .collect();
        for chunk in messages.chunks(500) {
            let results = publisher
                .publish_notifications(chunk)
                .await
                .expect("publish");
            assert!(results.iter().all(Result::is_ok), "every publish confirmed");
        }
        publisher.close().await;
    }

    /// Ready messages in `queue` (declared passively).
    pub async fn ready(&self, queue: &str) -> u32 {
        let connection = self.settings.connect("test-probe").await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let count = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare")
            .message_count();
        let _ = connection.close(200, "probe done".into()).await;
        count
    }

    /// Every message ready in `queue`, in order, as (properties, body);
    /// they all stay queued: taken without ack, then returned when the
    /// channel closes. (A quorum queue counts the return as a delivery.)
    pub async fn browse(&self, queue: &str) -> Vec<(lapin::BasicProperties, Vec<u8>)> {
        let connection = self.settings.connect("test-browse").await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .expect("basic.get")
        {
            let delivery = message.delivery;
            messages.push((delivery.properties, delivery.data));
        }
        let _ = channel.close(200, "browsed".into()).await;
        let _ = connection.close(200, "browsed".into()).await;
        messages
    }

    /// Every queue of the topology: work, each retry queue, parking.
    pub fn all_queues(&self) -> Vec<String> {
        let topology = self.topology();
        let mut queues = vec![topology.work_queue().to_owned()];
        queues.extend(
            topology
                .retry_delays()
                .delays()
                .iter()
                .map(|delay| topology.retry_queue(*delay)),
        );
        queues.push(topology.parking_queue());
        queues
    }

    pub async fn declare(&self) {
        let connection = self.settings.connect("test-setup").await.expect("connect");
        self.topology().declare(&connection).await.expect("declare");
        let _ = connection.close(200, "setup done".into()).await;
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let settings = self.settings.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(connection) = settings.connect("test-teardown").await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await
                    && let Err(err) = settings.topology.delete(&channel).await
                {
                    eprintln!("cannot delete the test topology: {err}");
                }
                let _ = connection.close(200, "teardown".into()).await;
            });
        })
        .join();
    }
}

/// The pipeline configuration of the fixtures (test keys, pseudonym key).
pub fn pipeline_config() -> PipelineConfig {
    let pseudonym = std::fs::read(repo_path("fixtures/keys/pseudonym.key")).expect("pseudonym key");
    PipelineConfig {
        keys: ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys"))
            .expect("keys"),
        signatures: SignaturePolicy::default(),
        limits: FormLimits::default(),
        pseudonym_key: Some(PseudonymKey::new(pseudonym.trim_ascii())),
        reconcile: ReconcilePolicy::default(),
        expected_fields: Vec::new(),
        currencies: Currencies::iso(),
    }
}

/// The fixtures' seal key file (public test keys).
pub const SEAL_KEYS: &str = "fixtures/keys/test.seal";

/// The seal keys of the fixtures: what the daemons of the tests seal with.
pub fn seal_keys() -> Sealer {
    ipn_reconciler::keys::read_seal_keys(&repo_path(SEAL_KEYS)).expect("seal keys")
}

/// Arguments every `serve` subprocess gets (keys, seal keys, pseudonyms).
pub fn key_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "IPN_SEAL_KEYS_FILE",
            repo_path(SEAL_KEYS).display().to_string(),
        ),
        (
            "IPN_KEYS_FILE",
            repo_path("fixtures/keys/test.keys").display().to_string(),
        ),
        (
            "PSEUDONYM_KEY_FILE",
            repo_path("fixtures/keys/pseudonym.key")
                .display()
                .to_string(),
        ),
    ]
}

/// A worker running in this process.
pub struct RunningWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<RunSummary>,
    pub metrics: Metrics,
}

impl RunningWorker {
    pub fn spawn(store: Store, queue: &TestQueue, tweak: impl FnOnce(&mut WorkerSettings)) -> Self {
        Self::spawn_with(store, queue, pipeline_config(), tweak)
    }

    pub async fn stop(mut self) -> RunSummary {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(40), &mut self.handle)
            .await
            .expect("worker stops within its deadline")
            .expect("worker task")
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `SELECT count(*)` of a query on the test database.
pub async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.expect("count").get(0)
}

/// The secret of the current test key.
pub fn test_key() -> SecretKey {
    let ring =
        ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys");
    ring.current().secret.clone()
}

/// A fixture body rewritten for another order (`REFNOEXT`, `REFNO`,
/// `MESSAGE_ID`) and signed again with `key`.
pub fn resigned(fixture: &str, order_ref: &str, refno: u64, key: &SecretKey) -> Vec<u8> {
    resigned_with(fixture, order_ref, refno, &[], key)
}

/// [`resigned`], with the values of other fields replaced too (`changes`:
/// name and new value, e.g. `("CURRENCY", "ZZB")`).
pub fn resigned_with(
    fixture: &str,
    order_ref: &str,
    refno: u64,
    changes: &[(&str, &str)],
    key: &SecretKey,
) -> Vec<u8> {
    let body = std::fs::read(repo_path(&format!("fixtures/ipn/{fixture}"))).expect("fixture");
    let form = FormBody::parse(&body, &FormLimits::default()).expect("fixture parses");
    let fields = form
        .fields()
        .iter()
        .cloned()
        .map(|mut field| {
            match field.name.as_str() {
                "REFNOEXT" => field.value = order_ref.to_owned(),
                "REFNO" => field.value = refno.to_string(),
                "MESSAGE_ID" => field.value = format!("{}{refno}", field.value),
                name => {
                    if let Some((_, value)) = changes.iter().find(|(n, _)| *n == name) {
                        (*value).clone_into(&mut field.value);
                    }
                }
            }
            field
        })
        .collect();
    let form = FormBody::from_fields(fields);
    sign(&form, key, &[Algorithm::Sha3_256, Algorithm::Sha256])
        .expect("sign")
        .encode()
        .into_bytes()
}

/// `count` orders of 107.00 EUR named `<prefix>-00000`... imported into
/// `store`, and for each the signed `COMPLETE` that pays it (REFNO
/// `refno_base + i`), in order: a stream under which to break things.
pub async fn paid_orders(
    store: &Store,
    prefix: &str,
    count: usize,
    refno_base: u64,
) -> Vec<Vec<u8>> {
    let order_ref = |i: usize| format!("{prefix}-{i:05}");
    let mut csv = String::from("order_ref,amount,currency\n");
    for i in 0..count {
        csv.push_str(&format!("{},107.00,EUR\n", order_ref(i)));
    }
    import_orders_csv(store, &csv).await;
    let key = test_key();
    (0..count)
        .map(|i| {
            resigned(
                "03-shop-1001-complete.txt",
                &order_ref(i),
                refno_base + i as u64,
                &key,
            )
        })
        .collect()
}

/// Orders as `fixtures/orders.csv` would hold them, their currencies read
/// with the store's table.
pub async fn import_orders_csv(store: &Store, csv: &str) {
    let orders =
        ipn_reconciler::store::orders::parse_orders_csv(csv.as_bytes(), store.currencies())
            .expect("orders csv");
    store.import_orders(&orders).await.expect("import");
}

pub async fn import_fixture_orders(store: &Store) {
    let csv = std::fs::read_to_string(repo_path("fixtures/orders.csv")).expect("orders.csv");
    import_orders_csv(store, &csv).await;
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read body")
}

/// The pids of the broker connections whose client properties (their
/// name) contain `pattern`. `rabbitmqctl` blocks for a second or more, so
/// it runs on a blocking thread, never on the test's runtime.
pub async fn connections(pattern: &str) -> Vec<String> {
    let pattern = pattern.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "pid",
                "client_properties",
                "--quiet",
                "--no-table-headers",
            ])
            .output()
            .expect("rabbitmqctl list_connections");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains(&pattern))
            .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
            .collect()
    })
    .await
    .expect("rabbitmqctl task")
}

/// How many connections named with `pattern` the broker has.
pub async fn live_connections(pattern: &str) -> usize {
    connections(pattern).await.len()
}

/// Closes the broker connections whose name contains `pattern`, the way
/// `rabbitmqctl close_all_connections` would, but only this test's (tests
/// run in parallel on one broker). Returns how many were closed.
pub async fn close_connections(pattern: &str) -> usize {
    let pids = connections(pattern).await;
    tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for pid in pids {
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", &pid, "test"])
                .status()
                .expect("rabbitmqctl close_connection");
            if status.success() {
                closed += 1;
            }
        }
        closed
    })
    .await
    .expect("rabbitmqctl task")
}

impl RunningWorker {
    /// Like [`RunningWorker::spawn`] with another pipeline configuration.
    pub fn spawn_with(
        store: Store,
        queue: &TestQueue,
        config: PipelineConfig,
        tweak: impl FnOnce(&mut WorkerSettings),
    ) -> Self {
        Self::spawn_sealed(store, queue, config, seal_keys(), tweak)
    }

    /// Like [`RunningWorker::spawn_with`] with other seal keys.
    pub fn spawn_sealed(
        store: Store,
        queue: &TestQueue,
        config: PipelineConfig,
        sealer: Sealer,
        tweak: impl FnOnce(&mut WorkerSettings),
    ) -> Self {
        let mut settings = Settings {
            worker: WorkerSection {
                concurrency: NonZero::new(4).expect("positive"),
                prefetch: NonZero::new(16).expect("positive"),
                ..TestQueue::daemon_settings_for(&queue.base, &queue.delays).worker
            },
            ..TestQueue::daemon_settings_for(&queue.base, &queue.delays)
        }
        .loaded()
        .expect("settings")
        .worker()
        .expect("worker settings");
        tweak(&mut settings);
        let metrics = Metrics::new(Role::Serve {
            retry_delays: settings.amqp.topology.retry_delays().clone(),
        });
        let health = Health::new(&metrics);
        let worker = Worker::new(
            Pipeline::new(config, store),
            sealer,
            settings,
            metrics.clone(),
            health,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            stop: Some(stop),
            handle,
            metrics,
        }
    }
}

/// Runs the binary with `args` and `env`, off the async runtime; returns
/// (success, stdout, stderr).
pub async fn run_cli(
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
            .args(&args)
            .envs(env)
            .output()
            .expect("run ipn-reconciler");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("cli task")
}
