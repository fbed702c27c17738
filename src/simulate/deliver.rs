//! Delivering a simulation the way the processor does: POST each body to an
//! intake and check the read receipt, retrying (with backoff) until a valid
//! one comes back; or publishing straight to the work queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use reqwest::StatusCode;

use super::{Delivery, DeliveryKind, Simulation};
use crate::ipn::{
    Algorithm, FormBody, FormLimits, NoticeKind, ReceiptDate, ReceiptFormat, SecretKey,
};
use crate::queue::{MessageMeta, Publisher, QueueError, Sealer};

/// What the processor side saw while delivering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Deliveries answered with a valid receipt.
    pub receipts: u64,
    /// Deliveries refused (forged and unsigned copies, 403: expected;
    /// copies with an expected field renamed or two names swapped, when
    /// the intake checks them).
    pub refused: u64,
    /// Extra attempts after a missing or wrong receipt, a 5xx or a
    /// connection error.
    pub retries: u64,
}

/// Why a delivery run failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("delivery #{sequence} ({order_ref}): {reason}")]
    Delivery {
        sequence: usize,
        order_ref: String,
        reason: String,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot seal delivery #{sequence}: {reason}")]
    Seal { sequence: usize, reason: String },
}

/// What [`post_all`] saw, in total and per delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posted {
    pub stats: DeliveryStats,
    /// Per delivery, in delivery order: whether it was answered with a
    /// valid receipt (and so queued). A settled system has recorded
    /// exactly the distinct bodies of these.
    pub receipted: Vec<bool>,
}

impl Posted {
    /// The distinct bodies the intake acknowledged (and so queued).
    pub fn receipted_bodies<'a>(
        &self,
        simulation: &'a Simulation,
    ) -> std::collections::BTreeSet<&'a [u8]> {
        simulation
            .deliveries
            .iter()
            .zip(&self.receipted)
            .filter(|(_, receipted)| **receipted)
            .map(|(delivery, _)| delivery.body.as_slice())
            .collect()
    }
}

/// Why a response is not a valid receipt for the notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptMismatch {
    #[error("no read receipt in the response")]
    Missing,
    #[error("the receipt's DATE is not YmdHis")]
    BadDate,
    #[error("the receipt's HMAC is wrong")]
    WrongHmac,
    #[error("the notification itself cannot be answered: {0}")]
    Unanswerable(String),
}

/// Checks a response body as the processor does: a `<sig ...>` or
/// `<EPAYMENT>` receipt whose HMAC, made with `key` over the first product
/// id and name, IPN_DATE and the receipt's DATE (for a licence change
/// notification: LICENSE_CODE, EXPIRATION_DATE and DATE), is right.
pub fn check_receipt(body: &[u8], key: &SecretKey, response: &str) -> Result<(), ReceiptMismatch> {
    let form = FormBody::parse(body, &FormLimits::default())
        .map_err(|err| ReceiptMismatch::Unanswerable(err.to_string()))?;
    let (format, date, digest) = parse_receipt(response).ok_or(ReceiptMismatch::Missing)?;
    let date = ReceiptDate::parse(date).map_err(|_| ReceiptMismatch::BadDate)?;
    let expected = NoticeKind::of(&form)
        .read_receipt(&form, key, format, date)
        .map_err(|err| ReceiptMismatch::Unanswerable(err.to_string()))?;
    let expected_digest = parse_receipt(&expected).map(|(_, _, d)| d.to_owned());
    if expected_digest.as_deref() == Some(&digest.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(ReceiptMismatch::WrongHmac)
    }
}

