//! `ipn-reconciler ipn ...`: single-notification tools for operators and
//! tests. They never print a field value in an error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{CliResult, EXIT_INVALID, EXIT_USAGE, KeyArgs, read_body};
use crate::ipn::{
    Algorithm, FormBody, FormLimits, ReceiptDate, ReceiptFormat, SignaturePolicy, VerifyError,
    read_receipt, sign, verify,
};
use crate::settings::RequiredAlgorithm;

#[derive(Debug, Subcommand)]
pub enum IpnCommand {
    /// Verify a notification's signature. Exit 0: valid (prints key id and
    /// algorithm); 1: invalid signature; 2: malformed input or usage error.
    Verify {
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Notification body (form-urlencoded); `-` reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Print the body with fresh signature fields made with the current key
    /// (for simulation and tests). Existing signature fields are replaced.
    Sign {
        #[command(flatten)]
        keys: KeyArgs,
        /// Algorithms to sign with, comma separated: sha3, sha256, md5.
        #[arg(long, value_delimiter = ',', default_value = "sha3,sha256")]
        algorithms: Vec<String>,
        /// Notification body; `-` reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Print the read receipt that answers a notification.
    Receipt {
        #[command(flatten)]
        keys: KeyArgs,
        /// `sig` (<sig algo=... date=...>) or `epayment` (legacy MD5).
        #[arg(long, value_enum, default_value_t = ReceiptKind::Sig)]
        format: ReceiptKind,
        /// Algorithm of a `sig` receipt: sha3-256 or sha256.
        #[arg(long, default_value = "sha3-256")]
        algorithm: String,
        /// Receipt DATE, `YmdHis` in UTC; default: now.
        #[arg(long)]
        date: Option<String>,
        /// Notification body; `-` reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

/// Which signatures are accepted, as the daemon's settings of the same
/// names say.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Accept legacy HMAC-MD5 `HASH` signatures.
    #[arg(long, env = "IPN_ALLOW_MD5")]
    allow_md5: bool,
    /// Refuse a body without this signature (sha3-256 or sha256), whatever
    /// else it carries; none: the strongest signature present decides.
    #[arg(
        long,
        env = "IPN_REQUIRE_ALGORITHM",
        value_name = "ALGORITHM",
        default_value = "none",
        value_parser = RequiredAlgorithm::parse
    )]
    require_algorithm: RequiredAlgorithm,
}

impl PolicyArgs {
    fn policy(&self) -> SignaturePolicy {
        SignaturePolicy {
            allow_md5: self.allow_md5,
            require: self.require_algorithm.0,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReceiptKind {
    Sig,
    Epayment,
}

pub fn run(command: IpnCommand) -> CliResult {
    let limits = FormLimits::default();
    match command {
        IpnCommand::Verify { keys, policy, file } => {
            let ring = keys.load()?;
            let body = read_body(&file, &limits)?;
            let form = match FormBody::parse(&body, &limits) {
                Ok(form) => form,
                Err(err) => {
                    eprintln!("malformed: {err}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            match verify(&form, &ring, &policy.policy()) {
                Ok(verified) => {
                    writeln!(
                        std::io::stdout(),
                        "valid: key {} algorithm {}",
                        verified.key_id,
                        verified.algorithm
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(VerifyError::Malformed(err)) => {
                    eprintln!("malformed: {err}");
                    Ok(ExitCode::from(EXIT_USAGE))
                }
                Err(err) => {
                    eprintln!("invalid: {err}");
                    Ok(ExitCode::from(EXIT_INVALID))
                }
            }
        }
        IpnCommand::Sign {
            keys,
            algorithms,
            file,
        } => {
            let ring = keys.load()?;
            let mut parsed = Vec::new();
            for name in &algorithms {
                match Algorithm::parse(name.trim()) {
                    Some(algorithm) => parsed.push(algorithm),
                    None => {
                        return usage(format!(
                            "unknown algorithm `{name}`: use sha3, sha256 or md5"
                        ));
                    }
                }
            }
            let body = read_body(&file, &limits)?;
            let form = match FormBody::parse(&body, &limits) {
                Ok(form) => form,
                Err(err) => return usage(format!("malformed: {err}")),
            };
            let signed = match sign(&form, &ring.current().secret, &parsed) {
                Ok(signed) => signed,
                Err(err) => return usage(format!("malformed: {err}")),
            };
            let mut out = std::io::stdout().lock();
            out.write_all(signed.encode().as_bytes())?;
            out.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        IpnCommand::Receipt {
            keys,
            format,
            algorithm,
            date,
            file,
        } => {
            let ring = keys.load()?;
            let format = match format {
                ReceiptKind::Epayment => ReceiptFormat::Epayment,
                ReceiptKind::Sig => match Algorithm::parse(&algorithm) {
                    Some(Algorithm::Md5) | None => {
                        return usage(format!(
                            "a sig receipt uses sha3-256 or sha256, not `{algorithm}`"
                        ));
                    }
                    Some(algorithm) => ReceiptFormat::Sig(algorithm),
                },
            };
            let date = match date.as_deref().map(ReceiptDate::parse) {
                None => ReceiptDate::now(),
                Some(Ok(date)) => date,
                Some(Err(err)) => return usage(err.to_string()),
            };
            let body = read_body(&file, &limits)?;
            let form = match FormBody::parse(&body, &limits) {
                Ok(form) => form,
                Err(err) => return usage(format!("malformed: {err}")),
            };
            let receipt = match read_receipt(&form, &ring.current().secret, format, date) {
                Ok(receipt) => receipt,
                Err(err) => return usage(format!("malformed: {err}")),
            };
            writeln!(std::io::stdout(), "{receipt}")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints why the input or the usage is wrong and exits 2.
fn usage(message: String) -> CliResult {
    eprintln!("{message}");
    Ok(ExitCode::from(EXIT_USAGE))
}
