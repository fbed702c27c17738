//! Finance staff's commands: `report` (the books of a period) and
//! `review list|show|resolve` (the exception queue and its actions).

use std::io::Write;
use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Subcommand, ValueEnum};

use super::args::database;
use super::args::{self, ConfigFile, DatabaseFlags, FourEyesFlags, PeriodFlags, books_with_zone};
use super::dates::{PeriodBound, period};
use super::{
    CliError, CliResult, EXIT_INVALID, OutputFormat, block_on, settings_error, table_time,
};
use crate::domain::pan::check_free_text;
use crate::domain::review::ReviewAction;
use crate::domain::{Currencies, ReviewKind};
use crate::services::review::{ResolveError, ResolveOutcome, ResolveRequest, resolve};
use crate::store::reports::rfc3339;
use crate::store::review::{self, ReviewStatus};
use crate::store::{FinanceSummary, ReportBasis, ReviewDetail, ReviewGroup, Store};

/// The books of a period: orders by state, money per currency (paid,
/// refunded, reversed, charged back, fees, net; never summed across
/// currencies), open exceptions by kind with the oldest, notifications by
/// outcome.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 printed, 2 usage error (a bad date, --from not before --to) or \
invalid configuration, 3 the database cannot be read."
)]
pub struct ReportArgs {
    /// Another report than the books of a period.
    #[command(subcommand)]
    pub report: Option<ReportCommand>,
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// Start of the period, included: a month (2026-11, from its first
    /// day), a date (2026-11-01, from its midnight in report-timezone,
    /// UTC by default) or an RFC 3339 time. Without it: from the beginning
    /// of the books.
    #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
    pub from: Option<PeriodBound>,
    /// End of the period: a month or a date is included whole (--to
    /// 2026-11 and --to 2026-11-30 count until the midnight that begins 1
    /// December in report-timezone, 2026-12-01T00:00:00Z in UTC); an RFC
    /// 3339 time is excluded. Without it: until now.
    #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
    pub to: Option<PeriodBound>,
    /// created: the orders created in the period, with all their money
    /// whenever it moved; event: the money movements (payments, refunds,
    /// chargebacks, fees) booked in the period, dated when the money moved
    /// by the processor's dates (a settlement line's fee with its sale),
    /// whatever order they belong to; settled: as event, with fees dated
    /// by their settlement line. A movement that belongs to a closed
    /// period is booked on the first open day and listed as late.
    #[arg(long, value_enum, default_value_t = BasisArg::Created)]
    pub by: BasisArg,
    /// table: for people; csv: one row per figure, columns
    /// section,name,count,expected,paid,refunded,net,reversed,charged_back,
    /// fees,oldest_at,oldest_age_seconds,vat,net_revenue,commission,
    /// expected_payout,settled_payout,reinstated; json: one object.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// The reports besides the books of a period.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    Clearing(super::clearing::ClearingArgs),
}

/// `report --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BasisArg {
    Created,
    Event,
    Settled,
}

