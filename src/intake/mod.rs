//! The processor-facing endpoint: `POST /ipn` for payment notifications
//! (IPN), `POST /lcn` for licence change notifications (LCN, `lcn-path`;
//! docs/protocol.md §12). Both are checked, verified and queued the same
//! way, through the same queue; each is answered with the read receipt of
//! its kind, and the message says which kind it is (`x-notice-kind`).
//!
//! It answers with a read receipt only once the notification is durably
//! queued (published persistent, confirmed by the broker); the processor
//! keeps retrying until it gets a valid receipt, so every "no" here is safe
//! and every "yes" must be true. In order:
//!
//! | check | failure (`ipn_intake_requests_total{result}`) |
//! | --- | --- |
//! | path is the configured one, with or without a trailing `/` | 404 naming the path (`not_found`) |
//! | caller in the allow-list (if any) | 403, no receipt (`source_refused`) |
//! | `Content-Type: application/x-www-form-urlencoded` | 415 (`unsupported_media_type`) |
//! | `Content-Length`, then the body read, within the size limit | 413 (`too_large`) |
//! | body received within `intake-body-timeout` | 408 (`body_timeout`) |
//! | body parses as a form; a notification form: every field `NAME=VALUE`, an `IPN_DATE` (an LCN: a `LICENSE_CODE`, and only at `lcn-path`) | 400 (`malformed`) |
//! | signature valid (when verifying at the edge, the default) | 403 (`invalid_signature`) |
//! | verified body has `IPN_PID[]`, `IPN_PNAME[]` (an LCN: `EXPIRATION_DATE`; the receipt covers them) | 400 (`missing_field`) |
//! | verified body has every `expected-fields` entry | 400 (`missing_expected_field`) |
//! | verified body has the fields the worker requires, well formed, laid out as the processor lays them out | 400 (`missing_field`, `invalid_field`, `malformed`) |
//! | body sealed, broker confirms the publish within the deadline | 503 (`seal_failed`, `broker_unavailable`, `broker_timeout`) |
//! | | 200 with the receipt (`queued`) |
//!
//! The first three are decided from the header alone: the body of a caller
//! that is refused is never read (nor a `100 Continue` sent), and the
//! connection is closed after the answer. Every refusal is counted and
//! logged (a 404 at debug level only), with a one-line reason that names
//! a field at most, never a value; the answer's body is that reason.
//! Connections have their own limits and timeouts ([`server`]).
//!
//! A verified body is refused (400, no receipt) when the worker would park
//! it as malformed, for good: the intake runs the worker's own judgement
//! ([`judge_verified`]) rather than rules of its own. The processor then
//! retries and shows the error in its control panel, where the merchant
//! can fix the IPN settings; a notification acknowledged and then parked
//! would only be seen in our parking queue. A body with a card number is
//! the exception: the worker records it and keeps no copy, and a refusal
//! would have the processor send the number again for two days, so it is
//! answered and queued as any other ([`parked_as_malformed`]).
//!
//! The worker verifies and judges again: the intake's checks only keep
//! forged floods and hopeless bodies out of the queue. With
//! `edge-verify = false` nothing is verified here, so none of the checks
//! of a verified body apply (the form check does). This listener is meant
//! for the internet; the operations endpoint (metrics, health) lives on
//! another one.

pub mod result;
pub mod server;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::domain::{Currencies, PseudonymKey, TokenizeError};
use crate::ipn::form::name_must_be_masked;
use crate::ipn::{
    Algorithm, FormBody, FormLimits, KeyRing, NoticeKind, ReceiptDate, ReceiptFormat,
    SignaturePolicy, check_licence_form, check_notification_form, verify,
};
use crate::metrics::{Metrics, SignatureStage};
use crate::pipeline::{Unusable, judge_verified, parked_as_malformed};
use crate::queue::{MessageMeta, Publisher, Sealer};
pub use result::IntakeResult;
pub use server::ConnectionLimits;
pub use source::{SourcePolicy, parse_allow_list};

