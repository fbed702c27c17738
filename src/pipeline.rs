//! One notification's whole way: parse -> verify -> tokenize -> apply.
//!
//! `process` (files from disk), the worker (messages from RabbitMQ) and the
//! tests all call [`Pipeline::handle`], so a notification is judged the same
//! way whichever door it came through. The only error is an operational one
//! (the database); every property of the notification itself, good or bad,
//! is an [`Outcome`] in the report.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::{
    BodyDigest, OrderState, Outcome, PaymentEvent, PseudonymKey, ReconcilePolicy, ReviewKind,
    TokenizeError, tokenize,
};
use crate::ipn::{FormLimits, KeyRing, SignaturePolicy, Verified, VerifyError, parse_and_verify};
use crate::store::{RejectedNotification, Store, StoreError};

/// Everything needed to judge a notification.
#[derive(Clone)]
pub struct PipelineConfig {
    pub keys: KeyRing,
    pub signatures: SignaturePolicy,
    pub limits: FormLimits,
    pub pseudonym_key: Option<PseudonymKey>,
    pub reconcile: ReconcilePolicy,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("keys", &self.keys)
            .field("signatures", &self.signatures)
            .field("limits", &self.limits)
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<redacted>"),
            )
            .field("reconcile", &self.reconcile)
            .finish()
    }
}

/// What happened to one notification. Holds references, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// SHA-256 of the raw body (hex).
    pub digest: String,
    /// Short machine reason for refusals (`mismatch`, `missing_field:REFNOEXT`).
    pub reason: Option<String>,
    pub verified: Option<Verified>,
    pub processor_ref: Option<String>,
    pub order_ref: Option<String>,
    pub order_state: Option<OrderState>,
    pub review_items: Vec<ReviewKind>,
    /// Number of fields in which a card number was found and dropped.
    pub pan_fields: usize,
    /// The signed IPN_DATE, for the receipt-skew metric.
    pub ipn_date: Option<NaiveDateTime>,
    /// Whether the cause may go away (retry later): `order_not_found`.
    pub retry_later: bool,
}

impl Report {
    fn rejected(digest: String, outcome: Outcome, reason: String) -> Self {
        Self {
            outcome,
            digest,
            reason: Some(reason),
            verified: None,
            processor_ref: None,
            order_ref: None,
            order_state: None,
            review_items: Vec::new(),
            pan_fields: 0,
            ipn_date: None,
            retry_later: false,
        }
    }
}

/// Hex SHA-256 of a raw body: the notification's identity (the same
/// value as [`BodyDigest::of`], as a string for message ids and headers).
pub fn body_digest(body: &[u8]) -> String {
    BodyDigest::of(body).to_string()
}

/// The configured pipeline over a store.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PipelineConfig,
    store: Store,
}

impl Pipeline {
    pub fn new(config: PipelineConfig, store: Store) -> Self {
        Self { config, store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Judges one raw body and records the result.
    ///
    /// `Err` only for operational failures (after the store's own bounded
    /// retries); the caller decides whether to retry later.
    pub async fn handle(
        &self,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        let digest = body_digest(body);
        let (form, verified) = match parse_and_verify(
            body,
            &self.config.limits,
            &self.config.keys,
            &self.config.signatures,
        ) {
            Ok(ok) => ok,
            Err(err) => {
                let (outcome, reason) = match &err {
                    VerifyError::Malformed(form) => (Outcome::Malformed, form_reason(form)),
                    other => (Outcome::InvalidSignature, other.reason().to_owned()),
                };
                return self
                    .reject(digest, outcome, reason, Vec::new(), received_at)
                    .await;
            }
        };
        let event = match tokenize(body, &form, &verified, self.config.pseudonym_key.as_ref()) {
            Ok(event) => event,
            Err(err) => {
                let pan_fields = match &err {
                    TokenizeError::PanInAllowListedField { field } => vec![field.to_string()],
                    _ => Vec::new(),
                };
                let mut report = self
                    .reject(
                        digest,
                        Outcome::Malformed,
                        err.reason().to_owned(),
                        pan_fields,
                        received_at,
                    )
                    .await?;
                report.verified = Some(verified);
                return Ok(report);
            }
        };
        let applied = self
            .store
            .apply(&event, received_at, &self.config.reconcile)
            .await?;
        Ok(report_for(&event, verified, applied))
    }

    async fn reject(
        &self,
        digest: String,
        outcome: Outcome,
        reason: String,
        pan_fields: Vec<String>,
        received_at: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        let pan_count = pan_fields.len();
        self.store
            .record_rejected(&RejectedNotification {
                body_sha256: digest.clone(),
                outcome,
                reason: reason.clone(),
                received_at,
                pan_fields,
            })
            .await?;
        let mut report = Report::rejected(digest, outcome, reason);
        report.pan_fields = pan_count;
        if pan_count > 0 {
            report.review_items.push(ReviewKind::PanDetected);
        }
        Ok(report)
    }
}

fn report_for(
    event: &PaymentEvent,
    verified: Verified,
    applied: crate::store::ApplyReport,
) -> Report {
    Report {
        outcome: applied.outcome,
        digest: event.digest.as_str().to_owned(),
        reason: None,
        verified: Some(verified),
        processor_ref: Some(event.processor_ref.clone()),
        order_ref: Some(event.order_ref.clone()),
        order_state: applied.order_state,
        review_items: applied.review_items,
        pan_fields: event.pan_fields.len(),
        ipn_date: event.ipn_date,
        retry_later: applied.outcome == Outcome::OrderNotFound,
    }
}

/// A short, value-free label for a malformed body.
fn form_reason(err: &crate::ipn::FormError) -> String {
    use crate::ipn::FormError;
    match err {
        FormError::Empty => "empty_body".into(),
        FormError::TooLarge { .. } => "too_large".into(),
        FormError::TooManyFields { .. } => "too_many_fields".into(),
        FormError::EmptyName { .. } => "empty_field_name".into(),
        FormError::NameNotUtf8 { .. } => "name_not_utf8".into(),
        FormError::ValueNotUtf8 { name, .. } => format!("value_not_utf8:{name}"),
        FormError::RepeatedScalar { name } => format!("repeated_field:{name}"),
    }
}
