//! `ipn-reconciler audit verify`: do the books show any tampering?
//!
//! Recomputes the hash chain of every append-only table and re-derives
//! every order's money and state from the sealed facts
//! (`store::audit`, `domain::audit`). Read-only: it can run beside the
//! daemon, as any role that may read the tables (the daemon's own
//! `ipn_daemon` will do). `serve` runs the same check every
//! `audit-interval`.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use super::args::{ConfigFile, DatabaseFlags};
use super::{CliResult, EXIT_INVALID, block_on};
use crate::store::Store;
use crate::store::audit::{AuditReport, AuditStep};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash chain (ledger, money movements, review
    /// resolutions, action log, settlement lines and payouts, closes of the
    /// books) and re-derive every order's money and state and every paid
    /// subscription order from the sealed facts. Prints the first row that
    /// differs in each check; progress goes to standard error.
    #[command(
        after_help = "Exit codes: 0 every chain verifies and every order adds up, 1 a row \
differs (each check's first is printed), 2 invalid configuration, 3 the database cannot be read."
    )]
    Verify {
        #[command(flatten)]
        db: DatabaseFlags,
    },
}

pub fn run(config: &ConfigFile, command: AuditCommand) -> CliResult {
    match command {
        AuditCommand::Verify { db } => {
            let settings = super::args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let report = store.audit(&show_progress).await?;
                let mut out = std::io::stdout().lock();
                render(&mut out, &report)?;
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_INVALID)
                })
            })
        }
    }
}

/// One line on standard error per step: a long audit shows where it is.
fn show_progress(step: AuditStep) {
    let mut err = std::io::stderr().lock();
    // A closed standard error loses the progress, not the audit.
    let _ = match step {
        AuditStep::Chains { table, rows } => {
            writeln!(
                err,
                "audit: recomputing the chains of {table} ({rows} rows)"
            )
        }
        AuditStep::Orders { orders } => writeln!(
            err,
            "audit: re-deriving the money and state of {orders} orders"
        ),
    };
}

fn render(out: &mut impl Write, report: &AuditReport) -> std::io::Result<()> {
    if report.passed() {
        writeln!(
            out,
            "audit verify: ok: {} sealed rows in {} tables verify, {} orders add up",
            report.total_rows(),
            report.rows.len(),
            report.orders
        )
    } else {
        writeln!(
            out,
            "audit verify: FAILED: {} check(s) found rows that differ from what was written",
            report.findings.len()
        )?;
        for finding in &report.findings {
            writeln!(out, "  {finding}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Break, Finding};

    #[test]
    fn a_failed_audit_names_each_row() {
        let report = AuditReport {
            rows: vec![("order_events", 3)],
            orders: 1,
            findings: vec![
                Finding::Chain {
                    table: "order_events".into(),
                    chain: "order_id=1".into(),
                    id: 2,
                    seq: Some(2),
                    why: Break::Differs,
                },
                Finding::ResolutionMissing { review_item_id: 5 },
            ],
        };
        let mut out = Vec::new();
        render(&mut out, &report).expect("renders");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with("audit verify: FAILED: 2 check(s)"),
            "{text}"
        );
        assert!(
            text.contains("  order_events row id=2 (chain order_id=1, seq 2)"),
            "{text}"
        );
        assert!(text.contains("review_items row id=5"), "{text}");
    }

    #[test]
    fn a_passed_audit_says_what_it_covered() {
        let report = AuditReport {
            rows: vec![("order_events", 3), ("books_closes", 1)],
            orders: 2,
            findings: Vec::new(),
        };
        let mut out = Vec::new();
        render(&mut out, &report).expect("renders");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "audit verify: ok: 4 sealed rows in 2 tables verify, 2 orders add up\n"
        );
    }
}
