//! One notification's whole way: parse -> verify -> tokenize -> apply.
//!
//! `process` (files from disk), the worker (messages from RabbitMQ) and the
//! tests all call [`Pipeline::process`] (or [`Pipeline::handle`]), so a
//! notification is judged the same way whichever door it came through. The
//! only error is an operational one (the database); every property of the
//! notification itself, good or bad, is an [`Outcome`] in the report.
//!
//! Two kinds of notices come through (docs/protocol.md §12): payment
//! notifications (IPN), applied to their orders, and licence change
//! notifications (LCN), told apart by `LICENSE_CODE`
//! ([`NoticeKind::of`](crate::ipn::NoticeKind::of)). Both are verified with
//! the same key ring and rules, and refused the same way; a verified LCN is
//! tokenized to a [`LicenceNotice`] and handed to
//! [`Pipeline::record_licence`], the one place that stores it (once per
//! identity, never a test one) and so moves its subscription
//! ([`Processed::Licence`]).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::{
    BodyDigest, Currencies, LicenceNotice, OrderState, Outcome, PaymentEvent, PseudonymKey,
    ReconcilePolicy, ReviewKind, TokenizeError, pan, tokenize, tokenize_licence,
};
use crate::ipn::form::printable_name;
use crate::ipn::{
    FormBody, FormLimits, KeyRing, NoticeKind, SignaturePolicy, Verified, VerifyError,
    parse_and_verify,
};
use crate::store::{BatchItem, RejectedNotification, Store, StoreError};

/// Everything needed to judge a notification.
#[derive(Clone)]
pub struct PipelineConfig {
    pub keys: KeyRing,
    pub signatures: SignaturePolicy,
    pub limits: FormLimits,
    pub pseudonym_key: Option<PseudonymKey>,
    pub reconcile: ReconcilePolicy,
    /// Fields the merchant's IPN settings always send (`expected-fields`),
    /// which a verified payment notification must carry under their own
    /// names: the signature covers values, not names, so without this
    /// check a copy whose `TEST_ORDER` was renamed to a name the processor
    /// does not send would verify and pay a real order. Licence change
    /// notifications have settings of their own and are not held to it.
    pub expected_fields: Vec<String>,
    /// The currency table (`allow-currency`) a notification's amount is
    /// read with: the settings' own ([`crate::settings::Loaded::currencies`]),
    /// the same the store reads rows with.
    pub currencies: Currencies,
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("keys", &self.keys)
            .field("signatures", &self.signatures)
            .field("limits", &self.limits)
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<redacted>"),
            )
            .field("reconcile", &self.reconcile)
            .field("expected_fields", &self.expected_fields)
            .field("currencies", &self.currencies)
            .finish()
    }
}

/// Why a notification was refused: a short machine reason from a closed
/// set (`mismatch`, `missing_field`, `too_large`), for metrics, and the
/// field it concerns when there is one (a printable name, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    reason: &'static str,
    field: Option<String>,
}

impl Refusal {
    pub fn new(reason: &'static str) -> Self {
        Self {
            reason,
            field: None,
        }
    }

    pub fn with_field(reason: &'static str, field: impl Into<String>) -> Self {
        Self {
            reason,
            field: Some(field.into()),
        }
    }

    /// The reason alone: a label from a closed set.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

/// `reason` or `reason:FIELD`, as stored and shown.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            None => f.write_str(self.reason),
            Some(field) => write!(f, "{}:{field}", self.reason),
        }
    }
}

/// What happened to one notification. Holds references, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// SHA-256 of the raw body (hex).
    pub digest: String,
    /// Why it was refused (invalid signature, malformed).
    pub refusal: Option<Refusal>,
    pub verified: Option<Verified>,
    /// The algorithm of a signature that was refused.
    pub refused_algorithm: Option<crate::ipn::Algorithm>,
    pub processor_ref: Option<String>,
    /// The order the notification is about: its merchant reference, or
    /// `REFNO` for an order the processor's notices make.
    pub order_ref: Option<String>,
    /// What the notification says (`ORDERSTATUS`, `IPN_TOTALGENERAL` in
    /// `CURRENCY`), for a person reading about it.
    pub order_status: Option<String>,
    pub amount: Option<crate::domain::Money>,
    pub order_state: Option<OrderState>,
    pub review_items: Vec<ReviewKind>,
    /// Number of fields in which a card number was found and dropped.
    pub pan_fields: usize,
    /// The signed IPN_DATE, for the receipt-skew metric.
    pub ipn_date: Option<NaiveDateTime>,
    /// Whether the cause may go away (retry later): `order_not_found`.
    pub retry_later: bool,
    /// When this notification made its order reconciled: how long after
    /// the order was created (the time-to-reconciled histogram).
    pub reconciled_after: Option<std::time::Duration>,
}

