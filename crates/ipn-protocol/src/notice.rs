//! The two kinds of notices the processor posts (docs/protocol.md §12):
//! payment notifications (IPN) and licence change notifications (LCN).
//!
//! Both are form bodies signed the same way, with the same key ring and
//! rules ([`crate::verify`]: every value in received order, each prefixed
//! by its byte length, the three signature fields left out), so the kind
//! changes nothing in the verification. It changes what is read from the
//! body and the read receipt that answers it: an IPN's receipt covers the
//! first product id and name and `IPN_DATE`, an LCN's `LICENSE_CODE` and
//! `EXPIRATION_DATE` ([`crate::receipt`]).
//!
//! The kind is decided from the parsed form alone: an LCN is the body that
//! carries `LICENSE_CODE` under that exact name (the subscription's
//! reference; no payment notification has such a field), as the
//! processor's integrations tell them apart.

use std::fmt;

use crate::form::FormBody;
use crate::keys::SecretKey;
use crate::receipt::{
    LICENCE_RECEIPT_FIELDS, RECEIPT_FIELDS, ReceiptDate, ReceiptError, ReceiptFormat,
    licence_read_receipt, licence_receipt_source, read_receipt, receipt_source,
};

/// The field that makes a body a licence change notification: the
/// subscription's reference (`IPN_LICENSE_REF[]` in the payment
/// notifications of its orders).
pub const LICENCE_CODE: &str = "LICENSE_CODE";

/// Which kind of notice a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoticeKind {
    /// An instant payment notification: an order's payment, refund,
    /// chargeback or status change.
    Ipn,
    /// A licence change notification: a subscription's status, expiry or
    /// renewal terms changed.
    Lcn,
}

impl NoticeKind {
    /// Both kinds.
    pub const ALL: [NoticeKind; 2] = [NoticeKind::Ipn, NoticeKind::Lcn];

    /// The kind of a parsed body: [`NoticeKind::Lcn`] when it has a
    /// `LICENSE_CODE` field under that exact name (empty or not), else
    /// [`NoticeKind::Ipn`].
    pub fn of(form: &FormBody) -> Self {
        if form.get(LICENCE_CODE).is_some() {
            NoticeKind::Lcn
        } else {
            NoticeKind::Ipn
        }
    }

