//! `ipn-reconciler subscriptions list|show`: the subscriptions the
//! processor's notices name (`IPN_LICENSE_REF[]`), renewals included.

use std::io::Write;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Subcommand, ValueEnum};

use super::args::{self, ConfigFile, DatabaseFlags};
use super::{CliResult, OutputFormat, block_on, dates};
use crate::domain::subscription::SubscriptionStatus;
use crate::store::{Store, SubscriptionFilter, SubscriptionView};
use crate::view::{Cell, Table};

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// List subscriptions by licence reference: status, product, first and
    /// latest order, start, paid-until date, renewals.
    #[command(
        after_help = "Exit codes: 0 listed (an empty list too), 2 an unknown --status, a bad \
date or another usage error, invalid configuration, 3 the database cannot be read."
    )]
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Only subscriptions in this status.
        #[arg(long, value_parser = status_parser())]
        status: Option<SubscriptionStatus>,
        /// Only subscriptions whose paid term ends before this month
        /// (2026-12, its first day), date (2026-12-31, UTC) or RFC 3339
        /// time; lifetime licences never do.
        #[arg(long, value_name = "DATE", value_parser = dates::utc_start)]
        expiring_before: Option<chrono::DateTime<chrono::Utc>>,
        /// table: for people; csv: columns licence_ref,status,product_code,
        /// licence_type,first_order,latest_order,original_order_ref,
        /// starts_at,expires_at,lifetime,renewals; json: objects with the
        /// same names.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Show one subscription with its orders (renewals included).
    #[command(
        after_help = "Exit codes: 0 shown, 1 no such subscription, 2 usage error or invalid \
configuration, 3 the database cannot be read."
    )]
    Show {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The licence reference (IPN_LICENSE_REF, the LCN's LICENSE_CODE).
        licence_ref: String,
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

/// `--status`: one of the known statuses, listed in `--help`.
fn status_parser() -> impl TypedValueParser<Value = SubscriptionStatus> {
    PossibleValuesParser::new(SubscriptionStatus::KNOWN.map(|s| s.known_name().unwrap_or_default()))
        .map(|text| SubscriptionStatus::parse(&text))
}

/// The listing's columns, in order (scripts read them by name).
const COLUMNS: [&str; 11] = [
    "licence_ref",
    "status",
    "product_code",
    "licence_type",
    "first_order",
    "latest_order",
    "original_order_ref",
    "starts_at",
    "expires_at",
    "lifetime",
    "renewals",
];

fn date(at: Option<chrono::NaiveDateTime>) -> String {
    at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn row(view: &SubscriptionView) -> [String; 11] {
    let s = &view.subscription;
    [
        s.licence_ref.clone(),
        view.status.as_str().to_owned(),
        s.product_code.clone().unwrap_or_default(),
        s.licence_type.clone().unwrap_or_default(),
        s.first_order.clone(),
        s.latest_order.clone(),
        s.original_order_ref.clone().unwrap_or_default(),
        date(s.starts_at),
        if s.lifetime {
            "lifetime".to_owned()
        } else {
            date(s.expires_at)
        },
        s.lifetime.to_string(),
        s.renewals.to_string(),
    ]
}

pub fn run(config: &ConfigFile, command: SubscriptionsCommand) -> CliResult {
    match command {
        SubscriptionsCommand::List {
            db,
            status,
            expiring_before,
            format,
        } => {
            let settings = args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let filter = SubscriptionFilter {
                    status,
                    expiring_before: expiring_before.map(|at| at.naive_utc()),
                };
                let views = store.subscriptions(&filter).await?;
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &views)?;
                        writeln!(out)?;
                    }
                    OutputFormat::Csv => {
                        // Through the listing view: its CSV defuses formulas.
                        let mut table = Table::new("subscriptions", "", &COLUMNS);
                        for view in &views {
                            table.push(row(view).into_iter().map(Cell::Text).collect());
                        }
                        out.write_all(&table.csv()?)?;
                    }
                    OutputFormat::Table => {
                        writeln!(
                            out,
                            "{:<12} {:<22} {:<16} {:<10} {:<12} {:<12} {:<19} {:>8}",
                            "LICENCE",
                            "STATUS",
                            "PRODUCT",
                            "TYPE",
                            "FIRST",
                            "LATEST",
                            "PAID UNTIL (UTC)",
                            "RENEWALS"
                        )?;
                        for view in &views {
                            let cells = row(view);
                            writeln!(
                                out,
                                "{:<12} {:<22} {:<16} {:<10} {:<12} {:<12} {:<19} {:>8}",
                                cells[0],
                                cells[1],
                                cells[2],
                                cells[3],
                                cells[4],
                                cells[5],
                                cells[8],
                                cells[10]
                            )?;
                        }
                        if views.is_empty() {
                            writeln!(out, "(no subscription)")?;
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        SubscriptionsCommand::Show {
            db,
            licence_ref,
            format,
        } => {
            let settings = args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let Some(detail) = store.subscription(&licence_ref).await? else {
                    eprintln!("no subscription {licence_ref}");
                    return Ok(ExitCode::from(1));
                };
                let mut out = std::io::stdout().lock();
                match format {
                    ShowFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &detail)?;
                        writeln!(out)?;
                    }
                    ShowFormat::Table => {
                        for (name, value) in COLUMNS.iter().zip(row(&detail.view)) {
                            writeln!(out, "{name:<19} {value}")?;
                        }
                        writeln!(out, "orders:")?;
                        for order in &detail.orders {
                            writeln!(
                                out,
                                "  {:<12} {:<10} {:<19} {:<19} {:<6} {}",
                                order.processor_ref,
                                order.licence_type.as_deref().unwrap_or("-"),
                                date(order.starts_at),
                                date(order.expires_at),
                                if order.paid { "paid" } else { "unpaid" },
                                order.order_ref.as_deref().unwrap_or("-"),
                            )?;
                        }
                        writeln!(out, "licence notices:")?;
                        if detail.notices.is_empty() {
                            writeln!(out, "  (none)")?;
                        }
                        for notice in &detail.notices {
                            writeln!(
                                out,
                                "  {:<19} {:<20} {:<20} {}",
                                notice.updated_at.format("%Y-%m-%d %H:%M:%S"),
                                notice.status.as_deref().unwrap_or("-"),
                                notice.dispatch_reason.as_deref().unwrap_or("-"),
                                if notice.lifetime {
                                    "lifetime".to_owned()
                                } else {
                                    date(notice.expires_at)
                                },
                            )?;
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
