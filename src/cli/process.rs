//! `ipn-reconciler process FILE...`: replays notification bodies from disk
//! through verify -> tokenize -> apply, synchronously, without the broker.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::args::{self, ConfigFile, DatabaseFlags, NotificationFlags};
use super::{CliResult, block_on, read_body, settings_error};
use crate::domain::{LicenceNotice, Outcome, ReviewKind};
use crate::pipeline::{Pipeline, Processed, Report};
use crate::store::{SchemaPolicy, Store, StoreError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints one line per file (`<file> <outcome> [order=..] [state=..] \
[reason=..] [review=..]`), then the totals per outcome (`total: applied=3 duplicate=1 \
order_not_found=1 ...`). A notification for an order that was never imported opens an \
orphan_payment review item at once, as the daemon does once its retries are over; import the \
order and process the file again, and the item closes.\n\n\
A licence change notification (a body with LICENSE_CODE) is verified and read, and printed as \
`<file> licence licence=.. [status=..] [reason=..] [test]`; nothing is recorded of it yet. The \
totals then end with `licence=N`.\n\n\
Exit codes: 0 every file was handled (whatever its outcome), 2 invalid \
configuration, 3 a file or the database could not be read."
)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub notifications: NotificationFlags,
    /// Notification bodies, one per file, handled in the order given.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints one line per file: `<file> <outcome> [details]`, then the totals.
pub fn run(config: &ConfigFile, args: ProcessArgs) -> CliResult {
    let loaded = args::load(config, &[&args.db, &args.notifications]).map_err(settings_error)?;
    let pipeline_config = loaded.pipeline().map_err(settings_error)?;
    let mut database = loaded.database().map_err(settings_error)?;
    // Replaying adds to existing books: never into a database made by a typo.
    database.schema = SchemaPolicy::EXISTING;
    block_on(async move {
        let store = Store::connect(database).await?;
        let pipeline = Pipeline::new(pipeline_config, store);
        let mut out = std::io::stdout().lock();
        let mut totals = [0usize; Outcome::ALL.len()];
        let mut licences = 0usize;
        for file in &args.files {
            let body = read_body(file, &pipeline.config().limits)?;
            let mut report = match pipeline.process(&body, Utc::now()).await? {
                Processed::Notification(report) => report,
                Processed::Licence(notice) => {
                    licences += 1;
                    writeln!(
                        out,
                        "{}",
                        licence_line(&file.display().to_string(), &notice)
                    )?;
                    continue;
                }
            };
            if report.outcome == Outcome::OrderNotFound
                && open_orphan_item(pipeline.store(), &report).await?
            {
                report.review_items.push(ReviewKind::OrphanPayment);
            }
            if let Some(i) = Outcome::ALL.iter().position(|o| *o == report.outcome) {
                totals[i] += 1;
            }
            writeln!(out, "{}", line(&file.display().to_string(), &report))?;
        }
        let mut counts: Vec<String> = Outcome::ALL
            .iter()
            .zip(totals)
            .map(|(outcome, n)| format!("{outcome}={n}"))
            .collect();
        if licences > 0 {
            counts.push(format!("licence={licences}"));
        }
        writeln!(out, "total: {}", counts.join(" "))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `<file> <outcome> [order=..] [state=..] [reason=..] [review=..]`.
fn line(file: &str, report: &Report) -> String {
    let mut line = format!("{file} {}", report.outcome.as_str());
    if let Some(order_ref) = &report.order_ref {
        line.push_str(&format!(" order={order_ref}"));
    }
    if let Some(state) = report.order_state {
        line.push_str(&format!(" state={}", state.as_str()));
    }
    if let Some(refusal) = &report.refusal {
        line.push_str(&format!(" reason={refusal}"));
    }
    if !report.review_items.is_empty() {
        let kinds: Vec<_> = report.review_items.iter().map(|k| k.as_str()).collect();
        line.push_str(&format!(" review={}", kinds.join(",")));
    }
    line
}

/// `<file> licence licence=.. [status=..] [reason=..] [test]`: references
/// and statuses only.
fn licence_line(file: &str, notice: &LicenceNotice) -> String {
    let mut line = format!("{file} licence licence={}", notice.licence_code);
    if let Some(status) = &notice.status {
        line.push_str(&format!(" status={status}"));
    }
    if let Some(reason) = &notice.dispatch_reason {
        line.push_str(&format!(" reason={reason}"));
    }
    if notice.test {
        line.push_str(" test");
    }
    line
}

/// Opens the `orphan_payment` item of a notification whose order is
/// unknown, as the daemon does once its retries are over: replaying files
/// has no broker to wait with, and a payment nobody is told about is the
/// one thing reconciliation must not produce. The details hold what finance
/// needs to find the payment (REFNO, status, amount), never personal data.
/// Returns whether the item is there (an item opened by an earlier replay
/// of the same file counts: a notification opens one item of a kind).
async fn open_orphan_item(store: &Store, report: &Report) -> Result<bool, StoreError> {
    let Some(order_ref) = report.order_ref.as_deref() else {
        return Ok(false);
    };
    let recorded = store.recorded_notification(&report.digest).await?;
    let field = |value: Option<String>| value.unwrap_or_else(|| "?".to_owned());
    let (refno, status, amount, currency) = match recorded {
        Some(n) => (
            field(n.processor_ref),
            field(n.order_status),
            field(n.amount),
            field(n.currency),
        ),
        None => (
            field(report.processor_ref.clone()),
            field(None),
            field(None),
            field(None),
        ),
    };
    let mut details = format!(
        "no order {order_ref}: {status} of {amount} {currency} under processor reference \
         {refno}, replayed from a file; import the order, then process the file again"
    );
    if report.pan_fields > 0 {
        details.push_str(&format!(
            " (a card number was found in {} field(s) and dropped)",
            report.pan_fields
        ));
    }
    store
        .open_review_item(
            ReviewKind::OrphanPayment,
            Some(order_ref),
            Some(&report.digest),
            &details,
        )
        .await?;
    Ok(true)
}
