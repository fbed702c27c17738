//! Cost of verifying one notification, compared with the bare HMAC over the
//! same bytes.
//!
//! `cargo bench --bench verify` runs the criterion benchmarks, then a short
//! in-process measurement (median of several timed batches) and prints one
//! summary line per algorithm: notifications verified per second and the
//! ratio full verification / bare HMAC. Target: ratio within 3x.
//! `cargo bench --bench verify -- --quick` finishes in well under a minute.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ipn_reconciler::ipn::{
    Algorithm, Field, FormBody, FormLimits, KeyRing, SecretKey, SignaturePolicy, parse_and_verify,
    sign,
};

const SECRET: &str = "k3y-0f-th3-m3rchant-4cc0unt";

/// A realistic notification: the fields of docs/protocol.md §1.1 in fixture order, three
/// product lines, then the signature. About 3 KB once encoded.
fn notification_fields() -> Vec<Field> {
    let mut fields = Vec::new();
    let scalar = |fields: &mut Vec<Field>, name: &str, value: &str| {
        fields.push(Field {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    };
    for (name, value) in [
        ("GIFT_ORDER", "0"),
        ("SALEDATE", "2024-05-14 09:12:44"),
        ("PAYMENTDATE", "2024-05-14 09:13:02"),
        ("COMPLETE_DATE", "2024-05-14 09:15:37"),
        ("REFNO", "254510700"),
        ("REFNOEXT", "ORD-2024-000123"),
        ("ORDERNO", "41872"),
        ("ORDERSTATUS", "COMPLETE"),
        ("PAYMETHOD", "Visa/MasterCard"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "Zoë"),
        ("LASTNAME", "Müller-Lüdenscheidt"),
        ("COMPANY", "Acme Widgets & Sons GmbH"),
        ("REGISTRATIONNUMBER", ""),
        ("FISCALCODE", "DE123456789"),
        ("ADDRESS1", "Königsallee 92a"),
        ("ADDRESS2", "3. OG, Zimmer 12"),
        ("CITY", "Düsseldorf"),
        ("STATE", "Nordrhein-Westfalen"),
        ("ZIPCODE", "40212"),
        ("COUNTRY", "Germany"),
        ("COUNTRY_CODE", "de"),
        ("PHONE", "+49 211 1234567"),
        ("FAX", ""),
        ("CUSTOMEREMAIL", "zoe.mueller+orders@acme-widgets.example"),
        ("IPADDRESS", "203.0.113.77"),
        ("TIMEZONE_OFFSET", "GMT+03:00"),
        ("CURRENCY", "EUR"),
        ("LANGUAGE", "de"),
        ("ORDERFLOW", "REGULAR"),
    ] {
        scalar(&mut fields, name, value);
    }
    let products: [[&str; 3]; 19] = [
        ["4711001", "4711002", "4711003"], // IPN_PID[]
        [
            "Widget Pro – Jahreslizenz",
            "Widget Cloud Speicher 100 GB",
            "Priority Support",
        ], // IPN_PNAME[]
        ["WPRO-1Y", "WCLOUD-100", "SUPPORT-PRIO"], // IPN_PCODE[]
        ["ext-881", "ext-882", ""],        // IPN_EXTERNAL_REFERENCE[]
        ["", "Region: eu-central", ""],    // IPN_INFO[]
        ["1", "3", "1"],                   // IPN_QTY[]
        ["199.00", "4.99", "49.00"],       // IPN_PRICE[]
        ["37.81", "2.84", "9.31"],         // IPN_VAT[]
        ["19.00", "19.00", "19.00"],       // IPN_VAT_RATE[]
        ["2024.2", "", "1.0"],             // IPN_VER[]
        ["0.00", "0.00", "5.00"],          // IPN_DISCOUNT[]
        ["", "", "GLOBAL"],                // IPN_PROMOTION_CATEGORY[]
        ["", "", "Spring sale 10%"],       // IPN_PROMONAME[]
        ["", "", "SPRING10"],              // IPN_PROMOCODE[]
        ["0.00", "0.00", "0.00"],          // IPN_ORDER_COSTS[]
        ["SKU-WPRO-1Y-DE", "SKU-WCLOUD-100", "SKU-SUP-PRIO"], // IPN_SKU[]
        ["12", "14", "12"],                // IPN_PGROUP[]
        ["Desktop software", "Cloud services", "Desktop software"], // IPN_PGROUP_NAME[]
        ["236.81", "17.81", "52.31"],      // IPN_TOTAL[]
    ];
    let array_names = [
        "IPN_PID[]",
        "IPN_PNAME[]",
        "IPN_PCODE[]",
        "IPN_EXTERNAL_REFERENCE[]",
        "IPN_INFO[]",
        "IPN_QTY[]",
        "IPN_PRICE[]",
        "IPN_VAT[]",
        "IPN_VAT_RATE[]",
        "IPN_VER[]",
        "IPN_DISCOUNT[]",
        "IPN_PROMOTION_CATEGORY[]",
        "IPN_PROMONAME[]",
        "IPN_PROMOCODE[]",
        "IPN_ORDER_COSTS[]",
        "IPN_SKU[]",
        "IPN_PGROUP[]",
        "IPN_PGROUP_NAME[]",
        "IPN_TOTAL[]",
    ];
    for (n, (name, values)) in array_names.iter().zip(products).enumerate() {
        for value in values {
            scalar(&mut fields, name, value);
        }
        if n == 10 {
            // A scalar between array fields, as in the vendor fixtures.
            scalar(&mut fields, "IPN_PARTNER_CODE", "");
        }
    }
    for (name, values) in [
        ("IPN_LICENSE_PROD[]", ["4711001", "4711002", "4711003"]),
        ("IPN_LICENSE_TYPE[]", ["REGULAR", "REGULAR", "REGULAR"]),
        (
            "IPN_LICENSE_REF[]",
            ["A1B2C3D4E5", "F6G7H8I9J0", "K1L2M3N4O5"],
        ),
        (
            "IPN_LICENSE_EXP[]",
            [
                "2025-05-14 09:15:37",
                "2024-06-14 09:15:37",
                "9999-12-31 23:59:59",
            ],
        ),
        ("IPN_LICENSE_LIFETIME[]", ["NO", "NO", "YES"]),
        (
            "IPN_DELIVEREDCODES[]",
            ["WPRO-7H3K-99QX-LM2Z", "", "SUP-PRIO-0042"],
        ),
    ] {
        for value in values {
            scalar(&mut fields, name, value);
        }
    }
    for (name, value) in [
        (
            "IPN_DOWNLOAD_LINK",
            "https://secure.example.com/dl/ab12cd34",
        ),
        ("IPN_TOTALGENERAL", "306.93"),
        ("IPN_SHIPPING", "0.00"),
        ("IPN_SHIPPING_TAX", "0.00"),
        ("IPN_COMMISSION", "18.42"),
        ("IPN_PARTNER_MARGIN", "0.00"),
        ("IPN_EXTRA_DISCOUNT", "0.00"),
        ("IPN_COUPON_DISCOUNT", "2.45"),
        ("IPN_LINK_SOURCE", "newsletter-2024-05"),
        ("IPN_ORDER_ORIGIN", "API"),
        ("AVANGATE_CUSTOMER_REFERENCE", "811234567"),
        ("EXTERNAL_CUSTOMER_REFERENCE", "CUST-000042"),
        ("REFUND_TYPE", ""),
        ("CHARGEBACK_RESOLUTION", "NONE"),
        ("TEST_ORDER", "0"),
        ("FRAUD_STATUS", "APPROVED"),
        ("CARD_TYPE", "visa"),
        ("CARD_LAST_DIGITS", "1111"),
        ("CARD_EXPIRATION_DATE", "12/27"),
        ("GATEWAY_RESPONSE", "Approved"),
        ("IPN_DATE", "20240514091540"),
        ("FX_RATE", "1"),
        ("PAYABLE_AMOUNT", "270.21"),
        ("PAYOUT_CURRENCY", "EUR"),
        ("VENDOR_CODE", "ACMEWIDG"),
        ("MESSAGE_ID", "254510700124"),
        ("MESSAGE_TYPE", "COMPLETE"),
    ] {
        scalar(&mut fields, name, value);
    }
    fields
}

/// The encoded body signed with `algorithm` only.
fn signed_body(algorithm: Algorithm) -> Vec<u8> {
    let form = sign(
        &FormBody::from_fields(notification_fields()),
        &SecretKey::new(SECRET),
        &[algorithm],
    )
    .expect("benchmark body is well formed");
    form.encode().into_bytes()
}

struct Case {
    algorithm: Algorithm,
    body: Vec<u8>,
}

fn cases() -> Vec<Case> {
    [Algorithm::Sha256, Algorithm::Sha3_256]
        .into_iter()
        .map(|algorithm| Case {
            algorithm,
            body: signed_body(algorithm),
        })
        .collect()
}

fn full(body: &[u8], ring: &KeyRing, limits: &FormLimits) {
    let policy = SignaturePolicy::default();
    let verified = parse_and_verify(black_box(body), limits, ring, &policy);
    black_box(verified.expect("benchmark body verifies"));
}

fn bare(algorithm: Algorithm, key: &SecretKey, body: &[u8]) {
    black_box(algorithm.mac(key, black_box(body)));
}

fn criterion_benches(c: &mut Criterion, cases: &[Case]) {
    let ring = KeyRing::single(SECRET);
    let key = SecretKey::new(SECRET);
    let limits = FormLimits::default();
    let mut group = c.benchmark_group("verify");
    for case in cases {
        let name = case.algorithm.as_str();
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(format!("bare_hmac_{name}"), |b| {
            b.iter(|| bare(case.algorithm, &key, &case.body));
        });
        group.bench_function(format!("parse_and_verify_{name}"), |b| {
            b.iter(|| full(&case.body, &ring, &limits));
        });
    }
    group.bench_function("parse_only", |b| {
        b.iter(|| FormBody::parse(black_box(&cases[0].body), &limits).expect("parses"));
    });
    group.finish();
}

/// Median time per call of `f`, over `batches` timed batches sized to take
/// about `batch_time` each.
fn median_per_call(mut f: impl FnMut(), batches: usize, batch_time: Duration) -> Duration {
    // Warm up and size the batch.
    let mut per_batch = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        if start.elapsed() >= batch_time / 4 || per_batch >= 1 << 24 {
            break;
        }
        per_batch *= 2;
    }
    per_batch *= 4;
    let mut samples: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            start.elapsed() / per_batch
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn summary(cases: &[Case]) {
    let ring = KeyRing::single(SECRET);
    let key = SecretKey::new(SECRET);
    let limits = FormLimits::default();
    let batch = Duration::from_millis(40);
    println!();
    for case in cases {
        let form = FormBody::parse(&case.body, &limits).expect("parses");
        // Interleave the two measurements so that frequency scaling and
        // neighbours affect both alike.
        let mut bare_samples = Vec::new();
        let mut full_samples = Vec::new();
        for _ in 0..3 {
            bare_samples.push(median_per_call(
                || bare(case.algorithm, &key, &case.body),
                7,
                batch,
            ));
            full_samples.push(median_per_call(
                || full(&case.body, &ring, &limits),
                7,
                batch,
            ));
        }
        bare_samples.sort();
        full_samples.sort();
        let bare_time = bare_samples[1];
        let full_time = full_samples[1];
        let ratio = full_time.as_secs_f64() / bare_time.as_secs_f64();
        println!(
            "SUMMARY {algo}: body {bytes} bytes, {fields} fields; bare HMAC {bare:.2} us, \
             parse_and_verify {full:.2} us => {rate:.0} notifications/s, ratio full/bare {ratio:.2}x \
             (target <= 3x: {verdict})",
            algo = case.algorithm,
            bytes = case.body.len(),
            fields = form.fields().len(),
            bare = bare_time.as_secs_f64() * 1e6,
            full = full_time.as_secs_f64() * 1e6,
            rate = 1.0 / full_time.as_secs_f64(),
            verdict = if ratio <= 3.0 { "met" } else { "MISSED" },
        );
    }
}

fn main() {
    let cases = cases();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &cases);
    criterion.final_summary();
    // `cargo test --benches` runs this binary in test mode: skip the timing.
    if std::env::args().any(|arg| arg == "--bench") {
        summary(&cases);
    }
}
