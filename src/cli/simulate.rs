//! `ipn-reconciler simulate`: a seeded, reproducible processor simulation
//! written to disk (orders CSV, expected states, one body file per POST).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};

use super::KeyArgs;
use crate::domain::Currencies;
use crate::queue::Publisher;
use crate::simulate::deliver::{IntakeUrls, PostPolicy, post_all, publish_all};
use crate::simulate::{
    AnomalyRates, CurrencyWeight, DeliveryKind, Profile, SimulationConfig, simulate, write_all,
    write_expected_json, write_manifest_json, write_orders_csv,
};

/// Where the simulated notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Write one file per delivery under `<OUT>/bodies/`.
    Files,
    /// Publish every delivery to the work exchange (persistent, confirmed).
    Queue,
    /// POST every delivery to an intake (`--intake-url`), checking each
    /// read receipt as the processor does and retrying with backoff.
    Http,
}

/// Generates a seeded, reproducible stream of signed notifications for N
/// orders, with configurable anomalies, and the final state each order must
/// reach.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_long_help = "\
Writes, under --out:
  orders.csv     the shop's orders (import with `orders import`)
  expected.json  order_ref -> {status, paid, refunded, review_kinds, processor_ref}
  manifest.json  the configuration, expected outcome counts, unknown orders
  settlement.csv the processor's settlement of the payments (import with
                 `settlement import`): sales, refunds, chargebacks with fees,
                 batched per day and currency, with planted differences: one
                 line for an unknown order, one amount one unit off, one
                 refund never debited, some payments never settled
  payouts.csv    one transfer per batch (`settlement import --payouts`); the
                 first batch's is one unit short
  bodies/NNNNN-<order_ref>-<kind>.txt, in delivery order; <kind> is genuine,
                 duplicate, tampered, retry, second_url, resend, reencoded,
                 stripped, unsigned, renamed or swapped

