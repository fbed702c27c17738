//! The `ipn-reconciler` binary: parses the command line and hands over to
//! [`ipn_reconciler::cli`]. Errors become a message on stderr and an exit code;
//! this is the only place where `anyhow` meets the library's typed errors.

use std::process::ExitCode;

use clap::Parser;
use ipn_reconciler::cli::{Cli, EXIT_OPERATIONAL, EXIT_USAGE, render_error, run};
use ipn_reconciler::ipn::KeyError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", render_error(&err));
            // A key file that cannot be used is a configuration (usage)
            // error; everything else that escapes a command is operational.
            if err.chain().any(|cause| cause.is::<KeyError>()) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_OPERATIONAL)
            }
        }
    }
}
