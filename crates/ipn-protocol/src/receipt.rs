//! The read receipt (docs/protocol.md §4): the answer that tells the processor a
//! notification arrived, so that it stops retrying.
//!
//! A payment notification's HMAC covers only the first product id, the
//! first product name, `IPN_DATE` as received, and the receipt's own
//! `DATE`, each length-prefixed. A licence change notification's covers
//! `LICENSE_CODE`, `EXPIRATION_DATE` and `DATE` (docs/protocol.md §12);
//! both come in the same two formats, in the algorithm that verified the
//! notice.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::form::FormBody;
use super::keys::SecretKey;
use super::signature::{Algorithm, push_length_prefixed};

/// The receipt's `DATE`: UTC, `YmdHis` (14 digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptDate(NaiveDateTime);

impl ReceiptDate {
    const FORMAT: &'static str = "%Y%m%d%H%M%S";

    pub fn now() -> Self {
        Self::from_utc(Utc::now())
    }

    pub fn from_utc(at: DateTime<Utc>) -> Self {
        Self(at.naive_utc())
    }

    /// Parses 14 digits `YmdHis`.
    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReceiptError::BadDate);
        }
        NaiveDateTime::parse_from_str(text, Self::FORMAT)
            .map(Self)
            .map_err(|_| ReceiptError::BadDate)
    }
}

impl fmt::Display for ReceiptDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(Self::FORMAT))
    }
}

/// Why a receipt could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt date must be 14 digits YmdHis (for example 20050303123434)")]
    BadDate,
    #[error("the notification has no IPN_DATE field, which the receipt must echo")]
    MissingIpnDate,
    #[error(
        "the licence change notification has no LICENSE_CODE field, which the receipt must echo"
    )]
    MissingLicenceCode,
}

/// The two receipt shapes (docs/protocol.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFormat {
    /// `<EPAYMENT>DATE|HMAC</EPAYMENT>` with HMAC-MD5 (legacy endpoints).
    Epayment,
    /// `<sig algo="sha256|sha3-256" date="DATE">HMAC</sig>`.
    Sig(Algorithm),
}

impl ReceiptFormat {
    /// The format that answers a notification verified with `algorithm`.
    pub fn for_algorithm(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Md5 => ReceiptFormat::Epayment,
            other => ReceiptFormat::Sig(other),
        }
    }

    pub fn algorithm(self) -> Algorithm {
        match self {
            ReceiptFormat::Epayment => Algorithm::Md5,
            ReceiptFormat::Sig(algorithm) => algorithm,
        }
    }
}

/// The notification's fields the receipt's HMAC covers, in its order:
/// the first product id, the first product name (elements of the arrays
/// `IPN_PID[]`, `IPN_PNAME[]`) and `IPN_DATE` as received (docs/protocol.md §4).
pub const RECEIPT_FIELDS: [&str; 3] = ["IPN_PID[]", "IPN_PNAME[]", "IPN_DATE"];

/// The first of [`RECEIPT_FIELDS`] that `form` lacks under its own name.
///
/// The processor checks the receipt against the values it sent. A body
/// that lacks one of them (renamed on the way: the signature covers values,
/// not names; or sent as a scalar `IPN_PID`) still gets a receipt from
/// [`read_receipt`], over an empty value, which the processor cannot match
/// with the value it holds. Present with an empty value is fine: the
/// processor length-prefixes the empty value the same way. The intake
/// refuses a verified body this returns `Some` for, rather than answer it
/// with a receipt that would not be accepted.
pub fn missing_receipt_field(form: &FormBody) -> Option<&'static str> {
    RECEIPT_FIELDS
        .into_iter()
        .find(|name| form.get(name).is_none())
}

/// The source string the receipt's HMAC covers.
///
/// A missing product id or name is taken as empty (what `ipn receipt` and
/// an intake that does not verify answer); see [`missing_receipt_field`].
pub fn receipt_source(form: &FormBody, date: ReceiptDate) -> Result<Vec<u8>, ReceiptError> {
    let [pid, pname, ipn_date] = RECEIPT_FIELDS;
    let ipn_date = form.get(ipn_date).ok_or(ReceiptError::MissingIpnDate)?;
    let mut source = Vec::with_capacity(64);
    push_length_prefixed(&mut source, form.get(pid).unwrap_or(""));
    push_length_prefixed(&mut source, form.get(pname).unwrap_or(""));
    push_length_prefixed(&mut source, ipn_date);
    push_length_prefixed(&mut source, &date.to_string());
    Ok(source)
}