The same --seed and options always give the same bytes. Expectations assume
the orders are imported first, test orders are not applied (the default),
and expected fields are checked only with --with-expected-fields."
)]
pub struct SimulateArgs {
    /// Seed of the simulation: the same seed and options give the same output.
    #[arg(long, required = true)]
    pub seed: Option<u64>,
    /// Which merchant to simulate. `default`: a shop that imports its
    /// orders, with every anomaly of the options below. `software-vendor`:
    /// a software vendor on the processor's hosted cart: orders with and
    /// without a merchant reference, subscriptions that renew, fail, lapse
    /// and are canceled, trials, lifetime licences, licence change
    /// notifications (POSTed to --lcn-url), VAT, commission and a USD
    /// payout; --orders is then the number of customers, and only
    /// --duplicates, --out-of-order, --processor-retries and
    /// --second-url-copies apply. Its expectation is written to
    /// vendor.json; its settlement.csv and payouts.csv are in the payout
    /// currency (USD), one sale line per payment whose net is its
    /// PAYABLE_AMOUNT, monthly batches, nothing planted.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Number of orders the shop knows (rows of orders.csv). Unknown orders
    /// (--unknown-orders) come on top.
    #[arg(long, required = true)]
    pub orders: Option<usize>,
    #[command(flatten)]
    pub rates: RateArgs,
    /// Per order: probability that its notifications carry TEST_ORDER=1
    /// (ignored by default, so such orders stay pending).
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub test_orders: f64,
    /// Expect the reconciler to run with `expected-fields =
    /// TEST_ORDER,FRAUD_STATUS`: only then are copies with those fields
    /// renamed made (--renamed-expected-fields), expected `malformed`.
    #[arg(long)]
    pub with_expected_fields: bool,
    /// Currency mix as CODE=WEIGHT pairs.
    #[arg(
        long,
        default_value = "EUR=40,USD=30,GBP=10,JPY=10,BHD=10",
        value_name = "MIX"
    )]
    pub currencies: String,
    /// Day the first order is created (orders follow about 3 minutes apart).
    #[arg(long, default_value = "2026-11-01", value_name = "YYYY-MM-DD")]
    pub base_date: NaiveDate,
    /// The key to sign with: the key file's current (first) key.
    /// Key file: one key per line, `KEY_ID SECRET` or `KEY_ID "SECRET"`;
    /// the first line is the current key (see `ipn sign --help`).
    #[arg(long, env = "IPN_KEYS_FILE", value_name = "FILE", required = true)]
    pub key_file: Option<PathBuf>,
    /// `simulate api`: the processor's REST API instead of notifications.
    #[command(subcommand)]
    pub command: Option<SimulateCommand>,
    /// Where deliveries go: `files` (bodies/ under --out), `queue` (publish
    /// to RabbitMQ) or `http` (POST to --intake-url, checking receipts).
    /// orders.csv, expected.json and manifest.json go to --out in any case.
    #[arg(long, value_enum, default_value_t = Target::Files)]
    pub target: Target,
    /// The intake to POST to (`--target http`).
    #[arg(long, value_name = "URL", required_if_eq("target", "http"))]
    pub intake_url: Option<String>,
    /// Where licence change notifications go (`--target http`); by
    /// default --intake-url with its last path segment replaced by `lcn`.
    #[arg(long, value_name = "URL")]
    pub lcn_url: Option<String>,
    /// POSTs in flight at once (`--target http`).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Broker settings (`--target queue`).
    #[command(flatten)]
    pub broker: super::args::BrokerFlags,
    /// Before sending anything, import the simulated orders into the
    /// database (`--database-url`), so that the notifications find their
    /// orders instead of all landing as unknown orders. orders.csv and
    /// expected.json are written first in any case.
    #[arg(long)]
    pub import_orders: bool,
    /// The database `--import-orders` imports into.
    #[command(flatten)]
    pub db: super::args::DatabaseFlags,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR", required = true)]
    pub out: Option<PathBuf>,
    /// Replace the .txt files of an existing, non-empty <OUT>/bodies/.
    #[arg(long)]
    pub force: bool,
}

