//! The settings reference, generated: the table of docs/configuration.md
//! and deploy/example.toml are written from the flag table
//! ([`args::GROUPS`]: names, variables, help) and the settings' own
//! defaults ([`settings::defaults_as_text`]), so neither can drift from
//! what the daemon accepts. A test compares the committed files with the
//! generated text; `IPN_BLESS=1 cargo test --lib cli::reference` rewrites
//! them.

use std::fmt::Write as _;

use super::args::{self, Flag, Kind};
use crate::settings;

/// Where the generated table sits in docs/configuration.md.
pub const TABLE_BEGIN: &str =
    "<!-- settings table: generated from the flags and defaults (cli::reference); do not edit -->";
pub const TABLE_END: &str = "<!-- end of the settings table -->";

/// Values of deploy/example.toml that are not the defaults, so that the
/// example serves as is on a development machine (tests/it/operators.rs
/// starts it) and shows what production sets. A key whose default is
/// nothing is shown commented out with a sample value.
const EXAMPLE_VALUES: &[(&str, &str, &str)] = &[
    (
        "key-file",
        "\"fixtures/keys/test.keys\"",
        "TEST-ONLY keys: use /etc/ipn-reconciler/keys",
    ),
    (
        "seal-key-file",
        "\"fixtures/keys/test.seal\"",
        "TEST-ONLY seal keys: use /etc/ipn-reconciler/seal.keys",
    ),
    (
        "expected-fields",
        "[\"TEST_ORDER\", \"FRAUD_STATUS\"]",
        "tick these in the processor's IPN settings",
    ),
    ("log-format", "\"json\"", "what a log collector reads"),
];

/// Samples of keys that have no default, shown commented out.
const SAMPLES: &[(&str, &str)] = &[
    (
        "pseudonym-key-file",
        "\"/etc/ipn-reconciler/pseudonym.key\"",
    ),
    ("trusted-forwarded-header", "\"x-forwarded-for\""),
    ("console-addr", "\"127.0.0.1:8090\""),
    ("console-key-file", "\"/etc/ipn-reconciler/console.key\""),
    ("vendor-code", "\"YOURCODE123\""),
    ("api-key-file", "\"/etc/ipn-reconciler/api.key\""),
];

const EXAMPLE_HEADER: &str = "\
# ipn-reconciler configuration: `ipn-reconciler serve --config FILE`
# (or IPN_CONFIG=FILE). Keys are the long flag names; environment variables
# and flags override what is written here. Every key is shown with its
# default; a key that is not known is refused at start (a typo never falls
# back to a default silently).
#
# GENERATED from the flags and defaults (src/cli/reference.rs); do not edit:
# `IPN_BLESS=1 cargo test --lib cli::reference` writes it again.
#
# Durations take the usual forms: 500ms, 30s, 2m, 1h, \"1h 30m\".
# Secrets do not belong in this file: put DATABASE_URL and AMQP_URL (with
# their passwords) in the service's environment file, the processor's keys
# in the key file and the seal keys in the seal key file.
#
# This example runs as is against the local services of a development
# machine (`ipn-reconciler serve --config deploy/example.toml`); the key
# files below hold PUBLIC TEST KEYS and must be replaced in production.
";

/// A default as the table shows it: `none` for nothing, switches as
/// `on`/`off`, everything else as code.
fn shown_default(flag: &Flag) -> String {
    let text = settings::defaults_as_text()
        .get(flag.key)
        .map(String::as_str)
        .unwrap_or_default();
    match (flag.kind, text) {
        (_, "") => "none".to_owned(),
        (Kind::Switch, "false") => "off".to_owned(),
        (Kind::Switch, "true") => "on".to_owned(),
        _ => format!("`{text}`"),
    }
}

/// The settings table of docs/configuration.md, between its markers.
pub fn reference_table() -> String {
    let mut out = String::new();
    out.push_str("| key (`--flag`) | environment | default | what it does |\n");
    out.push_str("| --- | --- | --- | --- |\n");
    for group in args::GROUPS {
        for flag in group.flags {
            let help = flag.help.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                flag.key,
                flag.env,
                shown_default(flag),
                help
            );
        }
    }
    out
}

/// A default as a TOML value: numbers and booleans bare, the rest quoted,
/// as the settings serialize it (a decimal such as `settlement-tolerance`
/// is a string, whatever its digits).
fn toml_value(flag: &Flag) -> String {
    let key = flag.key;
    use figment::Provider;
    use figment::value::Value;

    let defaults = figment::providers::Serialized::defaults(settings::Settings::default());
    let value = defaults
        .data()
        .ok()
        .and_then(|data| data.into_values().find_map(|mut dict| dict.remove(key)));
    let text = settings::defaults_as_text()
        .get(key)
        .map(String::as_str)
        .unwrap_or_default();
    if matches!(value, Some(Value::Bool(..) | Value::Num(..))) {
        return text.to_owned();
    }
    if is_list(flag) {
        let items: Vec<String> = text
            .split(',')
            .filter(|item| !item.is_empty())
            .map(quoted)
            .collect();
        return format!("[{}]", items.join(", "));
    }
    quoted(text)
}