/// Finds a receipt anywhere in a response: `(format, DATE, HMAC)`.
fn parse_receipt(text: &str) -> Option<(ReceiptFormat, &str, &str)> {
    if let Some(start) = text.find("<EPAYMENT>") {
        let rest = &text[start + "<EPAYMENT>".len()..];
        let inner = &rest[..rest.find("</EPAYMENT>")?];
        let (date, digest) = inner.split_once('|')?;
        return Some((ReceiptFormat::Epayment, date, digest));
    }
    let start = text.find("<sig algo=\"")?;
    let rest = &text[start + "<sig algo=\"".len()..];
    let (algo, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(" date=\"")?;
    let (date, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix('>')?;
    let digest = &rest[..rest.find("</sig>")?];
    // Exactly the protocol's spellings (docs/protocol.md §4): `sha3_256` (a known SDK slip) is no receipt.
    let algorithm = match algo {
        "sha256" => Algorithm::Sha256,
        "sha3-256" => Algorithm::Sha3_256,
        _ => return None,
    };
    Some((ReceiptFormat::Sig(algorithm), date, digest))
}

/// Where the simulated processor POSTs: payment notifications to the
/// intake's path, licence change notifications to its `lcn-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeUrls {
    pub ipn: String,
    pub lcn: String,
}

impl IntakeUrls {
    /// `ipn`, and `lcn` or else the same URL with its last path segment
    /// replaced by `lcn` (`http://host:8080/ipn` → `http://host:8080/lcn`,
    /// the default paths).
    pub fn new(ipn: &str, lcn: Option<&str>) -> Self {
        let lcn = lcn.map(str::to_owned).unwrap_or_else(|| {
            let trimmed = ipn.trim_end_matches('/');
            let host_start = trimmed.find("://").map_or(0, |at| at + 3);
            match trimmed[host_start..].rfind('/') {
                Some(at) => format!("{}/lcn", &trimmed[..host_start + at]),
                None => format!("{trimmed}/lcn"),
            }
        });
        Self {
            ipn: ipn.to_owned(),
            lcn,
        }
    }

    fn for_delivery(&self, delivery: &Delivery) -> &str {
        match delivery.notice {
            NoticeKind::Ipn => &self.ipn,
            NoticeKind::Lcn => &self.lcn,
        }
    }
}

/// How hard the simulated processor tries.
#[derive(Debug, Clone, Copy)]
pub struct PostPolicy {
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Attempts per delivery before giving up.
    pub max_attempts: usize,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub request_timeout: Duration,
}

impl Default for PostPolicy {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The outcome of one POST, as the processor judges it.
enum Answer {
    Receipt,
    Refused,
}

/// A failure worth another attempt (or, for a genuine notification, one
/// that makes the run fail once the attempts run out).
#[derive(Debug)]
struct Retry(String);

/// POSTs every delivery of `simulation` to `url`, in delivery order with up
/// to `policy.concurrency` in flight. Every delivery whose signature
/// verifies must end with a valid receipt; forged and unsigned copies must
/// be refused (403). A copy with an expected field renamed, or with two
/// names swapped, verifies, so an intake may acknowledge it (the worker
/// refuses it) or refuse it at the door: either is right. `on_done` is called after each delivery (progress
/// display).
pub async fn post_all(
    simulation: &Simulation,
    urls: &IntakeUrls,
    key: &SecretKey,
    policy: PostPolicy,
    on_done: impl Fn() + Sync,
) -> Result<Posted, DeliverError> {
    let client = reqwest::Client::builder()
        .timeout(policy.request_timeout)
        .build()
        .map_err(|err| DeliverError::Delivery {
            sequence: 0,
            order_ref: String::new(),
            reason: format!("cannot build an HTTP client: {err}"),
        })?;
    let retries = Arc::new(AtomicU64::new(0));
    let results: Vec<Result<Answer, DeliverError>> =
        futures::stream::iter(simulation.deliveries.iter())
            .map(|delivery| {
                let client = client.clone();
                let retries = retries.clone();
                let on_done = &on_done;
                async move {
                    let url = urls.for_delivery(delivery);
                    let answer = post_one(&client, url, key, delivery, policy, &retries).await;
                    on_done();
                    answer
                }
            })
            .buffered(policy.concurrency.max(1))
            .collect()
            .await;
    let mut posted = Posted {
        stats: DeliveryStats {
            retries: retries.load(Ordering::Relaxed),
            ..DeliveryStats::default()
        },
        receipted: Vec::with_capacity(results.len()),
    };
    for result in results {
        let answer = result?;
        match answer {
            Answer::Receipt => posted.stats.receipts += 1,
            Answer::Refused => posted.stats.refused += 1,
        }
        posted.receipted.push(matches!(answer, Answer::Receipt));
    }
    Ok(posted)
}

async fn post_one(
    client: &reqwest::Client,
    url: &str,
    key: &SecretKey,
    delivery: &Delivery,
    policy: PostPolicy,
    retries: &AtomicU64,
) -> Result<Answer, DeliverError> {
    let forged = delivery.kind.is_forged();
    let may_be_refused = matches!(delivery.kind, DeliveryKind::Renamed | DeliveryKind::Swapped);
    let attempt = || async {
        let response = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|err| Retry(format!("no answer: {err}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| Retry(format!("cannot read the answer: {err}")))?;
        if forged {
            return if status == StatusCode::FORBIDDEN {
                Ok(Answer::Refused)
            } else if status.is_server_error() {
                Err(Retry(format!("HTTP {status}")))
            } else {
                // A forged body must never be acknowledged: not retryable.
                Ok(Answer::Receipt)
            };
        }
        if may_be_refused && status.is_client_error() {
            return Ok(Answer::Refused);
        }
        if status != StatusCode::OK {
            return Err(Retry(format!("HTTP {status}")));
        }
        check_receipt(&delivery.body, key, &text)
            .map(|()| Answer::Receipt)
            .map_err(|err| Retry(err.to_string()))
    };
    let answer = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(policy.first_delay)
                .with_max_delay(policy.max_delay)
                .with_max_times(policy.max_attempts.saturating_sub(1))
                .with_jitter(),
        )
        .notify(|_, _| {
            retries.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .map_err(|Retry(reason)| DeliverError::Delivery {
            sequence: delivery.sequence,
            order_ref: delivery.order_ref.clone(),
            reason,
        })?;
    match answer {
        Answer::Receipt if forged => Err(DeliverError::Delivery {
            sequence: delivery.sequence,
            order_ref: delivery.order_ref.clone(),
            reason: "a forged notification was acknowledged".to_owned(),
        }),
        other => Ok(other),
    }
}

/// Publishes every delivery straight to the work exchange, with confirms,
/// in batches, sealed with `sealer`'s current key as the intake seals them
/// (the broker never holds a body in clear: docs/data-handling.md, "Sealing").
/// Returns how many were confirmed.
pub async fn publish_all(
    simulation: &Simulation,
    publisher: &Publisher,
    sealer: &Sealer,
    on_done: impl Fn(usize),
) -> Result<usize, DeliverError> {
    let mut confirmed = 0;
    for batch in simulation.deliveries.chunks(200) {
        let messages: Vec<(Vec<u8>, MessageMeta)> = batch
            .iter()
            .map(|d| {
                let meta = MessageMeta::received(chrono::Utc::now(), None).notice(d.notice);
                let sealed = sealer
                    .seal(&d.body, meta)
                    .map_err(|err| DeliverError::Seal {
                        sequence: d.sequence,
                        reason: err.to_string(),
                    })?;
                Ok((sealed.body, sealed.meta))
            })
            .collect::<Result<_, DeliverError>>()?;
        for (delivery, result) in batch
            .iter()
            .zip(publisher.publish_notifications(&messages).await?)
        {
            result.map_err(|err| DeliverError::Delivery {
                sequence: delivery.sequence,
                order_ref: delivery.order_ref.clone(),
                reason: format!("not confirmed: {err}"),
            })?;
            confirmed += 1;
        }
        on_done(batch.len());
    }
    Ok(confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::read_receipt;

    #[test]
    fn the_lcn_url_defaults_to_the_intakes_default_path() {
        let urls = IntakeUrls::new("http://127.0.0.1:8080/ipn", None);
        assert_eq!(urls.lcn, "http://127.0.0.1:8080/lcn");
        let urls = IntakeUrls::new("http://127.0.0.1:8080/hooks/ipn/", None);
        assert_eq!(urls.lcn, "http://127.0.0.1:8080/hooks/lcn");
        let urls = IntakeUrls::new("http://h/ipn", Some("http://h/x"));
        assert_eq!(urls.lcn, "http://h/x");
    }

    #[test]
    fn a_licence_notice_receipt_is_checked_over_its_own_fields() {
        let key = SecretKey::new("AABBCCDDEEFF");
        let body = b"LICENSE_CODE=3C343D0FAF&EXPIRATION_DATE=2005-03-03";
        let receipt = "<EPAYMENT>20081117145935|cb34fe2991668eb82364edf62f845a34</EPAYMENT>";
        assert_eq!(check_receipt(body, &key, receipt), Ok(()));
    }

    const BODY: &[u8] = b"IPN_PID%5B%5D=1&IPN_PNAME%5B%5D=Software+program&IPN_DATE=20050303123434";

    #[test]
    fn a_spec_receipt_is_accepted_in_both_formats() {
        let key = SecretKey::new("AABBCCDDEEFF");
        let epayment = "<EPAYMENT>20050303123434|7bf97ed39681027d0c45aa45e3ea98f0</EPAYMENT>";
        assert_eq!(check_receipt(BODY, &key, epayment), Ok(()));
        let form = FormBody::parse(BODY, &FormLimits::default()).unwrap();
        let date = ReceiptDate::parse("20261129010203").unwrap();
        let sig = read_receipt(&form, &key, ReceiptFormat::Sig(Algorithm::Sha3_256), date).unwrap();
        assert_eq!(check_receipt(BODY, &key, &format!("ok\n{sig}\n")), Ok(()));
    }

    #[test]
    fn wrong_or_missing_receipts_are_refused() {
        let key = SecretKey::new("AABBCCDDEEFF");
        let wrong = "<EPAYMENT>20050303123434|00000000000000000000000000000000</EPAYMENT>";
        assert_eq!(
            check_receipt(BODY, &key, wrong),
            Err(ReceiptMismatch::WrongHmac)
        );
        assert_eq!(
            check_receipt(BODY, &key, "OK"),
            Err(ReceiptMismatch::Missing)
        );
        let other_key = SecretKey::new("another key");
        let right_for_other =
            "<EPAYMENT>20050303123434|7bf97ed39681027d0c45aa45e3ea98f0</EPAYMENT>";
        assert_eq!(
            check_receipt(BODY, &other_key, right_for_other),
            Err(ReceiptMismatch::WrongHmac)
        );
        assert_eq!(
            check_receipt(
                BODY,
                &key,
                "<sig algo=\"sha3_256\" date=\"20050303123434\">ab</sig>"
            ),
            Err(ReceiptMismatch::Missing),
            "the Python SDK's underscore spelling is not a valid receipt"
        );
    }
}
