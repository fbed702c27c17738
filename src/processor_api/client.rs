//! The HTTP client of the processor's REST API.
//!
//! Every request goes through, in this order: the circuit breaker (an
//! outage fails at once, costing the caller nothing), the pacer (`api-rate`
//! requests a second at most), then the request with `api-timeout`; a 429,
//! a 5xx, a timeout or a refused connection is retried with jittered
//! exponential backoff a bounded number of times.
//!
//! Nothing of a response is kept but the [`ApiOrder`]; error bodies are
//! dropped unread, and errors name statuses and settings, never a secret.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable;
use chrono::Utc;

use super::auth::ApiCredentials;
use super::order::{ApiOrder, OrderParseError, parse_order};
use super::policy::{BreakerState, CircuitBreaker, Pacer, RetryPolicy};
use crate::ipn::API_AUTH_HEADER;

/// How the client talks to the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The REST 6.0 base, ending in `/` (`https://api.2checkout.com/rest/6.0/`).
    pub base_url: String,
    pub credentials: ApiCredentials,
    /// Requests per second at most (`api-rate`).
    pub rate: NonZeroU32,
    /// One request's limit (`api-timeout`).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Failed attempts in a row that open the breaker.
    pub breaker_threshold: NonZeroU32,
    /// How long an open breaker refuses calls.
    pub breaker_cool_down: Duration,
}

impl ApiConfig {
    /// The defaults of everything but the settings.
    pub fn new(
        base_url: impl Into<String>,
        credentials: ApiCredentials,
        rate: NonZeroU32,
        timeout: Duration,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            credentials,
            rate,
            timeout,
            retry: RetryPolicy::default(),
            breaker_threshold: const { NonZeroU32::new(5).expect("positive") },
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}

/// Why a look-up has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "the processor's API refused the credentials (401 Unauthorized): check `vendor-code` and \
         the secret key in `api-key-file` (and this machine's clock: the processor refuses a \
         request dated too far from its own)"
    )]
    Unauthorized,
    #[error("the processor's API knows no order {0}")]
    NotFound(String),
    #[error("the processor's API answered {status} (after {attempts} attempt(s))")]
    Status { status: u16, attempts: u32 },
    #[error("cannot reach the processor's API (after {attempts} attempt(s)): {reason}")]
    Transport { reason: String, attempts: u32 },
    #[error(
        "the processor's API failed repeatedly: calls fail at once for a cool-down (circuit open)"
    )]
    CircuitOpen,
    #[error("the processor's API answered something unreadable: {0}")]
    Response(#[from] OrderParseError),
    #[error("`{0}` is not an order reference")]
    BadReference(String),
    #[error("invalid `api-url`: {0}")]
    BadUrl(String),
}

impl ApiError {
    /// Worth asking again (and a sign of an outage, for the breaker).
    fn retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => RetryPolicy::retryable_status(*status),
            ApiError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// Counts since the client was made (tests, and later metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Requests sent.
    pub sent: u64,
    /// Retries among them.
    pub retries: u64,
    /// Requests that waited for the pacer.
    pub paced: u64,
    /// Calls refused at once by the open breaker.
    pub fast_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retries: AtomicU64,
    paced: AtomicU64,
    fast_failed: AtomicU64,
}

/// The client; cheap to share (`Arc`), one per process so the rate limit
/// and the breaker cover every caller.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    config: ApiConfig,
    breaker: Mutex<CircuitBreaker>,
    pacer: Mutex<Pacer>,
    counters: Counters,
}

impl ApiClient {
    pub fn new(mut config: ApiConfig) -> Result<Self, ApiError> {
        if config.base_url.starts_with("https://") {
            // reqwest is built without a TLS feature in this workspace (no
            // TLS stack for it in the lock file yet): say so plainly rather
            // than fail each request with "scheme is not http".
            return Err(ApiError::BadUrl(format!(
                "`{}`: this build's HTTP client has no TLS support yet (docs/processor-api.md)",
                config.base_url
            )));
        }
        if !config.base_url.starts_with("http://") {
            return Err(ApiError::BadUrl(format!(
                "`{}` is not an http(s) URL",
                config.base_url
            )));
        }
        if !config.base_url.ends_with('/') {
            config.base_url.push('/');
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|err| ApiError::BadUrl(format!("cannot build an HTTP client: {err}")))?;
        Ok(Self {
            http,
            breaker: Mutex::new(CircuitBreaker::new(
                config.breaker_threshold,
                config.breaker_cool_down,
            )),
            pacer: Mutex::new(Pacer::new(config.rate)),
            config,
            counters: Counters::default(),
        })
    }

