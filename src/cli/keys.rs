//! `ipn-reconciler keys seal-new`: a fresh key for the seal key file.
//!
//! The seal keys are the daemon's own (docs/data-handling.md, "Sealing
//! keys and their rotation"): random, never derived from the processor's
//! secret, so nobody types one in. This command makes one; nothing is
//! written anywhere but standard output.

use std::io::Write;
use std::process::ExitCode;

use super::{CliError, CliResult};
use crate::ipn::KeyId;
use crate::queue::seal::new_key_line;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a new line for the seal key file (`seal-key-file`): `KEY_ID
    /// HEX`, 32 fresh random bytes, and nothing else on standard output.
    /// To rotate, put it first in the file (the first line seals) and keep
    /// the old lines below it for at least parking-ttl (they still open
    /// what they sealed).
    #[command(
        after_help = "Exit codes: 0 printed, 2 an invalid --id, 3 no randomness.\n\n\
Example: ipn-reconciler keys seal-new > /etc/ipn-reconciler/seal.keys (a first key), or \
(ipn-reconciler keys seal-new; cat seal.keys) > seal.keys.new (a rotation)."
    )]
    SealNew {
        /// The key's id: 1-64 letters, digits, `.`, `_` or `-`; by default
        /// `seal-` and today's date (UTC), as in `seal-20261209`.
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn run(command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::SealNew { id } => {
            let id = id.unwrap_or_else(|| format!("seal-{}", chrono::Utc::now().format("%Y%m%d")));
            let id = KeyId::parse(&id).map_err(CliError::usage)?;
            let line = new_key_line(&id).map_err(CliError::operational)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", line.as_str())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