/// Anomaly rates, each a probability in 0..=1.
#[derive(Debug, Clone, clap::Args)]
pub struct RateArgs {
    /// Per notification: probability that it is delivered again, byte for
    /// byte (must end `duplicate`).
    #[arg(long, default_value_t = 0.1, value_parser = probability, value_name = "P")]
    pub duplicates: f64,
    /// Per order: probability that its notifications arrive shuffled.
    #[arg(long, default_value_t = 0.2, value_parser = probability, value_name = "P")]
    pub out_of_order: f64,
    /// Per order: probability of an extra forged copy of one notification
    /// (another amount, the old signature; must be rejected).
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub tampered: f64,
    /// Per order: probability that COMPLETE carries another amount than the
    /// order's (must end `mismatch` with an amount_mismatch review item).
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub amount_mismatch: f64,
    /// Per order: probability of one more order that is not in orders.csv
    /// (its notifications must end `order_not_found`).
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub unknown_orders: f64,
    /// Per order: probability that a test card number hides in a free-text
    /// field (IPN_INFO[] or SHOPPER_REFERENCE_NUMBER) of one notification.
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub pan_in_free_text: f64,
    /// Per notification of a known order: probability of a processor
    /// retry, stamped with a new IPN_DATE minutes to hours later and signed
    /// again (must end `duplicate`).
    #[arg(long, default_value_t = 0.1, value_parser = probability, value_name = "P")]
    pub processor_retries: f64,
    /// Per notification of a known order: probability of the copy for a
    /// second notification URL, signed with SHA-256 only or SHA3-256 only
    /// (must end `duplicate`).
    #[arg(long, default_value_t = 0.05, value_parser = probability, value_name = "P")]
    pub second_url_copies: f64,
    /// Per notification of a known order: probability of a manual resend
    /// 3 to 10 days later (must end `duplicate`; the simulator's notices
    /// carry MESSAGE_ID, so a resend opens no review item).
    #[arg(long, default_value_t = 0.03, value_parser = probability, value_name = "P")]
    pub manual_resends: f64,
    /// Per notification of a known order: probability of a copy in other
    /// bytes with the same values (a digit percent-escaped, a trailing `&`,
    /// or an unsigned field the reconciler does not read renamed; must end
    /// `duplicate`).
    #[arg(long, default_value_t = 0.03, value_parser = probability, value_name = "P")]
    pub reencoded_copies: f64,
    /// Per known order: probability of a copy of one notification with its
    /// SHA3-256 signature removed (must end `duplicate`: the SHA-256 one
    /// still verifies) or, as often, with every signature removed (must end
    /// `invalid_signature`).
    #[arg(long, default_value_t = 0.03, value_parser = probability, value_name = "P")]
    pub stripped_signatures: f64,
    /// Per known test order or fraud-denied order, with
    /// --with-expected-fields only: probability of an attacker's copy with
    /// TEST_ORDER or FRAUD_STATUS renamed (must end `malformed`, no change).
    #[arg(long, default_value_t = 0.3, value_parser = probability, value_name = "P")]
    pub renamed_expected_fields: f64,
    /// Per known order: probability that the shopper is charged twice
    /// under two REFNOs; half of them get the second charge refunded under
    /// its REFNO (`paid`, paid twice, refunded once, nothing open), the
    /// others not (a duplicate_payment review item).
    #[arg(long, default_value_t = 0.03, value_parser = probability, value_name = "P")]
    pub double_charges: f64,
    /// Per known order: probability of a paid order getting a REVERSED
    /// under a REFNO that never paid it (stays `paid`, an
    /// unmatched_reversal review item).
    #[arg(long, default_value_t = 0.02, value_parser = probability, value_name = "P")]
    pub foreign_reversals: f64,
    /// Per known order: probability of a paid order whose PENDING also
    /// comes as a copy with two field names swapped (the same signed
    /// values, another amount, a layout the processor never sends:
    /// refused as malformed and parked, no change).
    #[arg(long, default_value_t = 0.02, value_parser = probability, value_name = "P")]
    pub conflicting_copies: f64,
}

impl From<&RateArgs> for AnomalyRates {
    fn from(args: &RateArgs) -> Self {
        AnomalyRates {
            duplicates: args.duplicates,
            out_of_order: args.out_of_order,
            tampered: args.tampered,
            amount_mismatch: args.amount_mismatch,
            unknown_orders: args.unknown_orders,
            pan_in_free_text: args.pan_in_free_text,
            processor_retries: args.processor_retries,
            second_url_copies: args.second_url_copies,
            manual_resends: args.manual_resends,
            reencoded_copies: args.reencoded_copies,
            stripped_signatures: args.stripped_signatures,
            renamed_expected_fields: args.renamed_expected_fields,
            double_charges: args.double_charges,
            foreign_reversals: args.foreign_reversals,
            conflicting_copies: args.conflicting_copies,
        }
    }
}

fn probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a probability between 0 and 1"))
    }
}

/// Below this many files, a progress bar is more noise than help.
const PROGRESS_MIN_FILES: usize = 200;

/// The currency mix (`--currencies`), read with the settings' currency
/// table when it names a currency outside ISO 4217: such a currency is
/// simulated with the exponent `allow-currency` gives it, the one the
/// books read it with (the orders are imported against the same table).
/// ISO 4217 codes read the same in every table, so a mix of them needs
/// no settings, and none are read, as before.
fn currency_mix(
    config_file: &super::args::ConfigFile,
    args: &SimulateArgs,
) -> Result<Vec<CurrencyWeight>, super::CliError> {
    let mix = CurrencyWeight::parse_mix(&args.currencies, &Currencies::iso())?;
    if mix.iter().all(|w| w.currency.is_iso4217()) {
        return Ok(mix);
    }
    let loaded = super::args::load(config_file, &[&args.db]).map_err(super::settings_error)?;
    Ok(CurrencyWeight::parse_mix(
        &args.currencies,
        &loaded.currencies(),
    )?)
}