impl From<BasisArg> for ReportBasis {
    fn from(basis: BasisArg) -> Self {
        match basis {
            BasisArg::Created => ReportBasis::Created,
            BasisArg::Event => ReportBasis::Event,
            BasisArg::Settled => ReportBasis::Settled,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List review items (open ones unless --status says otherwise),
    /// newest first. Open items of one kind for one order are one line
    /// (a group: COUNT says how many, ITEM IDS which), which
    /// `review resolve ID --group` resolves together; resolved items are
    /// listed one by one with their resolution. --ungrouped lists every
    /// item on its own line.
    #[command(
        after_help = "Exit codes: 0 listed (an empty list too), 2 an unknown --kind \
or --status or another usage error, invalid configuration, 3 the database cannot be read."
    )]
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Which items: open (waiting for a person), resolved, or all.
        #[arg(long, value_enum, default_value_t = StatusArg::Open)]
        status: StatusArg,
        /// Same as --status all.
        #[arg(long, conflicts_with = "status")]
        all: bool,
        /// Only items of this kind.
        #[arg(long, value_parser = review_kind_parser())]
        kind: Option<ReviewKind>,
        /// One line per item, not per group of items of one kind for one
        /// order.
        #[arg(long)]
        ungrouped: bool,
        /// table: for people, the columns of csv aligned; csv: columns
        /// id,status,kind,order_ref,
        /// processor_ref,amount,currency,created_at,details,resolved_at,
        /// resolved_by,resolution_note,count,item_ids,resolution_action (a
        /// group's line is its newest item's, count its items, item_ids
        /// their ids separated by spaces; amount and currency the money the
        /// item is about, from its settlement line, payout or notification,
        /// empty when nothing stored says);
        /// json: a list of objects with the same names (item_ids a list).
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Show one review item with everything behind it: the actions that
    /// fit it, its group, its resolution, the order's payments, ledger and
    /// money movements, and the notifications involved (key id, algorithm,
    /// body digest and identity, outcome). No personal data.
    #[command(
        after_help = "Exit codes: 0 shown, 1 no review item with that id, 2 a bad id or \
invalid configuration, 3 the database cannot be read."
    )]
    Show {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The item's id, as `review list` shows it: 12 or #12.
        #[arg(value_parser = parse_review_id)]
        id: i64,
        /// table: for people; json: one object (item, allowed_actions,
        /// group, resolution, order, movements, notifications).
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
    },
    /// Resolve a review item with an action, saying who and why. The
    /// action goes through the same state machine as notifications and is
    /// recorded, with who, when and why, in the append-only resolution
    /// ledger. `review show ID` lists the actions that fit an item.
    ///
    /// Actions: accept_as_is (the exception is real, the books are right as
    /// they stand), apply_repeat (possible_second_event: a genuine second
    /// refund or chargeback of the same values; its notification is applied), mark_refunded_outside (the
    /// shopper was refunded outside the processor: a refund of what the
    /// payment still holds is recorded with its money movement),
    /// link_order (orphan_payment: its notifications are applied to --order,
    /// or to the order they name once it exists), write_off (the amount is
    /// settled outside the order's books; figures unchanged, the amount is
    /// on the resolution), dismiss (not an exception: nothing booked).
    #[command(
        after_help = "A link_order above four-eyes-amount moves no money: it is recorded as a \
request, which another resolver confirms in the console. Every resolution (and request) is \
written to the action log with --by and the operating-system account and host it ran under.\n\n\
Exit codes: 0 resolved (or, above four-eyes-amount, a link_order requested), 1 no open item with \
that id (unknown or already resolved: a resolution is final), an action that does not fit the \
item's kind (the allowed ones are listed), no such --order, nothing to refund or link, or a \
link_order waiting for its confirmation, 2 a bad id, an empty --by or --note, a card number in \
either, --order without link_order, a link_order in another currency than the order's or above \
what it still expects, or invalid configuration, 3 the database cannot be read or written."
    )]
    Resolve {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        four_eyes: FourEyesFlags,
        /// The item's id, as `review list` shows it: 12 or #12.
        #[arg(value_parser = parse_review_id)]
        id: i64,
        /// Who resolved it (a name or staff id).
        #[arg(long, value_parser = not_blank)]
        by: String,
        /// What was done, for the audit trail. Do not paste personal data;
        /// a card number is refused (write `card ending 1111`).
        #[arg(long, value_parser = not_blank)]
        note: String,
        /// What to do (see above). Without it, or with `note` as before
        /// actions existed: dismiss (record who and why, book nothing);
        /// `apply-repeat` is taken for apply_repeat.
        #[arg(long, value_parser = review_action_parser(), default_value = "note")]
        action: ReviewAction,
        /// link_order: the merchant's order reference to apply the orphan
        /// payment to (default: the order its notifications name).
        #[arg(long = "order", value_name = "REF")]
        order: Option<String>,
        /// Resolve every open item of the same kind for the same order with
        /// this one (the group `review list` shows on one line).
        #[arg(long)]
        group: bool,
    },
}

