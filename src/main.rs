//! The `ipn-reconciler` binary: parses the command line and hands over to
//! [`ipn_reconciler::cli`]. Errors become a message on stderr and an exit code;
//! this is the only place where `anyhow` meets the library's typed errors.

use std::process::ExitCode;

use clap::Parser;
use ipn_reconciler::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(ipn_reconciler::cli::EXIT_OPERATIONAL)
        }
    }
}