impl Report {
    /// The report of a licence change notification when a payment's
    /// report is asked for ([`Pipeline::handle`]): `ignored`, since it
    /// changes no order, with its digest, verification and card-number
    /// count.
    pub fn licence(notice: &LicenceNotice) -> Self {
        Self {
            outcome: Outcome::Ignored,
            digest: notice.digest.as_str().to_owned(),
            refusal: None,
            verified: Some(Verified {
                key_id: notice.key_id.clone(),
                algorithm: notice.algorithm,
            }),
            refused_algorithm: None,
            processor_ref: None,
            order_ref: None,
            order_status: None,
            amount: None,
            order_state: None,
            review_items: Vec::new(),
            pan_fields: notice.pan_fields.len(),
            ipn_date: None,
            retry_later: false,
            reconciled_after: None,
        }
    }

    /// The report of a refused notification.
    pub fn rejected(digest: String, outcome: Outcome, refusal: Refusal) -> Self {
        Self {
            outcome,
            digest,
            refusal: Some(refusal),
            verified: None,
            refused_algorithm: None,
            processor_ref: None,
            order_ref: None,
            order_status: None,
            amount: None,
            order_state: None,
            review_items: Vec::new(),
            pan_fields: 0,
            ipn_date: None,
            retry_later: false,
            reconciled_after: None,
        }
    }
}

/// The first of `expected` that `form` lacks under its own name, as a
/// scalar or as an array (`NAME[]`): see
/// [`PipelineConfig::expected_fields`].
pub fn missing_expected_field<'a>(form: &FormBody, expected: &'a [String]) -> Option<&'a str> {
    expected
        .iter()
        .find(|name| form.get(name).is_none() && form.get(&format!("{name}[]")).is_none())
        .map(String::as_str)
}

/// Why a verified notification cannot be applied. Nothing here depends on
/// the time or on the database: the same body is refused for the same
/// reason however often it comes.
///
/// Messages name the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// One of the `expected-fields` is not there under its own name.
    #[error("missing expected field {}", printable_name(.0))]
    MissingExpectedField(String),
    /// Tokenization refused it: a required field missing or invalid, or a
    /// card number in a field it would store.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
}

impl Unusable {
    /// The refusal recorded for it: `missing_expected_field:NAME`, or the
    /// tokenizer's reason and field.
    pub fn refusal(&self) -> Refusal {
        match self {
            Unusable::MissingExpectedField(name) => {
                Refusal::with_field("missing_expected_field", name.clone())
            }
            Unusable::Tokenize(err) => Refusal::with_field(err.reason(), err.field()),
        }
    }

    /// The fields in which a card number was found (names only): the one
    /// of a [`TokenizeError::PanInAllowListedField`], else none.
    pub fn pan_fields(&self) -> Vec<String> {
        match self {
            Unusable::Tokenize(TokenizeError::PanInAllowListedField { field }) => {
                vec![(*field).to_owned()]
            }
            _ => Vec::new(),
        }
    }
}

/// A verified notice, tokenized: what the pipeline applies or records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A payment notification, to apply to its order.
    Payment(PaymentEvent),
    /// A licence change notification.
    Licence(LicenceNotice),
}

/// Judges a verified body without I/O: for a payment notification the
/// expected fields, then tokenization (the amount read with
/// `currencies`); for a licence change notification (`LICENSE_CODE`) its
/// own tokenization (its renewal price read with `currencies`).
///
/// [`Pipeline::judge`] calls it for the worker and `process`, and the
/// intake for the bodies it verifies, so that the intake refuses a body at
/// the door for no rule but the worker's (and with the same currency
/// table: an allowed currency's amount is not refused at the door).
pub fn judge_verified(
    raw_body: &[u8],
    form: &FormBody,
    verified: &Verified,
    expected_fields: &[String],
    currencies: &Currencies,
    pseudonym_key: Option<&PseudonymKey>,
) -> Result<Notice, Unusable> {
    match NoticeKind::of(form) {
        NoticeKind::Lcn => Ok(Notice::Licence(tokenize_licence(
            raw_body, form, verified, currencies,
        )?)),
        NoticeKind::Ipn => {
            if let Some(missing) = missing_expected_field(form, expected_fields) {
                return Err(Unusable::MissingExpectedField(missing.to_owned()));
            }
            Ok(Notice::Payment(tokenize(
                raw_body,
                form,
                verified,
                currencies,
                pseudonym_key,
            )?))
        }
    }
}

