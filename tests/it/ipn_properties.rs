//! Property tests of the IPN wire protocol: signing round-trips through the
//! wire format, tampering is detected exactly when it changes what the
//! signature covers, the parser and the verifier never panic, and key
//! rotation reports the key that matched.
//!
//! Note on what the signature covers (docs/protocol.md §3): only *values*, in grouped wire
//! order, are signed; field *names* are not. Renaming or swapping fields is
//! therefore detected exactly when it changes the source string (or makes the
//! body malformed) — the properties below assert that equivalence, in both
//! directions, rather than "every rename fails".

use std::collections::HashSet;

use ipn_reconciler::ipn::{
    Algorithm, Field, FormBody, FormLimits, KeyId, KeyRing, SecretKey, SignaturePolicy, SigningKey,
    VerifyError, parse_and_verify, sign, source_string, verify,
};
use proptest::prelude::*;
use proptest::sample::Index;

const SECRET: &str = "AABBCCDDEEFF";

/// MD5 is accepted here so that every algorithm can be exercised.
const ALL_ALGORITHMS: SignaturePolicy = SignaturePolicy {
    allow_md5: true,
    require: None,
};

fn ring() -> KeyRing {
    KeyRing::single(SECRET)
}

/// A small pool so that generated bodies repeat names (arrays spread over
/// the body, scalars next to arrays of the same stem).
const NAME_POOL: &[&str] = &[
    "REFNO",
    "REFNOEXT",
    "ORDERSTATUS",
    "IPN_PID",
    "IPN_PNAME",
    "IPN_QTY",
    "CURRENCY",
    "IPN_DATE",
    "X",
];

fn name_strategy() -> impl Strategy<Value = String> {
    let stem = prop_oneof![
        3 => prop::sample::select(NAME_POOL).prop_map(str::to_owned),
        1 => "[A-Z][A-Z0-9_]{0,12}",
        // Names that need percent-encoding on the wire.
        1 => "[A-Za-z][A-Za-z0-9 .&=+%é-]{0,8}",
    ];
    (stem, prop::bool::weighted(0.4)).prop_map(
        |(stem, array)| {
            if array { format!("{stem}[]") } else { stem }
        },
    )
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("0".to_owned()),
        3 => "[a-zA-Z0-9 &=+%.-]{0,16}",
        3 => any::<String>(),
    ]
}

/// A field list the processor could have signed: no signature fields among
/// the data, and no scalar name repeated (PHP would keep only the last).
fn fields_strategy(min: usize) -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec((name_strategy(), value_strategy()), min..24).prop_map(|pairs| {
        let mut seen_scalars = HashSet::new();
        pairs
            .into_iter()
            .filter(|(name, _)| !Algorithm::is_signature_field(name))
            .filter(|(name, _)| name.ends_with("[]") || seen_scalars.insert(name.clone()))
            .map(|(name, value)| Field { name, value })
            .collect()
    })
}

fn algorithms_strategy() -> impl Strategy<Value = Vec<Algorithm>> {
    prop::sample::subsequence(Algorithm::STRONGEST_FIRST.to_vec(), 1..=3).prop_shuffle()
}

fn strongest(algorithms: &[Algorithm]) -> Algorithm {
    *Algorithm::STRONGEST_FIRST
        .iter()
        .find(|a| algorithms.contains(a))
        .expect("at least one algorithm")
}

/// Signs `fields` and sends them through the wire format.
fn signed_on_the_wire(fields: Vec<Field>, algorithms: &[Algorithm]) -> FormBody {
    let form = sign(
        &FormBody::from_fields(fields),
        &SecretKey::new(SECRET),
        algorithms,
    )
    .expect("no repeated scalar");
    FormBody::parse(form.encode().as_bytes(), &FormLimits::default()).expect("encoded body parses")
}

/// Percent-encodes raw bytes (not necessarily UTF-8) for a hand-made body.
fn encode_bytes(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Every pair `(a, b)` with `a < b` of `indices`.
fn distinct_pairs(indices: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    indices
        .iter()
        .enumerate()
        .flat_map(move |(n, &a)| indices[n + 1..].iter().map(move |&b| (a, b)))
}

fn data_field_indices(form: &FormBody) -> Vec<usize> {
    form.fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !Algorithm::is_signature_field(&f.name))
        .map(|(i, _)| i)
        .collect()
}

