//! `ipn-reconciler ipn ...` as an operator uses it: exit codes and output.

use crate::helpers::{fixture_files, repo_path};
use assert_cmd::Command;
use predicates::prelude::*;

fn ipn() -> Command {
    let mut cmd = Command::cargo_bin("ipn-reconciler").expect("binary");
    cmd.env_remove("IPN_KEYS_FILE")
        .env_remove("IPN_ALLOW_MD5")
        .env_remove("IPN_REQUIRE_ALGORITHM");
    cmd
}

fn keys() -> String {
    repo_path("fixtures/keys/test.keys").display().to_string()
}

#[test]
fn every_fixture_verifies_and_names_its_key_and_algorithm() {
    for file in fixture_files() {
        let expected_key = if file.to_string_lossy().contains("shop-1003") {
            "test-2025"
        } else {
            "test-2026"
        };
        ipn()
            .args(["ipn", "verify", "--key-file", &keys()])
            .arg(&file)
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!(
                "key {expected_key} algorithm sha3-256"
            )));
    }
}

#[test]
fn the_keys_file_can_come_from_the_environment_and_the_body_from_stdin() {
    let body = std::fs::read(&fixture_files()[0]).expect("fixture");
    ipn()
        .env("IPN_KEYS_FILE", keys())
        .args(["ipn", "verify", "-"])
        .write_stdin(body)
        .assert()
        .code(0);
}

#[test]
fn a_tampered_body_exits_1_without_printing_values() {
    let body = std::fs::read_to_string(&fixture_files()[2]).expect("fixture");
    let tampered = body.replace("IPN_TOTALGENERAL=107.00", "IPN_TOTALGENERAL=1.00");
    assert_ne!(body, tampered, "the fixture has the field we tamper with");
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(tampered)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not match"))
        .stderr(predicate::str::contains("Muñoz").not());
}

#[test]
fn malformed_input_and_usage_errors_exit_2() {
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(b"REFNO=1&FIRSTNAME=J%FCrgen".to_vec())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("FIRSTNAME"))
        .stderr(predicate::str::contains("rgen").not());
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(vec![b'A'; 70 * 1024])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("over the limit"));
    ipn()
        .args(["ipn", "verify", "--no-such-flag"])
        .assert()
        .code(2);
}

#[test]
fn md5_is_refused_unless_allowed() {
    let body = std::fs::read(&fixture_files()[0]).expect("fixture");
    let signed = ipn()
        .args([
            "ipn",
            "sign",
            "--key-file",
            &keys(),
            "--algorithms",
            "md5",
            "-",
        ])
        .write_stdin(body)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(signed.clone())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("MD5"));
    ipn()
        .args(["ipn", "verify", "--allow-md5", "--key-file", &keys(), "-"])
        .write_stdin(signed)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("algorithm md5"));
}

#[test]
fn sign_then_verify_round_trips_through_the_cli() {
    let body =
        "REFNO=1&REFNOEXT=&IPN_PID%5B%5D=1&IPN_PNAME%5B%5D=Caf%C3%A9&IPN_DATE=20050303123434";
    let signed = ipn()
        .args(["ipn", "sign", "--key-file", &keys(), "-"])
        .write_stdin(body)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(signed.clone()).expect("utf-8");
    assert!(text.contains("SIGNATURE_SHA3_256=") && text.contains("SIGNATURE_SHA2_256="));
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(signed)
        .assert()
        .code(0);
}

