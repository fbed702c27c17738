//! The demo's software vendor profile: the processor's traffic of a
//! software vendor on its hosted cart (`simulate --profile
//! software-vendor`) through the whole system, then every order,
//! subscription and money figure compared with the simulator's
//! expectation.
//!
//! Once the notices are in, the simulated processor's settlement and
//! payout files in the payout currency (USD, `simulate::vendor::settlement`)
//! are imported: every line must match its payment through its payout
//! amount (its net against the notice's `PAYABLE_AMOUNT`), every payout
//! add up, every USD fee replace the commission its payment's notice
//! carried, and the settled payout equal `Σ PAYABLE_AMOUNT`. Nothing is
//! planted, so a sweep as of a week later finds nothing: no review item
//! at all is the expected list. The simulated history ends on the day the
//! demo runs, so that every subscription that stays active is paid beyond
//! the sweep.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    DEMO_KEY, DemoError, DemoOutcome, DemoSettings, daemon_settings, progress_bar, reset_queues,
};
use crate::app::{AppConfig, Application};
use crate::domain::sweep::SweepPolicy;
use crate::domain::{Currency, Money};
use crate::ipn::{KeyRing, NoticeKind};
use crate::metrics::Metrics;
use crate::queue::AmqpSettings;
use crate::simulate::deliver::{IntakeUrls, PostPolicy, Posted, post_all};
use crate::simulate::settlement::SimulatedSettlement;
use crate::simulate::vendor::VendorExpectation;
use crate::simulate::{Profile, Simulation, SimulationConfig, simulate};
use crate::store::{Store, StoreError, SubscriptionFilter};

/// How long after its paid term a subscription without a renewal is
/// missed (`renewal-grace`, default 3 days).
const RENEWAL_GRACE_DAYS: i64 = 3;

pub(super) async fn run(
    settings: &DemoSettings,
    out: &mut (dyn Write + Send),
) -> Result<DemoOutcome, DemoError> {
    let keys = KeyRing::single(DEMO_KEY);
    let key = keys.current().secret.clone();
    let loaded = daemon_settings(settings).loaded()?;
    let mut config = AppConfig::serve_with(&loaded, keys, crate::queue::Sealer::ephemeral()?)?;
    config.sweep = None;
    let amqp = config.amqp.clone();
    writeln!(out, "1/5 preparing the demo database and queues")?;
    let store = Store::connect(loaded.database()?).await?;
    store.reset_schema().await?;
    reset_queues(&config.amqp).await?;

    let today = chrono::Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN);
    let simulation_config = SimulationConfig {
        rates: settings.rates,
        expected_fields: true,
        profile: Profile::SoftwareVendor,
        base_date: today,
        ..SimulationConfig::new(settings.seed, settings.vendor_customers)
    };
    let simulation =
        simulate(&simulation_config, &key).map_err(|err| DemoError::Simulation(err.to_string()))?;
    let expected = simulation
        .vendor
        .clone()
        .ok_or_else(|| DemoError::Simulation("no vendor expectation".into()))?;
    let report = store
        .import_orders(&simulation.orders)
        .await
        .map_err(|err| DemoError::Simulation(err.to_string()))?;
    let lcns = simulation
        .deliveries
        .iter()
        .filter(|d| d.notice == NoticeKind::Lcn)
        .count();
    writeln!(
        out,
        "2/5 {} customers: imported {} orders with a merchant reference; {} notices to deliver ({} licence change notifications), {} orders and {} subscriptions expected",
        settings.vendor_customers,
        report.inserted,
        simulation.deliveries.len(),
        lcns,
        expected.orders.len(),
        expected.subscriptions.len()
    )?;

    let app = Application::build(config).await?;
    let metrics = app.metrics().clone();
    let addr = app
        .intake_addr()
        .ok_or_else(|| DemoError::Simulation("the intake did not start".into()))?;
    let token = CancellationToken::new();
    let daemon = tokio::spawn(app.run_until_stopped(token.clone().cancelled_owned()));
    let urls = IntakeUrls::new(&format!("http://{addr}/ipn"), None);
    let delivered = async {
        writeln!(out, "3/5 intake on {} and {}", urls.ipn, urls.lcn)?;
        let progress = progress_bar(simulation.deliveries.len() as u64);
        let posted = post_all(&simulation, &urls, &key, PostPolicy::default(), || {
            progress.inc(1)
        })
        .await;
        progress.finish_and_clear();
        let posted = posted?;
        writeln!(
            out,
            "4/5 processor side: {} receipts checked, {} retries; waiting until settled",
            posted.stats.receipts, posted.stats.retries
        )?;
        wait_until_settled(
            &store,
            &simulation,
            &expected,
            &posted,
            &metrics,
            &amqp,
            settings.settle_timeout,
        )
        .await?;
        Ok::<_, DemoError>(posted.stats)
    }
    .await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon).await;
    let stats = delivered?;

    writeln!(out, "5/5 settled")?;
    let settled = settle_books(&store, &expected, out).await?;
    let policy = SweepPolicy::default();
    let as_of = chrono::Utc::now()
        + policy.stale_order_age
        + policy.settlement_days
        + chrono::Duration::days(1);
    let swept = crate::services::sweep::sweep(&store, as_of, &policy).await?;
    writeln!(
        out,
        "    a sweep as of {} opened {} item(s) (every payment settled: none expected)",
        as_of.format("%Y-%m-%d"),
        swept.opened.len()
    )?;
    writeln!(out)?;
    store.finance_summary().await?.render(out)?;

    let mut differences = Vec::new();
    if let Some(due) = expected.renewals_due_from {
        let grace = chrono::Duration::days(RENEWAL_GRACE_DAYS);
        if as_of.naive_utc() > due + grace {
            differences.push(format!(
                "the sweep ({as_of}) is past the simulated renewals ({due} + grace): the simulation does not hold for it"
            ));
        }
    }
    differences.extend(compare(&store, &expected, &settled).await?);
    super::write_verdict(
        out,
        &differences,
        &format!(
            "all {} orders, {} subscriptions and the figures of {} currencies and {} payout currency",
            expected.orders.len(),
            expected.subscriptions.len(),
            expected.figures.len(),
            expected.payouts.len()
        ),
    )?;
    writeln!(
        out,
        "\nWhere to look next:\n  DATABASE_URL={} ipn-reconciler subscriptions list",
        settings.database_url.redacted()
    )?;
    Ok(DemoOutcome {
        orders: expected.orders.len(),
        deliveries: simulation.deliveries.len(),
        stats,
        differences,
    })
}

