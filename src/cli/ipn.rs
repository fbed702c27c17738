//! `ipn-reconciler ipn ...`: single-notification tools for operators and
//! tests. They never print a field value in an error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{CliResult, EXIT_INVALID, EXIT_USAGE, KeyArgs, read_body};
use crate::ipn::{
    Algorithm, FormBody, FormLimits, NoticeKind, ReceiptDate, ReceiptFormat, SignaturePolicy,
    VerifyError, check_notice_form, sign, verify,
};
use crate::settings::RequiredAlgorithm;

#[derive(Debug, Subcommand)]
pub enum IpnCommand {
    /// Verify the signatures of notification bodies, one line per file:
    /// `<file>: valid key K algorithm A` on standard output (followed by
    /// `(licence change notification)` for a body with LICENSE_CODE, which
    /// is verified by the same rules), `<file>: invalid: REASON`, `<file>:
    /// malformed: REASON` or `<file>: cannot read: REASON` on standard
    /// error. Never prints a field value.
    #[command(
        after_help = "Exit codes: 0 every signature is valid; 1 a signature does not \
verify; 2 a body is malformed or a file cannot be read, or a usage error (an unusable key file). \
With several files, the worst decides."
    )]
    Verify {
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Notification bodies (form-urlencoded), one per file; `-` reads
        /// standard input.
        #[arg(default_value = "-")]
        files: Vec<PathBuf>,
    },
    /// Print the body with fresh signature fields made with the current key
    /// (for simulation and tests). Existing signature fields are replaced.
    /// The body must be a notification form: every field NAME=VALUE, and an
    /// IPN_DATE field (the processor sends one in every notification), or
    /// a LICENSE_CODE field (a licence change notification).
    #[command(
        after_help = "Exit codes: 0 signed; 2 the body is not a notification form, \
an unknown algorithm, an unusable key file or another usage error; 3 the file cannot be read."
    )]
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
    /// Print the read receipt that answers a notification, as the intake
    /// would: the body is verified first, and the receipt is signed with
    /// the key that verified it (an older key of the ring during a
    /// rotation). A licence change notification (a body with LICENSE_CODE)
    /// gets the LCN receipt, over LICENSE_CODE, EXPIRATION_DATE and DATE.
    /// Exit 0: printed; 1: the signature does not verify (the processor
    /// would not accept the receipt) unless --unverified; 2: malformed
    /// input or usage error.
    #[command(
        after_help = "Exit codes: 0 printed; 1 the signature does not verify (the \
processor would not accept the receipt) and --unverified was not given; 2 a malformed body, an \
unusable key file or another usage error; 3 the file cannot be read."
    )]
    Receipt {
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// `sig` (<sig algo=... date=...>) or `epayment` (legacy MD5);
        /// default: the one of the algorithm answered.
        #[arg(long, value_enum)]
        format: Option<ReceiptKind>,
        /// Algorithm of the receipt: auto (the one that verified the body,
        /// as the intake answers), sha3-256, sha256 or md5.
        #[arg(long, default_value = "auto")]
        algorithm: String,
        /// Answer even when the signature does not verify: with the current
        /// key, in the strongest algorithm the body carries (tests,
        /// receipts for hand-made bodies).
        #[arg(long)]
        unverified: bool,
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
        IpnCommand::Verify {
            keys,
            policy,
            files,
        } => {
            let ring = keys.load()?;
            let policy = policy.policy();
            let mut worst = Verdict::Valid;
            for file in &files {
                let shown = file.display();
                let verdict = match read_body(file, &limits) {
                    Err(err) => {
                        eprintln!("{shown}: cannot read: {}", err.root_cause());
                        Verdict::Malformed
                    }
                    Ok(body) => match FormBody::parse(&body, &limits)
                        .map_err(VerifyError::Malformed)
                        .and_then(|form| {
                            verify(&form, &ring, &policy)
                                .map(|verified| (verified, NoticeKind::of(&form)))
                        }) {
                        Ok((verified, kind)) => {
                            let licence = match kind {
                                NoticeKind::Lcn => " (licence change notification)",
                                NoticeKind::Ipn => "",
                            };
                            writeln!(
                                std::io::stdout(),
                                "{shown}: valid key {} algorithm {}{licence}",
                                verified.key_id,
                                verified.algorithm
                            )?;
                            Verdict::Valid
                        }
                        Err(VerifyError::Malformed(err)) => {
                            eprintln!("{shown}: malformed: {err}");
                            Verdict::Malformed
                        }
                        Err(err) => {
                            eprintln!("{shown}: invalid: {err}");
                            Verdict::Invalid
                        }
                    },
                };
                worst = worst.max(verdict);
            }
            Ok(ExitCode::from(worst.exit_code()))
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
            if let Err(message) = check_signable(&body, &form) {
                return usage(message);
            }
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
            policy,
            format,
            algorithm,
            unverified,
            date,
            file,
        } => {
            let chosen = match algorithm.trim() {
                "auto" => None,
                name => match Algorithm::parse(name) {
                    Some(algorithm) => Some(algorithm),
                    None => {
                        return usage(format!(
                            "unknown algorithm `{name}`: use auto, sha3-256, sha256 or md5"
                        ));
                    }
                },
            };
            // Refuse impossible combinations before reading anything.
            if let Err(message) = receipt_format(chosen, format, Algorithm::Sha3_256) {
                return usage(message);
            }
            let ring = keys.load()?;
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
            let (key, signed_with) = match verify(&form, &ring, &policy.policy()) {
                Ok(verified) => (
                    ring.get(&verified.key_id).unwrap_or_else(|| ring.current()),
                    verified.algorithm,
                ),
                Err(VerifyError::Malformed(err)) => return usage(format!("malformed: {err}")),
                Err(err) if !unverified => {
                    eprintln!(
                        "invalid: {err}; the processor would not accept a receipt for this \
                         body (--unverified answers it anyway, with the current key)"
                    );
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
                Err(err) => {
                    eprintln!(
                        "warning: {err}; answering with the current key `{}`",
                        ring.current().id
                    );
                    let claimed = Algorithm::STRONGEST_FIRST
                        .into_iter()
                        .find(|a| form.get(a.field_name()).is_some())
                        .unwrap_or(Algorithm::Sha3_256);
                    (ring.current(), claimed)
                }
            };
            let format = match receipt_format(chosen, format, signed_with) {
                Ok(format) => format,
                Err(message) => return usage(message),
            };
            let receipt = match NoticeKind::of(&form).read_receipt(&form, &key.secret, format, date)
            {
                Ok(receipt) => receipt,
                Err(err) => return usage(format!("malformed: {err}")),
            };
            writeln!(std::io::stdout(), "{receipt}")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `ipn verify` found in one file, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Valid,
    Invalid,
    /// Malformed, or the file could not be read.
    Malformed,
}

impl Verdict {
    fn exit_code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => EXIT_INVALID,
            Verdict::Malformed => EXIT_USAGE,
        }
    }
}

