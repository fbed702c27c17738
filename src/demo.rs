//! `ipn-reconciler demo`: the whole system in one process, for a newcomer.
//!
//! It resets a demo database and a demo queue, imports simulated orders,
//! starts the intake and the worker, POSTs a few hundred orders' worth of
//! notifications over HTTP (with every anomaly the simulator knows, checking
//! each read receipt as the processor would), waits until everything is
//! settled, imports the simulated processor's settlement and payouts (with
//! their planted differences) and sweeps as if a week had passed, prints
//! the finance summary, and compares the database with the simulator's
//! independent expectation, review items from the settlement and the sweep
//! included. It ends by itself.

mod vendor;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{AppConfig, Application, StartupError};
use crate::domain::sweep::SweepPolicy;
use crate::domain::{Money, Outcome, ReviewKind};
use crate::ipn::KeyRing;
use crate::metrics::Metrics;
use crate::queue::{AmqpSettings, QueueError, RetryDelays, Sealer};
use crate::secret::SecretUrl;
use crate::services::settlement::{ImportError, ImportOptions};
use crate::settings::{
    BrokerSection, DatabaseSection, IntakeSection, NotificationSection, OperationsSection,
    WorkerSection,
};
use crate::settings::{ExpectedFields, Settings, SettingsError};
use crate::simulate::deliver::{
    DeliverError, DeliveryStats, IntakeUrls, PostPolicy, Posted, post_all,
};
use crate::simulate::{AnomalyRates, Profile, Simulation, SimulationConfig, simulate, sort_kinds};
use crate::store::{Store, StoreError};

/// The demo's own, public key. It signs the simulated notifications and
/// the receipts; it is not a secret and must never be used for real.
pub const DEMO_KEY: &str = "ipn-reconciler-DEMO-ONLY-key";

/// What the demo runs against and how big it is.
#[derive(Clone, Debug)]
pub struct DemoSettings {
    /// A database the demo may empty: its name must contain `demo`.
    pub database_url: SecretUrl,
    pub amqp_url: SecretUrl,
    /// Base name of the demo's exchange and queues (reset at start).
    pub queue_base: String,
    pub seed: u64,
    pub orders: usize,
    pub rates: AnomalyRates,
    /// How long to wait for everything to settle.
    pub settle_timeout: Duration,
    /// The profiles to run, in order (each on an emptied database).
    pub profiles: Vec<Profile>,
    /// Customers of the software vendor profile.
    pub vendor_customers: usize,
}

impl DemoSettings {
    pub const DEFAULT_DATABASE_URL: &'static str =
        "postgres://postgres@127.0.0.1:5432/ipn_reconciler_demo";

    pub fn new(database_url: SecretUrl, amqp_url: SecretUrl) -> Self {
        Self {
            database_url,
            amqp_url,
            queue_base: "ipn.demo".to_owned(),
            seed: 2026,
            orders: 300,
            rates: AnomalyRates {
                duplicates: 0.1,
                out_of_order: 0.25,
                tampered: 0.05,
                amount_mismatch: 0.05,
                unknown_orders: 0.04,
                pan_in_free_text: 0.03,
                processor_retries: 0.08,
                second_url_copies: 0.05,
                manual_resends: 0.03,
                reencoded_copies: 0.03,
                stripped_signatures: 0.04,
                renamed_expected_fields: 0.3,
                double_charges: 0.03,
                foreign_reversals: 0.02,
                conflicting_copies: 0.02,
            },
            settle_timeout: Duration::from_secs(120),
            profiles: vec![Profile::Default, Profile::SoftwareVendor],
            vendor_customers: 150,
        }
    }
}