/// Whether the worker parks a verified body it judged `unusable` as
/// malformed, where it stays until a person looks, rather than recording
/// it and keeping no copy because it carries a card number: in a field it
/// would store, or anywhere (the worker's own scan of a malformed body,
/// [`pan::lenient_pan_fields`], `worker/consume.rs` `scan_refused`).
///
/// The intake refuses the first kind at the door (400, no receipt: the
/// processor retries and shows the error) and must not refuse the second:
/// the processor would send the card number again for two days.
pub fn parked_as_malformed(unusable: &Unusable, raw_body: &[u8]) -> bool {
    unusable.pan_fields().is_empty() && pan::lenient_pan_fields(raw_body) == 0
}

/// What [`Pipeline::judge`] concluded, before anything is recorded.
#[derive(Debug)]
pub enum Judgement {
    /// Refused: only its digest and why will be recorded.
    Refused(Box<Refused>),
    /// A verified, tokenized notification to apply.
    Event(Box<(PaymentEvent, Verified)>),
    /// A verified, tokenized licence change notification.
    Licence(Box<LicenceNotice>),
}

/// What one body became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// A payment notification applied to its order, or a notice of either
    /// kind refused: recorded in the store, described by its report.
    Notification(Report),
    /// A verified licence change notification, tokenized and handed to
    /// [`Pipeline::record_licence`], which stored its allow-listed facts
    /// (docs/protocol.md §12): the worker acknowledges it, counts it and
    /// logs it.
    Licence(LicenceNotice),
}

impl Processed {
    /// The report of a notification; a licence change notification as
    /// [`Report::licence`].
    pub fn into_report(self) -> Report {
        match self {
            Processed::Notification(report) => report,
            Processed::Licence(notice) => Report::licence(&notice),
        }
    }
}

/// A refused notification, as it will be recorded.
#[derive(Debug)]
pub struct Refused {
    pub digest: String,
    pub outcome: Outcome,
    pub refusal: Refusal,
    /// Fields where a card number was found (names only).
    pub pan_fields: Vec<String>,
    pub received_at: DateTime<Utc>,
    pub verified: Option<Verified>,
    pub refused_algorithm: Option<crate::ipn::Algorithm>,
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

    /// Judges one raw body without any I/O: parse, verify, check the
    /// expected fields, tokenize.
    pub fn judge(&self, body: &[u8], received_at: DateTime<Utc>) -> Judgement {
        let digest = BodyDigest::of(body).to_string();
        let refused = |outcome, refusal, pan_fields: Vec<String>| Refused {
            digest: digest.clone(),
            outcome,
            refusal,
            pan_fields,
            received_at,
            verified: None,
            refused_algorithm: None,
        };
        let (form, verified) = match parse_and_verify(
            body,
            &self.config.limits,
            &self.config.keys,
            &self.config.signatures,
        ) {
            Ok(ok) => ok,
            Err(err) => {
                let (outcome, reason) = match &err {
                    VerifyError::Malformed(form) => (Outcome::Malformed, form_refusal(form)),
                    other => (Outcome::InvalidSignature, Refusal::new(other.reason())),
                };
                let mut refused = refused(outcome, reason, Vec::new());
                refused.refused_algorithm = err.algorithm();
                return Judgement::Refused(Box::new(refused));
            }
        };
        match judge_verified(
            body,
            &form,
            &verified,
            &self.config.expected_fields,
            &self.config.currencies,
            self.config.pseudonym_key.as_ref(),
        ) {
            Ok(Notice::Payment(event)) => Judgement::Event(Box::new((event, verified))),
            Ok(Notice::Licence(notice)) => Judgement::Licence(Box::new(notice)),
            Err(unusable) => {
                let mut refused = refused(
                    Outcome::Malformed,
                    unusable.refusal(),
                    unusable.pan_fields(),
                );
                refused.verified = Some(verified);
                Judgement::Refused(Box::new(refused))
            }
        }
    }