/// Builds the read receipt for `form`, signed with `key`.
pub fn read_receipt(
    form: &FormBody,
    key: &SecretKey,
    format: ReceiptFormat,
    date: ReceiptDate,
) -> Result<String, ReceiptError> {
    let source = receipt_source(form, date)?;
    Ok(format_receipt(&source, key, format, date))
}

/// The fields of a licence change notification its read receipt's HMAC
/// covers, in its order: the subscription's code and its expiration date,
/// as received (docs/protocol.md §12). The receipt's `DATE` follows them.
pub const LICENCE_RECEIPT_FIELDS: [&str; 2] = [crate::notice::LICENCE_CODE, "EXPIRATION_DATE"];

/// The source string of a licence change notification's read receipt:
/// `LICENSE_CODE`, `EXPIRATION_DATE` and `DATE`, each length-prefixed
/// (the processor's example: `103C343D0FAF102005-03-031420081117145935`).
///
/// A missing `EXPIRATION_DATE` is taken as empty, as the product fields of
/// a payment notification's receipt are (see
/// [`crate::NoticeKind::missing_receipt_field`], which the intake refuses
/// such a body with); a missing `LICENSE_CODE` is an error: without it the
/// body is no licence change notification.
pub fn licence_receipt_source(form: &FormBody, date: ReceiptDate) -> Result<Vec<u8>, ReceiptError> {
    let [code, expiration] = LICENCE_RECEIPT_FIELDS;
    let code = form.get(code).ok_or(ReceiptError::MissingLicenceCode)?;
    let mut source = Vec::with_capacity(48);
    push_length_prefixed(&mut source, code);
    push_length_prefixed(&mut source, form.get(expiration).unwrap_or(""));
    push_length_prefixed(&mut source, &date.to_string());
    Ok(source)
}

/// Builds the read receipt for the licence change notification `form`,
/// signed with `key`, in the same formats as a payment notification's.
pub fn licence_read_receipt(
    form: &FormBody,
    key: &SecretKey,
    format: ReceiptFormat,
    date: ReceiptDate,
) -> Result<String, ReceiptError> {
    let source = licence_receipt_source(form, date)?;
    Ok(format_receipt(&source, key, format, date))
}