/// Why the demo could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "the demo empties its database, so its name must contain `demo` (got `{0}`); \
         pass --database-url with a dedicated demo database"
    )]
    NotADemoDatabase(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Settlement(#[from] ImportError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Seal(#[from] crate::queue::SealKeyError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("simulation: {0}")]
    Simulation(String),
    #[error("not settled after {0:?}: {1}")]
    NotSettled(Duration, String),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// How a demo run ended.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub orders: usize,
    pub deliveries: usize,
    pub stats: DeliveryStats,
    /// Differences between the database and the simulator's expectation;
    /// empty means the run is green.
    pub differences: Vec<String>,
}

/// Runs the demo's profiles in turn (each on an emptied database),
/// writing progress and the summaries to `out`; the outcome adds them up.
pub async fn run(
    settings: &DemoSettings,
    out: &mut (dyn Write + Send),
) -> Result<DemoOutcome, DemoError> {
    let mut total = DemoOutcome {
        orders: 0,
        deliveries: 0,
        stats: DeliveryStats::default(),
        differences: Vec::new(),
    };
    let mut summaries = Vec::new();
    for profile in &settings.profiles {
        writeln!(out, "== profile {} ==", profile.as_str())?;
        let outcome = match profile {
            Profile::Default => run_default(settings, out).await?,
            Profile::SoftwareVendor => vendor::run(settings, out).await?,
        };
        summaries.push(format!(
            "{}: {} orders, {} deliveries, {}",
            profile.as_str(),
            outcome.orders,
            outcome.deliveries,
            if outcome.differences.is_empty() {
                "OK".to_owned()
            } else {
                format!("{} difference(s)", outcome.differences.len())
            }
        ));
        total.orders += outcome.orders;
        total.deliveries += outcome.deliveries;
        total.stats.receipts += outcome.stats.receipts;
        total.stats.refused += outcome.stats.refused;
        total.stats.retries += outcome.stats.retries;
        total.differences.extend(
            outcome
                .differences
                .into_iter()
                .map(|d| format!("[{}] {d}", profile.as_str())),
        );
        writeln!(out)?;
    }
    writeln!(out, "Summary per profile:")?;
    for summary in summaries {
        writeln!(out, "  {summary}")?;
    }
    Ok(total)
}

/// The default profile: a shop that imports its orders.
async fn run_default(
    settings: &DemoSettings,
    out: &mut (dyn Write + Send),
) -> Result<DemoOutcome, DemoError> {
    let db_name = settings
        .database_url
        .expose()
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_dbname().map(str::to_owned))
        .unwrap_or_default();
    if !db_name.contains("demo") {
        return Err(DemoError::NotADemoDatabase(db_name));
    }
    let keys = KeyRing::single(DEMO_KEY);
    let key = keys.current().secret.clone();
    let loaded = daemon_settings(settings).loaded()?;
    // A seal key of its own, kept nowhere: the demo's queues are emptied at
    // its start and die with it.
    let mut config = AppConfig::serve_with(&loaded, keys, Sealer::ephemeral()?)?;
    // The demo sweeps once, as of later, after the settlement (see
    // `settle_books`).
    config.sweep = None;
    let amqp = config.amqp.clone();

    writeln!(
        out,
        "1/5 preparing database {db_name} and queues {}.*",
        settings.queue_base
    )?;
    let store = Store::connect(loaded.database()?).await?;
    store.reset_schema().await?;
    reset_queues(&config.amqp).await?;

    let mut simulation_config = SimulationConfig::new(settings.seed, settings.orders);
    simulation_config.rates = settings.rates;
    // The daemon checks them (see `daemon_settings`).
    simulation_config.expected_fields = true;
    let simulation =
        simulate(&simulation_config, &key).map_err(|err| DemoError::Simulation(err.to_string()))?;
    let report = store
        .import_orders(&simulation.orders)
        .await
        .map_err(|err| DemoError::Simulation(err.to_string()))?;
    writeln!(
        out,
        "2/5 imported {} simulated orders ({} notifications to deliver, {} for unknown orders)",
        report.inserted,
        simulation.deliveries.len(),
        simulation.expected_orphans.len()
    )?;

    let app = Application::build(config).await?;
    let metrics = app.metrics().clone();
    let addr = app
        .intake_addr()
        .ok_or_else(|| DemoError::Simulation("the intake did not start".into()))?;
    let token = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until_stopped(token.clone().cancelled_owned()));
    let url = format!("http://{addr}/ipn");
    let delivered = async {
        writeln!(
            out,
            "3/5 intake on {url}, worker consuming {}",
            settings.queue_base
        )?;
        let progress = progress_bar(simulation.deliveries.len() as u64);
        let urls = IntakeUrls::new(&url, None);
        let posted = post_all(&simulation, &urls, &key, PostPolicy::default(), || {
            progress.inc(1)
        })
        .await;
        progress.finish_and_clear();
        let posted = posted?;
        let stats = posted.stats;
        writeln!(
            out,
            "4/5 processor side: {} receipts checked, {} forged copies refused, {} retries; waiting until settled",
            stats.receipts, stats.refused, stats.retries
        )?;
        wait_until_settled(
            &store,
            &simulation,
            &posted,
            &metrics,
            &amqp,
            settings.settle_timeout,
        )
        .await?;
        Ok::<_, DemoError>(stats)
    }
    .await;
    // Whatever happened, stop the daemon before returning: its broker
    // connections must not outlive the runtime.
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon).await;
    let stats = delivered?;

    writeln!(out, "5/5 settled")?;
    let planted = settle_books(&store, &simulation, out).await?;
    writeln!(out)?;
    let summary = store.finance_summary().await?;
    summary.render(out)?;
    let mut differences = compare(&store, &simulation).await?;
    differences.extend(compare_settlement(&store, &simulation, &planted).await?);
    write_verdict(
        out,
        &differences,
        &format!(
            "all {} orders and {} unknown orders",
            simulation.expected.len(),
            simulation.expected_orphans.len()
        ),
    )?;
    writeln!(
        out,
        "\nWhere to look next (the demo database stays until the next demo):\n  \
         DATABASE_URL={url} ipn-reconciler orders list --status mismatch\n  \
         DATABASE_URL={url} ipn-reconciler review list\n  \
         DATABASE_URL={url} ipn-reconciler report\n  \
         DATABASE_URL={url} ipn-reconciler settlement report --unmatched\n  \
         docs/operations.md and docs/architecture.md",
        url = settings.database_url.redacted()
    )?;
    Ok(DemoOutcome {
        orders: simulation.expected.len(),
        deliveries: simulation.deliveries.len(),
        stats,
        differences,
    })
}