#[test]
fn receipts_in_both_formats_match_the_spec_vector() {
    // Spec V5: IPN_PID[0]=1, IPN_PNAME[0]="Software program",
    // IPN_DATE=20050303123434, DATE=20050303123500, key AABBCCDDEEFF.
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("spec.keys");
    std::fs::write(&key_file, "AABBCCDDEEFF\n").expect("write key");
    let body = "IPN_PID%5B%5D=1&IPN_PID%5B%5D=2&IPN_PNAME%5B%5D=Software+program&IPN_PNAME%5B%5D=Caf%C3%A9&IPN_DATE=20050303123434";
    // The body carries no signature: --unverified answers it anyway.
    let receipt = |format: &str, algorithm: &str| {
        ipn()
            .args(["ipn", "receipt", "--unverified", "--key-file"])
            .arg(&key_file)
            .args([
                "--format",
                format,
                "--algorithm",
                algorithm,
                "--date",
                "20050303123500",
                "-",
            ])
            .write_stdin(body)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone()
    };
    assert_eq!(
        String::from_utf8(receipt("epayment", "md5"))
            .expect("utf-8")
            .trim_end(),
        "<EPAYMENT>20050303123500|168b1b464f974abd355029b3610deecd</EPAYMENT>"
    );
    assert_eq!(
        String::from_utf8(receipt("sig", "sha256"))
            .expect("utf-8")
            .trim_end(),
        "<sig algo=\"sha256\" date=\"20050303123500\">a58d99959f58c930ada595694bf6398b7d2909a99881f574af1a696e10022a16</sig>"
    );
    assert_eq!(
        String::from_utf8(receipt("sig", "sha3-256"))
            .expect("utf-8")
            .trim_end(),
        "<sig algo=\"sha3-256\" date=\"20050303123500\">df6d5ebd9f6cdd0ac3502708d9376dbbcfd53cf27043eb86ee62f2f5ba6f59c5</sig>"
    );
}

#[test]
fn a_missing_key_file_is_a_clear_error_without_secrets() {
    ipn()
        .args(["ipn", "verify", "--key-file", "/nonexistent/keys"])
        .arg(&fixture_files()[0])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/keys"));
}

#[test]
fn sign_and_receipt_refuse_bad_input_with_exit_2() {
    ipn()
        .args(["ipn", "sign", "--key-file", &keys(), "-"])
        .write_stdin(b"A=%FF".to_vec())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("malformed"));
    ipn()
        .args([
            "ipn",
            "sign",
            "--key-file",
            &keys(),
            "--algorithms",
            "sha1",
            "-",
        ])
        .write_stdin("A=1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sha1"));
    ipn()
        .args(["ipn", "receipt", "--unverified", "--key-file", &keys(), "-"])
        .write_stdin("IPN_PID%5B%5D=1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("IPN_DATE"));
    for (args, message) in [
        (&["--algorithm", "sha1"][..], "sha1"),
        (&["--format", "sig", "--algorithm", "md5"], "not md5"),
        (
            &["--format", "epayment", "--algorithm", "sha256"],
            "epayment",
        ),
    ] {
        ipn()
            .args(["ipn", "receipt", "--key-file", &keys()])
            .args(args)
            .arg("-")
            .write_stdin("IPN_DATE=20050303123434")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    ipn()
        .args([
            "ipn",
            "receipt",
            "--key-file",
            &keys(),
            "--date",
            "yesterday",
            "-",
        ])
        .write_stdin("IPN_DATE=20050303123434")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("YmdHis"));
}

#[test]
fn a_required_algorithm_cannot_be_stripped_on_the_command_line() {
    let body = std::fs::read(&fixture_files()[0]).expect("fixture");
    let signed = ipn()
        .args([
            "ipn",
            "sign",
            "--key-file",
            &keys(),
            "--algorithms",
            "sha3,sha256,md5",
            "-",
        ])
        .write_stdin(body)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let stripped: String = String::from_utf8(signed.clone())
        .expect("utf-8")
        .trim_end()
        .split('&')
        .filter(|pair| !pair.starts_with("SIGNATURE_SHA3_256="))
        .collect::<Vec<_>>()
        .join("&");
    let verify = |body: Vec<u8>, extra: &[&str]| {
        ipn()
            .args(["ipn", "verify", "--allow-md5", "--key-file", &keys()])
            .args(extra)
            .arg("-")
            .write_stdin(body)
            .assert()
    };
    verify(stripped.clone().into_bytes(), &[])
        .code(0)
        .stdout(predicate::str::contains("algorithm sha256"));
    verify(
        stripped.clone().into_bytes(),
        &["--require-algorithm", "sha3-256"],
    )
    .code(1)
    .stderr(predicate::str::contains("SIGNATURE_SHA3_256"))
    .stderr(predicate::str::contains("missing"));
    ipn()
        .env("IPN_REQUIRE_ALGORITHM", "sha3-256")
        .args(["ipn", "verify", "--allow-md5", "--key-file", &keys(), "-"])
        .write_stdin(stripped.into_bytes())
        .assert()
        .code(1);
    verify(signed, &["--require-algorithm", "sha3-256"])
        .code(0)
        .stdout(predicate::str::contains("algorithm sha3-256"));
    verify(Vec::new(), &["--require-algorithm", "md5"])
        .code(2)
        .stderr(predicate::str::contains("MD5 cannot be required"));
}

