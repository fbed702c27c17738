//! `ipn-reconciler parked list|requeue`: the operator's view of the parking
//! queue. Nothing else moves parked messages.

use std::process::ExitCode;

use super::block_on;
use super::serve::AmqpArgs;
use crate::queue::parked::{self, ParkedMessage, Selection};

#[derive(Debug, clap::Subcommand)]
pub enum ParkedCommand {
    /// Show the parked messages (id, reason, attempts, received time); they
    /// stay parked.
    List {
        #[command(flatten)]
        amqp: AmqpArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move parked messages back to the work exchange (attempts reset),
    /// after their cause was fixed.
    Requeue {
        #[command(flatten)]
        amqp: AmqpArgs,
        /// Every parked message.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        all: bool,
        /// The id shown by `parked list` (a prefix of the body's SHA-256).
        id: Option<String>,
    },
}

pub fn run(command: ParkedCommand) -> anyhow::Result<ExitCode> {
    match command {
        ParkedCommand::List { amqp, json } => {
            let settings = amqp.settings()?;
            let messages = block_on(async move { Ok(parked::list(&settings).await?) })?;
            if json {
                for message in &messages {
                    println!("{}", serde_json::to_string(message)?);
                }
            } else {
                println!(
                    "{:<12}  {:<40}  {:>8}  received_at",
                    "id", "reason", "attempts"
                );
                for message in &messages {
                    println!("{}", line(message));
                }
                println!("{} parked", messages.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ParkedCommand::Requeue { amqp, all, id } => {
            let settings = amqp.settings()?;
            let selection = match (all, id) {
                (true, _) => Selection::All,
                (false, Some(id)) => Selection::Id(id),
                (false, None) => anyhow::bail!("give an id or --all"),
            };
            let moved = block_on(async move { Ok(parked::requeue(&settings, &selection).await?) })?;
            for message in &moved {
                println!("requeued {}", line(message));
            }
            println!("{} requeued", moved.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn line(message: &ParkedMessage) -> String {
    format!(
        "{:<12}  {:<40}  {:>8}  {}",
        message.id,
        message.reason,
        message.attempts,
        message.received_at.to_rfc3339()
    )
}
