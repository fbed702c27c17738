//! `ipn-reconciler migrate` and `ipn-reconciler orders ...`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Subcommand, ValueEnum};

use super::args::{self, ConfigFile, DatabaseFlags, NotificationFlags};
use super::{CliError, CliResult, EXIT_USAGE, OutputFormat, block_on, settings_error, table_time};
use crate::domain::OrderState;
use crate::store::SchemaPolicy;
use crate::store::orders::{ImportError, parse_orders_csv};
use crate::store::{OrderView, Store};

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Import orders from a CSV file with the header
    /// `order_ref,amount,currency` then, optionally, `created_at` (RFC 3339,
    /// e.g. 2026-11-01T08:00:00Z) and `processor_ref` (the processor's
    /// REFNO, when the shop knows it: the row then gives the processor's
    /// order its merchant reference and expected amount, making it if no
    /// notice has yet; docs/operations.md, "Where orders come from"). All
    /// or nothing; importing the same orders again changes nothing. A
    /// currency outside ISO 4217 is refused unless allowed with
    /// --allow-currency CODE=EXPONENT.
    #[command(
        after_help = "Exit codes: 0 imported (or nothing new to import), 2 a bad \
header or row, an unknown currency, an order that exists with another amount, or a \
processor order that already has another merchant reference (nothing is imported; every line \
is named), or invalid configuration, 3 the file or the database cannot be \
read."
    )]
    Import {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The CSV file; `-` reads standard input.
        file: PathBuf,
    },
    /// Show one order with its reconciled state and ledger, found by the
    /// merchant's reference or the processor's (REFNO); says where it came
    /// from (`origin`: merchant or processor).
    #[command(
        after_help = "Exit codes: 0 shown, 1 no such order, 2 usage error or invalid \
configuration, 3 the database cannot be read."
    )]
    Show {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The order's reference: the merchant's (REFNOEXT), or the
        /// processor's (REFNO) of any of its payments.
        order_ref: String,
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
    },
    /// List orders, oldest first, optionally only those in one state.
    #[command(
        after_help = "Exit codes: 0 listed (an empty list too), 2 an unknown --status \
or another usage error, invalid configuration, 3 the database cannot be read."
    )]
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Only orders in this state.
        #[arg(long, value_parser = order_state_parser())]
        status: Option<OrderState>,
        /// table: for people, the columns of csv aligned; csv: columns
        /// order_ref,status,amount,
        /// currency,paid,refunded,charged_back,processor_ref,created_at,
        /// updated_at,origin; json: a list of objects with the same names.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// List one customer's orders, found by the keyed pseudonym of their
    /// e-mail address: the address is normalized and hashed with the
    /// pseudonym key as the pipeline does (pseudonym-key-file), and never
    /// printed, logged or stored.
    #[command(
        after_help = "Only notifications processed with the pseudonym key carry a \
pseudonym, so orders paid before it was set are not found.\n\n\
Exit codes: 0 listed (an empty list too), 2 no pseudonym key configured, an empty address, \
another usage error or invalid configuration, 3 the database or the key file cannot be read."
    )]
    Find {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        notifications: NotificationFlags,
        /// The customer's e-mail address (case and surrounding spaces do
        /// not matter); `-` reads it from standard input, which keeps it
        /// out of the shell history and the process list.
        #[arg(long, value_name = "ADDRESS")]
        email: EmailAddress,
        /// table, csv or json, with the columns of `orders list`.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// An e-mail address typed by a person looking up a customer: personal
/// data, so its `Debug` is redacted and no parser ever refuses (and so
/// quotes) it.
#[derive(Clone)]
pub struct EmailAddress(zeroize::Zeroizing<String>);

impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(zeroize::Zeroizing::new(text.to_owned())))
    }
}

