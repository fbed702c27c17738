//! `ipn-reconciler parked list|requeue`: the operator's view of the parking
//! queue. Nothing else moves parked messages.

use std::io::Write;
use std::process::ExitCode;

use super::args::{self, BrokerFlags, ConfigFile, DatabaseFlags};
use super::{CliError, CliResult, block_on, settings_error};
use crate::queue::parked::{self, ParkedMessage, Selection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum ParkedCommand {
    /// Show the parked messages (id, body digest, reason, attempts,
    /// received and parked times, size, the key that sealed the body);
    /// they stay parked. Bodies are never shown or opened.
    #[command(after_help = "Exit codes: 0 listed (an empty queue too), 2 invalid \
configuration, 3 the broker cannot be reached.")]
    List {
        #[command(flatten)]
        broker: BrokerFlags,
        /// One JSON object per line instead of a table (kept for scripts;
        /// `--format json` gives one JSON array).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// table (for people) or csv, both with the columns id,
        /// body_sha256, reason, attempts, received_at, parked_at, bytes,
        /// sealed_by, notice (ipn or lcn, as the intake queued it; RFC 3339
        /// UTC times), or json.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Move parked messages back to the work exchange (attempts reset),
    /// after their cause was fixed: `parked requeue ID`, `parked requeue
    /// --reason REASON [--since DATE]` or `parked requeue --all`. Needs the
    /// seal key file: a sealed body is sealed again with its reset
    /// counters, which its seal binds.
    #[command(
        after_help = "Each message moved has its row in the action log (requeue_parked, with \
--by and the operating-system account and host), committed before the message is published: no \
message moves without its row.\n\n\
Exit codes: 0 requeued (every matching message; none matching \
is not an error), 2 no ID, --reason or --all, a bad --since, an empty --by, or invalid \
configuration (no seal key file too), 3 the broker or the database cannot be reached or a message \
could not be moved."
    )]
    Requeue {
        #[command(flatten)]
        broker: BrokerFlags,
        #[command(flatten)]
        db: DatabaseFlags,
        /// Who requeues (a name or staff id), for the action log;
        /// default: the operating-system account.
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
        /// Every parked message.
        #[arg(long, conflicts_with_all = ["id", "reason"])]
        all: bool,
        /// Every message parked for this reason, exactly as `parked list`
        /// shows it (for example invalid_signature).
        #[arg(long, conflicts_with = "id")]
        reason: Option<String>,
        /// With --reason: only messages parked at or after this month
        /// (2026-11), date (2026-11-30, from 00:00 UTC) or RFC 3339 time.
        #[arg(long, requires = "reason", value_name = "DATE", value_parser = super::dates::utc_start)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// The id shown by `parked list` (a prefix of the body's SHA-256).
        id: Option<String>,
    },
}

pub fn run(config: &ConfigFile, command: ParkedCommand) -> CliResult {
    match command {
        ParkedCommand::List {
            broker,
            json,
            format,
        } => {
            let loaded = args::load(config, &[&broker]).map_err(settings_error)?;
            let settings = loaded.amqp().map_err(settings_error)?;
            let messages = block_on(async move { Ok(parked::list(&settings).await?) })?;
            let mut out = std::io::stdout().lock();
            if json {
                for message in &messages {
                    writeln!(out, "{}", serde_json::to_string(message)?)?;
                }
            } else if format == ListFormat::Json {
                serde_json::to_writer_pretty(&mut out, &messages)?;
                writeln!(out)?;
            } else {
                let caption = format!("{} parked", messages.len());
                let table = crate::view::parked::table(&messages, caption);
                if format == ListFormat::Csv {
                    out.write_all(&table.csv()?)?;
                } else {
                    table.write_text(&mut out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ParkedCommand::Requeue {
            broker,
            db,
            by,
            all,
            reason,
            since,
            id,
        } => {
            let selection = match (all, id, reason) {
                (true, _, _) => Selection::All,
                (false, Some(id), _) => Selection::Id(id),
                (false, None, Some(reason)) => Selection::Reason { reason, since },
                (false, None, None) => {
                    return Err(CliError::usage(anyhow::anyhow!(
                        "say which messages: `parked requeue ID` (an id from `parked list`), \
                         `parked requeue --reason REASON [--since DATE]` or `parked requeue --all`"
                    )));
                }
            };
            let actor = super::actor::actor(by.as_deref())?;
            let loaded = args::load(config, &[&broker, &db]).map_err(settings_error)?;
            let settings = loaded.amqp().map_err(settings_error)?;
            // Resetting the counters that the seal binds takes the key.
            let sealer = loaded.sealer().map_err(settings_error)?;
            let mut database = loaded.database().map_err(settings_error)?;
            database.schema = crate::store::SchemaPolicy::EXISTING;
            let moved = block_on(async move {
                let store = crate::store::Store::connect(database).await?;
                let moved = crate::services::requeue::requeue(
                    &store,
                    &settings,
                    Some(&sealer),
                    &selection,
                    &actor,
                    None,
                )
                .await
                .map_err(CliError::operational)?;
                Ok(moved)
            })?;
            let mut out = std::io::stdout().lock();
            for message in &moved {
                writeln!(out, "requeued {}", line(message))?;
            }
            writeln!(out, "{} requeued", moved.len())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    crate::export::rfc3339::format(&at)
}

/// A requeued message on one line (its reason and key id as the broker
/// holds them, made safe for a terminal).
fn line(message: &ParkedMessage) -> String {
    crate::view::terminal_text(&format!(
        "{:<12}  {:<40}  {:>8}  {:<29}  {}",
        message.id,
        message.reason,
        message.attempts,
        rfc3339(message.received_at),
        message.sealed_by.as_deref().unwrap_or("-")
    ))
}