/// The fixture of order SHOP-1003, signed with the older key of the ring.
fn signed_with_the_older_key() -> std::path::PathBuf {
    fixture_files()
        .into_iter()
        .find(|file| file.to_string_lossy().contains("shop-1003"))
        .expect("the SHOP-1003 fixture")
}

fn receipt_with(key: &str, body: &[u8], format: ipn_reconciler::ipn::ReceiptFormat) -> String {
    use ipn_reconciler::ipn::{FormBody, FormLimits, ReceiptDate, SecretKey, read_receipt};
    let form = FormBody::parse(body, &FormLimits::default()).expect("body parses");
    let date = ReceiptDate::parse("20261102100000").expect("date");
    read_receipt(&form, &SecretKey::new(key), format, date).expect("receipt")
}

#[test]
fn a_receipt_is_signed_with_the_key_that_verified_the_body() {
    use ipn_reconciler::ipn::{Algorithm, ReceiptFormat};
    let file = signed_with_the_older_key();
    let body = std::fs::read(&file).expect("fixture");
    let output = ipn()
        .args([
            "ipn",
            "receipt",
            "--key-file",
            &keys(),
            "--date",
            "20261102100000",
        ])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let receipt = String::from_utf8(output).expect("utf-8");
    let sig = ReceiptFormat::Sig(Algorithm::Sha3_256);
    let older = receipt_with("ipn-reconciler-TEST-ONLY-2025-key", &body, sig);
    let current = receipt_with("ipn-reconciler-TEST-ONLY-2026-key", &body, sig);
    assert_ne!(older, current);
    assert_eq!(
        receipt.trim_end(),
        older,
        "answered with the verifying (older) key"
    );
    // An explicit algorithm or format changes the answer, not the key.
    let output = ipn()
        .args([
            "ipn",
            "receipt",
            "--key-file",
            &keys(),
            "--date",
            "20261102100000",
        ])
        .args(["--algorithm", "sha256"])
        .arg(&file)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(output).expect("utf-8").trim_end(),
        receipt_with(
            "ipn-reconciler-TEST-ONLY-2025-key",
            &body,
            ReceiptFormat::Sig(Algorithm::Sha256)
        )
    );
}

#[test]
fn a_body_that_does_not_verify_gets_no_receipt_unless_unverified() {
    let body = std::fs::read_to_string(&fixture_files()[2]).expect("fixture");
    let tampered = body.replace("IPN_TOTALGENERAL=107.00", "IPN_TOTALGENERAL=1.00");
    assert_ne!(body, tampered);
    ipn()
        .args(["ipn", "receipt", "--key-file", &keys(), "-"])
        .write_stdin(tampered.clone())
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("does not match"))
        .stderr(predicate::str::contains("--unverified"))
        .stderr(predicate::str::contains("Muñoz").not());
    let output = ipn()
        .args(["ipn", "receipt", "--unverified", "--key-file", &keys()])
        .args(["--date", "20261102100000", "-"])
        .write_stdin(tampered.clone())
        .assert()
        .code(0)
        .stderr(predicate::str::contains("test-2026"))
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(output).expect("utf-8").trim_end(),
        receipt_with(
            "ipn-reconciler-TEST-ONLY-2026-key",
            tampered.as_bytes(),
            ipn_reconciler::ipn::ReceiptFormat::Sig(ipn_reconciler::ipn::Algorithm::Sha3_256)
        ),
        "current key, strongest algorithm present"
    );
    // An MD5-only body needs --allow-md5, and is then answered <EPAYMENT>.
    let md5 = ipn()
        .args([
            "ipn",
            "sign",
            "--key-file",
            &keys(),
            "--algorithms",
            "md5",
            "-",
        ])
        .write_stdin(body)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    ipn()
        .args(["ipn", "receipt", "--key-file", &keys(), "-"])
        .write_stdin(md5.clone())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("MD5"));
    ipn()
        .args(["ipn", "receipt", "--allow-md5", "--key-file", &keys(), "-"])
        .write_stdin(md5)
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("<EPAYMENT>"));
}