    /// `ipn` or `lcn`: the name in message headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Ipn => "ipn",
            NoticeKind::Lcn => "lcn",
        }
    }

    /// Parses [`NoticeKind::as_str`] (either case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ipn" => Some(NoticeKind::Ipn),
            "lcn" => Some(NoticeKind::Lcn),
            _ => None,
        }
    }

    /// What a person calls it.
    pub fn describe(self) -> &'static str {
        match self {
            NoticeKind::Ipn => "payment notification (IPN)",
            NoticeKind::Lcn => "licence change notification (LCN)",
        }
    }

    /// The fields of the notice its read receipt covers, in order (the
    /// receipt's own `DATE` follows them).
    pub fn receipt_fields(self) -> &'static [&'static str] {
        match self {
            NoticeKind::Ipn => &RECEIPT_FIELDS,
            NoticeKind::Lcn => &LICENCE_RECEIPT_FIELDS,
        }
    }

    /// The first of [`NoticeKind::receipt_fields`] that `form` lacks under
    /// its own name (see [`crate::missing_receipt_field`]: a receipt over a
    /// value the processor did not send cannot match its own).
    pub fn missing_receipt_field(self, form: &FormBody) -> Option<&'static str> {
        self.receipt_fields()
            .iter()
            .copied()
            .find(|name| form.get(name).is_none())
    }

    /// The source string of the read receipt that answers `form` as a
    /// notice of this kind.
    pub fn receipt_source(
        self,
        form: &FormBody,
        date: ReceiptDate,
    ) -> Result<Vec<u8>, ReceiptError> {
        match self {
            NoticeKind::Ipn => receipt_source(form, date),
            NoticeKind::Lcn => licence_receipt_source(form, date),
        }
    }

    /// The read receipt that answers `form` as a notice of this kind, in
    /// `format`, signed with `key`.
    pub fn read_receipt(
        self,
        form: &FormBody,
        key: &SecretKey,
        format: ReceiptFormat,
        date: ReceiptDate,
    ) -> Result<String, ReceiptError> {
        match self {
            NoticeKind::Ipn => read_receipt(form, key, format, date),
            NoticeKind::Lcn => licence_read_receipt(form, key, format, date),
        }
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Algorithm, FormLimits, KeyRing, SignaturePolicy, VerifyError, sign, source_string, verify,
    };

    const KEY: &str = "AABBCCDDEEFF";

    /// The processor's documented LCN (the example of its LCN read receipt
    /// page), with the fields its parameter list names after
    /// `EXPIRATION_DATE` added in that list's order, a `TEST` flag, and
    /// the three signatures in the places the processor puts them.
    const LCN: &str = "FIRSTNAME=John&LASTNAME=Smith&COMPANY=&EMAIL=johnsmith%40email.com\
        &PHONE=951-121-2121&FAX=&COUNTRY=United+States+of+America&STATE=New+York\
        &CITY=New+York&ADDRESS=101+Main+Street&LICENSE_CODE=3C343D0FAF\
        &EXPIRATION_DATE=2005-03-03&DATE_UPDATED=2005-03-03+12%3A34%3A34&TEST=0\
        &STATUS=DISABLED";

    fn form(body: &str) -> FormBody {
        FormBody::parse(body.as_bytes(), &FormLimits::default()).unwrap()
    }

    #[test]
    fn the_kind_is_decided_by_licence_code_under_its_own_name() {
        assert_eq!(NoticeKind::of(&form(LCN)), NoticeKind::Lcn);
        assert_eq!(NoticeKind::of(&form("LICENSE_CODE=")), NoticeKind::Lcn);
        for ipn in [
            "REFNO=1&IPN_DATE=20261102100000",
            "LICENSE_CODE[]=3C343D0FAF&IPN_DATE=1",
            "license_code=3C343D0FAF",
            "IPN_LICENSE_REF[]=3C343D0FAF",
        ] {
            assert_eq!(NoticeKind::of(&form(ipn)), NoticeKind::Ipn, "{ipn}");
        }
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(NoticeKind::parse("LCN"), Some(NoticeKind::Lcn));
        assert_eq!(NoticeKind::parse("ins"), None);
    }

    /// An LCN is verified by the same code and rules as an IPN: every value
    /// in received order, length-prefixed, the signature fields left out
    /// wherever they are, with any key of the ring, the strongest
    /// signature deciding.
    #[test]
    fn an_lcn_verifies_with_the_rules_of_an_ipn() {
        let body = form(LCN);
        let source = source_string(&body).unwrap();
        assert_eq!(
            String::from_utf8(source.clone()).unwrap(),
            "4John5Smith019johnsmith@email.com12951-121-2121024United States of America\
             8New York8New York15101 Main Street103C343D0FAF102005-03-03\
             192005-03-03 12:34:34108DISABLED"
        );
        // Digests computed independently (Python's hmac) over that string
        // with the key of the documented example.
        let key = SecretKey::new(KEY);
        let digests = [
            (Algorithm::Md5, "406b7c150ea9098968891076b9083ea8"),
            (
                Algorithm::Sha256,
                "644bde7df2f243d0b234231d2920bcb8c6bdd64ab859a066df011089ecb35e8b",
            ),
            (
                Algorithm::Sha3_256,
                "5622531cf54053528a24924992b3ef1f6f4c99b4df0dec4e18aeecdb90671ca6",
            ),
        ];
        let ring = KeyRing::single(KEY);
        let all = [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha3_256];
        let signed = sign(&body, &key, &all).unwrap();
        for (algorithm, digest) in digests {
            assert_eq!(algorithm.mac_hex(&key, &source), digest, "{algorithm}");
            assert_eq!(signed.get(algorithm.field_name()), Some(digest));
        }
        let lax = SignaturePolicy {
            allow_md5: true,
            require: None,
        };
        let verified = verify(&signed, &ring, &lax).unwrap();
        assert_eq!(verified.algorithm, Algorithm::Sha3_256);
        // The signature fields are left out wherever they are: moved to the
        // front, the same signatures still verify.
        let mut moved = FormBody::default();
        for algorithm in all {
            moved.push(
                algorithm.field_name(),
                signed.get(algorithm.field_name()).unwrap(),
            );
        }
        for (name, value) in body.pairs() {
            moved.push(name, value);
        }
        assert_eq!(verify(&moved, &ring, &lax), Ok(verified.clone()));
        // Each algorithm alone, MD5 only when enabled.
        for algorithm in all {
            let one = sign(&body, &key, &[algorithm]).unwrap();
            let policy = SignaturePolicy {
                allow_md5: algorithm == Algorithm::Md5,
                require: None,
            };
            assert_eq!(verify(&one, &ring, &policy).unwrap().algorithm, algorithm);
        }
        let md5 = sign(&body, &key, &[Algorithm::Md5]).unwrap();
        assert_eq!(
            verify(&md5, &ring, &SignaturePolicy::default()),
            Err(VerifyError::Md5NotAllowed)
        );
        // One value changed: refused.
        let tampered = form(&signed.encode().replace("DISABLED", "ACTIVE"));
        assert_eq!(
            verify(&tampered, &ring, &lax),
            Err(VerifyError::Mismatch(Algorithm::Sha3_256))
        );
        // Names are not covered, as in an IPN: two names swapped still
        // verify (the domain refuses such a layout: `ipn_domain::layout`).
        let swapped = form(
            &signed
                .encode()
                .replace("TEST=0", "XTEST=0")
                .replace("STATUS=DISABLED", "TEST=DISABLED")
                .replace("XTEST=0", "STATUS=0"),
        );
        assert_eq!(swapped.get("STATUS"), Some("0"));
        assert_eq!(verify(&swapped, &ring, &lax), Ok(verified.clone()));
        // Another key of the ring verifies and is named.
        let rotated = KeyRing::parse("new NEWKEY\nold AABBCCDDEEFF\n").unwrap();
        assert_eq!(
            verify(&signed, &rotated, &lax).unwrap().key_id.as_str(),
            "old"
        );
        // A required algorithm cannot be stripped from an LCN either.
        let mut stripped = signed.clone();
        stripped.remove(Algorithm::Sha3_256.field_name());
        let require = SignaturePolicy {
            allow_md5: true,
            require: Some(Algorithm::Sha3_256),
        };
        assert_eq!(
            verify(&stripped, &ring, &require),
            Err(VerifyError::RequiredAlgorithmMissing(Algorithm::Sha3_256))
        );
    }

    #[test]
    fn the_receipt_of_each_kind_covers_its_own_fields() {
        let date = ReceiptDate::parse("20081117145935").unwrap();
        let key = SecretKey::new(KEY);
        let lcn = form(LCN);
        assert_eq!(
            NoticeKind::Lcn.receipt_source(&lcn, date).unwrap(),
            b"103C343D0FAF102005-03-031420081117145935"
        );
        assert_eq!(
            NoticeKind::Lcn
                .read_receipt(&lcn, &key, ReceiptFormat::Epayment, date)
                .unwrap(),
            "<EPAYMENT>20081117145935|cb34fe2991668eb82364edf62f845a34</EPAYMENT>"
        );
        assert_eq!(NoticeKind::Lcn.missing_receipt_field(&lcn), None);
        assert_eq!(
            NoticeKind::Lcn.missing_receipt_field(&form("LICENSE_CODE=3C343D0FAF")),
            Some("EXPIRATION_DATE")
        );
        let ipn = form("IPN_PID[]=1&IPN_PNAME[]=Software+program&IPN_DATE=20050303123434");
        let date = ReceiptDate::parse("20050303123434").unwrap();
        assert_eq!(
            NoticeKind::Ipn
                .read_receipt(&ipn, &key, ReceiptFormat::Epayment, date)
                .unwrap(),
            "<EPAYMENT>20050303123434|7bf97ed39681027d0c45aa45e3ea98f0</EPAYMENT>"
        );
        assert_eq!(NoticeKind::Ipn.missing_receipt_field(&ipn), None);
        assert_eq!(
            NoticeKind::Ipn.missing_receipt_field(&lcn),
            Some("IPN_PID[]")
        );
    }
}