/// `review show --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

/// `review list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Open,
    Resolved,
    All,
}

impl From<StatusArg> for ReviewStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Open => ReviewStatus::Open,
            StatusArg::Resolved => ReviewStatus::Resolved,
            StatusArg::All => ReviewStatus::All,
        }
    }
}

/// `--action`: the actions of [`ReviewAction`] (listed with what they do
/// in `--help`), and the names older versions took: `note` (record who and
/// why only: dismiss) and `apply-repeat`.
fn review_action_parser() -> impl TypedValueParser<Value = ReviewAction> {
    let actions = ReviewAction::ALL.map(|action| {
        let value = PossibleValue::new(action.as_str()).help(action.describe());
        if action == ReviewAction::ApplyRepeat {
            value.alias("apply-repeat")
        } else {
            value
        }
    });
    PossibleValuesParser::new(
        actions
            .into_iter()
            .chain([PossibleValue::new("note").hide(true)]),
    )
    .try_map(|text| match text.as_str() {
        "note" => Ok(ReviewAction::Dismiss),
        "apply-repeat" => Ok(ReviewAction::ApplyRepeat),
        other => ReviewAction::parse(other),
    })
}

/// `--kind`: one of the kinds this version knows, listed in `--help` and
/// in the error, so a filter that can match nothing (`--kind orphan`) is a
/// usage error rather than an empty list that looks like good news.
fn review_kind_parser() -> impl TypedValueParser<Value = ReviewKind> {
    PossibleValuesParser::new(ReviewKind::ALL.map(ReviewKind::as_str))
        .try_map(|text| ReviewKind::parse(&text))
}

/// A review item id as people copy it from `review list`: `12` or `#12`.
fn parse_review_id(text: &str) -> Result<i64, String> {
    let digits = text.trim();
    let digits = digits.strip_prefix('#').unwrap_or(digits);
    match digits.parse::<i64>() {
        Ok(id) if id > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err("not a review item id: give the number `review list` shows, 12 or #12".to_owned()),
    }
}