/// The simulator's other faces.
#[derive(Debug, clap::Subcommand)]
pub enum SimulateCommand {
    /// A faithful processor REST API (`GET /rest/6.0/orders/{RefNo}/`)
    /// checking the X-Avangate-Authentication header exactly (unknown
    /// vendor code, wrong hash, a date more than 15 minutes off: 401).
    /// Runs until interrupted.
    #[command(
        after_help = "Exit codes: 0 stopped by an interrupt, 2 usage error or an \
unusable --api-key-file or --orders-json, 3 the address cannot be bound."
    )]
    Api(SimulateApiArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimulateApiArgs {
    /// Where to listen (`HOST:PORT`; port 0 picks a free port, printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
    /// The account's vendor code.
    #[arg(long, value_name = "CODE")]
    pub vendor_code: String,
    /// File holding the account's API secret (as `api-key-file`).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: PathBuf,
    /// REST order objects to serve, one JSON object per line (keyed by
    /// `RefNo`; each sent exactly as written). Without it, one example
    /// order `100001` (COMPLETE, 10.00 EUR).
    #[arg(long, value_name = "FILE")]
    pub orders_json: Option<PathBuf>,
}

fn run_api(args: SimulateApiArgs) -> super::CliResult {
    use crate::simulate::api::{SimulatedApi, example_order};
    let secret = crate::processor_api::auth::read_api_secret(&args.api_key_file)
        .map_err(super::CliError::usage)?;
    let api = SimulatedApi::new(&args.vendor_code, secret);
    match &args.orders_json {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let text = String::from_utf8(text)
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                api.insert_order(line).map_err(|reason| {
                    super::CliError::usage(anyhow::anyhow!(
                        "{} line {}: {reason}",
                        path.display(),
                        number + 1
                    ))
                })?;
            }
        }
        None => {
            api.insert_order(example_order("100001", "", "COMPLETE"))
                .map_err(|reason| anyhow::anyhow!("the example order: {reason}"))?;
        }
    }
    super::block_on(async move {
        let server = api.serve(args.addr).await.map_err(|err| {
            super::CliError::operational(anyhow::anyhow!("cannot listen on {}: {err}", args.addr))
        })?;
        println!("simulated API at {}", server.base_url());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}

pub fn run(config_file: &super::args::ConfigFile, args: SimulateArgs) -> super::CliResult {
    if let Some(SimulateCommand::Api(api)) = args.command {
        return run_api(api);
    }
    let (Some(seed), Some(orders), Some(out_dir), Some(key_file)) = (
        args.seed,
        args.orders,
        args.out.clone(),
        args.key_file.clone(),
    ) else {
        return Err(super::CliError::usage(anyhow::anyhow!(
            "--seed, --orders, --out and --key-file are required"
        )));
    };
    let ring = KeyArgs { key_file }.load()?;
    let currencies = currency_mix(config_file, &args)?;
    let base_date = args
        .base_date
        .and_hms_opt(8, 0, 0)
        .context("invalid --base-date")?;
    let config = SimulationConfig {
        seed,
        orders,
        rates: AnomalyRates::from(&args.rates),
        test_orders: args.test_orders,
        currencies,
        base_date,
        expected_fields: args.with_expected_fields,
        profile: args.profile,
    };
    let simulation = simulate(&config, &ring.current().secret)?;

    let total = simulation.deliveries.len();
    let progress = if total >= PROGRESS_MIN_FILES && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("writing bodies");
        bar
    } else {
        ProgressBar::hidden()
    };
    match args.target {
        Target::Files => {
            write_all(&simulation, &out_dir, args.force, |_| progress.inc(1))
                .with_context(|| format!("cannot write the simulation to {}", out_dir.display()))?;
        }
        Target::Queue | Target::Http => {
            write_expectations(&simulation, &out_dir)?;
            if args.import_orders {
                let settings = super::args::database(config_file, &args.db)?;
                let orders = simulation.orders.clone();
                let imported = super::block_on(async move {
                    let store = crate::store::Store::connect(settings).await?;
                    Ok(store.import_orders(&orders).await?)
                })?;
                writeln!(
                    std::io::stdout(),
                    "imported {} new order(s), {} already present",
                    imported.inserted,
                    imported.unchanged
                )?;
            }
            progress.set_message("delivering");
            let key = ring.current().secret.clone();
            let delivered = super::block_on(async {
                match args.target {
                    Target::Http => {
                        let urls = IntakeUrls::new(
                            args.intake_url.as_deref().unwrap_or_default(),
                            args.lcn_url.as_deref(),
                        );
                        let policy = PostPolicy {
                            concurrency: args.concurrency.max(1),
                            ..PostPolicy::default()
                        };
                        let stats = post_all(&simulation, &urls, &key, policy, || progress.inc(1))
                            .await?
                            .stats;
                        Ok(format!(
                            "{} receipts checked, {} forged copies refused, {} retries",
                            stats.receipts, stats.refused, stats.retries
                        ))
                    }
                    _ => {
                        let loaded = super::args::load(config_file, &[&args.broker])
                            .map_err(super::settings_error)?;
                        let settings = loaded.amqp().map_err(super::settings_error)?;
                        let sealer = loaded.sealer().map_err(super::settings_error)?;
                        let publisher = Publisher::connect(settings, "simulator").await?;
                        let confirmed = publish_all(&simulation, &publisher, &sealer, |n| {
                            progress.inc(n as u64)
                        })
                        .await;
                        publisher.close().await;
                        Ok(format!("{} published (confirmed)", confirmed?))
                    }
                }
            })?;
            progress.finish_and_clear();
            writeln!(std::io::stdout(), "delivered: {delivered}")?;
        }
    }
    progress.finish_and_clear();

    let outcomes = simulation.expected_outcomes;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "simulated {} order(s) and {} unknown order(s) with seed {}, signed with key {}",
        simulation.orders.len(),
        simulation.expected_orphans.len(),
        config.seed,
        ring.current().id
    )?;
    let kinds: Vec<String> = DeliveryKind::ALL
        .into_iter()
        .map(|kind| format!("{} {kind}", simulation.count(kind)))
        .collect();
    writeln!(
        out,
        "{} deliveries ({}); files in {}",
        total,
        kinds.join(", "),
        out_dir.display()
    )?;
    writeln!(
        out,
        "expected outcomes: applied={} ignored={} mismatch={} duplicate={} order_not_found={} invalid_signature={} malformed={}",
        outcomes.applied,
        outcomes.ignored,
        outcomes.mismatch,
        outcomes.duplicate,
        outcomes.order_not_found,
        outcomes.invalid_signature,
        outcomes.malformed
    )?;
    Ok(ExitCode::SUCCESS)
}

/// orders.csv, expected.json and manifest.json (the bodies go elsewhere).
fn write_expectations(
    simulation: &crate::simulate::Simulation,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let create = |name: &str| {
        let path = out.join(name);
        std::fs::File::create(&path)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("cannot create {}", path.display()))
    };
    write_orders_csv(&simulation.orders, create("orders.csv")?)?;
    write_expected_json(&simulation.expected, create("expected.json")?)?;
    write_manifest_json(simulation, create("manifest.json")?)?;
    if let Some(vendor) = &simulation.vendor {
        crate::simulate::vendor::write_vendor_json(vendor, create("vendor.json")?)?;
    }
    Ok(())
}