/// Whether a flag takes a list (written as a TOML array in the example):
/// a repeatable flag, or one whose value is comma-separated.
fn is_list(flag: &Flag) -> bool {
    flag.kind == Kind::List || flag.value_name.ends_with(",...") || flag.value_name == "LIST"
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `text` as `# ` comment lines of at most 78 characters.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 78 && line != "#" {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line != "#" {
        out.push_str(&line);
        out.push('\n');
    }
}

/// deploy/example.toml: every key with its help and its default.
pub fn example_toml() -> String {
    let mut out = String::from(EXAMPLE_HEADER);
    for group in args::GROUPS {
        let _ = writeln!(
            out,
            "\n# --- {} {}",
            group.title,
            "-".repeat(72_usize.saturating_sub(group.title.len()))
        );
        for flag in group.flags {
            comment(&mut out, flag.help);
            let example = EXAMPLE_VALUES.iter().find(|(key, ..)| *key == flag.key);
            let sample = SAMPLES.iter().find(|(key, _)| *key == flag.key);
            match (example, sample) {
                (Some((key, value, why)), _) => {
                    let _ = writeln!(out, "{key} = {value}   # {why}");
                }
                (None, Some((key, value))) => {
                    let _ = writeln!(out, "# {key} = {value}");
                }
                (None, None) => {
                    let _ = writeln!(out, "{} = {}", flag.key, toml_value(flag));
                }
            }
        }
    }
    out
}

/// docs/configuration.md with its settings table replaced by `table`;
/// `None` when the markers are missing.
pub fn with_table(doc: &str, table: &str) -> Option<String> {
    let begin = doc.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = doc[begin..].find(TABLE_END)? + begin;
    Some(format!("{}\n{table}{}", &doc[..begin], &doc[end..]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Compares a committed file with its generated text; with
    /// `IPN_BLESS=1`, writes the generated text instead.
    fn check(path: &str, generated: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if std::env::var_os("IPN_BLESS").is_some() {
            std::fs::write(&path, generated).expect("write the generated file");
            return;
        }
        let committed = std::fs::read_to_string(&path).expect("read the committed file");
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "{} differs from the text generated from the flags and defaults \
                 (first at line {}: committed {:?}, generated {:?}); run \
                 `IPN_BLESS=1 cargo test --lib cli::reference` and commit the result",
                path.display(),
                line + 1,
                committed.lines().nth(line),
                generated.lines().nth(line),
            );
        }
    }

    #[test]
    fn the_committed_example_is_the_generated_one() {
        check("deploy/example.toml", &example_toml());
    }

    #[test]
    fn the_committed_settings_table_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let doc = std::fs::read_to_string(&path).expect("read docs/configuration.md");
        let generated = with_table(&doc, &reference_table())
            .expect("docs/configuration.md keeps the table's markers");
        check("docs/configuration.md", &generated);
    }

    #[test]
    fn the_generated_texts_show_every_key_with_its_default() {
        let table = reference_table();
        let example = example_toml();
        for (key, default) in settings::defaults_as_text() {
            assert!(
                table.contains(&format!("| `{key}` |")),
                "{key} not in the table"
            );
            assert!(
                example.lines().any(|line| line
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} ="))),
                "{key} not in the example"
            );
            if !default.is_empty() {
                assert!(
                    table.contains(&format!("`{default}`"))
                        || matches!(default.as_str(), "true" | "false"),
                    "{key}"
                );
            }
        }
        assert!(
            table.contains("| `db-pool-size` | `IPN_DB_POOL_SIZE` | `8` |"),
            "{table}"
        );
        assert!(
            example.contains("\nparking-ttl = \"14days\"\n"),
            "{example}"
        );
        assert!(example.contains("\nallow-md5 = false\n"), "{example}");
        assert!(example.contains("\ndb-pool-size = 8\n"), "{example}");
        assert!(
            example.contains("\nretry-delays = [\"5s\", \"30s\", \"2m\", \"10m\", \"1h\"]\n"),
            "{example}"
        );
        assert!(example.contains("\nallow-currency = []\n"), "{example}");
        assert!(
            example.contains("\nsettlement-tolerance = \"0\"\n"),
            "{example}"
        );
    }
}