    /// Judges one raw body and records the result.
    ///
    /// `Err` only for operational failures (after the store's own bounded
    /// retries); the caller decides whether to retry later.
    pub async fn process(
        &self,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Processed, StoreError> {
        match self.judge(body, received_at) {
            Judgement::Refused(refused) => self.record(*refused).await.map(Processed::Notification),
            Judgement::Event(judged) => {
                let (event, verified) = *judged;
                let applied = self
                    .store
                    .apply(&event, received_at, &self.config.reconcile)
                    .await?;
                Ok(Processed::Notification(report_for(
                    &event,
                    &self.config.reconcile,
                    verified,
                    applied,
                )))
            }
            Judgement::Licence(notice) => {
                self.record_licence(&notice, received_at).await?;
                Ok(Processed::Licence(*notice))
            }
        }
    }

    /// [`Pipeline::process`], as a report: what callers that feed payment
    /// notifications want (a licence change notification is reported as
    /// [`Report::licence`]).
    pub async fn handle(
        &self,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        self.process(body, received_at)
            .await
            .map(Processed::into_report)
    }

    /// Judges and records several bodies, applying their events in one
    /// transaction ([`Store::apply_batch`]), with the meaning of handling
    /// them one by one in this order. `Err` fails the whole batch: retry
    /// it, or handle its bodies one by one.
    pub async fn process_batch(
        &self,
        bodies: &[(&[u8], DateTime<Utc>)],
    ) -> Result<Vec<Processed>, StoreError> {
        let mut processed: Vec<Option<Processed>> = vec![None; bodies.len()];
        let mut events = Vec::new();
        let mut positions = Vec::new();
        for (index, (body, received_at)) in bodies.iter().enumerate() {
            match self.judge(body, *received_at) {
                Judgement::Refused(refused) => {
                    processed[index] = Some(Processed::Notification(self.record(*refused).await?));
                }
                Judgement::Event(judged) => {
                    let (event, verified) = *judged;
                    positions.push((index, verified));
                    events.push(BatchItem {
                        event,
                        received_at: *received_at,
                    });
                }
                Judgement::Licence(notice) => {
                    self.record_licence(&notice, *received_at).await?;
                    processed[index] = Some(Processed::Licence(*notice));
                }
            }
        }
        let applied = self
            .store
            .apply_batch(&events, &self.config.reconcile)
            .await?;
        for ((item, (index, verified)), applied) in events.iter().zip(positions).zip(applied) {
            processed[index] = Some(Processed::Notification(report_for(
                &item.event,
                &self.config.reconcile,
                verified,
                applied,
            )));
        }
        Ok(processed.into_iter().flatten().collect())
    }

    /// [`Pipeline::process_batch`], as reports ([`Processed::into_report`]).
    pub async fn handle_batch(
        &self,
        bodies: &[(&[u8], DateTime<Utc>)],
    ) -> Result<Vec<Report>, StoreError> {
        self.process_batch(bodies)
            .await
            .map(|all| all.into_iter().map(Processed::into_report).collect())
    }

    /// Where a verified licence change notification is recorded: the one
    /// place the store call for subscriptions (issue 21, Deliver 2: the
    /// licence's facts, its status derived by `DATE_UPDATED`, a test
    /// notice never changing a real subscription) belongs. Until
    /// subscriptions exist nothing is stored: the notice is acknowledged,
    /// counted and logged by the worker (references and statuses only), and
    /// the processor stops retrying it.
    ///
    /// `Err` as for [`Pipeline::process`]: an operational failure, retried
    /// later.
    pub async fn record_licence(
        &self,
        notice: &LicenceNotice,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store.record_licence(notice, received_at).await?;
        Ok(())
    }

    /// Records a refused notification (digest and reason only).
    async fn record(&self, refused: Refused) -> Result<Report, StoreError> {
        let mut report = self
            .reject(
                refused.digest,
                refused.outcome,
                refused.refusal,
                refused.pan_fields,
                refused.received_at,
            )
            .await?;
        report.verified = refused.verified;
        report.refused_algorithm = refused.refused_algorithm;
        Ok(report)
    }

    async fn reject(
        &self,
        digest: String,
        outcome: Outcome,
        reason: Refusal,
        pan_fields: Vec<String>,
        received_at: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        let pan_count = pan_fields.len();
        self.store
            .record_rejected(&RejectedNotification {
                body_sha256: digest.clone(),
                outcome,
                reason: reason.to_string(),
                received_at,
                processed_at: Utc::now(),
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
    policy: &ReconcilePolicy,
    verified: Verified,
    applied: crate::store::ApplyReport,
) -> Report {
    Report {
        outcome: applied.outcome,
        digest: event.digest.as_str().to_owned(),
        refusal: None,
        verified: Some(verified),
        refused_algorithm: None,
        processor_ref: Some(event.processor_ref.clone()),
        order_ref: Some(policy.order_source.key(event).order_ref),
        order_status: Some(event.status.as_str().to_owned()),
        amount: Some(event.amount),
        order_state: applied.order_state,
        review_items: applied.review_items,
        pan_fields: event.pan_fields.len(),
        ipn_date: event.ipn_date,
        retry_later: applied.outcome == Outcome::OrderNotFound,
        reconciled_after: applied
            .reconciled_order_created
            .map(|created| (Utc::now() - created).to_std().unwrap_or_default()),
    }
}

/// A value-free refusal for a malformed body.
fn form_refusal(err: &crate::ipn::FormError) -> Refusal {
    use crate::ipn::FormError;
    match err {
        FormError::Empty => Refusal::new("empty_body"),
        FormError::TooLarge { .. } => Refusal::new("too_large"),
        FormError::TooManyFields { .. } => Refusal::new("too_many_fields"),
        FormError::EmptyName { .. } => Refusal::new("empty_field_name"),
        FormError::NameNotUtf8 { .. } => Refusal::new("name_not_utf8"),
        FormError::ValueNotUtf8 { name, .. } => Refusal::with_field("value_not_utf8", name.clone()),
        FormError::RepeatedScalar { name } => Refusal::with_field("repeated_field", name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::{Algorithm, KeyId};

    /// Fields set (`Some`) or removed (`None`) from [`BASE`].
    type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

    const BASE: &[(&str, &str)] = &[
        ("REFNO", "1000037"),
        ("REFNOEXT", "ORD-1"),
        ("ORDERSTATUS", "COMPLETE"),
        ("COMMENTS", "leave at the door"),
        ("CURRENCY", "EUR"),
        ("IPN_TOTALGENERAL", "10.00"),
        ("TEST_ORDER", "0"),
        ("IPN_PRODUCT_OPTIONS[]", "gift wrap"),
        ("IPN_DATE", "20261102100000"),
    ];

    /// BASE with the fields of `changes` set (`Some`) or removed (`None`),
    /// encoded as on the wire.
    fn body(changes: Changes<'_>) -> Vec<u8> {
        let mut form = FormBody::default();
        for (name, value) in BASE {
            match changes.iter().find(|(n, _)| n == name) {
                Some((_, Some(v))) => form.push(*name, *v),
                Some((_, None)) => {}
                None => form.push(*name, *value),
            }
        }
        form.encode().into_bytes()
    }

    fn judge_notice(raw: &[u8], expected: &[&str]) -> Result<Notice, Unusable> {
        let form = FormBody::parse(raw, &FormLimits::default()).unwrap();
        let verified = Verified {
            key_id: KeyId::parse("default").unwrap(),
            algorithm: Algorithm::Sha3_256,
        };
        let expected: Vec<String> = expected.iter().map(|n| (*n).to_owned()).collect();
        judge_verified(raw, &form, &verified, &expected, &Currencies::iso(), None)
    }

    fn judge(raw: &[u8], expected: &[&str]) -> Result<PaymentEvent, Unusable> {
        judge_notice(raw, expected).map(|notice| match notice {
            Notice::Payment(event) => event,
            Notice::Licence(notice) => panic!("a payment notification: {notice:?}"),
        })
    }

    /// An LCN, in the processor's order, with its personal data.
    const LCN: &str = "FIRST_NAME=John&EMAIL=johnsmith%40email.com&LICENSE_CODE=3C343D0FAF\
        &EXPIRATION_DATE=2026-12-02&DATE_UPDATED=2026-11-30+08%3A00%3A00&TEST=0&STATUS=EXPIRED\
        &DISPATCH_REASON=LICENCE_EXPIRATION";

    #[test]
    fn a_licence_change_notification_is_judged_by_its_own_rules() {
        // Told apart by LICENSE_CODE, and not held to the expected fields
        // of payment notifications.
        let notice = match judge_notice(LCN.as_bytes(), &["TEST_ORDER", "FRAUD_STATUS"]) {
            Ok(Notice::Licence(notice)) => notice,
            other => panic!("a licence notice: {other:?}"),
        };
        assert_eq!(notice.licence_code, "3C343D0FAF");
        assert_eq!(notice.status, Some(crate::domain::LicenceStatus::Expired));
        let report = Report::licence(&notice);
        assert_eq!(report.outcome, Outcome::Ignored);
        assert_eq!(report.digest, BodyDigest::of(LCN.as_bytes()).to_string());
        assert_eq!(
            report.verified.map(|v| v.algorithm),
            Some(Algorithm::Sha3_256)
        );
        // Refused as the worker parks it: a required field missing, a flag
        // renamed; a card number in a kept field is not parked.
        for (body, refusal) in [
            (
                LCN.replace("&DATE_UPDATED=2026-11-30+08%3A00%3A00", ""),
                "missing_field:DATE_UPDATED",
            ),
            (
                LCN.replace("&TEST=0", "&TEST%5B%5D=0"),
                "renamed_field:TEST",
            ),
            (
                LCN.replace("&TEST=0", "&TEST=0&REFNO=71000101"),
                "foreign_field:REFNO",
            ),
        ] {
            let unusable = judge_notice(body.as_bytes(), &[]).unwrap_err();
            assert_eq!(unusable.refusal().to_string(), refusal);
            assert!(parked_as_malformed(&unusable, body.as_bytes()));
        }
        let pan = LCN.replace("3C343D0FAF", "4111111111111111");
        let unusable = judge_notice(pan.as_bytes(), &[]).unwrap_err();
        assert_eq!(unusable.pan_fields(), ["LICENSE_CODE"]);
        assert!(!parked_as_malformed(&unusable, pan.as_bytes()));
    }

    #[test]
    fn expected_fields_count_as_scalars_or_arrays_under_their_own_names() {
        let form = FormBody::parse(&body(&[]), &FormLimits::default()).unwrap();
        let expected = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            missing_expected_field(&form, &expected(&["TEST_ORDER", "IPN_PRODUCT_OPTIONS"])),
            None
        );
        assert_eq!(
            missing_expected_field(&form, &expected(&["TEST_ORDER", "FRAUD_STATUS"])),
            Some("FRAUD_STATUS")
        );
        assert_eq!(missing_expected_field(&form, &[]), None);
    }

    #[test]
    fn a_verified_body_is_judged_as_the_worker_judges_it() {
        assert!(judge(&body(&[]), &["TEST_ORDER"]).is_ok());
        let cases: &[(Changes<'_>, &[&str], &str)] = &[
            (&[("REFNO", None)], &[], "missing_field:REFNO"),
            (&[("IPN_DATE", Some(""))], &[], "missing_field:IPN_DATE"),
            (
                &[("IPN_TOTALGENERAL", Some("ten"))],
                &[],
                "invalid_field:IPN_TOTALGENERAL",
            ),
            (
                &[("TEST_ORDER", None)],
                &["TEST_ORDER"],
                "missing_expected_field:TEST_ORDER",
            ),
            (
                &[("REFNOEXT", Some("4111111111111111"))],
                &[],
                "pan_in_stored_field:REFNOEXT",
            ),
        ];
        for (changes, expected, refusal) in cases {
            let unusable = judge(&body(changes), expected).unwrap_err();
            assert_eq!(unusable.refusal().to_string(), *refusal);
        }
        // The expected fields are checked first, as the worker does.
        let unusable = judge(
            &body(&[("REFNO", None), ("TEST_ORDER", None)]),
            &["TEST_ORDER"],
        );
        assert_eq!(
            unusable.unwrap_err(),
            Unusable::MissingExpectedField("TEST_ORDER".into())
        );
        assert_eq!(
            Unusable::MissingExpectedField("TEST_ORDER".into()).to_string(),
            "missing expected field TEST_ORDER"
        );
    }

    #[test]
    fn only_a_body_without_a_card_number_is_parked_as_malformed() {
        let parked = |changes: Changes<'_>| {
            let raw = body(changes);
            parked_as_malformed(&judge(&raw, &[]).unwrap_err(), &raw)
        };
        assert!(parked(&[("REFNO", None)]));
        assert!(parked(&[("CURRENCY", Some("EURO"))]));
        // A card number in a field the worker would store: recorded with
        // a `pan_detected` review item, no copy kept.
        let stored = body(&[("REFNOEXT", Some("4111 1111 1111 1111"))]);
        let unusable = judge(&stored, &[]).unwrap_err();
        assert_eq!(unusable.pan_fields(), ["REFNOEXT"]);
        assert!(!parked_as_malformed(&unusable, &stored));
        // A card number elsewhere in a body refused for another reason:
        // the worker's own scan finds it and keeps no copy either.
        assert!(!parked(&[
            ("REFNO", None),
            ("COMMENTS", Some("card 4111-1111-1111-1111")),
        ]));
    }
}