/// What the settlement import must have found, from the simulator's own
/// files.
pub struct VendorSettled {
    /// The lines and payouts the simulator wrote.
    pub simulated: SimulatedSettlement,
    /// How the import classified the lines: matched, differs, unknown.
    pub matched: usize,
    pub differs: usize,
    pub unknown: usize,
    /// Review items the import opened.
    pub opened: usize,
}

/// The simulated processor's settlement and payouts in the payout
/// currency, written by the simulator and read back by the same parser as
/// `settlement import`, then imported; the matched totals printed.
async fn settle_books(
    store: &Store,
    expected: &VendorExpectation,
    out: &mut (dyn Write + Send),
) -> Result<VendorSettled, DemoError> {
    use crate::domain::settlement::LineStatus;
    let simulated = crate::simulate::vendor::settlement::settlement(expected);
    let imported = super::import_settlement(store, &simulated).await?;
    let settled = VendorSettled {
        matched: imported.count(LineStatus::Matched),
        differs: imported.count(LineStatus::Differs),
        unknown: imported.count(LineStatus::Unknown),
        opened: imported.opened.len(),
        simulated,
    };
    writeln!(
        out,
        "    settlement in the payout currency: {} lines in {} payouts: matched {}, differs {}, unknown {}",
        imported.lines, imported.payouts, settled.matched, settled.differs, settled.unknown,
    )?;
    for ((currency, status), t) in &imported.totals {
        if *status == LineStatus::Matched {
            let money = |minor: i64| Money::from_minor(minor, *currency).format_amount();
            writeln!(
                out,
                "    {} matched: gross {}, fees {}, net {}",
                currency.as_str(),
                money(t.gross),
                money(t.fees),
                money(t.net)
            )?;
        }
    }
    Ok(settled)
}

