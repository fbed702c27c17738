//! The `ipn-reconciler` binary: parses the command line and hands over to
//! [`ipn_reconciler::cli`]. Errors become a message on stderr and the exit
//! code the command chose; this is the only place where `anyhow` meets the
//! library's typed errors.

use std::process::ExitCode;

use clap::Parser;
use ipn_reconciler::cli::{Cli, render_error, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `... | head` closed standard output: the reader has what it wanted.
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", render_error(&err.error));
            ExitCode::from(err.code)
        }
    }
}
