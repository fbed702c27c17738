//! `ipn-reconciler intake`: the processor-facing endpoint alone (`serve`
//! runs it too, next to the worker).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::serve::{AmqpArgs, duration, shutdown_signal};
use super::{EXIT_USAGE, KeyArgs, block_on};
use crate::intake::{Intake, IntakeSettings, ReceiptChoice, SourcePolicy, parse_allow_list};
use crate::ipn::{FormLimits, SignaturePolicy};
use crate::metrics::Metrics;
use crate::queue::Publisher;
use crate::telemetry::{self, LogFormat};

/// How the intake listens and answers (shared by `serve` and `intake`).
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Address of the processor-facing listener. Keep it apart from the
    /// operations endpoint, which must not face the internet.
    #[arg(long, env = "IPN_INTAKE_ADDR", default_value = "127.0.0.1:8080")]
    pub intake_addr: SocketAddr,
    /// Path that receives notifications.
    #[arg(long, env = "IPN_INTAKE_PATH", default_value = "/ipn")]
    pub intake_path: String,
    /// Verify signatures before queueing (forged floods stay out of the
    /// queue; the worker verifies again either way).
    #[arg(long, env = "IPN_EDGE_VERIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub edge_verify: bool,
    /// Receipt format: auto (the algorithm that signed the notification),
    /// sig-sha3, sig-sha256 or epayment (legacy MD5).
    #[arg(long, env = "IPN_RECEIPT_FORMAT", default_value = "auto", value_parser = receipt_choice)]
    pub receipt_format: ReceiptChoice,
    /// Header carrying the caller's address, set by a proxy you trust (for
    /// example x-forwarded-for). Without it, the TCP peer is the caller.
    #[arg(long, env = "IPN_TRUSTED_FORWARDED_HEADER", value_name = "HEADER")]
    pub trusted_forwarded_header: Option<String>,
    /// Only these networks may post (comma-separated CIDR or addresses, for
    /// example the processor's published ranges). Empty: anyone.
    #[arg(
        long,
        env = "IPN_ALLOW_NETWORKS",
        default_value = "",
        value_name = "CIDR,..."
    )]
    pub allow_networks: String,
    /// How long to wait for the broker's confirm before answering 503.
    #[arg(long, env = "IPN_CONFIRM_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub confirm_timeout: Duration,
}

fn receipt_choice(text: &str) -> Result<ReceiptChoice, String> {
    ReceiptChoice::parse(text)
        .ok_or_else(|| format!("`{text}`: use auto, sig-sha3, sig-sha256 or epayment"))
}

impl IntakeArgs {
    pub fn settings(&self, limits: FormLimits) -> anyhow::Result<IntakeSettings> {
        if !self.intake_path.starts_with('/') {
            anyhow::bail!("--intake-path must start with `/`");
        }
        let header = self
            .trusted_forwarded_header
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                axum::http::HeaderName::try_from(h.to_ascii_lowercase())
                    .map(|name| name.as_str().to_owned())
                    .map_err(|_| anyhow::anyhow!("`{h}` is not a valid header name"))
            })
            .transpose()?;
        Ok(IntakeSettings {
            path: self.intake_path.clone(),
            verify_at_edge: self.edge_verify,
            receipt: self.receipt_format,
            source: SourcePolicy {
                forwarded_header: header,
                allow: parse_allow_list(&self.allow_networks)?,
            },
            limits,
            confirm_timeout: self.confirm_timeout,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct IntakeCommandArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Accept legacy HMAC-MD5 `HASH` signatures.
    #[arg(long, env = "IPN_ALLOW_MD5")]
    pub allow_md5: bool,
    /// Largest accepted notification body, in bytes.
    #[arg(long, env = "IPN_MAX_BODY_BYTES", default_value_t = FormLimits::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub intake: IntakeArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_enum)]
    pub log_format: LogFormat,
}

/// Serves the intake until SIGTERM/SIGINT. The broker may be down at start:
/// the intake answers 503 (no receipt) until it is back.
pub fn run(args: IntakeCommandArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    let built = (|| {
        let limits = FormLimits {
            max_body_bytes: args.max_body_bytes,
            ..FormLimits::default()
        };
        Ok::<_, anyhow::Error>((
            args.keys.load()?,
            args.amqp.settings()?,
            args.intake.settings(limits)?,
        ))
    })();
    let (keys, amqp, settings) = match built {
        Ok(built) => built,
        Err(err) => {
            eprintln!(
                "error: invalid configuration: {}",
                super::render_error(&err)
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let addr = args.intake.intake_addr;
    block_on(async move {
        let shutdown = shutdown_signal()?;
        let publisher = Arc::new(Publisher::new(amqp, "intake"));
        let intake = Arc::new(Intake {
            settings,
            keys,
            signatures: SignaturePolicy {
                allow_md5: args.allow_md5,
            },
            publisher: publisher.clone(),
            metrics: Metrics::new(),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?;
        tracing::info!(%addr, path = %intake.settings.path, "intake listening");
        crate::intake::serve(listener, intake, shutdown).await?;
        publisher.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
