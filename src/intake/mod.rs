//! The processor-facing endpoint: `POST /ipn`.
//!
//! It answers with a read receipt only once the notification is durably
//! queued (published persistent, confirmed by the broker); the processor
//! keeps retrying until it gets a valid receipt, so every "no" here is safe
//! and every "yes" must be true. In order:
//!
//! | check | failure |
//! | --- | --- |
//! | caller in the allow-list (if any) | 403, no receipt |
//! | `Content-Type: application/x-www-form-urlencoded` | 415 |
//! | body within the size limit | 413 |
//! | body parses as a form with `IPN_DATE` | 400 |
//! | signature valid (when verifying at the edge, the default) | 403 |
//! | broker confirms the publish within the deadline | 503 |
//! | | 200 with the receipt |
//!
//! The worker verifies again: the intake's check only keeps forged floods
//! out of the queue. This listener is meant for the internet; the
//! operations endpoint (metrics, health) lives on another one.

pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;

use crate::ipn::{
    Algorithm, FormBody, FormLimits, KeyRing, ReceiptDate, ReceiptFormat, SignaturePolicy,
    read_receipt, verify,
};
use crate::metrics::Metrics;
use crate::queue::{MessageMeta, Publisher};
pub use source::{SourcePolicy, parse_allow_list};

/// Which receipt the intake answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiptChoice {
    /// The format of the algorithm that signed the notification (SHA3-256
    /// -> `<sig algo="sha3-256">`, MD5 -> `<EPAYMENT>`): what an endpoint
    /// configured for that algorithm expects.
    #[default]
    Auto,
    /// Always this format.
    Fixed(ReceiptFormat),
}

impl ReceiptChoice {
    /// Parses `auto`, `sig-sha3`, `sig-sha256` or `epayment`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "sig-sha3" | "sig-sha3-256" => {
                Some(Self::Fixed(ReceiptFormat::Sig(Algorithm::Sha3_256)))
            }
            "sig-sha256" => Some(Self::Fixed(ReceiptFormat::Sig(Algorithm::Sha256))),
            "epayment" => Some(Self::Fixed(ReceiptFormat::Epayment)),
            _ => None,
        }
    }

    /// The name [`ReceiptChoice::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fixed(ReceiptFormat::Sig(Algorithm::Sha3_256)) => "sig-sha3",
            Self::Fixed(ReceiptFormat::Sig(Algorithm::Sha256)) => "sig-sha256",
            // An MD5 `<sig>` does not exist: MD5 answers `<EPAYMENT>`.
            Self::Fixed(ReceiptFormat::Epayment | ReceiptFormat::Sig(Algorithm::Md5)) => "epayment",
        }
    }
}

impl serde::Serialize for ReceiptChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ReceiptChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}`: use auto, sig-sha3, sig-sha256 or epayment",
                crate::ipn::form::printable_name(&text)
            ))
        })
    }
}

/// How the intake behaves.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Path of the endpoint (default `/ipn`).
    pub path: String,
    /// Verify signatures before queueing (default on).
    pub verify_at_edge: bool,
    pub receipt: ReceiptChoice,
    pub source: SourcePolicy,
    pub limits: FormLimits,
    /// How long to wait for the broker's confirm before answering 503.
    pub confirm_timeout: Duration,
}

/// What a request handler needs.
pub struct Intake {
    pub settings: IntakeSettings,
    pub keys: KeyRing,
    pub signatures: SignaturePolicy,
    pub publisher: Arc<Publisher>,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The intake's routes: `POST` answers notifications; `GET` answers 200
/// because the processor probes a URL with a GET when it is saved (docs/protocol.md §1).
pub fn router(intake: Arc<Intake>) -> Router {
    let path = intake.settings.path.clone();
    let limit = intake.settings.limits.max_body_bytes;
    Router::new()
        .route(&path, post(receive).get(probe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(intake)
}

async fn probe() -> &'static str {
    "ipn-reconciler intake: POST notifications here\n"
}

/// A refusal: status and a short reason (never a field value).
fn refuse(metrics: &Metrics, status: StatusCode, result: &'static str, reason: String) -> Response {
    metrics.intake_request(result);
    tracing::info!(status = status.as_u16(), result, %reason, "notification refused at the intake");
    (status, format!("{reason}\n")).into_response()
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let metrics = &intake.metrics;
    let settings = &intake.settings;
    let client = settings.source.client_addr(peer, &headers);
    if !settings.source.allows(client) {
        return refuse(
            metrics,
            StatusCode::FORBIDDEN,
            "source_refused",
            format!("source {client} is not allowed"),
        );
    }
    let form_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !form_content {
        return refuse(
            metrics,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/x-www-form-urlencoded".to_owned(),
        );
    }
    let form = match FormBody::parse(&body, &settings.limits) {
        Ok(form) => form,
        Err(err) => {
            return refuse(
                metrics,
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed: {err}"),
            );
        }
    };
    // The receipt is signed with the key that verified the notification:
    // during a rotation the processor may still sign with the older key,
    // and a receipt made with another key would not verify on its side,
    // so it would keep retrying for two days (docs/protocol.md §4, §5).
    let (algorithm, receipt_key) = if settings.verify_at_edge {
        match verify(&form, &intake.keys, &intake.signatures) {
            Ok(verified) => {
                metrics.signature("intake", verified.algorithm.as_str(), "valid");
                // `verify` names a key of this ring; the current key is
                // only a fallback that cannot happen.
                let key = intake
                    .keys
                    .get(&verified.key_id)
                    .unwrap_or_else(|| intake.keys.current());
                (verified.algorithm, key)
            }
            Err(err) => {
                let algorithm = err.algorithm().map_or("none", |a| a.as_str());
                metrics.signature("intake", algorithm, err.reason());
                return refuse(
                    metrics,
                    StatusCode::FORBIDDEN,
                    "invalid_signature",
                    format!("invalid: {err}"),
                );
            }
        }
    } else {
        // Not verified here: answer in the strongest algorithm the body
        // claims, with the current key.
        let algorithm = Algorithm::STRONGEST_FIRST
            .into_iter()
            .find(|a| form.get(a.field_name()).is_some())
            .unwrap_or(Algorithm::Sha3_256);
        (algorithm, intake.keys.current())
    };
    let format = match settings.receipt {
        ReceiptChoice::Auto => ReceiptFormat::for_algorithm(algorithm),
        ReceiptChoice::Fixed(format) => format,
    };
    // Built before publishing: a body we cannot answer must not be queued
    // under a non-200 answer (the processor would send it again).
    let receipt = match read_receipt(&form, &receipt_key.secret, format, ReceiptDate::now()) {
        Ok(receipt) => receipt,
        Err(err) => {
            return refuse(
                metrics,
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed: {err}"),
            );
        }
    };
    let meta = MessageMeta::received(Utc::now(), Some(client.to_string()));
    let published = tokio::time::timeout(
        settings.confirm_timeout,
        intake.publisher.publish_notification(&body, &meta),
    )
    .await;
    match published {
        Ok(Ok(())) => {
            metrics.intake_request("queued");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                receipt,
            )
                .into_response()
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot queue a notification: answering 503");
            refuse(
                metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                "temporarily unavailable".to_owned(),
            )
        }
        Err(_) => {
            tracing::warn!(timeout = ?settings.confirm_timeout, "broker did not confirm in time: answering 503");
            refuse(
                metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_timeout",
                "temporarily unavailable".to_owned(),
            )
        }
    }
}

/// Serves the intake on `listener` until `shutdown` completes; in-flight
/// requests are finished (axum's graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    intake: Arc<Intake>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(intake).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
