//! Logging: `tracing` events to standard error, as JSON for production log
//! pipelines or as readable text for people.
//!
//! Nothing logged may hold personal data or key material: log references
//! (REFNO, REFNOEXT, body digest), outcomes and field *names*, never values.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines look.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines; coloured only when standard error is a
    /// terminal, so a log file holds no escape codes.
    #[default]
    #[serde(alias = "text")]
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            other => Err(format!("LOG_FORMAT must be json or pretty, not `{other}`")),
        }
    }
}

/// The filter when `RUST_LOG` is not set: our own events from `info` up.
/// lapin's own lines are off: every broker error reaches this crate as a
/// result and is reported once per change of the broker's state, while
/// lapin would log each reconnect attempt (`RUST_LOG=info,lapin=warn` shows
/// them when debugging).
pub const DEFAULT_FILTER: &str = "info,lapin=off";

/// Installs the global subscriber. `RUST_LOG` filters (default
/// [`DEFAULT_FILTER`]). Calling it twice is harmless (the second call does
/// nothing).
pub fn init(format: LogFormat) {
    init_with_default(format, DEFAULT_FILTER);
}

/// Like [`init`], with another filter when `RUST_LOG` is not set (the demo
/// keeps its terminal for the story it tells: warnings only).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => {
            use std::io::IsTerminal;
            builder
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
    };
}

/// An error's text followed by its causes', each once (in the store
/// crate, which reports its own errors with it).
pub use ipn_store::causes::with_causes;