/// How long after a failed attempt to reach the broker the intake answers
/// 503 at once instead of trying again (the publisher's watcher retries
/// every couple of seconds meanwhile).
const BROKER_AWAY_WINDOW: Duration = Duration::from_secs(3);

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
    /// Path of the licence change notifications' endpoint (default `/lcn`).
    pub lcn_path: String,
    /// Verify signatures before queueing (default on).
    pub verify_at_edge: bool,
    pub receipt: ReceiptChoice,
    pub source: SourcePolicy,
    pub limits: FormLimits,
    /// How long to wait for the broker's confirm before answering 503.
    pub confirm_timeout: Duration,
    /// Timeouts and the connection cap of the listener; the body timeout
    /// is applied by the handler.
    pub connections: ConnectionLimits,
}

/// What a request handler needs.
pub struct Intake {
    pub settings: IntakeSettings,
    /// Seals every body before it is queued (`seal-key-file`).
    pub sealer: Sealer,
    pub keys: KeyRing,
    pub signatures: SignaturePolicy,
    /// The worker's `expected-fields`, currency table and pseudonym key
    /// ([`PipelineConfig`](crate::pipeline::PipelineConfig)): a body
    /// verified here is judged as the worker will judge it
    /// ([`judge_verified`]), to refuse at the door what it would park.
    pub expected_fields: Vec<String>,
    pub currencies: Currencies,
    pub pseudonym_key: Option<PseudonymKey>,
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

/// The intake's routes: `POST` answers notifications, at `path` payment
/// notifications and at `lcn_path` licence change notifications; `GET`
/// answers 200 at both because the processor probes a URL with a GET when
/// it is saved (docs/protocol.md §1, §12). Each path answers with and
/// without a trailing slash (`/ipn` and `/ipn/`): a merchant types the URL
/// into the processor's control panel, and a 404 there only says
/// "failed". Any other path is a 404 that names the path and the right
/// one.
///
/// The handler reads the body itself, after the checks that need only the
/// header, within the size limit and the body timeout.
pub fn router(intake: Arc<Intake>) -> Router {
    let path = intake.settings.path.clone();
    let lcn_path = intake.settings.lcn_path.clone();
    let mut router = Router::new()
        .route(&path, post(receive).get(probe))
        .route(&lcn_path, post(receive_licence).get(probe_licence));
    if let Some(other) = other_spelling(&path) {
        router = router.route(&other, post(receive).get(probe));
    }
    if let Some(other) = other_spelling(&lcn_path) {
        router = router.route(&other, post(receive_licence).get(probe_licence));
    }
    router.fallback(not_found).with_state(intake)
}

/// The configured path with a trailing slash added or removed; none for
/// `/`.
fn other_spelling(path: &str) -> Option<String> {
    match path.strip_suffix('/') {
        Some("") => None,
        Some(without) => Some(without.to_owned()),
        None => Some(format!("{path}/")),
    }
}

async fn probe() -> &'static str {
    "ipn-reconciler intake: POST notifications here\n"
}

async fn probe_licence() -> &'static str {
    "ipn-reconciler intake: POST licence change notifications here\n"
}

/// Any path but the intake's: 404, saying which path was asked for and
/// where notifications go. Logged at debug only: scanners ask for paths
/// all day long. The body, if any, is not read.
async fn not_found(State(intake): State<Arc<Intake>>, uri: Uri) -> Response {
    let metrics = &intake.metrics;
    metrics.intake_request(IntakeResult::NotFound);
    let reason = format!(
        "no such path {}: notifications go to POST {}, licence change notifications to POST {}",
        printable_path(uri.path()),
        intake.settings.path,
        intake.settings.lcn_path
    );
    tracing::debug!(%reason, "intake request for an unknown path");
    let mut response = (StatusCode::NOT_FOUND, format!("{reason}\n")).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Longest path shown in a 404.
const MAX_SHOWN_PATH_CHARS: usize = 64;

/// A request path as it may be echoed and logged: paths come from anyone,
/// so one with 13 or more digits (a card number pasted into a URL) is not
/// shown at all, any character but `[A-Za-z0-9/._~%-]` becomes `?`, and
/// the path is cut to 64 characters.
fn printable_path(path: &str) -> String {
    if name_must_be_masked(path) {
        return "<path with 13+ digits>".to_owned();
    }
    let mut shown: String = path
        .chars()
        .take(MAX_SHOWN_PATH_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '~' | '%' | '-') {
                c
            } else {
                '?'
            }
        })
        .collect();
    if path.chars().count() > MAX_SHOWN_PATH_CHARS {
        shown.push_str("...");
    }
    shown
}