/// Settled: every distinct payment notification body the intake
/// acknowledged is recorded, every licence change notification is stored
/// once, and nothing is in flight or queued.
async fn wait_until_settled(
    store: &Store,
    simulation: &Simulation,
    expected: &VendorExpectation,
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
    let ipn_bodies: std::collections::BTreeSet<&[u8]> = simulation
        .deliveries
        .iter()
        .zip(&posted.receipted)
        .filter(|(d, receipted)| **receipted && d.notice == NoticeKind::Ipn)
        .map(|(d, _)| d.body.as_slice())
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let summary = store.finance_summary().await?;
        let recorded: i64 = summary
            .notifications_by_outcome
            .iter()
            .map(|(_, n)| n)
            .sum();
        let notices = licence_notices(store, expected).await?;
        let mut waiting = 0u32;
        for queue in &queues {
            waiting += probe.queue_depth(queue).await.unwrap_or(1);
        }
        if recorded as usize == ipn_bodies.len()
            && notices == expected.licence_notices
            && waiting == 0
            && metrics.in_flight.get() == 0
        {
            probe.close().await;
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::NotSettled(
                limit,
                format!(
                    "{recorded} of {} payment notifications recorded, {notices} of {} licence notices stored",
                    ipn_bodies.len(),
                    expected.licence_notices
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The licence notices stored for the expected subscriptions.
async fn licence_notices(store: &Store, expected: &VendorExpectation) -> Result<usize, StoreError> {
    let mut stored = 0;
    for licence in expected.subscriptions.keys() {
        if let Some(detail) = store.subscription(licence).await? {
            stored += detail.notices.len();
        }
    }
    Ok(stored)
}

/// Every difference between the database and the vendor's expectation.
pub async fn compare(
    store: &Store,
    expected: &VendorExpectation,
    settled: &VendorSettled,
) -> Result<Vec<String>, StoreError> {
    let mut differences = Vec::new();
    for (key, order) in &expected.orders {
        let Some(actual) = store.order(key).await? else {
            differences.push(format!("order {key} ({}): missing", order.plan.as_str()));
            continue;
        };
        let got = (
            actual.status,
            actual.paid.as_str(),
            actual.refunded.as_str(),
            actual.origin.as_str(),
            actual.processor_ref.as_deref(),
        );
        let want = (
            order.status,
            order.paid.as_str(),
            order.refunded.as_str(),
            order.origin,
            Some(order.processor_ref.as_str()),
        );
        if got != want {
            differences.push(format!(
                "order {key} ({}): status/paid/refunded/origin/REFNO {got:?}, expected {want:?}",
                order.plan.as_str()
            ));
        }
    }
    let subscriptions = store.subscriptions(&SubscriptionFilter::default()).await?;
    if subscriptions.len() != expected.subscriptions.len() {
        differences.push(format!(
            "{} subscriptions, expected {}",
            subscriptions.len(),
            expected.subscriptions.len()
        ));
    }
    for view in &subscriptions {
        let sub = &view.subscription;
        let Some(want) = expected.subscriptions.get(&sub.licence_ref) else {
            differences.push(format!("subscription {}: not expected", sub.licence_ref));
            continue;
        };
        let got = (
            view.status.as_str(),
            sub.expires_at,
            sub.lifetime,
            sub.renewals,
            sub.first_order.as_str(),
            sub.latest_order.as_str(),
            sub.original_order_ref.as_deref(),
        );
        let wanted = (
            want.status.as_str(),
            want.expires_at,
            want.lifetime,
            want.renewals,
            want.first_order.as_str(),
            want.latest_order.as_str(),
            want.original_order_ref.as_deref(),
        );
        if got != wanted {
            differences.push(format!(
                "subscription {} ({}): status/expiry/lifetime/renewals/first/latest/original {got:?}, expected {wanted:?}",
                sub.licence_ref,
                want.plan.as_str()
            ));
        }
    }

    differences.extend(compare_settlement(store, settled).await?);

    // Every payment settled in the payout currency: its commission was
    // released in the order currency, the line's fee booked in the
    // line's (docs/finance.md, "Settlement in the payout currency").
    let mut fees: BTreeMap<String, i64> = BTreeMap::new();
    for line in &settled.simulated.lines {
        *fees
            .entry(line.fee.currency().as_str().to_owned())
            .or_default() += line.fee.minor_units();
    }
    let summary = store.finance_summary().await?;
    for (code, want) in &expected.figures {
        let Some(totals) = summary.totals.iter().find(|t| &t.currency == code) else {
            differences.push(format!("figures of {code}: missing from the report"));
            continue;
        };
        let f = &totals.figures;
        let got = (
            f.paid,
            f.refunded,
            f.net_vat(),
            f.commission,
            f.commission_settled,
            f.open_commission(),
            f.fees,
            f.net_revenue(),
        );
        let wanted = (
            want.paid,
            0,
            want.vat,
            want.commission,
            want.commission,
            0,
            fees.get(code).copied().unwrap_or(0),
            want.net_revenue(),
        );
        if got != wanted {
            differences.push(format!(
                "figures of {code} (paid, refunded, VAT, commission, commission replaced by fees, open commission, fees, net revenue): {got:?}, expected {wanted:?}"
            ));
        }
    }
    let mut currencies: std::collections::BTreeSet<&str> =
        expected.figures.keys().map(String::as_str).collect();
    currencies.extend(fees.keys().map(String::as_str));
    if summary.totals.len() != currencies.len() {
        differences.push(format!(
            "the report has {} currencies, expected {}",
            summary.totals.len(),
            currencies.len()
        ));
    }
    for (code, minor) in &expected.payouts {
        let want = Currency::iso(code)
            .map(|currency| Money::from_minor(*minor, currency).format_amount())
            .unwrap_or_default();
        // What the notices expect is what the payout files say was paid.
        let got = summary
            .payouts
            .iter()
            .find(|p| &p.currency == code)
            .map(|p| (p.expected.clone(), p.settled.clone()));
        if got != Some((want.clone(), want.clone())) {
            differences.push(format!(
                "payout in {code} (expected, settled): {got:?}, expected {want} and {want}"
            ));
        }
    }

    // Open review items: none (every payment settled, nothing planted:
    // no `unsettled_payment`, no `fee_differs`, no settlement item).
    let mut actual: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    for item in store.review_items(false, None).await? {
        *actual
            .entry((item.kind.as_str().to_owned(), item.order_ref))
            .or_default() += 1;
    }
    let wanted: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    if actual != wanted {
        let unexpected: Vec<_> = actual
            .iter()
            .filter(|(k, n)| wanted.get(*k) != Some(*n))
            .take(10)
            .collect();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(k, n)| actual.get(*k) != Some(*n))
            .take(10)
            .collect();
        differences.push(format!(
            "open review items differ: unexpected {unexpected:?}, missing {missing:?}"
        ));
    }
    Ok(differences)
}

/// The import's classification and the stored settlement against the
/// simulator's files: every line matched to its payment, none unmatched,
/// every batch's payout its net.
async fn compare_settlement(
    store: &Store,
    settled: &VendorSettled,
) -> Result<Vec<String>, StoreError> {
    let mut differences = Vec::new();
    let lines = settled.simulated.lines.len();
    let got = (
        settled.matched,
        settled.differs,
        settled.unknown,
        settled.opened,
    );
    if got != (lines, 0, 0, 0) {
        differences.push(format!(
            "settlement import (matched, differs, unknown, items opened): {got:?}, expected ({lines}, 0, 0, 0)"
        ));
    }
    let unmatched = store.unmatched_settlement_lines(None).await?;
    if !unmatched.is_empty() {
        differences.push(format!(
            "{} unmatched settlement line(s), expected none: {:?}",
            unmatched.len(),
            unmatched
                .iter()
                .take(5)
                .map(|l| (&l.batch_id, &l.processor_ref, &l.net, &l.expected))
                .collect::<Vec<_>>()
        ));
    }
    let batches = store.settlement_report(None).await?;
    let want: BTreeMap<&str, i64> = settled
        .simulated
        .payouts
        .iter()
        .map(|p| (p.batch_id.as_str(), p.amount.minor_units()))
        .collect();
    let got: BTreeMap<&str, (i64, Option<i64>)> = batches
        .iter()
        .map(|b| (b.batch_id.as_str(), (b.minor.net, b.minor.payout)))
        .collect();
    let wanted: BTreeMap<&str, (i64, Option<i64>)> =
        want.iter().map(|(b, n)| (*b, (*n, Some(*n)))).collect();
    if got != wanted {
        differences.push(format!(
            "settlement batches (net, payout) differ from the simulator's payouts: {:?}",
            got.iter()
                .filter(|(b, v)| wanted.get(*b) != Some(*v))
                .take(5)
                .collect::<Vec<_>>()
        ));
    }
    Ok(differences)
}