/// `ipn verify FILE...`: one line per file, the worst verdict decides the
/// exit code (malformed or unreadable 2, invalid 1, all valid 0).
#[test]
fn verify_takes_several_files_and_exits_with_the_worst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = fixture_files();
    let (first, second) = (&files[0], &files[1]);
    let body = std::fs::read_to_string(&files[2]).expect("fixture");
    let tampered = dir.path().join("tampered.txt");
    std::fs::write(
        &tampered,
        body.replace("IPN_TOTALGENERAL=107.00", "IPN_TOTALGENERAL=1.00"),
    )
    .expect("write");
    let malformed = dir.path().join("malformed.txt");
    std::fs::write(&malformed, "REFNO=1&FIRSTNAME=J%FCrgen").expect("write");
    let missing = dir.path().join("missing.txt");
    let verify = |paths: &[&std::path::Path]| {
        let mut cmd = ipn();
        cmd.args(["ipn", "verify", "--key-file", &keys()])
            .args(paths);
        cmd.assert()
    };

    let all_valid = verify(&[first, second]).code(0);
    let out = String::from_utf8(all_valid.get_output().stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!(
            "{}: valid key test-2026 algorithm sha3-256",
            first.display()
        )
    );
    assert!(lines[1].starts_with(&format!("{}: valid key ", second.display())));

    verify(&[first, &tampered, second])
        .code(1)
        .stdout(predicate::str::contains(second.display().to_string()))
        .stderr(predicate::str::contains(format!(
            "{}: invalid: ",
            tampered.display()
        )))
        .stderr(predicate::str::contains("Muñoz").not());
    verify(&[&malformed, &tampered])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}: malformed: ",
            malformed.display()
        )))
        .stderr(predicate::str::contains("rgen").not())
        .stderr(predicate::str::contains(format!(
            "{}: invalid",
            tampered.display()
        )));
    verify(&[first, &missing])
        .code(2)
        .stdout(predicate::str::contains(first.display().to_string()))
        .stderr(predicate::str::contains(format!(
            "{}: cannot read: ",
            missing.display()
        )));
    ipn()
        .args(["ipn", "verify", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"))
        .stdout(predicate::str::contains("cannot read"));
}

/// `ipn sign` signs notification forms only: a body that is not one (a
/// wrong file, text typed by mistake) is refused, not turned into `hello=`.
#[test]
fn sign_refuses_a_body_that_is_not_a_notification() {
    for (body, says) in [
        ("hello", "field #1 has no `=`"),
        (
            "REFNO=1&hello&IPN_DATE=20261102100000",
            "field #2 has no `=`",
        ),
        ("REFNO=1&REFNOEXT=A-1", "no IPN_DATE field"),
    ] {
        ipn()
            .args(["ipn", "sign", "--key-file", &keys(), "-"])
            .write_stdin(body)
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(says))
            .stderr(predicate::str::contains("hello").not());
    }
}