    pub fn stats(&self) -> ApiStats {
        ApiStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            paced: self.counters.paced.load(Ordering::Relaxed),
            fast_failed: self.counters.fast_failed.load(Ordering::Relaxed),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state(Instant::now())
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // A panic while holding it cannot leave it inconsistent: take it.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `GET orders/{RefNo}/`.
    pub async fn order(&self, ref_no: &str) -> Result<ApiOrder, ApiError> {
        if ref_no.is_empty()
            || ref_no.len() > 64
            || !ref_no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiError::BadReference(ref_no.chars().take(64).collect()));
        }
        let url = format!("{}orders/{ref_no}/", self.config.base_url);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let body = (|| self.attempt(&url, &attempts))
            .retry(self.config.retry.backoff())
            .when(ApiError::retryable)
            .notify(|_, _| {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            })
            .await
            .map_err(|err| match err {
                ApiError::Status { status: 404, .. } => ApiError::NotFound(ref_no.to_owned()),
                other => other,
            })?;
        Ok(parse_order(&body)?)
    }

    /// One attempt: breaker, pacer, request.
    async fn attempt(
        &self,
        url: &str,
        attempts: &std::sync::atomic::AtomicU32,
    ) -> Result<Vec<u8>, ApiError> {
        if !self.lock_breaker().admit(Instant::now()) {
            self.counters.fast_failed.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::CircuitOpen);
        }
        let slot = {
            let mut pacer = self
                .pacer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pacer.reserve(Instant::now())
        };
        if slot > Instant::now() {
            self.counters.paced.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(slot.into()).await;
        }
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .http
            .get(url)
            .header(API_AUTH_HEADER, self.config.credentials.header(Utc::now()))
            .header("Accept", "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                self.lock_breaker().failure(Instant::now());
                return Err(ApiError::Transport {
                    reason: transport_reason(err),
                    attempts: attempt,
                });
            }
        };
        let status = response.status().as_u16();
        if RetryPolicy::retryable_status(status) {
            self.lock_breaker().failure(Instant::now());
        } else {
            // An answer, whatever it says: the API is up.
            self.lock_breaker().success();
        }
        match status {
            200 => response
                .bytes()
                .await
                .map(|bytes| bytes.to_vec())
                .map_err(|err| ApiError::Transport {
                    reason: transport_reason(err),
                    attempts: attempt,
                }),
            401 => Err(ApiError::Unauthorized),
            status => Err(ApiError::Status {
                status,
                attempts: attempt,
            }),
        }
    }
}

/// A transport error with its causes (`error sending request: connection
/// refused`), without the URL (the base is in the settings already).
fn transport_reason(err: reqwest::Error) -> String {
    let timed_out = err.is_timeout();
    let err = err.without_url();
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if timed_out {
        reason.push_str(" (`api-timeout`)");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::SecretKey;

    fn config(url: &str) -> ApiConfig {
        ApiConfig::new(
            url,
            ApiCredentials::new("V", SecretKey::new(b"s".to_vec())),
            NonZeroU32::MIN,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn only_a_plain_http_base_is_taken_for_now() {
        let err = ApiClient::new(config("https://api.2checkout.com/rest/6.0/"))
            .expect_err("no TLS in this build");
        assert!(err.to_string().contains("no TLS support"), "{err}");
        assert!(matches!(
            ApiClient::new(config("ftp://x/")),
            Err(ApiError::BadUrl(_))
        ));
        let client = ApiClient::new(config("http://127.0.0.1:1/rest/6.0")).expect("http");
        assert_eq!(client.config.base_url, "http://127.0.0.1:1/rest/6.0/");
        assert_eq!(client.breaker_state(), BreakerState::Closed);
        assert_eq!(client.stats(), ApiStats::default());
    }
}
