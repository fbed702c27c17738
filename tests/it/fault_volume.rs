//! The fault run at volume: a simulated stream of notifications (exact
//! duplicates, the processor's retries and copies, refunds, reversals,
//! out-of-order arrivals, forged and renamed copies) is fed to the real
//! `serve` binary, batching on, while the worker is SIGKILLed, its broker
//! connections are force-closed and its database is cut off. At the end
//! every order must be where the simulator's stories say, with exact sums
//! (independent SQL over `orders` and `payments`), every notification
//! applied exactly once (ledger rows against notifications), and exactly the
//! forged and malformed copies parked.
//!
//! The faults are triggered by conditions (so many notifications committed,
//! polled from the database), never by sleeps, and the stream is published
//! while the faults happen: the test keeps a window of published but not yet
//! recorded notifications, and holds the tail of the stream back until the
//! last fault has fired, so that every fault strikes mid-stream.
//!
//! The worker reaches RabbitMQ and PostgreSQL through in-test TCP proxies:
//! cutting them affects this test's connections only (tests share the
//! servers). The second broker fault closes the worker's connections from
//! the broker's side instead (`rabbitmqctl close_connection`, by the
//! connection names that carry this test's queue name).
//!
//! The size is `IPN_FAULT_RUN_NOTIFICATIONS` (default 2,000, for the regular
//! test run); `.ci/fault-run` runs it with 10,000.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use ipn_reconciler::domain::{BodyDigest, Money, ReviewKind};
use ipn_reconciler::ipn::NoticeKind;
use ipn_reconciler::ipn::{FormBody, FormLimits};
use ipn_reconciler::queue::{MessageMeta, Publisher};
use ipn_reconciler::simulate::{
    Anomaly, AnomalyRates, DeliveryKind, Profile, Simulation, SimulationConfig, Story, simulate,
    sort_kinds,
};

use crate::helpers::amqp::{TestQueue, amqp_url_via, broker_addr, close_connections, wait_until};
use crate::helpers::daemon::Daemon;
use crate::helpers::proxy::Proxy;
use crate::helpers::{TestDb, repo_path};

