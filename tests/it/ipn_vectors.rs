//! Every test vector of `docs/protocol.md` §6, checked through the
//! public API of `ipn_reconciler::ipn`.
//!
//! The only literals compared against are the published or recomputed (docs/protocol.md §6)
//! digests and source strings; everything else is computed by the crate.

use ipn_reconciler::ipn::{
    Algorithm, Field, FormBody, FormLimits, KeyRing, ReceiptDate, ReceiptFormat, SecretKey,
    SignaturePolicy, VerifyError, parse_and_verify, read_receipt, receipt_source, source_string,
    verify,
};

/// The key of every vector (docs/protocol.md §6), used as its literal ASCII bytes.
const KEY: &str = "AABBCCDDEEFF";

fn key() -> SecretKey {
    SecretKey::new(KEY)
}

fn ring() -> KeyRing {
    KeyRing::single(KEY)
}

const MD5_ONLY: SignaturePolicy = SignaturePolicy {
    allow_md5: true,
    require: None,
};
const DEFAULT_POLICY: SignaturePolicy = SignaturePolicy {
    allow_md5: false,
    require: None,
};

fn parse(body: &str) -> FormBody {
    FormBody::parse(body.as_bytes(), &FormLimits::default()).expect("vector body parses")
}

fn date(text: &str) -> ReceiptDate {
    ReceiptDate::parse(text).expect("vector date parses")
}

/// Asserts the three digests of one source string.
fn assert_digests(source: &[u8], md5: &str, sha256: &str, sha3_256: &str) {
    let key = key();
    assert_eq!(Algorithm::Md5.mac_hex(&key, source), md5, "HMAC-MD5");
    assert_eq!(
        Algorithm::Sha256.mac_hex(&key, source),
        sha256,
        "HMAC-SHA256"
    );
    assert_eq!(
        Algorithm::Sha3_256.mac_hex(&key, source),
        sha3_256,
        "HMAC-SHA3-256"
    );
    // `mac` and `mac_hex` agree, and the raw digests have the right sizes.
    assert_eq!(hex::encode(Algorithm::Md5.mac(&key, source)), md5);
    assert_eq!(Algorithm::Md5.mac(&key, source).len(), 16);
    assert_eq!(Algorithm::Sha256.mac(&key, source).len(), 32);
    assert_eq!(Algorithm::Sha3_256.mac(&key, source).len(), 32);
}

/// Returns `form` with only the signature field of `algorithm`, set to
/// `signature`, appended at the end.
fn with_signature(form: &FormBody, algorithm: Algorithm, signature: &str) -> FormBody {
    let mut signed = form.clone();
    for other in Algorithm::STRONGEST_FIRST {
        signed.remove(other.field_name());
    }
    signed.push(algorithm.field_name(), signature);
    signed
}

// ---------------------------------------------------------------- V1 ----

const V1_SOURCE: &str = "1116Software program14200503031234341420050303123434";
const V1_MD5: &str = "7bf97ed39681027d0c45aa45e3ea98f0";
const V1_SHA256: &str = "ea6f44c39b3d204b59500998fcb9221c92744d9721a94b45fc6d5cda99980176";
const V1_SHA3_256: &str = "85180497aaaa4844a278b52b1ce257d2820dbf5857470a5f678fef2266d0d4a8";

#[test]
fn v1_digests_of_the_receipt_example() {
    assert_digests(V1_SOURCE.as_bytes(), V1_MD5, V1_SHA256, V1_SHA3_256);
}

#[test]
fn v1_epayment_receipt_is_rebuilt_from_a_body() {
    let form = parse("IPN_PID%5B%5D=1&IPN_PNAME%5B%5D=Software+program&IPN_DATE=20050303123434");
    let date = date("20050303123434");
    assert_eq!(receipt_source(&form, date).unwrap(), V1_SOURCE.as_bytes());
    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Epayment, date).unwrap(),
        "<EPAYMENT>20050303123434|7bf97ed39681027d0c45aa45e3ea98f0</EPAYMENT>"
    );
    // The SHA receipts of the same body carry the V1 SHA digests.
    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Sig(Algorithm::Sha256), date).unwrap(),
        format!("<sig algo=\"sha256\" date=\"20050303123434\">{V1_SHA256}</sig>")
    );
    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Sig(Algorithm::Sha3_256), date).unwrap(),
        format!("<sig algo=\"sha3-256\" date=\"20050303123434\">{V1_SHA3_256}</sig>")
    );
}