/// `--by` and `--note` are the audit trail: an empty one records nothing
/// of who or why, so it is refused (exit 2) instead of stored.
fn not_blank(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty: the audit trail records who resolved an item and why".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

pub fn report(config: &ConfigFile, args: ReportArgs) -> CliResult {
    if let Some(ReportCommand::Clearing(clearing)) = args.report {
        return super::clearing::run(config, clearing);
    }
    let (settings, zone) = books_with_zone(config, &args.db, &args.periods)?;
    let period = period(args.from, args.to, args.by.into(), zone)?;
    block_on(async move {
        let store = Store::connect(settings).await?;
        let summary = store.finance_report(&period).await?;
        let mut out = std::io::stdout().lock();
        match args.format {
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &summary)?;
                writeln!(out)?;
            }
            OutputFormat::Csv => write_summary_csv(&mut out, &summary)?,
            OutputFormat::Table => summary.render(&mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The columns of `report --format csv`. Stable: new ones are added at the
/// end, none is renamed or removed.
pub const REPORT_CSV_COLUMNS: [&str; 18] = [
    "section",
    "name",
    "count",
    "expected",
    "paid",
    "refunded",
    "net",
    "reversed",
    "charged_back",
    "fees",
    "oldest_at",
    "oldest_age_seconds",
    "vat",
    "net_revenue",
    "commission",
    "expected_payout",
    "settled_payout",
    "reinstated",
];

/// The report as one rectangular CSV table, so that it opens in a
/// spreadsheet as it is and can be filtered by `section`:
/// `orders_by_state` (name: state, count: orders), `totals` (name:
/// currency, count: orders, and the amounts), `open_exceptions` (name:
/// kind, count: open items, and the oldest's time and age),
/// `notifications_by_outcome` (name: outcome, count: notifications),
/// `payouts` (name: payout currency, expected and settled payout).
/// Columns that do not apply are empty.
fn write_summary_csv(out: impl Write, summary: &FinanceSummary) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(REPORT_CSV_COLUMNS)?;
    let count_row = |section: &str, name: &str, count: i64| {
        let mut row = [""; REPORT_CSV_COLUMNS.len()].map(str::to_owned);
        row[0] = section.to_owned();
        row[1] = name.to_owned();
        row[2] = count.to_string();
        row
    };
    for (state, count) in &summary.orders_by_state {
        csv.write_record(count_row("orders_by_state", state.as_str(), *count))?;
    }
    for t in &summary.totals {
        csv.write_record([
            "totals",
            t.currency.as_str(),
            &t.orders.to_string(),
            &t.expected,
            &t.paid,
            &t.refunded,
            &t.net,
            &t.reversed,
            &t.charged_back,
            &t.fees,
            "",
            "",
            &t.vat,
            &t.net_revenue,
            &t.commission,
            "",
            "",
            &t.reinstated,
        ])?;
    }
    for p in &summary.payouts {
        let mut row = [""; REPORT_CSV_COLUMNS.len()].map(str::to_owned);
        row[0] = "payouts".to_owned();
        row[1] = p.currency.clone();
        row[15] = p.expected.clone();
        row[16] = p.settled.clone();
        csv.write_record(row)?;
    }
    for e in &summary.open_exceptions {
        let mut row = count_row("open_exceptions", e.kind.as_str(), e.open);
        row[10] = rfc3339::format(&e.oldest_at);
        row[11] = e.oldest_age_seconds.to_string();
        csv.write_record(row)?;
    }
    for (outcome, count) in &summary.notifications_by_outcome {
        csv.write_record(count_row(
            "notifications_by_outcome",
            outcome.as_str(),
            *count,
        ))?;
    }
    csv.flush()?;
    Ok(())
}

pub fn review(config: &ConfigFile, command: ReviewCommand) -> CliResult {
    match command {
        ReviewCommand::List {
            db,
            status,
            all,
            kind,
            ungrouped,
            format,
        } => {
            let status = if all { StatusArg::All } else { status };
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let items = store.review_items_by_status(status.into(), kind).await?;
                let groups = if ungrouped {
                    review::ungrouped(items)
                } else {
                    review::group_items(items)
                };
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &groups)?;
                        writeln!(out)?;
                    }
                    OutputFormat::Csv => write_review_csv(&mut out, &groups)?,
                    OutputFormat::Table => write_review_table(&mut out, &groups)?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        ReviewCommand::Show { db, id, format } => {
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let Some(detail) = store.review_detail(id).await? else {
                    eprintln!("no review item #{id}");
                    return Ok(ExitCode::from(EXIT_INVALID));
                };
                let mut out = std::io::stdout().lock();
                match format {
                    ShowFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &detail)?;
                        writeln!(out)?;
                    }
                    ShowFormat::Table => {
                        write_review_detail(&mut out, &detail, store.currencies())?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        ReviewCommand::Resolve {
            db,
            four_eyes,
            id,
            by,
            note,
            action,
            order,
            group,
        } => {
            check_typed_text(&by, &note)?;
            if order.is_some() && action != ReviewAction::LinkOrder {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--order is only for --action link_order (not {action})"
                )));
            }
            let loaded = args::load(config, &[&db, &four_eyes]).map_err(settings_error)?;
            let mut settings = loaded.database().map_err(settings_error)?;
            settings.schema = crate::store::SchemaPolicy::EXISTING;
            let limit = loaded.settings.finance.four_eyes_amount.0.clone();
            block_on(async move {
                let store = Store::connect(settings).await?;
                let request = ResolveRequest {
                    order_ref: order,
                    group,
                    origin: super::actor::origin(),
                    four_eyes: limit,
                    ..ResolveRequest::new(id, action, &by, &note)
                };
                let outcome = match resolve(&store, &request).await {
                    Ok(outcome) => outcome,
                    Err(err) => return resolve_refused(err),
                };
                let mut out = std::io::stdout().lock();
                write_resolution(&mut out, &outcome)?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// The exit code of a refused resolution: 1 for what the queue says no to
/// (an unknown or resolved item, an action that does not fit, nothing to
/// do), 2 for what was typed, 3 for the database.
fn resolve_refused(err: ResolveError) -> CliResult {
    match err {
        ResolveError::Store(err) => Err(CliError::operational(err)),
        err if err.is_bad_text()
            || matches!(
                err,
                ResolveError::OrderNotTaken(_) | ResolveError::Link { .. }
            ) =>
        {
            Err(CliError::usage(err))
        }
        err => {
            eprintln!("{err}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// What a resolution did, in one line per fact.
fn write_resolution(out: &mut impl Write, outcome: &ResolveOutcome) -> std::io::Result<()> {
    let (first, others) = outcome
        .items
        .split_first()
        .map_or((0, &[][..]), |(f, o)| (*f, o));
    if let Some(request) = outcome.pending_request {
        writeln!(
            out,
            "review item #{first}: link_order to {} ({} {}) is above four-eyes-amount: recorded \
             as request #{request}; no money moved. Another resolver confirms it in the console.",
            outcome.order_ref.as_deref().unwrap_or("-"),
            outcome.amount.as_deref().unwrap_or("-"),
            outcome.currency.as_deref().unwrap_or(""),
        )?;
        return Ok(());
    }
    write!(out, "review item #{first} resolved: {}", outcome.action)?;
    if !others.is_empty() {
        let ids: Vec<String> = others.iter().map(|id| format!("#{id}")).collect();
        write!(out, ", with {} of its group", ids.join(", "))?;
    }
    writeln!(out)?;
    if let (Some(amount), Some(currency)) = (&outcome.amount, &outcome.currency) {
        let what = match outcome.action {
            ReviewAction::MarkRefundedOutside => "refunded outside the processor",
            ReviewAction::WriteOff => "written off",
            ReviewAction::AcceptAsIs => "booked",
            ReviewAction::CollectDifference => "left to collect",
            ReviewAction::BookRefund => "refunded, booked in its currency",
            _ => "concerned",
        };
        writeln!(out, "  amount {what}: {amount} {currency}")?;
    }
    if !outcome.notifications_applied.is_empty() {
        let ids: Vec<String> = outcome
            .notifications_applied
            .iter()
            .map(|id| format!("#{id}"))
            .collect();
        writeln!(out, "  notifications applied: {}", ids.join(", "))?;
    }
    if let (Some(order), Some(state)) = (&outcome.order_ref, outcome.order_state) {
        writeln!(out, "  order {order} is now {state}")?;
    }
    Ok(())
}

/// The review queue's listing (`view::review`), its caption the count
/// line: `4 item(s)`, or `4 item(s) in 3 line(s)` when groups hold several.
fn review_table(groups: &[ReviewGroup]) -> crate::view::Table {
    let items: usize = groups.iter().map(|g| g.count).sum();
    let caption = if items == groups.len() {
        format!("{items} item(s)")
    } else {
        format!("{items} item(s) in {} line(s)", groups.len())
    };
    crate::view::review::table(groups, caption)
}

/// The review queue as CSV: the listing the console downloads too.
fn write_review_csv(mut out: impl Write, groups: &[ReviewGroup]) -> Result<(), CliError> {
    out.write_all(&review_table(groups).csv()?)?;
    Ok(())
}

/// The review queue for people: the columns of the CSV and the console,
/// aligned (a group's line is its newest item, COUNT its items, ITEM IDS
/// their ids; a resolved item's line carries who resolved it, when, with
/// which action and why), then how to resolve a group at once.
fn write_review_table(out: &mut impl Write, groups: &[ReviewGroup]) -> std::io::Result<()> {
    review_table(groups).write_text(out)?;
    if let Some(group) = groups.iter().find(|g| g.count > 1) {
        writeln!(
            out,
            "a line with COUNT above 1 is a group of open items of one kind for one order: \
             `review resolve {} --group` resolves the items of ITEM IDS together",
            group.item.id
        )?;
    }
    Ok(())
}

/// `review show` for people (amounts read with `currencies`, the store's
/// table).
fn write_review_detail(
    out: &mut impl Write,
    detail: &ReviewDetail,
    currencies: &Currencies,
) -> std::io::Result<()> {
    let item = &detail.item;
    writeln!(out, "review item    #{} ({})", item.id, item.status)?;
    writeln!(out, "kind           {}", item.kind)?;
    writeln!(
        out,
        "order          {}",
        item.order_ref.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "payment        {}",
        item.processor_ref.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "created        {} UTC", table_time(&item.created_at))?;
    writeln!(out, "details        {}", item.details)?;
    let actions: Vec<&str> = detail.allowed_actions.iter().map(|a| a.as_str()).collect();
    writeln!(out, "actions        {}", actions.join(", "))?;
    if detail.group.len() > 1 {
        let ids: Vec<String> = detail.group.iter().map(|id| format!("#{id}")).collect();
        writeln!(
            out,
            "group          {} ({} open {} items for this order: review resolve {} --group)",
            ids.join(" "),
            detail.group.len(),
            item.kind,
            item.id
        )?;
    }
    if let Some(r) = &detail.resolution {
        write!(
            out,
            "resolution     #{} {} by {} at {} UTC: {}",
            r.id,
            r.action,
            r.resolved_by,
            table_time(&r.at),
            r.note
        )?;
        if let (Some(written), Some(currency)) = (r.written_off(currencies), &r.currency) {
            write!(out, " (written off {written} {currency})")?;
        } else if let (Some(amount), Some(currency)) = (r.amount(currencies), &r.currency) {
            write!(out, " ({amount} {currency})")?;
        }
        if let Some(order) = &r.order_ref
            && r.action == ReviewAction::LinkOrder.as_str()
        {
            write!(out, " (linked to order {order})")?;
        }
        writeln!(out)?;
    }
    match (&detail.order, &item.order_ref) {
        (None, None) => writeln!(out, "\n(the item names no order)")?,
        (None, Some(order_ref)) => writeln!(out, "\n(no order {order_ref} in the books)")?,
        (Some(order), _) => {
            writeln!(out)?;
            super::orders::write_order(out, order)?;
        }
    }
    writeln!(out, "money movements:")?;
    if detail.movements.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for m in &detail.movements {
        let cause = match (m.notification_id, m.resolution_id) {
            (Some(n), _) => format!("notification #{n}"),
            (None, Some(r)) => format!("resolution #{r}"),
            (None, None) => "-".to_owned(),
        };
        writeln!(
            out,
            "  {}  {:<10} {:<12} {:>12} {}  {cause}",
            table_time(&m.at),
            m.kind,
            m.processor_ref,
            m.amount,
            m.currency
        )?;
    }
    writeln!(out, "notifications:")?;
    if detail.notifications.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for n in &detail.notifications {
        writeln!(
            out,
            "  #{:<6} {}  {:<20} {:>12} {:<3}  REFNO {:<12} key {} ({})  {}{}",
            n.id,
            table_time(&n.received_at),
            n.order_status.as_deref().unwrap_or("-"),
            n.amount.as_deref().unwrap_or("-"),
            n.currency.as_deref().unwrap_or(""),
            n.processor_ref.as_deref().unwrap_or("-"),
            n.key_id.as_deref().unwrap_or("-"),
            n.algorithm.as_deref().unwrap_or("-"),
            n.outcome,
            n.repeat_of
                .map(|r| format!(" (repeat of #{r})"))
                .unwrap_or_default()
        )?;
        writeln!(
            out,
            "          body sha256 {}  identity {}",
            n.body_sha256,
            n.identity.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// Refuses a card number in what a person typed (`--by`, `--note`) before
/// anything connects: a usage error, and nothing is stored
/// (`services::review::resolve` checks again).
fn check_typed_text(by: &str, note: &str) -> Result<(), CliError> {
    check_free_text("--by", by).map_err(CliError::usage)?;
    check_free_text("--note", note).map_err(CliError::usage)
}