/// Issue 21: `ipn receipt` answers a licence change notification (a body
/// with LICENSE_CODE) with the LCN receipt; the processor's documented
/// example: licence code 3C343D0FAF, expiration 2005-03-03,
/// DATE=20081117145935, secret AABBCCDDEEFF.
#[test]
fn the_lcn_receipt_matches_the_processors_documented_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("spec.keys");
    std::fs::write(&key_file, "AABBCCDDEEFF\n").expect("write key");
    let body = "FIRSTNAME=John&LASTNAME=Smith&COMPANY=&EMAIL=johnsmith%40email.com\
                &PHONE=951-121-2121&FAX=&COUNTRY=United+States+of+America&STATE=New+York\
                &CITY=New+York&ADDRESS=101+Main+Street&LICENSE_CODE=3C343D0FAF\
                &EXPIRATION_DATE=2005-03-03&STATUS=DISABLED";
    let receipt = |format: &str, algorithm: &str| {
        let output = ipn()
            .args(["ipn", "receipt", "--unverified", "--key-file"])
            .arg(&key_file)
            .args([
                "--format",
                format,
                "--algorithm",
                algorithm,
                "--date",
                "20081117145935",
                "-",
            ])
            .write_stdin(body)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(output)
            .expect("utf-8")
            .trim_end()
            .to_owned()
    };
    assert_eq!(
        receipt("epayment", "md5"),
        "<EPAYMENT>20081117145935|cb34fe2991668eb82364edf62f845a34</EPAYMENT>"
    );
    assert_eq!(
        receipt("sig", "sha256"),
        "<sig algo=\"sha256\" date=\"20081117145935\">cdd64ce75e6cf013a60291229c83063a5d903eae3bfa216e99aae8af65a055e8</sig>"
    );
    assert_eq!(
        receipt("sig", "sha3-256"),
        "<sig algo=\"sha3-256\" date=\"20081117145935\">7fc19d21103ea56f1b413315fb3feb5fbdd137758623a73c7ed12d9bb84f21db</sig>"
    );
}

/// `ipn sign` signs an LCN, `ipn verify` verifies it by the rules of an
/// IPN and says it is an LCN, and `ipn receipt` answers it in the
/// algorithm that verified it, with the key that did.
#[test]
fn an_lcn_is_signed_verified_and_answered_by_the_ipn_commands() {
    let lcn = "FIRST_NAME=John&EMAIL=johnsmith%40email.com&LICENSE_CODE=TOF6T8VPY3\
               &EXPIRATION_DATE=2026-12-02&DATE_UPDATED=2026-11-30+08%3A00%3A00&STATUS=ACTIVE";
    let signed = ipn()
        .args([
            "ipn",
            "sign",
            "--key-file",
            &keys(),
            "--algorithms",
            "sha3",
            "-",
        ])
        .write_stdin(lcn)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    ipn()
        .args(["ipn", "verify", "--key-file", &keys(), "-"])
        .write_stdin(signed.clone())
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "valid key test-2026 algorithm sha3-256 (licence change notification)",
        ))
        .stdout(predicate::str::contains("John").not());
    let output = ipn()
        .args([
            "ipn",
            "receipt",
            "--key-file",
            &keys(),
            "--date",
            "20261130080500",
            "-",
        ])
        .write_stdin(signed.clone())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let receipt = String::from_utf8(output).expect("utf-8");
    let form = ipn_reconciler::ipn::FormBody::parse(
        signed.trim_ascii_end(),
        &ipn_reconciler::ipn::FormLimits::default(),
    )
    .expect("parses");
    let ring =
        ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys");
    let expected = ipn_reconciler::ipn::licence_read_receipt(
        &form,
        &ring.current().secret,
        ipn_reconciler::ipn::ReceiptFormat::Sig(ipn_reconciler::ipn::Algorithm::Sha3_256),
        ipn_reconciler::ipn::ReceiptDate::parse("20261130080500").expect("date"),
    )
    .expect("receipt");
    assert_eq!(receipt.trim_end(), expected);
    // A payment notification's verify line is unchanged.
    ipn()
        .args(["ipn", "verify", "--key-file", &keys()])
        .arg(&fixture_files()[0])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("licence").not());
}