// ---------------------------------------------------------------- V2 ----

#[test]
fn v2_lcn_receipt_source() {
    assert_digests(
        b"103C343D0FAF102005-03-031420081117145935",
        "cb34fe2991668eb82364edf62f845a34",
        "cdd64ce75e6cf013a60291229c83063a5d903eae3bfa216e99aae8af65a055e8",
        "7fc19d21103ea56f1b413315fb3feb5fbdd137758623a73c7ed12d9bb84f21db",
    );
}

// ---------------------------------------------------------------- V3 ----

#[test]
fn v3_key_is_used_as_text_not_hex_decoded() {
    let decoded = hex::decode(KEY).unwrap();
    assert_eq!(decoded, [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]);
    let with_decoded = Algorithm::Md5.mac_hex(&SecretKey::new(decoded), V1_SOURCE.as_bytes());
    assert_eq!(with_decoded, "c0a687bfe58a367ae593f7128abd9a88");
    assert_ne!(with_decoded, V1_MD5);
    // And the key ring's text key gives the published V1 digest.
    assert_eq!(
        Algorithm::Md5.mac_hex(&ring().current().secret, V1_SOURCE.as_bytes()),
        V1_MD5
    );
}

// ---------------------------------------------------------------- V4 ----

const V4_SOURCE: &str = "192016-06-01 12:22:097100003702138COMPLETE13Wire transfer4John5Smith9BV-66778800000015101 Main Street08New York8New York650036524United States of America12951-121-2121019johnsmith@email.com4John5Smith015101 Main Street08New York8New York650036524United States of America12951-121-212114213.233.121.503USD1116Software program5PM_11011529.0040.00040.0000529.00534.0045.0043.381420050303123434";
const V4_MD5: &str = "b6077d5d2b5aef43ad6a448a737e1277";
const V4_SHA256: &str = "446e9136d319caf9e9efc1f1aa3dd69e15b9670bef391b901eea2c905e1cb3fb";
const V4_SHA3_256: &str = "51cbe7f593a248a9dece415d5f2ccb81da2777327aa5138f54d4fd1a6867e75c";

/// A plausible notification whose source string is V4: the docs' SALEDATE…
/// IPN_DATE table. The values are V4's length-prefixed pieces; the names are
/// our reconstruction (V4 publishes values only).
const V4_FIELDS: &[(&str, &str)] = &[
    ("SALEDATE", "2016-06-01 12:22:09"),
    ("REFNO", "1000037"),
    ("REFNOEXT", ""),
    ("ORDERNO", "13"),
    ("ORDERSTATUS", "COMPLETE"),
    ("PAYMETHOD", "Wire transfer"),
    ("FIRSTNAME", "John"),
    ("LASTNAME", "Smith"),
    ("CUSTOMER_ID", "BV-667788"),
    ("COMPANY", ""),
    ("REGISTRATIONNUMBER", ""),
    ("FISCALCODE", ""),
    ("TAX_OFFICE", ""),
    ("CBANKNAME", ""),
    ("CBANKACCOUNT", ""),
    ("ADDRESS1", "101 Main Street"),
    ("ADDRESS2", ""),
    ("CITY", "New York"),
    ("STATE", "New York"),
    ("ZIPCODE", "500365"),
    ("COUNTRY", "United States of America"),
    ("PHONE", "951-121-2121"),
    ("FAX", ""),
    ("CUSTOMEREMAIL", "johnsmith@email.com"),
    ("FIRSTNAME_D", "John"),
    ("LASTNAME_D", "Smith"),
    ("COMPANY_D", ""),
    ("ADDRESS1_D", "101 Main Street"),
    ("ADDRESS2_D", ""),
    ("CITY_D", "New York"),
    ("STATE_D", "New York"),
    ("ZIPCODE_D", "500365"),
    ("COUNTRY_D", "United States of America"),
    ("PHONE_D", "951-121-2121"),
    ("IPADDRESS", "213.233.121.50"),
    ("CURRENCY", "USD"),
    ("IPN_PID[]", "1"),
    ("IPN_PNAME[]", "Software program"),
    ("IPN_PCODE[]", "PM_11"),
    ("IPN_INFO[]", ""),
    ("IPN_QTY[]", "1"),
    ("IPN_PRICE[]", "29.00"),
    ("IPN_VAT[]", "0.00"),
    ("IPN_VER[]", ""),
    ("IPN_DISCOUNT[]", "0.00"),
    ("IPN_PROMONAME[]", ""),
    ("IPN_DELIVEREDCODES[]", ""),
    ("IPN_TOTAL[]", "29.00"),
    ("IPN_TOTALGENERAL", "34.00"),
    ("IPN_SHIPPING", "5.00"),
    ("IPN_COMMISSION", "3.38"),
    ("IPN_DATE", "20050303123434"),
];