/// How many notifications the run delivers at least.
fn notifications_wanted() -> usize {
    std::env::var("IPN_FAULT_RUN_NOTIFICATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000)
}

/// Published but not yet recorded notifications the feeder allows: the
/// stream keeps coming while the faults strike, without ever running dry.
const WINDOW: usize = 800;

/// A simulated stream of at least `wanted` deliveries, with the default
/// anomalies (unknown orders among them: they wait out a short orphan
/// window, then are parked), more duplicates and more out-of-order orders.
fn stream(wanted: usize, seed: u64) -> Simulation {
    let ring = ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys"))
        .expect("test keys");
    let key = &ring.current().secret;
    let config = |orders| SimulationConfig {
        rates: AnomalyRates {
            duplicates: 0.1,
            out_of_order: 0.3,
            ..AnomalyRates::default()
        },
        expected_fields: true,
        ..SimulationConfig::new(seed, orders)
    };
    let probe = simulate(&config(200), key).expect("simulation");
    let mut orders = (wanted * 200).div_ceil(probe.deliveries.len()).max(1);
    let sim = loop {
        let sim = simulate(&config(orders), key).expect("simulation");
        if sim.deliveries.len() >= wanted {
            break sim;
        }
        orders += orders / 20 + 1;
    };
    // A fifth of the stream's size again from the software vendor's
    // profile (hosted-cart and renewal orders keyed by REFNO, licence
    // change notifications, VAT, commission, payout), with the same seed:
    // its REFNOs and references are apart from the default profile's.
    let vendor = SimulationConfig {
        profile: Profile::SoftwareVendor,
        ..config((wanted / 5 / 7).max(20))
    };
    let vendor = simulate(&vendor, key).expect("vendor simulation");
    mix_in(sim, vendor)
}

/// The default profile's stream with the vendor's spread evenly through
/// it (each stream's own order kept), the vendor's orders imported too
/// and its expectation kept beside the default one.
fn mix_in(mut sim: Simulation, vendor: Simulation) -> Simulation {
    let (a, b) = (sim.deliveries.len(), vendor.deliveries.len());
    let mut merged = Vec::with_capacity(a + b);
    let mut default = std::mem::take(&mut sim.deliveries).into_iter();
    let mut vendors = vendor.deliveries.into_iter();
    for i in 0..a + b {
        // Vendor delivery k goes at about k·(a+b)/b.
        let take_vendor = b > 0 && (i * b) / (a + b) != ((i + 1) * b) / (a + b);
        let next = if take_vendor {
            vendors.next().or_else(|| default.next())
        } else {
            default.next().or_else(|| vendors.next())
        };
        if let Some(mut delivery) = next {
            delivery.sequence = merged.len() + 1;
            merged.push(delivery);
        }
    }
    sim.deliveries = merged;
    sim.orders.extend(vendor.orders);
    let (o, v) = (&mut sim.expected_outcomes, vendor.expected_outcomes);
    o.applied += v.applied;
    o.ignored += v.ignored;
    o.mismatch += v.mismatch;
    o.duplicate += v.duplicate;
    o.order_not_found += v.order_not_found;
    o.invalid_signature += v.invalid_signature;
    o.malformed += v.malformed;
    sim.vendor = vendor.vendor;
    sim
}

/// What the database and the parking queue must hold at the end, from the
/// simulation alone.
struct Expected {
    /// Rows of `notifications` per outcome: one per distinct body.
    rows: BTreeMap<&'static str, i64>,
    /// Ledger rows: one per notification that counted (applied, ignored,
    /// mismatch).
    ledger: i64,
    /// Digests of the deliveries that must be parked: forged and renamed
    /// copies, and unknown orders' notifications once the orphan window
    /// passed (a renamed copy or an unknown order's notification with a
    /// card number is discarded instead).
    parked: HashSet<String>,
}

impl Expected {
    fn of(sim: &Simulation) -> Self {
        let outcomes = sim.expected_outcomes;
        // Exact duplicates are the same bytes: no row of their own. An
        // unknown order's is counted `order_not_found` (it is processed
        // again), a known order's `duplicate`. Licence change
        // notifications have no row in `notifications` at all.
        let exact_duplicates = |known: bool| {
            sim.deliveries
                .iter()
                .filter(|d| {
                    d.kind == DeliveryKind::Duplicate
                        && d.known_order == known
                        && d.notice == NoticeKind::Ipn
                })
                .count()
        };
        let rows = BTreeMap::from([
            ("applied", outcomes.applied as i64),
            ("ignored", outcomes.ignored as i64),
            ("mismatch", outcomes.mismatch as i64),
            (
                "duplicate",
                (outcomes.duplicate - exact_duplicates(true)) as i64,
            ),
            (
                "order_not_found",
                (outcomes.order_not_found - exact_duplicates(false)) as i64,
            ),
            ("invalid_signature", outcomes.invalid_signature as i64),
            ("malformed", outcomes.malformed as i64),
        ]);
        let parked = sim
            .deliveries
            .iter()
            .filter(|d| match d.kind {
                DeliveryKind::Tampered | DeliveryKind::Unsigned => true,
                // Verified, refused as malformed: an expected field
                // renamed, or two names swapped (a layout the processor
                // never sends).
                DeliveryKind::Renamed | DeliveryKind::Swapped => !d.has_pan,
                _ => !d.known_order && !d.has_pan,
            })
            .map(|d| BodyDigest::of(&d.body).to_string())
            .collect();
        Self {
            rows,
            ledger: (outcomes.applied + outcomes.ignored + outcomes.mismatch) as i64,
            parked,
        }
    }

    fn total_rows(&self) -> i64 {
        self.rows.values().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL one worker process and start another.
    Kill,
    /// Drop every TCP connection of the worker to the broker (the proxy).
    BrokerDrop,
    /// The broker closes every connection of the worker (`rabbitmqctl`).
    BrokerClose,
    /// The database goes away until the worker has noticed and sent
    /// deliveries to the retry queues.
    DatabaseCut,
}

#[derive(Debug, Default)]
struct Counts {
    kills: usize,
    broker_cuts: usize,
    /// Broker connections closed over all broker cuts.
    connections_closed: usize,
    db_cuts: usize,
}

/// The database, the queue, the proxies and the worker processes of a run.
struct Run {
    db: TestDb,
    queue: TestQueue,
    client: tokio_postgres::Client,
    pg: Proxy,
    amqp: Proxy,
    /// Running workers.
    workers: Vec<Daemon>,
    /// Killed workers, kept for their logs.
    killed: Vec<Daemon>,
    counts: Counts,
}

/// `GET path` of a worker's operations endpoint, given up after 10 s
/// (`None`): a worker that stops answering fails the run with its state
/// instead of hanging it.
async fn probe(worker: &Daemon, path: &str) -> Option<(u16, String)> {
    worker.get_within(path, Duration::from_secs(10)).await
}

impl Run {
    async fn start(sim: &Simulation) -> Self {
        let db = TestDb::new();
        let store = db.store().await;
        store.import_orders(&sim.orders).await.expect("import");
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        // Retries long enough in total (about 15 s) to outlast the
        // database cut, which ends as soon as the worker has noticed it.
        let queue = TestQueue::new("200ms,500ms,1s,2s,4s,8s");
        queue.declare().await;
        let pg = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
        let amqp = Proxy::start(broker_addr()).await;
        Self {
            db,
            queue,
            client,
            pg,
            amqp,
            workers: Vec::new(),
            killed: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Starts one more worker (no intake), batching on, through the
    /// proxies.
    fn start_worker(&mut self) {
        let amqp_url = amqp_url_via(self.amqp.addr);
        let database_url = format!("postgres://postgres@{}/{}", self.pg.addr, self.db.name);
        let worker = Daemon::start_with(
            &self.db,
            &self.queue,
            &["--no-intake"],
            &[
                ("AMQP_URL", &amqp_url),
                ("DATABASE_URL", &database_url),
                ("IPN_BATCH_SIZE", "64"),
                ("IPN_BATCH_WAIT", "5ms"),
                ("IPN_CONCURRENCY", "4"),
                ("IPN_EXPECTED_FIELDS", "TEST_ORDER,FRAUD_STATUS"),
                ("IPN_DB_ACQUIRE_TIMEOUT", "1s"),
                ("IPN_RECOVERY_STALL", "2s"),
                ("IPN_ORPHAN_WINDOW", "3s"),
            ],
        );
        self.workers.push(worker);
    }

    async fn scalar(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .get(0)
    }

    /// Notifications recorded (committed) so far.
    async fn recorded(&self) -> i64 {
        self.scalar("SELECT count(*) FROM notifications").await
    }

    async fn strike(&mut self, fault: Fault) {
        match fault {
            Fault::Kill => {
                let mut victim = self.workers.remove(0);
                victim.child.kill().expect("SIGKILL");
                let _ = victim.wait(Duration::from_secs(10)).await;
                self.killed.push(victim);
                self.start_worker();
                self.counts.kills += 1;
            }
            Fault::BrokerDrop => {
                // The path is gone (connections reset, new ones refused)
                // until every worker has said so, then comes back.
                let dropped = self.amqp.cut().await;
                let noticed = wait_until(Duration::from_secs(30), || async {
                    let mut all = true;
                    for worker in &self.workers {
                        all &= matches!(probe(worker, "/readyz").await, Some((503, _)));
                    }
                    all
                })
                .await;
                self.amqp.restore().await;
                assert!(noticed, "every worker said the broker was lost");
                assert!(dropped > 0, "the worker had broker connections to drop");
                self.counts.broker_cuts += 1;
                self.counts.connections_closed += dropped;
            }
            Fault::BrokerClose => {
                // `ipn-reconciler <role> <queue>`: the worker's consumer
                // and publisher, not this test's own publisher.
                let base = self.queue.base.clone();
                let mut closed = 0;
                for role in ["consumer", "publisher"] {
                    closed += close_connections(&format!("ipn-reconciler {role} {base}")).await;
                }
                assert!(closed > 0, "the broker closed the worker's connections");
                self.counts.broker_cuts += 1;
                self.counts.connections_closed += closed;
            }
            Fault::DatabaseCut => {
                self.pg.cut().await;
                let noticed = wait_until(Duration::from_secs(60), || async {
                    let mut noticed = false;
                    for worker in &self.workers {
                        if let Some((200, metrics)) = probe(worker, "/metrics").await {
                            noticed |= metrics.contains("ipn_database_up 0")
                                && metrics.lines().any(|l| {
                                    l.starts_with("ipn_retries_total{") && !l.ends_with(" 0")
                                });
                        }
                    }
                    noticed
                })
                .await;
                self.pg.restore().await;
                assert!(noticed, "the worker noticed the outage and retried later");
                self.counts.db_cuts += 1;
            }
        }
    }

    /// Ready messages in the work queue and every retry queue.
    async fn waiting(&self) -> u32 {
        let mut waiting = 0;
        let queues = self.queue.all_queues();
        for queue in &queues[..queues.len() - 1] {
            waiting += self.queue.ready(queue).await;
        }
        waiting
    }

    /// Whether every worker says it is ready (broker and database up).
    async fn ready(&self) -> bool {
        for worker in &self.workers {
            if !matches!(probe(worker, "/readyz").await, Some((200, _))) {
                return false;
            }
        }
        true
    }

    /// Whether every worker has nothing in flight.
    async fn idle(&self) -> bool {
        for worker in &self.workers {
            match probe(worker, "/metrics").await {
                Some((200, metrics)) if metrics.lines().any(|l| l == "ipn_in_flight 0") => {}
                _ => return false,
            }
        }
        true
    }

    /// Publishes the stream while striking `faults` (each once `recorded`
    /// reaches its threshold), then waits until everything is recorded and
    /// settled, and stops the workers with SIGTERM.
    async fn drive(&mut self, sim: &Simulation, expected: &Expected, faults: &[Fault]) {
        // The tail of the stream waits for the last fault; the thresholds
        // are spread over what the rest makes.
        let head = if faults.is_empty() {
            sim.deliveries.len()
        } else {
            sim.deliveries.len() * 9 / 10
        };
        // Rows made by the first n deliveries, for every n.
        let mut seen = HashSet::new();
        let rows_published: Vec<i64> = std::iter::once(0)
            .chain(sim.deliveries.iter().scan(0, |rows, d| {
                if d.notice == NoticeKind::Ipn && seen.insert(d.body.as_slice()) {
                    *rows += 1;
                }
                Some(*rows)
            }))
            .collect();
        let reachable = rows_published[head];
        let thresholds: Vec<i64> = (1..=faults.len())
            .map(|k| reachable * k as i64 / (faults.len() as i64 + 1))
            .collect();
        let publisher = Publisher::connect(self.queue.settings.clone(), "test-publisher")
            .await
            .expect("connect publisher");
        let mut published = 0;
        let mut next_fault = 0;
        // Ends before the nextest timeout (8 minutes in `.ci/fault-run`) so
        // that the state is reported.
        let deadline = Instant::now() + Duration::from_secs(400);
        loop {
            let recorded = self.recorded().await;
            let limit = if next_fault < faults.len() {
                head
            } else {
                sim.deliveries.len()
            };
            // The window counts rows, not deliveries: a licence notice or
            // an exact duplicate makes no notification row, and counting
            // them would shrink the window until the stream stalls (a
            // software vendor's stream is a third licence notices).
            let within = rows_published.partition_point(|&rows| rows <= recorded + WINDOW as i64);
            let upto = limit.min(within.saturating_sub(1)).max(published);
            if published < upto {
                let chunk: Vec<_> = sim.deliveries[published..upto]
                    .iter()
                    .map(|d| {
                        let meta = MessageMeta::received(Utc::now(), None).notice(d.notice);
                        (d.body.clone(), meta)
                    })
                    .collect();
                let results = publisher
                    .publish_notifications(&chunk)
                    .await
                    .expect("publish");
                assert!(results.iter().all(Result::is_ok), "every publish confirmed");
                published = upto;
            }
            // After topping the stream up: a fault strikes while the
            // worker has work (the database cut needs deliveries to fail).
            // Each fault also waits for the workers to have recovered from
            // the one before (ready: broker and database connected), so two
            // faults never land at once.
            // The database cut needs deliveries in flight to fail: it also
            // waits for a batch's worth of published, unrecorded ones.
            if next_fault < faults.len()
                && recorded >= thresholds[next_fault]
                && (faults[next_fault] != Fault::DatabaseCut
                    || rows_published[published] - recorded >= 64)
                && self.ready().await
            {
                self.strike(faults[next_fault]).await;
                next_fault += 1;
                continue;
            }
            if published == sim.deliveries.len()
                && next_fault == faults.len()
                && recorded == expected.total_rows()
                && self.scalar("SELECT count(*) FROM order_events").await >= expected.ledger
                && self.waiting().await == 0
                && self.idle().await
                // Twice, a moment apart: a delivery between two states
                // (taken but not yet started) is seen by the second look.
                && self.waiting().await == 0
                && self.idle().await
            {
                break;
            }
            if Instant::now() >= deadline {
                let ready = self.ready().await;
                let waiting = self.waiting().await;
                let idle = self.idle().await;
                panic!(
                    "the run did not settle: {recorded} of {} notifications recorded, \
                     {published} published, {next_fault} faults (thresholds {thresholds:?}), \
                     ready {ready}, {waiting} waiting in the queues, idle {idle}; \
                     last worker's logs:\n{}",
                    expected.total_rows(),
                    self.workers
                        .last()
                        .map(Daemon::logs)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(40)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        publisher.close().await;
        for worker in &mut self.workers {
            worker.signal("TERM");
        }
        for worker in &mut self.workers {
            assert_eq!(
                worker.wait(Duration::from_secs(60)).await,
                Some(0),
                "the worker stops cleanly"
            );
        }
    }

    /// Log lines of every worker process (killed ones too) with `message`.
    fn logged(&self, message: &str) -> Vec<String> {
        self.killed
            .iter()
            .chain(&self.workers)
            .flat_map(|worker| {
                worker
                    .logs()
                    .lines()
                    .filter(|line| line.contains(message))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Deliveries each worker process judged and recorded ("notification
    /// handled" lines), and of them duplicates.
    fn handled(&self) -> Vec<(usize, usize)> {
        self.killed
            .iter()
            .chain(&self.workers)
            .map(|worker| {
                let mut handled = 0;
                let mut duplicates = 0;
                for line in worker.logs().lines() {
                    let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let fields = &entry["fields"];
                    if fields["message"] == "notification handled" {
                        handled += 1;
                        if fields["outcome"] == "duplicate" {
                            duplicates += 1;
                        }
                    }
                }
                (handled, duplicates)
            })
            .collect()
    }

    /// Checks the end state against the simulation; returns the figures
    /// to print (applied, duplicate rows, parked messages).
    /// `audit verify` on what the run left (issue 23, item 7): every hash
    /// chain holds and the orders re-derive from the sealed facts, after
    /// the kills, cuts and concurrent workers.
    fn audit_verifies(&self) {
        let output = crate::cli_reconcile::cli(&self.db)
            .args(["audit", "verify"])
            .output()
            .expect("audit verify");
        assert!(
            output.status.success(),
            "audit verify after the run: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn check(&self, sim: &Simulation, expected: &Expected) -> (i64, i64, String) {
        // Rows per outcome: one per distinct body.
        let rows: BTreeMap<String, i64> = self
            .client
            .query(
                "SELECT outcome, count(*) FROM notifications GROUP BY outcome",
                &[],
            )
            .await
            .expect("outcomes")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for (outcome, count) in &expected.rows {
            assert_eq!(
                rows.get(*outcome).copied().unwrap_or(0),
                *count,
                "`{outcome}` notifications; all: {rows:?}"
            );
        }
        assert_eq!(
            rows.values().sum::<i64>(),
            expected.total_rows(),
            "no other outcome: {rows:?}"
        );

        // Nothing applied twice: one ledger row per notification that
        // counted, none for the others, one per identity.
        let ledger = self.scalar("SELECT count(*) FROM order_events").await;
        assert_eq!(ledger, expected.ledger, "ledger rows");
        assert_eq!(
            self.scalar(
                "SELECT count(*) FROM (SELECT n.identity FROM order_events e \
                 JOIN notifications n ON n.id = e.notification_id \
                 GROUP BY n.identity HAVING count(*) > 1) AS twice"
            )
            .await,
            0,
            "an identity with more than one ledger row"
        );
        assert_eq!(
            self.scalar(
                "SELECT count(*) FROM notifications n \
                 WHERE (n.outcome IN ('applied', 'ignored', 'mismatch')) \
                    <> EXISTS (SELECT 1 FROM order_events e WHERE e.notification_id = n.id)"
            )
            .await,
            0,
            "a ledger row for each notification that counted, and for no other"
        );
        assert_eq!(
            self.scalar(
                "SELECT count(*) FROM notifications \
                 WHERE outcome = 'duplicate' AND repeat_of IS NULL"
            )
            .await,
            0,
            "every repeat names the notification it repeats"
        );

        // Every order where its story says, with exact sums: the order's
        // own columns, the sum over its payments and the sum of its money
        // movements (the journal: one per decision that moved money, so a
        // notification applied twice would show), against the simulator's
        // decimal amounts.
        let orders = self
            .client
            .query(
                "SELECT o.order_ref, o.currency, o.status, o.processor_ref, \
                        o.paid_minor, o.refunded_minor, \
                        COALESCE(sum(p.paid_minor), 0)::int8, \
                        COALESCE(sum(p.refunded_minor), 0)::int8, \
                        (SELECT COALESCE(sum(m.amount_minor), 0)::int8 FROM money_movements m \
                         WHERE m.order_id = o.id AND m.kind = 'payment'), \
                        (SELECT COALESCE(sum(m.amount_minor), 0)::int8 FROM money_movements m \
                         WHERE m.order_id = o.id AND m.kind = 'refund') \
                 FROM orders o LEFT JOIN payments p ON p.order_id = o.id \
                 GROUP BY o.id",
                &[],
            )
            .await
            .expect("orders");
        let mut open: HashMap<String, Vec<ReviewKind>> = HashMap::new();
        for row in self
            .client
            .query(
                "SELECT order_ref, kind FROM review_items \
                 WHERE status = 'open' AND order_ref IS NOT NULL",
                &[],
            )
            .await
            .expect("review items")
        {
            let kind: String = row.get(1);
            open.entry(row.get(0))
                .or_default()
                .push(ReviewKind::parse(&kind).expect("known review kind"));
        }
        let vendor = sim
            .vendor
            .as_ref()
            .expect("the vendor's profile is mixed in");
        assert_eq!(
            orders.len(),
            sim.expected.len() + vendor.orders.len(),
            "orders"
        );
        let mut disagreements = Vec::new();
        let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in &orders {
            let order_ref: String = row.get(0);
            let currency: String = row.get(1);
            if let Some(want) = vendor.orders.get(&order_ref) {
                // The vendor's orders: paid once, whatever the faults, and
                // no review item.
                let paid = Money::iso(&want.paid, &currency)
                    .expect("expected amount")
                    .minor_units();
                totals.entry(currency.clone()).or_default().0 += paid;
                let got = (
                    row.get::<_, String>(2),
                    row.get::<_, Option<String>>(3),
                    row.get::<_, i64>(4),
                    row.get::<_, i64>(5),
                    row.get::<_, i64>(6),
                    row.get::<_, i64>(8),
                    open.remove(&order_ref).unwrap_or_default(),
                );
                let wanted = (
                    want.status.as_str().to_owned(),
                    Some(want.processor_ref.clone()),
                    paid,
                    0,
                    paid,
                    paid,
                    Vec::new(),
                );
                if got != wanted {
                    disagreements.push(format!(
                        "vendor order {order_ref} ({}): expected (status, REFNO, paid, \
                         refunded, paid over payments, paid in the journal, open reviews) \
                         {wanted:?}, database {got:?}",
                        want.plan.as_str()
                    ));
                }
                continue;
            }
            let expected_order = &sim.expected[&order_ref];
            let minor = |amount: &str| {
                Money::iso(amount, &currency)
                    .expect("expected amount")
                    .minor_units()
            };
            let (paid, refunded) = (minor(&expected_order.paid), minor(&expected_order.refunded));
            let total = totals.entry(currency.clone()).or_default();
            total.0 += paid;
            total.1 += refunded;
            let mut kinds = open.remove(&order_ref).unwrap_or_default();
            sort_kinds(&mut kinds);
            let processor_ref: Option<String> = row.get(3);
            // A double charge's order keeps the REFNO of the payment
            // recorded first: bookkeeping that follows the arrival order
            // (see `story::Outline::payments`), and faults reorder
            // deliveries (requeued after a kill, back from a retry queue).
            // Either charge's REFNO is right then, and nothing else.
            let processor_ref = match (&processor_ref, expected_order.story) {
                (Some(got), Story::DoubleChargeRefunded | Story::DoubleChargeOpen)
                    if refnos_of(sim, &order_ref).contains(got) =>
                {
                    expected_order.processor_ref.clone()
                }
                _ => processor_ref,
            };
            let got = (
                row.get::<_, String>(2),
                processor_ref,
                row.get::<_, i64>(4),
                row.get::<_, i64>(5),
                row.get::<_, i64>(6),
                row.get::<_, i64>(7),
                row.get::<_, i64>(8),
                row.get::<_, i64>(9),
                kinds,
            );
            let want = (
                expected_order.status.as_str().to_owned(),
                expected_order.processor_ref.clone(),
                paid,
                refunded,
                paid,
                refunded,
                paid,
                refunded,
                expected_order.review_kinds.clone(),
            );
            if got != want {
                disagreements.push(format!(
                    "{order_ref} ({}, {:?}): expected (status, ref, paid, refunded, \
                     paid over payments, refunded over payments, paid in the journal, \
                     refunded in the journal, open reviews) {want:?}, \
                     database {got:?}",
                    expected_order.story, expected_order.anomalies
                ));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} order(s) disagree with the simulator:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        // Unknown orders: never created, every notification of theirs
        // recorded `order_not_found` once, their review items once each.
        let mut disagreements = Vec::new();
        for (order_ref, orphan) in &sim.expected_orphans {
            let rows = self
                .client
                .query(
                    "SELECT outcome FROM notifications WHERE order_ref = $1",
                    &[order_ref],
                )
                .await
                .expect("orphan notifications");
            let outcomes: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            let distinct_bodies = sim
                .deliveries
                .iter()
                .filter(|d| &d.order_ref == order_ref && d.kind.carries_its_notification())
                .map(|d| d.body.as_slice())
                .collect::<HashSet<_>>()
                .len();
            let mut kinds = open.remove(order_ref).unwrap_or_default();
            sort_kinds(&mut kinds);
            if outcomes.len() != distinct_bodies
                || outcomes.iter().any(|o| o != "order_not_found")
                || kinds != orphan.review_kinds
            {
                disagreements.push(format!(
                    "{order_ref} ({}): expected {distinct_bodies} order_not_found and {:?}; \
                     database {outcomes:?} and {kinds:?}",
                    orphan.story, orphan.review_kinds
                ));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} unknown order(s) disagree with the simulator:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        assert!(open.is_empty(), "open review items of no order: {open:?}");
        self.check_vendor(vendor).await;

        // The same sums over the whole run, per currency.
        for (currency, (paid, refunded)) in &totals {
            let row = self
                .client
                .query_one(
                    "SELECT COALESCE(sum(paid_minor), 0)::int8, \
                            COALESCE(sum(refunded_minor), 0)::int8 \
                     FROM orders WHERE currency = $1",
                    &[currency],
                )
                .await
                .expect("totals");
            assert_eq!(
                (row.get::<_, i64>(0), row.get::<_, i64>(1)),
                (*paid, *refunded),
                "paid and refunded in {currency}"
            );
        }

        // Nothing left to do, and exactly what should be parked is.
        let queues = self.queue.all_queues();
        for queue in &queues[..queues.len() - 1] {
            assert_eq!(self.queue.ready(queue).await, 0, "{queue} is empty");
        }
        let parked = self
            .queue
            .browse(&self.queue.topology().parking_queue())
            .await;
        let digests: HashSet<String> = parked
            .iter()
            .map(|(properties, _)| {
                properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned())
                    .expect("a parked message carries its digest")
            })
            .collect();
        let unexpected = digests.difference(&expected.parked).count();
        let missing = expected.parked.difference(&digests).count();
        assert!(
            unexpected == 0 && missing == 0,
            "parked: {unexpected} that should not be, {missing} missing (of {})",
            expected.parked.len()
        );
        // Parked messages outnumber the notifications: an unknown order's
        // exact duplicate is judged and parked on its own, and a copy
        // published before a kill (the ack lost) is parked again.
        let parked = format!(
            "{} parked ({} distinct notifications, as expected)",
            parked.len(),
            digests.len()
        );
        (ledger, rows.get("duplicate").copied().unwrap_or(0), parked)
    }
}

impl Run {
    /// The vendor's subscriptions, licence notices and notice money, from
    /// the database against the simulator's expectation.
    async fn check_vendor(&self, vendor: &ipn_reconciler::simulate::vendor::VendorExpectation) {
        let stored = self.scalar("SELECT count(*) FROM licence_notices").await;
        assert_eq!(
            stored as usize, vendor.licence_notices,
            "every licence change notification stored once"
        );
        let mut disagreements = Vec::new();
        for (licence, want) in &vendor.subscriptions {
            let row = self
                .client
                .query_one(
                    "SELECT count(*) FILTER (WHERE paid AND licence_type = 'RENEWAL')::int8, \
                            to_char(max(expires_at) FILTER (WHERE paid), 'YYYY-MM-DD HH24:MI:SS'), bool_or(paid AND lifetime), \
                            min(processor_ref) \
                     FROM subscription_orders WHERE licence_ref = $1",
                    &[licence],
                )
                .await
                .expect("subscription");
            let status: Option<String> = self
                .client
                .query_opt(
                    "SELECT status FROM licence_notices WHERE licence_ref = $1 \
                     AND status IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                    &[licence],
                )
                .await
                .expect("latest licence notice")
                .map(|r| r.get(0));
            let status = status.map_or("active".to_owned(), |s| {
                ipn_reconciler::domain::subscription::SubscriptionStatus::from_lcn(&s)
                    .as_str()
                    .to_owned()
            });
            let got = (
                row.get::<_, i64>(0) as usize,
                row.get::<_, Option<String>>(1),
                row.get::<_, Option<bool>>(2).unwrap_or(false),
                row.get::<_, Option<String>>(3),
                status,
            );
            let wanted = (
                want.renewals,
                want.expires_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()),
                want.lifetime,
                Some(want.first_order.clone()),
                want.status.as_str().to_owned(),
            );
            if got != wanted {
                disagreements.push(format!(
                    "subscription {licence} ({}): (renewals, expiry, lifetime, first \
                     order, status) expected {wanted:?}, database {got:?}",
                    want.plan.as_str()
                ));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} subscription(s) disagree with the simulator:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        let keys: Vec<String> = vendor.orders.keys().cloned().collect();
        for (currency, want) in &vendor.figures {
            let row = self
                .client
                .query_one(
                    "SELECT COALESCE(sum(p.vat_minor), 0)::int8, \
                            COALESCE(sum(p.commission_minor), 0)::int8 \
                     FROM payments p JOIN orders o ON o.id = p.order_id \
                     WHERE o.currency = $1 AND o.order_ref = ANY($2)",
                    &[currency, &keys],
                )
                .await
                .expect("notice money");
            assert_eq!(
                (row.get::<_, i64>(0), row.get::<_, i64>(1)),
                (want.vat, want.commission),
                "VAT and commission of the vendor's {currency} payments"
            );
        }
        for (currency, want) in &vendor.payouts {
            let payable = self
                .client
                .query_one(
                    "SELECT COALESCE(sum(payable_minor), 0)::int8 FROM payments \
                     WHERE payout_currency = $1",
                    &[currency],
                )
                .await
                .expect("payable")
                .get::<_, i64>(0);
            assert_eq!(payable, *want, "Σ PAYABLE_AMOUNT in {currency}");
        }
    }
}

/// The REFNOs of the genuine notifications of `order_ref`.
fn refnos_of(sim: &Simulation, order_ref: &str) -> HashSet<String> {
    sim.deliveries
        .iter()
        .filter(|d| d.order_ref == order_ref && d.kind == DeliveryKind::Genuine)
        .filter_map(|d| {
            FormBody::parse(&d.body, &FormLimits::default())
                .ok()?
                .get("REFNO")
                .map(str::to_owned)
        })
        .collect()
}

/// The run must hold what its name says, or it proves less.
fn assert_stream_has_everything(sim: &Simulation, wanted: usize) {
    assert!(sim.deliveries.len() >= wanted);
    assert!(sim.count(DeliveryKind::Duplicate) > 0, "exact duplicates");
    assert!(sim.count(DeliveryKind::Retry) > 0, "processor retries");
    assert!(
        sim.deliveries.iter().any(|d| d.order_status == "REFUND"),
        "refunds"
    );
    assert!(
        sim.expected
            .values()
            .any(|e| e.anomalies.contains(&Anomaly::OutOfOrder)),
        "out-of-order orders"
    );
    assert!(!sim.expected_orphans.is_empty(), "unknown orders");
    assert!(
        sim.deliveries.iter().any(|d| d.notice == NoticeKind::Lcn),
        "the software vendor's licence change notifications"
    );
    assert!(
        sim.vendor
            .as_ref()
            .is_some_and(|v| !v.subscriptions.is_empty()),
        "the software vendor's subscriptions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_kills_broker_cuts_and_a_database_cut_exactly_once() {
    let started = Instant::now();
    let wanted = notifications_wanted();
    let sim = stream(wanted, 20_261_130);
    assert_stream_has_everything(&sim, wanted);
    let expected = Expected::of(&sim);
    let mut run = Run::start(&sim).await;
    run.start_worker();
    use Fault::*;
    let faults = [
        Kill,
        BrokerDrop,
        Kill,
        DatabaseCut,
        Kill,
        BrokerClose,
        Kill,
        Kill,
    ];
    run.drive(&sim, &expected, &faults).await;
    assert!(run.counts.kills >= 5);
    assert_eq!(run.counts.broker_cuts, 2);
    assert_eq!(run.counts.db_cuts, 1);
    let (applied, duplicate_rows, parked) = run.check(&sim, &expected).await;
    run.audit_verifies();
    let handled: usize = run.handled().iter().map(|(h, _)| h).sum();
    // Batches that failed for a permanent reason and were applied one by
    // one instead (a database outage is not one: those are retried).
    let fallbacks = run
        .logged("the batch failed; applying its notifications one by one")
        .len();
    println!(
        "fault run: {} orders, {} notifications delivered ({} exact duplicates), batch size 64; \
         faults: {} kills, {} broker cuts ({} connections closed), {} database cut; \
         {} recorded, {} applied (ledger rows), {} duplicates recorded as repeats, \
         {}, {} judged in all (retries and redeliveries after faults included, {} more than delivered), \
         {} batches applied one by one; {:.1} s",
        sim.orders.len(),
        sim.deliveries.len(),
        sim.count(DeliveryKind::Duplicate),
        run.counts.kills,
        run.counts.broker_cuts,
        run.counts.connections_closed,
        run.counts.db_cuts,
        expected.total_rows(),
        applied,
        duplicate_rows,
        parked,
        handled,
        handled.saturating_sub(sim.deliveries.len()),
        fallbacks,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_queue_share_a_stream_exactly_once() {
    let started = Instant::now();
    let wanted = notifications_wanted();
    let sim = stream(wanted, 20_261_131);
    assert_stream_has_everything(&sim, wanted);
    let expected = Expected::of(&sim);
    let mut run = Run::start(&sim).await;
    for _ in 0..3 {
        run.start_worker();
    }
    run.drive(&sim, &expected, &[]).await;
    let (applied, duplicate_rows, parked) = run.check(&sim, &expected).await;
    run.audit_verifies();
    let handled = run.handled();
    for (index, (count, _)) in handled.iter().enumerate() {
        assert!(
            *count * 20 >= sim.deliveries.len(),
            "worker {index} did part of the work: {handled:?}"
        );
    }
    println!(
        "three workers: {} notifications delivered, {} applied, {} duplicates recorded as \
         repeats, {}; judged per worker {:?}; {:.1} s",
        sim.deliveries.len(),
        applied,
        duplicate_rows,
        parked,
        handled.iter().map(|(h, _)| h).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
}