pub(crate) fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "    POST {bar:40} {pos}/{len} notifications ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The daemon's settings for the demo: its database and queues, short
/// retry delays and orphan window (so that unknown orders settle within the
/// demo, where production waits an hour), listeners on free ports, and the
/// fields the simulated merchant's IPN settings send (docs/protocol.md §11
/// (c)), so that a copy with TEST_ORDER or FRAUD_STATUS renamed is refused.
pub(crate) fn daemon_settings(demo: &DemoSettings) -> Settings {
    let loopback_any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Settings {
        database: DatabaseSection {
            database_url: demo.database_url.clone(),
            // The demo makes its own database.
            create_db: true,
            ..Default::default()
        },
        broker: BrokerSection {
            amqp_url: demo.amqp_url.clone(),
            amqp_queue: demo.queue_base.clone(),
            retry_delays: RetryDelays::new(
                [500, 1000, 2000]
                    .into_iter()
                    .map(Duration::from_millis)
                    .collect(),
            ),
            ..Default::default()
        },
        worker: WorkerSection {
            orphan_window: Duration::from_secs(3),
            ..Default::default()
        },
        operations: OperationsSection {
            shutdown_deadline: Duration::from_secs(10),
            http_addr: loopback_any_port,
            ..Default::default()
        },
        intake: IntakeSection {
            intake_addr: loopback_any_port,
            ..Default::default()
        },
        notifications: NotificationSection {
            expected_fields: ExpectedFields(vec![
                "TEST_ORDER".to_owned(),
                "FRAUD_STATUS".to_owned(),
            ]),
            ..Default::default()
        },
        ..Settings::default()
    }
}