fn v4_form() -> FormBody {
    let fields = V4_FIELDS
        .iter()
        .map(|&(name, value)| Field {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .collect();
    // Through the wire format: encode, then parse as a listener would.
    parse(&FormBody::from_fields(fields).encode())
}

#[test]
fn v4_source_is_390_bytes_with_the_three_digests() {
    assert_eq!(V4_SOURCE.len(), 390);
    assert_digests(V4_SOURCE.as_bytes(), V4_MD5, V4_SHA256, V4_SHA3_256);
}

#[test]
fn v4_reconstructed_body_has_the_v4_source_and_verifies() {
    let form = v4_form();
    assert_eq!(form.fields().len(), V4_FIELDS.len());
    assert_eq!(source_string(&form).unwrap(), V4_SOURCE.as_bytes());

    for (algorithm, signature) in [
        (Algorithm::Md5, V4_MD5),
        (Algorithm::Sha256, V4_SHA256),
        (Algorithm::Sha3_256, V4_SHA3_256),
    ] {
        let signed = with_signature(&form, algorithm, signature);
        // The signature field is left out of the source.
        assert_eq!(source_string(&signed).unwrap(), V4_SOURCE.as_bytes());
        let verified = verify(&signed, &ring(), &MD5_ONLY).unwrap();
        assert_eq!(verified.algorithm, algorithm);
        assert_eq!(verified.key_id.as_str(), "default");
        // Through the raw body too.
        let (_, verified) = parse_and_verify(
            signed.encode().as_bytes(),
            &FormLimits::default(),
            &ring(),
            &MD5_ONLY,
        )
        .unwrap();
        assert_eq!(verified.algorithm, algorithm);
    }
}

#[test]
fn v4_changing_one_value_breaks_the_signature() {
    let form = v4_form();
    let mut fields = form.fields().to_vec();
    let total = fields
        .iter_mut()
        .find(|f| f.name == "IPN_TOTALGENERAL")
        .unwrap();
    total.value = "35.00".to_owned();
    let tampered = with_signature(&FormBody::from_fields(fields), Algorithm::Sha256, V4_SHA256);
    assert_eq!(
        verify(&tampered, &ring(), &DEFAULT_POLICY),
        Err(VerifyError::Mismatch(Algorithm::Sha256))
    );
}

// ---------------------------------------------------------------- V5 ----

const V5_UNSIGNED: &str = "REFNO=1000037&REFNOEXT=&ORDERSTATUS=COMPLETE&IPN_PID%5B%5D=1&IPN_PID%5B%5D=2&IPN_PNAME%5B%5D=Software+program&IPN_PNAME%5B%5D=Caf%C3%A9&IPN_QTY%5B%5D=1&IPN_QTY%5B%5D=0&IPN_DATE=20050303123434&CURRENCY=EUR";
const V5_SOURCE: &str = "7100003708COMPLETE111216Software program5Café111014200503031234343EUR";
const V5_HASH: &str = "2301bcfc3ec8a77c66450cf53cf4d370";
const V5_SHA2_256: &str = "c183824e4ace8ca0e7b1bf3c3c159c2ee15ddd261983cc09f286c4fa7d0eb52a";
const V5_SHA3_256: &str = "802213c8220107c6f85f370796cc13dd4d41289d3ef5af4f3f34e9f0d776a12e";
const V5_RECEIPT_SOURCE: &str = "1116Software program14200503031234341420050303123500";
const V5_RECEIPT_MD5: &str = "168b1b464f974abd355029b3610deecd";
const V5_RECEIPT_SHA256: &str = "a58d99959f58c930ada595694bf6398b7d2909a99881f574af1a696e10022a16";
const V5_RECEIPT_SHA3_256: &str =
    "df6d5ebd9f6cdd0ac3502708d9376dbbcfd53cf27043eb86ee62f2f5ba6f59c5";

fn v5_body() -> String {
    format!(
        "{V5_UNSIGNED}&HASH={V5_HASH}&SIGNATURE_SHA2_256={V5_SHA2_256}&SIGNATURE_SHA3_256={V5_SHA3_256}"
    )
}

#[test]
fn v5_source_string_and_signatures() {
    let form = parse(&v5_body());
    let source = source_string(&form).unwrap();
    assert_eq!(source, V5_SOURCE.as_bytes());
    assert_eq!(source.len(), 70);
    // "Café" is 4 characters but 5 bytes.
    assert_eq!(
        form.values("IPN_PNAME[]").collect::<Vec<_>>(),
        ["Software program", "Café"]
    );
    assert_eq!(form.get("HASH"), Some(V5_HASH));
    assert_digests(&source, V5_HASH, V5_SHA2_256, V5_SHA3_256);
    // The unsigned body has the same source.
    assert_eq!(
        source_string(&parse(V5_UNSIGNED)).unwrap(),
        V5_SOURCE.as_bytes()
    );
}

#[test]
fn v5_full_body_verifies_with_the_strongest_signature() {
    let (form, verified) = parse_and_verify(
        v5_body().as_bytes(),
        &FormLimits::default(),
        &ring(),
        &DEFAULT_POLICY,
    )
    .unwrap();
    assert_eq!(verified.algorithm, Algorithm::Sha3_256);
    assert_eq!(verified.key_id.as_str(), "default");
    assert_eq!(form.get("REFNO"), Some("1000037"));
}

#[test]
fn v5_each_algorithm_alone() {
    let unsigned = parse(V5_UNSIGNED);
    for (algorithm, signature) in [
        (Algorithm::Md5, V5_HASH),
        (Algorithm::Sha256, V5_SHA2_256),
        (Algorithm::Sha3_256, V5_SHA3_256),
    ] {
        let body = format!("{V5_UNSIGNED}&{}={signature}", algorithm.field_name());
        let form = parse(&body);
        assert_eq!(form, with_signature(&unsigned, algorithm, signature));

        let by_default = verify(&form, &ring(), &DEFAULT_POLICY);
        if algorithm == Algorithm::Md5 {
            assert_eq!(by_default, Err(VerifyError::Md5NotAllowed));
        } else {
            assert_eq!(by_default.unwrap().algorithm, algorithm);
        }
        let verified = verify(&form, &ring(), &MD5_ONLY).unwrap();
        assert_eq!(verified.algorithm, algorithm);

        // A wrong key is refused for every algorithm.
        let wrong = KeyRing::single("AABBCCDDEEF0");
        assert_eq!(
            verify(&form, &wrong, &MD5_ONLY),
            Err(VerifyError::Mismatch(algorithm))
        );
    }
}

#[test]
fn v5_receipt_source_digests_and_formats() {
    let form = parse(&v5_body());
    let date = date("20050303123500");
    let source = receipt_source(&form, date).unwrap();
    assert_eq!(source, V5_RECEIPT_SOURCE.as_bytes());
    assert_digests(
        &source,
        V5_RECEIPT_MD5,
        V5_RECEIPT_SHA256,
        V5_RECEIPT_SHA3_256,
    );

    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Epayment, date).unwrap(),
        "<EPAYMENT>20050303123500|168b1b464f974abd355029b3610deecd</EPAYMENT>"
    );
    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Sig(Algorithm::Sha256), date).unwrap(),
        "<sig algo=\"sha256\" date=\"20050303123500\">a58d99959f58c930ada595694bf6398b7d2909a99881f574af1a696e10022a16</sig>"
    );
    assert_eq!(
        read_receipt(&form, &key(), ReceiptFormat::Sig(Algorithm::Sha3_256), date).unwrap(),
        "<sig algo=\"sha3-256\" date=\"20050303123500\">df6d5ebd9f6cdd0ac3502708d9376dbbcfd53cf27043eb86ee62f2f5ba6f59c5</sig>"
    );
    // The format answering each algorithm.
    assert_eq!(
        ReceiptFormat::for_algorithm(Algorithm::Md5),
        ReceiptFormat::Epayment
    );
    assert_eq!(
        ReceiptFormat::for_algorithm(Algorithm::Sha3_256),
        ReceiptFormat::Sig(Algorithm::Sha3_256)
    );
}