impl EmailAddress {
    /// The address, read from standard input when it was given as `-`.
    fn read(&self) -> Result<zeroize::Zeroizing<String>, CliError> {
        if self.0.as_str() != "-" {
            return Ok(self.0.clone());
        }
        let mut text = zeroize::Zeroizing::new(String::new());
        use std::io::Read;
        std::io::stdin()
            .lock()
            .take(4096)
            .read_to_string(&mut text)
            .context("cannot read the address from standard input")?;
        Ok(text)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

/// `--status`: one of the states, listed in `--help` and in the error
/// (`--status Paid` names the valid spellings instead of listing nothing).
fn order_state_parser() -> impl TypedValueParser<Value = OrderState> {
    PossibleValuesParser::new(OrderState::ALL.map(OrderState::as_str))
        .try_map(|text| OrderState::parse(&text))
}

/// `migrate` creates the schema, and the database too with `--create-db`.
pub fn migrate(config: &ConfigFile, db: &DatabaseFlags) -> CliResult {
    let mut settings = args::load(config, &[db])
        .and_then(|loaded| loaded.database())
        .map_err(settings_error)?;
    settings.schema = SchemaPolicy::ConnectOnly {
        create_database: settings.schema.creates_database(),
    };
    block_on(async move {
        let store = Store::connect(settings).await?;
        let applied = store.migrate().await?;
        let mut out = std::io::stdout().lock();
        if applied.is_empty() {
            writeln!(out, "database is up to date")?;
        } else {
            for version in applied {
                writeln!(out, "applied migration {version}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(config: &ConfigFile, command: OrdersCommand) -> CliResult {
    match command {
        OrdersCommand::Import { db, file } => {
            // Settings first: their currency table says which currencies
            // besides ISO 4217 the file may use, and with how many
            // decimals; the store checks the orders against the same one.
            let settings = args::database(config, &db)?;
            let input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                )
            };
            let orders = match parse_orders_csv(input, &settings.currencies) {
                Ok(orders) => orders,
                Err(
                    err @ (ImportError::Header(_) | ImportError::Rows(_) | ImportError::Csv(_)),
                ) => {
                    eprintln!("{}: nothing imported: {err}", file.display());
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                Err(err) => return Err(err.into()),
            };
            block_on(async move {
                let store = Store::connect(settings).await?;
                match store.import_orders(&orders).await {
                    Ok(report) => {
                        let mut out = std::io::stdout();
                        write!(
                            out,
                            "imported {} new order(s), {} already present",
                            report.inserted, report.unchanged
                        )?;
                        if report.attached > 0 {
                            write!(
                                out,
                                ", {} processor order(s) given their merchant reference",
                                report.attached
                            )?;
                        }
                        writeln!(out)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(err @ ImportError::Rows(_)) => {
                        eprintln!("{}: nothing imported: {err}", file.display());
                        Ok(ExitCode::from(EXIT_USAGE))
                    }
                    Err(err) => Err(err.into()),
                }
            })
        }
        OrdersCommand::Show {
            db,
            order_ref,
            format,
        } => {
            let settings = args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let Some(order) = store.order(&order_ref).await? else {
                    eprintln!("no order {order_ref}");
                    return Ok(ExitCode::from(1));
                };
                let mut out = std::io::stdout().lock();
                match format {
                    ShowFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &order)?;
                        writeln!(out)?;
                    }
                    ShowFormat::Table => write_order(&mut out, &order)?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        OrdersCommand::Find {
            db,
            notifications,
            email,
            format,
        } => {
            let loaded = args::load(config, &[&db, &notifications]).map_err(settings_error)?;
            let Some(key) = loaded.pseudonym_key().map_err(settings_error)? else {
                return Err(CliError::usage(anyhow::anyhow!(
                    "orders find --email needs the pseudonym key the pipeline uses: set \
                     pseudonym-key-file (--pseudonym-key-file FILE, PSEUDONYM_KEY_FILE or \
                     `pseudonym-key-file` in the configuration file) to the key file `serve` \
                     and `process` read; without one, no e-mail pseudonym was stored either \
                     (docs/data-handling.md)"
                )));
            };
            let address = email.read()?;
            let Some(customer) = key.pseudonymize_email(&address) else {
                return Err(CliError::usage(anyhow::anyhow!(
                    "the e-mail address is empty"
                )));
            };
            drop(address);
            let settings = args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let orders = store.orders_of_customer(&customer).await?;
                if orders.is_empty() {
                    eprintln!(
                        "no order of this customer (only notifications processed with the \
                         pseudonym key carry the customer's pseudonym)"
                    );
                }
                write_orders(&orders, format)?;
                Ok(ExitCode::SUCCESS)
            })
        }
        OrdersCommand::List { db, status, format } => {
            let settings = args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let orders = store.list_orders(status).await?;
                write_orders(&orders, format)?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// A list of orders on standard output, in `format` (`orders list`,
/// `orders find`).
fn write_orders(orders: &[OrderView], format: OutputFormat) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, orders)?;
            writeln!(out)?;
        }
        OutputFormat::Csv => write_orders_csv(&mut out, orders)?,
        OutputFormat::Table => write_orders_table(&mut out, orders)?,
    }
    Ok(())
}

/// The orders' listing (`view::orders`), with its count line.
fn orders_table(orders: &[OrderView]) -> crate::view::Table {
    crate::view::orders::table(orders, format!("{} order(s)", orders.len()))
}

fn write_orders_csv(mut out: impl Write, orders: &[OrderView]) -> Result<(), CliError> {
    out.write_all(&orders_table(orders).csv()?)?;
    Ok(())
}

/// For people: the same columns as the CSV and the console, aligned.
fn write_orders_table(out: &mut impl Write, orders: &[OrderView]) -> std::io::Result<()> {
    orders_table(orders).write_text(out)
}

pub(super) fn write_order(out: &mut impl Write, o: &OrderView) -> std::io::Result<()> {
    writeln!(out, "order          {}", o.order_ref)?;
    writeln!(out, "origin         {}", o.origin)?;
    if let Some(merchant_ref) = &o.merchant_ref {
        writeln!(out, "merchant ref   {merchant_ref}")?;
    }
    writeln!(out, "status         {}", o.status.as_str())?;
    writeln!(out, "amount         {} {}", o.amount, o.currency)?;
    writeln!(out, "paid           {} {}", o.paid, o.currency)?;
    writeln!(out, "refunded       {} {}", o.refunded, o.currency)?;
    writeln!(out, "charged back   {} {}", o.charged_back, o.currency)?;
    writeln!(
        out,
        "processor ref  {}",
        o.processor_ref.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "created        {} UTC", table_time(&o.created_at))?;
    writeln!(
        out,
        "updated        {} UTC (version {})",
        table_time(&o.updated_at),
        o.version
    )?;
    writeln!(out, "payments:")?;
    if o.payments.is_empty() {
        writeln!(out, "  (none yet)")?;
    }
    for p in &o.payments {
        writeln!(
            out,
            "  {:<12} {:<19} paid {:>12}  refunded {:>12}{}{}{}",
            p.processor_ref,
            p.state,
            p.paid,
            p.refunded,
            if p.authorized { "  authorized" } else { "" },
            if p.reversed { "  reversed" } else { "" },
            match p.dispute {
                Some(dispute) => format!(
                    "  dispute {dispute}: charged back {} reinstated {}",
                    p.charged_back, p.reinstated
                ),
                None => String::new(),
            },
        )?;
    }
    writeln!(out, "ledger:")?;
    if o.events.is_empty() {
        writeln!(out, "  (no notification yet)")?;
    }
    for e in &o.events {
        writeln!(
            out,
            "  {}  {:<22} {:<8} {} -> {}  {} {}  {}",
            table_time(&e.at),
            e.order_status,
            e.effect,
            e.old_status,
            e.new_status,
            e.amount,
            e.currency,
            e.reason
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn a_parsed_find_never_shows_the_address() {
        let cli = super::super::Cli::try_parse_from([
            "ipn-reconciler",
            "orders",
            "find",
            "--email",
            "Jane.Doe@Example.com",
        ])
        .expect("parses");
        let shown = format!("{cli:?}");
        assert!(!shown.to_lowercase().contains("jane"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