/// `<EPAYMENT>DATE|HMAC</EPAYMENT>` or `<sig algo="..." date="DATE">HMAC</sig>`
/// over `source`.
fn format_receipt(
    source: &[u8],
    key: &SecretKey,
    format: ReceiptFormat,
    date: ReceiptDate,
) -> String {
    let digest = format.algorithm().mac_hex(key, source);
    match format {
        ReceiptFormat::Epayment => format!("<EPAYMENT>{date}|{digest}</EPAYMENT>"),
        ReceiptFormat::Sig(algorithm) => {
            format!("<sig algo=\"{algorithm}\" date=\"{date}\">{digest}</sig>")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_fourteen_zero_padded_digits() {
        let date = ReceiptDate::parse("20050303013407").unwrap();
        assert_eq!(date.to_string(), "20050303013407");
        assert_eq!(
            ReceiptDate::parse("2005030313407"),
            Err(ReceiptError::BadDate)
        );
        assert_eq!(
            ReceiptDate::parse("20051303123434"),
            Err(ReceiptError::BadDate)
        );
    }

    #[test]
    fn the_receipt_fields_must_be_there_under_their_own_names() {
        let missing = |body: &str| {
            missing_receipt_field(&FormBody::parse(body.as_bytes(), &Default::default()).unwrap())
        };
        assert_eq!(
            missing("IPN_PID[]=1&IPN_PID[]=2&IPN_PNAME[]=A&IPN_PNAME[]=B&IPN_DATE=20050303123434"),
            None
        );
        // Empty values are values: the processor prefixes them with 0.
        assert_eq!(missing("IPN_PID[]=&IPN_PNAME[]=&IPN_DATE="), None);
        assert_eq!(
            missing("IPN_PNAME[]=A&IPN_DATE=20050303123434"),
            Some("IPN_PID[]")
        );
        // A scalar is not the array the receipt takes the first element of.
        assert_eq!(
            missing("IPN_PID=1&IPN_PNAME[]=A&IPN_DATE=20050303123434"),
            Some("IPN_PID[]")
        );
        assert_eq!(
            missing("IPN_PID[]=1&IPN_PNAMEX[]=A&IPN_DATE=20050303123434"),
            Some("IPN_PNAME[]")
        );
        assert_eq!(missing("IPN_PID[]=1&IPN_PNAME[]=A"), Some("IPN_DATE"));
    }

    /// The processor's documented LCN receipt (KC-LCN-receipt): licence
    /// code `3C343D0FAF`, expiration `2005-03-03`, `DATE=20081117145935`,
    /// secret `AABBCCDDEEFF`. The SHA digests are over the same source
    /// string, computed independently (docs/protocol.md §6, V2).
    #[test]
    fn the_lcn_receipt_is_the_processors_documented_example() {
        let form = FormBody::parse(
            b"FIRSTNAME=John&LASTNAME=Smith&COMPANY=&EMAIL=johnsmith%40email.com\
              &PHONE=951-121-2121&FAX=&COUNTRY=United+States+of+America&STATE=New+York\
              &CITY=New+York&ADDRESS=101+Main+Street&LICENSE_CODE=3C343D0FAF\
              &EXPIRATION_DATE=2005-03-03&STATUS=DISABLED",
            &Default::default(),
        )
        .unwrap();
        let key = SecretKey::new("AABBCCDDEEFF");
        let date = ReceiptDate::parse("20081117145935").unwrap();
        assert_eq!(
            licence_receipt_source(&form, date).unwrap(),
            b"103C343D0FAF102005-03-031420081117145935"
        );
        assert_eq!(
            licence_read_receipt(&form, &key, ReceiptFormat::Epayment, date).unwrap(),
            "<EPAYMENT>20081117145935|cb34fe2991668eb82364edf62f845a34</EPAYMENT>"
        );
        assert_eq!(
            licence_read_receipt(&form, &key, ReceiptFormat::Sig(Algorithm::Sha256), date).unwrap(),
            "<sig algo=\"sha256\" date=\"20081117145935\">\
             cdd64ce75e6cf013a60291229c83063a5d903eae3bfa216e99aae8af65a055e8</sig>"
        );
        assert_eq!(
            licence_read_receipt(&form, &key, ReceiptFormat::Sig(Algorithm::Sha3_256), date)
                .unwrap(),
            "<sig algo=\"sha3-256\" date=\"20081117145935\">\
             7fc19d21103ea56f1b413315fb3feb5fbdd137758623a73c7ed12d9bb84f21db</sig>"
        );
        // The other fields, names and personal data alike, are not covered.
        let bare = FormBody::parse(
            b"LICENSE_CODE=3C343D0FAF&EXPIRATION_DATE=2005-03-03",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            licence_read_receipt(&bare, &key, ReceiptFormat::Epayment, date),
            licence_read_receipt(&form, &key, ReceiptFormat::Epayment, date)
        );
    }

    #[test]
    fn an_lcn_receipt_needs_the_licence_code_and_takes_a_missing_expiration_as_empty() {
        let key = SecretKey::new("k");
        let date = ReceiptDate::parse("20081117145935").unwrap();
        let form = FormBody::parse(b"EXPIRATION_DATE=2005-03-03", &Default::default()).unwrap();
        assert_eq!(
            licence_read_receipt(&form, &key, ReceiptFormat::Epayment, date),
            Err(ReceiptError::MissingLicenceCode)
        );
        let form = FormBody::parse(b"LICENSE_CODE=3C343D0FAF", &Default::default()).unwrap();
        assert_eq!(
            licence_receipt_source(&form, date).unwrap(),
            b"103C343D0FAF01420081117145935"
        );
    }

    #[test]
    fn missing_ipn_date_is_an_error() {
        let form = FormBody::parse(b"IPN_PID[]=1", &Default::default()).unwrap();
        let date = ReceiptDate::parse("20050303123500").unwrap();
        assert_eq!(
            read_receipt(&form, &SecretKey::new("k"), ReceiptFormat::Epayment, date),
            Err(ReceiptError::MissingIpnDate)
        );
    }
}
