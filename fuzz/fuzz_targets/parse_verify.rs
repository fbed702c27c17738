//! Parses arbitrary bytes as a notification body, verifies it against a fixed
//! key ring and builds every read receipt: nothing may panic, and every
//! accepted signature must be the real HMAC of the source string.

#![no_main]

use std::sync::LazyLock;

use ipn_reconciler::ipn::{
    Algorithm, FormBody, FormLimits, KeyRing, ReceiptDate, ReceiptFormat, SignaturePolicy,
    read_receipt, sign, source_string, verify,
};
use libfuzzer_sys::fuzz_target;

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::parse("current AABBCCDDEEFF\nprevious s3cr3t-0ld\n").expect("fixed key ring")
});
static DATE: LazyLock<ReceiptDate> =
    LazyLock::new(|| ReceiptDate::parse("20050303123500").expect("fixed date"));

fuzz_target!(|data: &[u8]| {
    let limits = FormLimits::default();
    let Ok(form) = FormBody::parse(data, &limits) else {
        return;
    };
    // Encoding gives back the same fields.
    let again = FormBody::parse(form.encode().as_bytes(), &limits).expect("encoded body parses");
    assert_eq!(again, form);

    let policies = [false, true].into_iter().flat_map(|allow_md5| {
        [None, Some(Algorithm::Sha3_256), Some(Algorithm::Sha256)]
            .map(|require| SignaturePolicy { allow_md5, require })
    });
    for policy in policies {
        if let Ok(verified) = verify(&form, &RING, &policy) {
            // Only a genuine HMAC is accepted.
            let key = &RING
                .get(&verified.key_id)
                .expect("reported key is in the ring")
                .secret;
            let source = source_string(&form).expect("verified body has a source");
            let expected = verified.algorithm.mac_hex(key, &source);
            let sent = form
                .get(verified.algorithm.field_name())
                .expect("signature present");
            assert!(sent.eq_ignore_ascii_case(&expected));
            assert!(policy.accepts(verified.algorithm));
            // A required signature was present.
            if let Some(required) = policy.require {
                assert!(form.get(required.field_name()).is_some());
            }
        }
    }

    // Signing what was parsed always verifies with the signing key.
    let key = &RING.current().secret;
    if let Ok(signed) = sign(&form, key, &[Algorithm::Sha256]) {
        let verified =
            verify(&signed, &RING, &SignaturePolicy::default()).expect("re-signed body verifies");
        assert_eq!(verified.key_id, RING.current().id);
    }

    for format in [
        ReceiptFormat::Epayment,
        ReceiptFormat::Sig(Algorithm::Sha256),
        ReceiptFormat::Sig(Algorithm::Sha3_256),
    ] {
        match read_receipt(&form, key, format, *DATE) {
            Ok(receipt) => assert!(receipt.contains("20050303123500")),
            Err(_) => assert!(form.get("IPN_DATE").is_none()),
        }
    }
});
