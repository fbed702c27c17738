//! The processor's wire protocol, without any I/O: form parsing, the HMAC
//! source string and signature check against a key ring, the two kinds of
//! notices (payment and licence change) and their read receipts. See
//! `docs/protocol.md` §1-§4 and §12.

pub mod api_auth;
pub mod digits;
pub mod form;
pub mod keys;
pub mod notice;
pub mod receipt;
pub mod signature;

pub use api_auth::{
    API_AUTH_HEADER, API_DATE_FORMAT, ApiAuth, ApiAuthError, api_algo_name, api_auth_header,
    api_auth_source,
};
pub use form::{
    Field, FormBody, FormError, FormLimits, NotANotification, check_licence_form,
    check_notice_form, check_notification_form,
};
pub use keys::{KeyError, KeyId, KeyRing, SecretKey, SigningKey};
pub use notice::{LICENCE_CODE, NoticeKind};
pub use receipt::{
    LICENCE_RECEIPT_FIELDS, RECEIPT_FIELDS, ReceiptDate, ReceiptError, ReceiptFormat,
    licence_read_receipt, licence_receipt_source, missing_receipt_field, read_receipt,
    receipt_source,
};
pub use signature::{
    Algorithm, SignaturePolicy, Verified, VerifyError, sign, source_string,
    source_string_excluding, verify,
};

/// Parses and verifies a raw body in one step: what every consumer of
/// notifications (the worker, the intake, `ipn verify`) does first.
pub fn parse_and_verify(
    body: &[u8],
    limits: &FormLimits,
    ring: &KeyRing,
    policy: &SignaturePolicy,
) -> Result<(FormBody, Verified), VerifyError> {
    let form = FormBody::parse(body, limits)?;
    let verified = verify(&form, ring, policy)?;
    Ok((form, verified))
}