/// Bytes that make the parser's interesting paths likely.
fn form_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(b"&=%+[]AaFf09HASH_".to_vec()),
            1 => any::<u8>(),
        ],
        0..256,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sign_encode_parse_verify_round_trips(
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
    ) {
        prop_assume!(!fields.is_empty());
        let wire = signed_on_the_wire(fields.clone(), &algorithms);
        // Parsing the encoded body gives back exactly the fields, then the
        // signatures.
        prop_assert_eq!(&wire.fields()[..fields.len()], &fields[..]);
        prop_assert_eq!(wire.fields().len(), fields.len() + algorithms.len());
        let unsigned = FormBody::from_fields(fields);
        prop_assert_eq!(source_string(&wire).unwrap(), source_string(&unsigned).unwrap());

        let verified = verify(&wire, &ring(), &ALL_ALGORITHMS).unwrap();
        prop_assert_eq!(verified.algorithm, strongest(&algorithms));
        prop_assert_eq!(verified.key_id.as_str(), KeyId::DEFAULT);
        // Every signature present is individually valid.
        for &algorithm in &algorithms {
            let mut alone = wire.clone();
            for other in Algorithm::STRONGEST_FIRST {
                if other != algorithm {
                    alone.remove(other.field_name());
                }
            }
            prop_assert_eq!(verify(&alone, &ring(), &ALL_ALGORITHMS).unwrap().algorithm, algorithm);
        }
    }

    #[test]
    fn source_string_is_the_grouped_values_length_prefixed(
        fields in prop::collection::vec((name_strategy(), value_strategy()), 1..24),
    ) {
        // Any field list, repeated scalars included: the source string (or
        // its error) is exactly the one defined by `grouped()`.
        let form = FormBody::from_fields(
            fields.into_iter().map(|(name, value)| Field { name, value }).collect(),
        );
        let expected = form.grouped().map(|groups| {
            let mut source = Vec::new();
            for (name, values) in groups {
                if !Algorithm::is_signature_field(name) {
                    for value in values {
                        source.extend_from_slice(value.len().to_string().as_bytes());
                        source.extend_from_slice(value.as_bytes());
                    }
                }
            }
            source
        });
        prop_assert_eq!(source_string(&form), expected);
    }

    #[test]
    fn a_stripped_required_signature_is_refused_whatever_else_verifies(
        fields in fields_strategy(1),
        weaker in prop::sample::subsequence(vec![Algorithm::Sha256, Algorithm::Md5], 1..=2),
        required in prop::sample::select(vec![Algorithm::Sha3_256, Algorithm::Sha256]),
    ) {
        prop_assume!(!fields.is_empty());
        // Signed with SHA3 and weaker ones, every one of them genuine.
        let mut algorithms = vec![Algorithm::Sha3_256];
        algorithms.extend(&weaker);
        let wire = signed_on_the_wire(fields, &algorithms);
        let require = SignaturePolicy { allow_md5: true, require: Some(required) };
        let present = algorithms.contains(&required);
        prop_assert_eq!(verify(&wire, &ring(), &require).is_ok(), present);
        // Strip the required field: the rest would verify without the
        // requirement (MD5 allowed), and is refused with it.
        let mut stripped = wire.clone();
        stripped.remove(required.field_name());
        prop_assume!(Algorithm::STRONGEST_FIRST.iter().any(|a| stripped.get(a.field_name()).is_some()));
        prop_assert!(verify(&stripped, &ring(), &ALL_ALGORITHMS).is_ok());
        prop_assert_eq!(
            verify(&stripped, &ring(), &require),
            Err(VerifyError::RequiredAlgorithmMissing(required))
        );
    }

    #[test]
    fn flipping_any_byte_of_any_value_fails(
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
        which in any::<Index>(),
        at in any::<Index>(),
        mask in 1u8..,
    ) {
        let wire = signed_on_the_wire(fields, &algorithms);
        let candidates: Vec<usize> = data_field_indices(&wire)
            .into_iter()
            .filter(|&i| !wire.fields()[i].value.is_empty())
            .collect();
        prop_assume!(!candidates.is_empty());
        let target = *which.get(&candidates);

        // Rebuild the raw body byte by byte, with one value byte flipped.
        let mut body = String::new();
        for (i, field) in wire.fields().iter().enumerate() {
            if i > 0 {
                body.push('&');
            }
            encode_bytes(field.name.as_bytes(), &mut body);
            body.push('=');
            let mut value = field.value.clone().into_bytes();
            if i == target {
                let byte = at.index(value.len());
                value[byte] ^= mask;
            }
            encode_bytes(&value, &mut body);
        }
        let result = parse_and_verify(body.as_bytes(), &FormLimits::default(), &ring(), &ALL_ALGORITHMS);
        match result {
            Err(VerifyError::Mismatch(algorithm)) => prop_assert_eq!(algorithm, strongest(&algorithms)),
            // The flip made the value invalid UTF-8: refused before the HMAC.
            Err(VerifyError::Malformed(_)) => {}
            other => prop_assert!(false, "tampered body was not refused: {:?}", other),
        }
    }

    #[test]
    fn dropping_any_data_field_fails(
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
        which in any::<Index>(),
    ) {
        let wire = signed_on_the_wire(fields, &algorithms);
        let candidates = data_field_indices(&wire);
        prop_assume!(!candidates.is_empty());
        let mut kept = wire.fields().to_vec();
        kept.remove(*which.get(&candidates));
        let dropped = FormBody::from_fields(kept);
        // Every value adds at least one byte ("0" for an empty one), so the
        // source is always shorter.
        prop_assert!(source_string(&dropped).unwrap().len() < source_string(&wire).unwrap().len());
        prop_assert_eq!(
            verify(&dropped, &ring(), &ALL_ALGORITHMS),
            Err(VerifyError::Mismatch(strongest(&algorithms)))
        );
    }

    #[test]
    fn renaming_a_field_fails_exactly_when_the_source_changes(
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
        which in any::<Index>(),
        new_name in name_strategy(),
    ) {
        let wire = signed_on_the_wire(fields, &algorithms);
        let candidates = data_field_indices(&wire);
        prop_assume!(!candidates.is_empty());
        let target = *which.get(&candidates);
        prop_assume!(wire.fields()[target].name != new_name);
        let mut renamed = wire.fields().to_vec();
        renamed[target].name = new_name;
        let renamed = FormBody::from_fields(renamed);

        let original = source_string(&wire).unwrap();
        let unchanged = source_string(&renamed).is_ok_and(|s| s == original);
        let result = verify(&renamed, &ring(), &ALL_ALGORITHMS);
        prop_assert_eq!(result.is_ok(), unchanged, "result {:?}", result);
        if !unchanged {
            prop_assert!(matches!(
                result,
                Err(VerifyError::Mismatch(_) | VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn renaming_a_field_into_a_signature_field_always_fails(
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
        which in any::<Index>(),
        into in prop::sample::select(Algorithm::STRONGEST_FIRST.to_vec()),
    ) {
        let wire = signed_on_the_wire(fields, &algorithms);
        let candidates = data_field_indices(&wire);
        prop_assume!(!candidates.is_empty());
        let mut renamed = wire.fields().to_vec();
        renamed[*which.get(&candidates)].name = into.field_name().to_owned();
        let result = verify(&FormBody::from_fields(renamed), &ring(), &ALL_ALGORITHMS);
        prop_assert!(result.is_err(), "renamed into {} and still verified", into.field_name());
    }

    #[test]
    fn swapping_two_fields_fails_exactly_when_the_source_changes(
        fields in fields_strategy(2),
        algorithms in algorithms_strategy(),
        pair in any::<Index>(),
    ) {
        let wire = signed_on_the_wire(fields, &algorithms);
        let candidates = data_field_indices(&wire);
        let f = wire.fields();
        let pairs: Vec<(usize, usize)> = distinct_pairs(&candidates)
            .filter(|&(a, b)| f[a].name != f[b].name || f[a].value != f[b].value)
            .collect();
        prop_assume!(!pairs.is_empty());
        let (a, b) = *pair.get(&pairs);
        let mut swapped = wire.fields().to_vec();
        swapped.swap(a, b);
        let swapped = FormBody::from_fields(swapped);

        let unchanged = source_string(&swapped).unwrap() == source_string(&wire).unwrap();
        let result = verify(&swapped, &ring(), &ALL_ALGORITHMS);
        prop_assert_eq!(result.is_ok(), unchanged, "result {:?}", result);
        if !unchanged {
            prop_assert_eq!(result, Err(VerifyError::Mismatch(strongest(&algorithms))));
        }
    }

    #[test]
    fn swapping_two_scalars_of_different_lengths_fails(
        fields in fields_strategy(2),
        algorithms in algorithms_strategy(),
        pair in any::<Index>(),
    ) {
        // Two scalar values of different byte lengths whose length prefixes
        // have the same number of digits: the swap moves a different-length
        // piece to the front of the first differing position, so the source
        // must change.
        let wire = signed_on_the_wire(fields, &algorithms);
        let scalars: Vec<usize> = data_field_indices(&wire)
            .into_iter()
            .filter(|&i| !wire.fields()[i].is_array_element())
            .collect();
        let len = |i: usize| wire.fields()[i].value.len();
        let pairs: Vec<(usize, usize)> = distinct_pairs(&scalars)
            .filter(|&(a, b)| len(a) != len(b) && len(a).to_string().len() == len(b).to_string().len())
            .collect();
        prop_assume!(!pairs.is_empty());
        let (a, b) = *pair.get(&pairs);
        let mut swapped = wire.fields().to_vec();
        swapped.swap(a, b);
        prop_assert_eq!(
            verify(&FormBody::from_fields(swapped), &ring(), &ALL_ALGORITHMS),
            Err(VerifyError::Mismatch(strongest(&algorithms)))
        );
    }

    #[test]
    fn parser_never_panics_and_round_trips_via_encode(
        body in prop_oneof![form_like_bytes(), prop::collection::vec(any::<u8>(), 0..512)],
    ) {
        let limits = FormLimits::default();
        match FormBody::parse(&body, &limits) {
            Ok(form) => {
                prop_assert!(!form.fields().is_empty());
                prop_assert!(form.fields().iter().all(|f| !f.name.is_empty()));
                let again = FormBody::parse(form.encode().as_bytes(), &limits).unwrap();
                prop_assert_eq!(again, form);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn verify_never_panics_on_arbitrary_bytes(
        body in prop_oneof![form_like_bytes(), prop::collection::vec(any::<u8>(), 0..512)],
        signature in prop::sample::select(Algorithm::STRONGEST_FIRST.to_vec()),
        hex in "[0-9a-fA-Fg]{0,70}",
    ) {
        let policy = ALL_ALGORITHMS;
        let limits = FormLimits::default();
        // Arbitrary bytes, and the same bytes with a signature-shaped field.
        let plain = parse_and_verify(&body, &limits, &ring(), &policy);
        prop_assert!(plain.is_err() || source_string(&plain.unwrap().0).is_ok());
        let mut with_signature = body.clone();
        with_signature.extend_from_slice(format!("&{}={hex}", signature.field_name()).as_bytes());
        if let Ok((form, verified)) = parse_and_verify(&with_signature, &limits, &ring(), &policy) {
            // Only a correct HMAC verifies: recompute it.
            let source = source_string(&form).unwrap();
            let expected = verified.algorithm.mac_hex(&SecretKey::new(SECRET), &source);
            let sent = form.get(verified.algorithm.field_name()).unwrap();
            prop_assert!(sent.eq_ignore_ascii_case(&expected));
        }
    }

    #[test]
    fn any_key_of_the_ring_verifies_and_is_reported(
        secrets in prop::collection::hash_set("[!-~]{1,80}", 1..6),
        signer in any::<Index>(),
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
    ) {
        prop_assume!(!fields.is_empty());
        let secrets: Vec<String> = secrets.into_iter().collect();
        let ring = KeyRing::new(
            secrets
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    SigningKey::new(KeyId::parse(&format!("key-{i}")).unwrap(), SecretKey::new(s.as_str()))
                })
                .collect(),
        )
        .unwrap();
        let signer = signer.index(secrets.len());
        let signed = sign(
            &FormBody::from_fields(fields),
            &SecretKey::new(secrets[signer].as_str()),
            &algorithms,
        )
        .unwrap();
        let verified = verify(&signed, &ring, &ALL_ALGORITHMS).unwrap();
        prop_assert_eq!(verified.key_id.as_str(), format!("key-{signer}"));
        prop_assert_eq!(&verified.key_id, &ring.keys()[signer].id);
        prop_assert_eq!(verified.algorithm, strongest(&algorithms));
    }

    #[test]
    fn a_key_outside_the_ring_fails(
        secrets in prop::collection::hash_set("[!-~]{1,80}", 2..6),
        fields in fields_strategy(1),
        algorithms in algorithms_strategy(),
    ) {
        prop_assume!(!fields.is_empty());
        // Printable secrets (no NUL) that differ are different HMAC keys.
        let mut secrets: Vec<String> = secrets.into_iter().collect();
        let outsider = secrets.pop().unwrap();
        let ring = KeyRing::new(
            secrets
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    SigningKey::new(KeyId::parse(&format!("key-{i}")).unwrap(), SecretKey::new(s.as_str()))
                })
                .collect(),
        )
        .unwrap();
        let signed = sign(&FormBody::from_fields(fields), &SecretKey::new(outsider), &algorithms).unwrap();
        prop_assert_eq!(
            verify(&signed, &ring, &ALL_ALGORITHMS),
            Err(VerifyError::Mismatch(strongest(&algorithms)))
        );
    }
}