/// Whether `ipn sign` may sign a body: a notification form of either kind
/// ([`check_notice_form`], the intake's rules too). Anything else is
/// almost always the wrong file or a forgotten `-`: `hello` would otherwise
/// be signed as the field `hello=` and come out as a "valid" notification
/// nobody meant to write.
fn check_signable(body: &[u8], form: &FormBody) -> Result<(), String> {
    check_notice_form(body, form)
        .map(|_| ())
        .map_err(|err| format!("not a notification body: {err}"))
}

/// The receipt that answers a notification signed with `signed_with`,
/// given the algorithm (`None`: auto) and format the operator chose. An
/// `<EPAYMENT>` receipt is MD5 and a `<sig>` receipt is SHA, so some
/// choices contradict each other: the error says how to fix them.
fn receipt_format(
    chosen: Option<Algorithm>,
    kind: Option<ReceiptKind>,
    signed_with: Algorithm,
) -> Result<ReceiptFormat, String> {
    match (kind, chosen) {
        (Some(ReceiptKind::Epayment), None | Some(Algorithm::Md5)) => Ok(ReceiptFormat::Epayment),
        (Some(ReceiptKind::Epayment), Some(other)) => Err(format!(
            "an epayment receipt is MD5, not {other}: drop --algorithm or use --algorithm md5"
        )),
        (Some(ReceiptKind::Sig), Some(Algorithm::Md5)) => {
            Err("a sig receipt uses sha3-256 or sha256, not md5".to_owned())
        }
        (Some(ReceiptKind::Sig), Some(algorithm)) => Ok(ReceiptFormat::Sig(algorithm)),
        (Some(ReceiptKind::Sig), None) if signed_with == Algorithm::Md5 => Err(
            "the notification is signed with MD5, which is answered with an epayment \
             receipt: drop --format sig, or give --algorithm sha3-256 or sha256"
                .to_owned(),
        ),
        (Some(ReceiptKind::Sig), None) => Ok(ReceiptFormat::Sig(signed_with)),
        (None, Some(algorithm)) => Ok(ReceiptFormat::for_algorithm(algorithm)),
        (None, None) => Ok(ReceiptFormat::for_algorithm(signed_with)),
    }
}