/// Deletes and declares the demo's topology, so no message of an earlier
/// run is left.
pub(crate) async fn reset_queues(amqp: &AmqpSettings) -> Result<(), QueueError> {
    let connection = amqp.connect("demo-setup").await?;
    let channel = connection.create_channel().await?;
    amqp.topology.delete(&channel).await?;
    amqp.topology.declare(&connection).await?;
    let _ = connection.close(200, "demo setup done".into()).await;
    Ok(())
}

/// Settled: every distinct body the intake acknowledged is recorded (a
/// notification's first delivery with its outcome, each other body of it as
/// a `duplicate` repeat, a refused one as `malformed`; an exact byte copy
/// adds no row), nothing is in flight or waiting in the work and retry
/// queues (the unknown orders' notifications wait there until their window
/// ends), and every unknown order has its review item. Bodies refused at
/// the door (forged, unsigned) never reach the queue.
async fn wait_until_settled(
    store: &Store,
    simulation: &Simulation,
    posted: &Posted,
    metrics: &Metrics,
    amqp: &AmqpSettings,
    limit: Duration,
) -> Result<(), DemoError> {
    let probe = crate::queue::Publisher::new(amqp.clone(), "demo-probe");
    let topology = &amqp.topology;
    let mut queues = vec![topology.work_queue().to_owned()];
    queues.extend(
        topology
            .retry_delays()
            .delays()
            .iter()
            .map(|delay| topology.retry_queue(*delay)),
    );
    let distinct = posted.receipted_bodies(simulation);
    let expected_orphan_items: usize = simulation
        .expected_orphans
        .values()
        .map(|o| {
            o.review_kinds
                .iter()
                .filter(|k| **k == ReviewKind::OrphanPayment)
                .count()
        })
        .sum();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let summary = store.finance_summary().await?;
        let recorded: i64 = summary
            .notifications_by_outcome
            .iter()
            .map(|(_, n)| n)
            .sum();
        let still_orphan: i64 = summary
            .notifications_by_outcome
            .iter()
            .filter(|(o, _)| *o == Outcome::OrderNotFound)
            .map(|(_, n)| *n)
            .sum();
        let orphan_items: i64 = summary
            .open_exceptions
            .iter()
            .filter(|e| e.kind == ReviewKind::OrphanPayment)
            .map(|e| e.open)
            .sum();
        let mut waiting = 0u32;
        for queue in &queues {
            waiting += probe.queue_depth(queue).await.unwrap_or(1);
        }
        let orphan_notifications: usize = simulation
            .expected_orphans
            .values()
            .map(|o| o.notifications)
            .sum();
        let done = recorded as usize == distinct.len()
            && orphan_items as usize == expected_orphan_items
            && still_orphan as usize == orphan_notifications
            && waiting == 0
            && metrics.in_flight.get() == 0;
        if done {
            probe.close().await;
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::NotSettled(
                limit,
                format!(
                    "{recorded} of {} notifications recorded, {orphan_items} of {expected_orphan_items} orphan items",
                    distinct.len()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every difference between the database and the simulation's expectation.
pub async fn compare(store: &Store, simulation: &Simulation) -> Result<Vec<String>, StoreError> {
    let mut kinds_by_order: BTreeMap<String, Vec<ReviewKind>> = BTreeMap::new();
    // Open items: those the system closed (a refund that waited for its
    // payment) depend on the arrival order, what is still open does not.
    for item in store.review_items(false, None).await? {
        if SETTLEMENT_KINDS.contains(&item.kind) {
            continue;
        }
        if let Some(order_ref) = item.order_ref {
            kinds_by_order.entry(order_ref).or_default().push(item.kind);
        }
    }
    for kinds in kinds_by_order.values_mut() {
        sort_kinds(kinds);
    }
    let mut differences = Vec::new();
    for (order_ref, expected) in &simulation.expected {
        let Some(order) = store.order(order_ref).await? else {
            differences.push(format!("{order_ref}: missing from the database"));
            continue;
        };
        let actual = (order.status, order.paid.as_str(), order.refunded.as_str());
        let wanted = (
            expected.status,
            expected.paid.as_str(),
            expected.refunded.as_str(),
        );
        if actual != wanted {
            differences.push(format!(
                "{order_ref} ({}): status/paid/refunded {:?}, expected {:?}",
                expected.story.as_str(),
                (actual.0.as_str(), actual.1, actual.2),
                (wanted.0.as_str(), wanted.1, wanted.2)
            ));
        }
        compare_kinds(
            order_ref,
            &kinds_by_order,
            &expected.review_kinds,
            &mut differences,
        );
    }
    for (order_ref, expected) in &simulation.expected_orphans {
        if store.order(order_ref).await?.is_some() {
            differences.push(format!("{order_ref}: an unknown order was created"));
        }
        compare_kinds(
            order_ref,
            &kinds_by_order,
            &expected.review_kinds,
            &mut differences,
        );
    }
    Ok(differences)
}

/// The review kinds of the settlement and the sweep, compared by
/// [`compare_settlement`] rather than with each order's notifications.
const SETTLEMENT_KINDS: [ReviewKind; 7] = [
    ReviewKind::SettlementUnknown,
    ReviewKind::FeeDiffers,
    ReviewKind::SettlementAmountDiffers,
    ReviewKind::PayoutTotalDiffers,
    ReviewKind::UnsettledPayment,
    ReviewKind::RefundNotDebited,
    ReviewKind::StaleOrder,
];

/// The demo's verdict: `OK` naming what matched (`what`), or `MISMATCH`
/// with the first twenty differences.
fn write_verdict(
    out: &mut (dyn Write + Send),
    differences: &[String],
    what: &str,
) -> std::io::Result<()> {
    writeln!(out)?;
    if differences.is_empty() {
        writeln!(out, "OK: {what} match the simulator's expectation.")
    } else {
        writeln!(
            out,
            "MISMATCH: {} difference(s) from the simulator's expectation:",
            differences.len()
        )?;
        for difference in differences.iter().take(20) {
            writeln!(out, "  {difference}")?;
        }
        Ok(())
    }
}

/// Imports a simulated settlement as an operator would: its files written
/// as the processor writes them, read back by the same parsers and imported
/// by the same service as `settlement import`.
async fn import_settlement(
    store: &Store,
    simulated: &crate::simulate::settlement::SimulatedSettlement,
) -> Result<crate::services::settlement::ImportSummary, DemoError> {
    use crate::domain::settlement::{Mapping, parse_payouts, parse_settlement};
    use crate::simulate::settlement::{write_payouts_csv, write_settlement_csv};
    let invalid = |err: &dyn std::fmt::Display| DemoError::Simulation(err.to_string());
    let mut csv = Vec::new();
    write_settlement_csv(simulated, &mut csv).map_err(|e| invalid(&e))?;
    let lines = parse_settlement(csv.as_slice(), &Mapping::default(), store.currencies())
        .map_err(|e| invalid(&e))?;
    let mut csv = Vec::new();
    write_payouts_csv(simulated, &mut csv).map_err(|e| invalid(&e))?;
    let payouts = parse_payouts(csv.as_slice(), store.currencies()).map_err(|e| invalid(&e))?;
    // The demo imports as itself, on this machine.
    let actor = crate::store::action_log::Actor::cli("demo", None, None);
    Ok(crate::services::settlement::import(
        store,
        &lines,
        &payouts,
        ImportOptions::default(),
        crate::services::settlement::Importer {
            actor: &actor,
            subject: "settlement.csv",
        },
        &|_| {},
    )
    .await?)
}

/// The simulated processor's settlement imported (`settlement.csv` and
/// `payouts.csv` as the simulator writes them, read back by the same
/// parser as `settlement import`), the matched totals printed, then one
/// sweep as if `settlement-days` and a day had passed, so that what was
/// planted (an unknown line, an amount one unit off, a refund never
/// debited, a payout one unit short, payments never settled) and the
/// orders that never completed all become review items. Returns the
/// review items they must be, `(kind, order_ref)` sorted.
async fn settle_books(
    store: &Store,
    simulation: &Simulation,
    out: &mut (dyn Write + Send),
) -> Result<Vec<(ReviewKind, Option<String>)>, DemoError> {
    use crate::domain::settlement::LineStatus;
    let simulated = crate::simulate::settlement::settlement(simulation);
    let imported = import_settlement(store, &simulated).await?;
    writeln!(
        out,
        "    settlement: {} lines in {} payouts: matched {}, differs {}, unknown {}, fees and other {}",
        imported.lines,
        imported.payouts,
        imported.count(LineStatus::Matched),
        imported.count(LineStatus::Differs),
        imported.count(LineStatus::Unknown),
        imported.count(LineStatus::Other),
    )?;
    writeln!(
        out,
        "    {:<4} {:>14} {:>12} {:>14}  (matched lines)",
        "CUR", "GROSS", "FEES", "NET"
    )?;
    for ((currency, status), t) in &imported.totals {
        if *status == LineStatus::Matched {
            let money = |minor: i64| Money::from_minor(minor, *currency).format_amount();
            writeln!(
                out,
                "    {:<4} {:>14} {:>12} {:>14}",
                currency.as_str(),
                money(t.gross),
                money(t.fees),
                money(t.net)
            )?;
        }
    }
    let policy = SweepPolicy::default();
    let newest_order = simulation
        .orders
        .iter()
        .filter_map(|o| o.created_at)
        .max()
        .unwrap_or_else(chrono::Utc::now);
    let as_of = chrono::Utc::now().max(newest_order + policy.stale_order_age)
        + policy.settlement_days
        + chrono::Duration::days(1);
    let swept = crate::services::sweep::sweep(store, as_of, &policy).await?;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in imported.opened.iter().chain(&swept.opened) {
        *by_kind.entry(finding.kind.as_str()).or_default() += 1;
    }
    writeln!(
        out,
        "    review items from the settlement and a sweep as of {}: {}",
        as_of.format("%Y-%m-%d"),
        by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let mut expected = simulated.expected;
    for (order_ref, order) in &simulation.expected {
        if matches!(
            order.status,
            crate::domain::OrderState::Pending | crate::domain::OrderState::Authorized
        ) {
            expected.push((ReviewKind::StaleOrder, Some(order_ref.clone())));
        }
    }
    expected.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    Ok(expected)
}

/// The open items of the settlement and sweep kinds against `expected`.
async fn compare_settlement(
    store: &Store,
    simulation: &Simulation,
    expected: &[(ReviewKind, Option<String>)],
) -> Result<Vec<String>, StoreError> {
    let _ = simulation;
    let mut actual: Vec<(ReviewKind, Option<String>)> = store
        .review_items(false, None)
        .await?
        .into_iter()
        .filter(|item| SETTLEMENT_KINDS.contains(&item.kind))
        .map(|item| (item.kind, item.order_ref))
        .collect();
    actual.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    if actual == expected {
        return Ok(Vec::new());
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !actual.contains(e))
        .map(|(k, o)| format!("{k} {}", o.as_deref().unwrap_or("-")))
        .collect();
    let extra: Vec<String> = actual
        .iter()
        .filter(|a| !expected.contains(a))
        .map(|(k, o)| format!("{k} {}", o.as_deref().unwrap_or("-")))
        .collect();
    Ok(vec![format!(
        "settlement and sweep items: {} open, {} expected; missing {missing:?}, unexpected {extra:?}",
        actual.len(),
        expected.len()
    )])
}

/// Review items are compared as multisets (sorted lists): a cause raised
/// twice is a difference too.
fn compare_kinds(
    order_ref: &str,
    actual: &BTreeMap<String, Vec<ReviewKind>>,
    expected: &[ReviewKind],
    differences: &mut Vec<String>,
) {
    let names = |kinds: &[ReviewKind]| kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>();
    let actual = actual.get(order_ref).map(Vec::as_slice).unwrap_or_default();
    if actual != expected {
        differences.push(format!(
            "{order_ref}: review items {:?}, expected {:?}",
            names(actual),
            names(expected)
        ));
    }
}
