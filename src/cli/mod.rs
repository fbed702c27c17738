//! The command line: one subcommand per job, each with its own `--help`.
//!
//! Commands are thin: they read input, call the library, and turn outcomes
//! into output and exit codes. Anything worth testing lives in the library.

mod ipn;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::ipn::{FormLimits, KeyRing};

/// Exit code for "the input is invalid" (a bad signature).
pub const EXIT_INVALID: u8 = 1;
/// Exit code for malformed input or a usage error (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for an operational failure (database, broker, I/O).
pub const EXIT_OPERATIONAL: u8 = 3;

/// Receives, verifies and reconciles Avangate / 2Checkout Instant Payment
/// Notifications (IPN) against the merchant's orders.
#[derive(Debug, Parser)]
#[command(name = "ipn-reconciler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with single notification bodies: verify, sign, build receipts.
    #[command(subcommand)]
    Ipn(ipn::IpnCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ipn(command) => ipn::run(command),
    }
}

/// Where keys come from: `--key-file`, else `IPN_KEYS_FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key file: one key per line, `KEY_ID SECRET`; the first line is the
    /// current key, later lines are older keys still accepted. A line with
    /// only a secret gets the id `default`.
    #[arg(long, env = "IPN_KEYS_FILE", value_name = "FILE")]
    pub key_file: PathBuf,
}

impl KeyArgs {
    pub fn load(&self) -> anyhow::Result<KeyRing> {
        Ok(KeyRing::from_file(&self.key_file)?)
    }
}

/// Reads a notification body from a file, or standard input for `-`,
/// refusing to read more than the body limit (plus one byte, so an
/// oversized body is reported as such by the parser).
pub fn read_body(source: &Path, limits: &FormLimits) -> anyhow::Result<Vec<u8>> {
    let cap = u64::try_from(limits.max_body_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut body = Vec::new();
    if source == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut body)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(source)
            .with_context(|| format!("cannot open {}", source.display()))?
            .take(cap)
            .read_to_end(&mut body)
            .with_context(|| format!("cannot read {}", source.display()))?;
    }
    Ok(body)
}