/// Prints why the input or the usage is wrong and exits 2.
fn usage(message: String) -> CliResult {
    eprintln!("{message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_notification_forms_are_signed() {
        let check = |body: &str| {
            let form = FormBody::parse(body.as_bytes(), &FormLimits::default());
            form.map_err(|err| err.to_string())
                .and_then(|form| check_signable(body.as_bytes(), &form))
        };
        assert_eq!(check("REFNO=1&IPN_DATE=20261102100000"), Ok(()));
        assert_eq!(check("REFNO=&&IPN_DATE=20261102100000&"), Ok(()));
        let refused = check("hello").unwrap_err();
        assert!(refused.contains("field #1 has no `=`"), "{refused}");
        assert!(!refused.contains("hello"), "{refused}");
        let refused = check("REFNO=1&4111111111111111&IPN_DATE=1").unwrap_err();
        assert!(refused.contains("field #2"), "{refused}");
        assert!(!refused.contains("4111"), "{refused}");
        assert!(check("REFNO=1").unwrap_err().contains("IPN_DATE"));
        // A licence change notification is a notification too.
        assert_eq!(check("LICENSE_CODE=3C343D0FAF&EXPIRATION_DATE="), Ok(()));
    }

    #[test]
    fn the_receipt_follows_the_signature_unless_told_otherwise() {
        use Algorithm::{Md5, Sha3_256, Sha256};
        let sig = |a| Ok(ReceiptFormat::Sig(a));
        let cases = [
            (None, None, Sha256, sig(Sha256)),
            (None, None, Md5, Ok(ReceiptFormat::Epayment)),
            (Some(Sha3_256), None, Md5, sig(Sha3_256)),
            (None, Some(ReceiptKind::Sig), Sha3_256, sig(Sha3_256)),
            (
                None,
                Some(ReceiptKind::Epayment),
                Sha3_256,
                Ok(ReceiptFormat::Epayment),
            ),
            (
                Some(Md5),
                Some(ReceiptKind::Epayment),
                Sha256,
                Ok(ReceiptFormat::Epayment),
            ),
        ];
        for (chosen, kind, signed_with, expected) in cases {
            assert_eq!(
                receipt_format(chosen, kind, signed_with),
                expected,
                "{chosen:?} {kind:?} {signed_with:?}"
            );
        }
        for (chosen, kind, signed_with) in [
            (Some(Md5), Some(ReceiptKind::Sig), Sha256),
            (Some(Sha256), Some(ReceiptKind::Epayment), Sha256),
            (None, Some(ReceiptKind::Sig), Md5),
        ] {
            assert!(receipt_format(chosen, kind, signed_with).is_err());
        }
    }
}