/// A refusal: status and a short reason (never a field value).
fn refuse(metrics: &Metrics, status: StatusCode, result: IntakeResult, reason: String) -> Response {
    metrics.intake_request(result);
    tracing::info!(status = status.as_u16(), result = result.as_str(), %reason, "notification refused at the intake");
    (status, format!("{reason}\n")).into_response()
}

/// A refusal before the body was read (or while it was being read): the
/// connection is closed after the answer, since the rest of the body
/// would have to be read first to use it again.
fn refuse_and_close(
    metrics: &Metrics,
    status: StatusCode,
    result: IntakeResult,
    reason: String,
) -> Response {
    let mut response = refuse(metrics, status, result, reason);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads the whole body, refusing one over the size limit (from its
/// `Content-Length` before reading anything, or as it arrives) and one
/// that does not arrive within the body timeout.
async fn read_body(intake: &Intake, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let metrics = &intake.metrics;
    let limit = intake.settings.limits.max_body_bytes;
    let too_large = || {
        refuse_and_close(
            metrics,
            StatusCode::PAYLOAD_TOO_LARGE,
            IntakeResult::TooLarge,
            format!("body is over the limit of {limit} bytes"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let timeout = intake.settings.connections.body_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(err)) => {
            // The client went away or sent a broken chunked encoding.
            tracing::debug!(error = %err, "cannot read a notification body");
            Err(refuse_and_close(
                metrics,
                StatusCode::BAD_REQUEST,
                IntakeResult::IncompleteBody,
                "the body could not be read to its end".to_owned(),
            ))
        }
        Err(_) => Err(refuse_and_close(
            metrics,
            StatusCode::REQUEST_TIMEOUT,
            IntakeResult::BodyTimeout,
            format!(
                "body not received within {}",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

/// The answer to a verified body the intake must not acknowledge, if it
/// is one: 400 without a receipt, so that the processor retries (for up
/// to two days) and shows the error in its control panel, where the
/// merchant can fix the IPN settings and resend.
///
/// - It lacks a field the read receipt of its kind covers
///   ([`NoticeKind::missing_receipt_field`]): a receipt over an empty value
///   would not match the processor's, so it would retry anyway, with no
///   error to show.
/// - The worker would park it as malformed, for good: the worker's own
///   judgement ([`judge_verified`]: expected fields, then tokenization),
///   unless the body carries a card number ([`parked_as_malformed`]): the
///   worker records such a body and keeps no copy, and refusing it would
///   have the number sent again and again.
///
/// Answers name the field, never a value.
fn refuse_at_the_door(
    intake: &Intake,
    kind: NoticeKind,
    body: &[u8],
    form: &FormBody,
    verified: &crate::ipn::Verified,
) -> Option<Response> {
    let metrics = &intake.metrics;
    if let Some(field) = kind.missing_receipt_field(form) {
        return Some(refuse(
            metrics,
            StatusCode::BAD_REQUEST,
            IntakeResult::MissingField,
            format!("missing field {field} (the read receipt covers it)"),
        ));
    }
    let unusable = judge_verified(
        body,
        form,
        verified,
        &intake.expected_fields,
        &intake.currencies,
        intake.pseudonym_key.as_ref(),
    )
    .err()?;
    if !parked_as_malformed(&unusable, body) {
        return None;
    }
    let (result, reason) = match &unusable {
        Unusable::MissingExpectedField(_) => {
            (IntakeResult::MissingExpectedField, unusable.to_string())
        }
        Unusable::Tokenize(TokenizeError::MissingField(field)) => {
            (IntakeResult::MissingField, format!("missing field {field}"))
        }
        Unusable::Tokenize(TokenizeError::InvalidField { field, reason }) => (
            IntakeResult::InvalidField,
            format!("invalid field {field}: {reason}"),
        ),
        // Laid out as the processor never lays out its notices: a name
        // renamed, repeated or moved (`domain::layout`).
        Unusable::Tokenize(TokenizeError::Layout(err)) => {
            (IntakeResult::Malformed, format!("malformed: {err}"))
        }
        // Never parked (`parked_as_malformed` above): answered and queued.
        Unusable::Tokenize(TokenizeError::PanInAllowListedField { .. }) => return None,
    };
    Some(refuse(metrics, StatusCode::BAD_REQUEST, result, reason))
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    incoming: Body,
) -> Response {
    receive_notice(&intake, NoticeKind::Ipn, peer, &headers, incoming).await
}

async fn receive_licence(
    State(intake): State<Arc<Intake>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    incoming: Body,
) -> Response {
    receive_notice(&intake, NoticeKind::Lcn, peer, &headers, incoming).await
}

/// A notice of `kind` (the kind its path receives): checked, verified,
/// queued, answered with the receipt of its kind.
async fn receive_notice(
    intake: &Intake,
    kind: NoticeKind,
    peer: SocketAddr,
    headers: &HeaderMap,
    incoming: Body,
) -> Response {
    let metrics = &intake.metrics;
    let settings = &intake.settings;
    let client = settings.source.client_addr(peer, headers);
    if !settings.source.allows(client) {
        return refuse_and_close(
            metrics,
            StatusCode::FORBIDDEN,
            IntakeResult::SourceRefused,
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
        return refuse_and_close(
            metrics,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IntakeResult::UnsupportedMediaType,
            "expected Content-Type: application/x-www-form-urlencoded".to_owned(),
        );
    }
    let body = match read_body(intake, headers, incoming).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let form = match FormBody::parse(&body, &settings.limits) {
        Ok(form) => form,
        Err(err) => {
            return refuse(
                metrics,
                StatusCode::BAD_REQUEST,
                IntakeResult::Malformed,
                format!("malformed: {err}"),
            );
        }
    };
    // Before the signature: `hello world` is a stray text, not a forged
    // notification, and saying so helps whoever sent it; a licence change
    // notification at the payments' path (or the other way round) is a
    // URL set in the wrong place of the processor's control panel.
    let checked = match kind {
        NoticeKind::Ipn if NoticeKind::of(&form) == NoticeKind::Lcn => {
            return refuse(
                metrics,
                StatusCode::BAD_REQUEST,
                IntakeResult::Malformed,
                format!(
                    "malformed: a licence change notification (LICENSE_CODE): they go to POST {}",
                    settings.lcn_path
                ),
            );
        }
        NoticeKind::Ipn => check_notification_form(&body, &form)
            .map_err(|err| format!("malformed: not a notification form: {err}")),
        NoticeKind::Lcn => check_licence_form(&body, &form).map_err(|err| {
            format!(
                "malformed: not a licence change notification form: {err}; payment notifications go to POST {}",
                settings.path
            )
        }),
    };
    if let Err(reason) = checked {
        return refuse(
            metrics,
            StatusCode::BAD_REQUEST,
            IntakeResult::Malformed,
            reason,
        );
    }
    // The receipt is signed with the key that verified the notification:
    // during a rotation the processor may still sign with the older key,
    // and a receipt made with another key would not verify on its side,
    // so it would keep retrying for two days (docs/protocol.md §4, §5).
    let (algorithm, receipt_key) = if settings.verify_at_edge {
        match verify(&form, &intake.keys, &intake.signatures) {
            Ok(verified) => {
                metrics.signature_valid(SignatureStage::Intake, verified.algorithm);
                // `verify` names a key of this ring; the current key is
                // only a fallback that cannot happen.
                let key = intake
                    .keys
                    .get(&verified.key_id)
                    .unwrap_or_else(|| intake.keys.current());
                if let Some(refused) = refuse_at_the_door(intake, kind, &body, &form, &verified) {
                    return refused;
                }
                (verified.algorithm, key)
            }
            Err(err) => {
                metrics.signature_refused(SignatureStage::Intake, err.algorithm(), err.reason());
                return refuse(
                    metrics,
                    StatusCode::FORBIDDEN,
                    IntakeResult::InvalidSignature,
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
    let receipt = match kind.read_receipt(&form, &receipt_key.secret, format, ReceiptDate::now()) {
        Ok(receipt) => receipt,
        Err(err) => {
            return refuse(
                metrics,
                StatusCode::BAD_REQUEST,
                IntakeResult::Malformed,
                format!("malformed: {err}"),
            );
        }
    };
    // No connection to the broker and the last attempt just failed: answer
    // at once rather than make the processor wait for a confirm that cannot
    // come (it retries; a watcher reconnects in the background).
    if intake.publisher.recently_failed(BROKER_AWAY_WINDOW) {
        return refuse(
            metrics,
            StatusCode::SERVICE_UNAVAILABLE,
            IntakeResult::BrokerUnavailable,
            "temporarily unavailable".to_owned(),
        );
    }
    // Sealed before it is queued: the broker never holds the body in clear
    // (queue/seal.rs). A seal that cannot be made (no randomness) is an
    // outage like a broker that does not confirm: 503, the processor
    // retries.
    let meta = MessageMeta::received(Utc::now(), Some(client.to_string())).notice(kind);
    let sealed = match intake.sealer.seal(&body, meta) {
        Ok(sealed) => sealed,
        Err(err) => {
            tracing::warn!(error = %err, "cannot seal a notification: answering 503");
            return refuse(
                metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                IntakeResult::SealFailed,
                "temporarily unavailable".to_owned(),
            );
        }
    };
    let published = tokio::time::timeout(
        settings.confirm_timeout,
        intake
            .publisher
            .publish_notification(&sealed.body, &sealed.meta),
    )
    .await;
    match published {
        Ok(Ok(())) => {
            metrics.intake_request(IntakeResult::Queued);
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
                IntakeResult::BrokerUnavailable,
                "temporarily unavailable".to_owned(),
            )
        }
        Err(_) => {
            tracing::warn!(timeout = ?settings.confirm_timeout, "broker did not confirm in time: answering 503");
            refuse(
                metrics,
                StatusCode::SERVICE_UNAVAILABLE,
                IntakeResult::BrokerTimeout,
                "temporarily unavailable".to_owned(),
            )
        }
    }
}

/// Serves the intake on `listener` until `shutdown` completes: stops
/// accepting at once, then finishes the requests in flight (see
/// [`server`] for the limits of each connection).
pub async fn serve(
    listener: tokio::net::TcpListener,
    intake: Arc<Intake>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = intake.settings.connections;
    let metrics = intake.metrics.clone();
    server::serve(listener, router(intake), limits, metrics, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_has_one_other_spelling_with_or_without_its_trailing_slash() {
        assert_eq!(other_spelling("/ipn").as_deref(), Some("/ipn/"));
        assert_eq!(other_spelling("/ipn/").as_deref(), Some("/ipn"));
        assert_eq!(other_spelling("/hooks/ipn").as_deref(), Some("/hooks/ipn/"));
        assert_eq!(other_spelling("/"), None);
    }

    #[test]
    fn paths_in_answers_are_printable_short_and_never_hold_a_card_number() {
        assert_eq!(printable_path("/nope"), "/nope");
        assert_eq!(printable_path("/a%20b/~c.d_e-f"), "/a%20b/~c.d_e-f");
        assert_eq!(printable_path("/<script>"), "/?script?");
        assert_eq!(
            printable_path("/ipn/4111111111111111"),
            "<path with 13+ digits>"
        );
        assert_eq!(
            printable_path("/4111-1111/1111-1111"),
            "<path with 13+ digits>"
        );
        let long = format!("/{}", "a".repeat(200));
        assert_eq!(printable_path(&long), format!("/{}...", "a".repeat(63)));
    }
}
