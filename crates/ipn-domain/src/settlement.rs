//! Settlement: what the processor says it paid out, line by line, and how
//! each line compares with the ledger.
//!
//! The processor's payout export lists, per batch (one bank transfer), the
//! money it settled: sales, refunds, chargebacks, reversals, fees and
//! adjustments, each with its gross amount, the processor's fee and the net
//! (gross − fee). This module reads such a file ([`parse_settlement`]; the
//! default columns are [`DEFAULT_COLUMNS`], another export's names are
//! mapped by a [`Mapping`] read from TOML, without code), reads the bank
//! transfers ([`parse_payouts`]), and decides, without I/O, whether each
//! line agrees with the ledger's payment ([`classify`]) and each transfer
//! with its batch ([`check_payout`]). The daemon's settlement import loads
//! the ledger, calls these, and writes the answer.
//!
//! Signs: money to the merchant is positive. A sale's gross is positive;
//! a refund's, chargeback's or reversal's is negative or zero (it takes
//! money back); the fee is what the processor keeps, positive or zero; an
//! adjustment may be either. `net = gross − fee` on every line.
//!
//! Matching ([`classify`]): a line is matched to a payment by its
//! processor reference (REFNO), or, when the ledger has no payment with
//! that REFNO (or the line has none), by its order reference if that order
//! has exactly one payment. A matched line then agrees when:
//!
//! - `sale`: the payment was captured, not settled by an earlier line, and
//!   the gross is the ledger's paid amount within the tolerance;
//! - `refund`: the refund lines of the payment so far (earlier imports
//!   included) do not debit more than the ledger refunded, plus the
//!   tolerance (fewer is fine: the rest may come in a later batch, and the
//!   sweep says when it is late);
//! - `chargeback`, `reversal`: the ledger has the payment charged back, not
//!   yet debited by an earlier line, for the gross within the tolerance;
//! - in every case the currency is the payment's: its order currency, or
//!   its payout currency (the `PAYOUT_CURRENCY` its notices named, when
//!   it differs). A line in the payout currency is compared with the
//!   payout side instead: its net with the capture's `PAYABLE_AMOUNT` for
//!   a sale, with the refunds' payable amounts for refund lines, with the
//!   chargeback notice's for a chargeback or reversal (see
//!   `payout_comparison`).
//!
//! `fee`, `adjustment`, `reserve` and `dispute_hold` lines settle no
//! payment (status `other`); the journal books their gross on an account
//! of their own (`domain::journal::settlement_line_movement`). A line
//! for no payment of the ledger is `unknown` (review `settlement_unknown`),
//! a matched line that disagrees `differs` (review
//! `settlement_amount_differs`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::money::{Currencies, Currency, Money};
use crate::pan::check_free_text;
use crate::reconcile::ReviewKind;
use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

mod number;

pub use number::NumberFormat;

/// What a settlement line is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownLineKind,
    parse_err_fn = UnknownLineKind::new
)]
pub enum LineKind {
    /// A payment captured and settled.
    Sale,
    /// Money refunded to the shopper, debited from the payout.
    Refund,
    /// A payment taken back by the card network.
    Chargeback,
    /// Captured money returned by a reversal.
    Reversal,
    /// A fee of the processor's not tied to one payment.
    Fee,
    /// Any other credit or debit of the processor's (booked on the
    /// processor adjustments account).
    Adjustment,
    /// Money the processor holds back as a reserve (negative gross) or
    /// releases from it (positive gross).
    Reserve,
    /// Money the processor holds while a dispute is open (negative gross)
    /// or releases when it closes (positive gross).
    DisputeHold,
}

/// A line kind this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown settlement line type `{0}`")]
pub struct UnknownLineKind(String);

impl UnknownLineKind {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(LineKind, UnknownLineKind, "settlement line type");

impl LineKind {
    /// Whether the line settles one payment of the ledger (and so must be
    /// matched to one).
    pub fn settles_a_payment(self) -> bool {
        !matches!(
            self,
            LineKind::Fee | LineKind::Adjustment | LineKind::Reserve | LineKind::DisputeHold
        )
    }
}

/// How a line compares with the ledger.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownLineStatus,
    parse_err_fn = UnknownLineStatus::new
)]
pub enum LineStatus {
    /// A payment of the ledger agrees with it.
    Matched,
    /// A payment was found, and disagrees (`settlement_amount_differs`).
    Differs,
    /// No payment of the ledger has its references (`settlement_unknown`).
    Unknown,
    /// A fee or adjustment line: there is no payment to match.
    Other,
}

/// A stored line status this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown settlement line status `{0}`")]
pub struct UnknownLineStatus(String);

impl UnknownLineStatus {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(LineStatus, UnknownLineStatus, "settlement line status");

/// Which reference found a line's payment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownMatchedBy,
    parse_err_fn = UnknownMatchedBy::new
)]
pub enum MatchedBy {
    /// The line's REFNO is the payment's.
    ProcessorRef,
    /// The line's order reference, for an order with one payment.
    OrderRef,
}

/// A stored matched-by value this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown matched-by `{0}`")]
pub struct UnknownMatchedBy(String);

impl UnknownMatchedBy {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(MatchedBy, UnknownMatchedBy, "matched-by");

/// One line of a settlement file, parsed: every amount exact in its
/// currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    /// Where it was read: the line in the file (the header is line 1, or
    /// the line after a mapping's `skip_lines` title lines).
    pub line: u64,
    pub batch_id: String,
    /// REFNO, when the line names one.
    pub processor_ref: Option<String>,
    /// The merchant's order reference, when the line names one.
    pub order_ref: Option<String>,
    pub kind: LineKind,
    pub gross: Money,
    /// What the processor kept; positive or zero.
    pub fee: Money,
    /// `gross − fee`.
    pub net: Money,
    pub settled_at: DateTime<Utc>,
    /// Which identical copy of the line in its batch this is (1 for the
    /// first): two identical lines are two lines, and importing the file
    /// again finds both already there.
    pub occurrence: u32,
    /// The deduction columns the fee was summed from (a mapping's
    /// `fee_columns`), each as written, in the mapping's order; empty when
    /// the fee came from one column. They sum to `fee` exactly.
    pub fee_parts: Vec<FeePart>,
}

/// One deduction of a line's fee (VAT, commission, affiliate, FX...): the
/// export's column and its amount, in the line's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeePart {
    pub column: String,
    pub amount: Money,
}

#[derive(serde::Serialize)]
struct StoredFeePart<'a> {
    column: &'a str,
    minor: i64,
}

impl SettlementLine {
    /// The line's identity in its batch: the SHA-256 of its values (not of
    /// its position, so a file re-exported in another order is the same
    /// lines). With [`SettlementLine::occurrence`] and the batch, what makes
    /// importing a file twice change nothing.
    ///
    /// `settled_at` is not part of it: how an export writes its dates
    /// (date-only, another `date_format`, another offset) must not make the
    /// same line a new one, or a re-import would add it again and double
    /// its fee. Two lines of a batch that differ only in their time are
    /// still two lines: they are two occurrences of one key. The migration
    /// `2026-12-07-000070_settlement_line_identity` computes the same key in
    /// SQL for lines imported before.
    pub fn key(&self) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.batch_id.as_str(),
            self.processor_ref.as_deref().unwrap_or(""),
            self.order_ref.as_deref().unwrap_or(""),
            self.kind.as_str(),
            &self.gross.minor_units().to_string(),
            &self.fee.minor_units().to_string(),
            &self.net.minor_units().to_string(),
            self.gross.currency().as_str(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0x1f]);
        }
        hex::encode(hash.finalize())
    }

    pub fn currency(&self) -> Currency {
        self.gross.currency()
    }

    /// The fee's parts as stored (`settlement_lines.fee_parts`): a JSON
    /// array `[{"column": "VAT", "minor": 190}, ...]` in minor units of the
    /// line's currency, in the mapping's order; `None` without parts. Not
    /// part of the line's identity ([`SettlementLine::key`]): the fee they
    /// sum to is.
    pub fn fee_parts_json(&self) -> Option<String> {
        if self.fee_parts.is_empty() {
            return None;
        }
        let parts: Vec<StoredFeePart<'_>> = self
            .fee_parts
            .iter()
            .map(|p| StoredFeePart {
                column: &p.column,
                minor: p.amount.minor_units(),
            })
            .collect();
        serde_json::to_string(&parts).ok()
    }
}

/// The fields of a settlement line, by their default column names.
pub const DEFAULT_COLUMNS: [&str; 9] = [
    "batch_id",
    "processor_ref",
    "order_ref",
    "type",
    "gross",
    "fee",
    "net",
    "currency",
    "settled_at",
];

/// Columns a file must have (besides one of the two references).
const REQUIRED: [&str; 5] = ["batch_id", "type", "gross", "currency", "settled_at"];

/// How to read another processor's export: its column names, its words for
/// the line types, its delimiter, date and number formats, the title lines
/// above its header, the sign it gives money taken back, and the deduction
/// columns its fee is spread over.
///
/// Written in TOML (all keys optional):
///
/// ```toml
/// delimiter = ";"
/// date_format = "%d.%m.%Y %H:%M"   # chrono; default RFC 3339 or YYYY-MM-DD;
///                                  # UTC unless it has an offset (%z, %:z)
/// decimal_separator = ","          # "." (default) or ","
/// thousands_separator = "."        # none by default; ".", ",", " " or "'"
/// skip_lines = 2                   # title lines above the header row
/// amount_sign = "by_type"          # or "as_written" (default)
/// fee_columns = ["VAT", "Commission", "Affiliate", "FX"]  # summed into the fee
///
/// [columns]                        # field = the export's column name
/// batch_id = "Payout ID"
/// processor_ref = "Transaction Reference"
/// order_ref = "Merchant Reference"
/// type = "Type"
/// gross = "Gross"
/// fee = "Commission"
/// net = "Net"
/// currency = "Currency"
/// settled_at = "Settlement Date"
///
/// [types]                          # the export's word = our type
/// "Payment" = "sale"
/// "Refund" = "refund"
/// "Dispute" = "chargeback"
/// "Dispute won" = "reinstatement"  # a chargeback credited back
/// ```
///
/// `amount_sign = "by_type"` is for exports that write every amount as a
/// magnitude: a sale's gross is made positive, a refund's, chargeback's or
/// reversal's negative, whatever sign the file writes (the net with it,
/// when the file's sign is turned; the fee keeps its own); fee, adjustment,
/// reserve and dispute-hold lines keep the sign written, since for them it
/// says which way the money went. A chargeback credited back (a dispute
/// won) then needs a word of its own, mapped to `reinstatement`: such a
/// line is a chargeback with a positive gross under either rule.
///
/// `fee_columns` names the export's deduction columns: the line's fee is
/// their sum (an empty cell is zero), each kept on the line
/// ([`SettlementLine::fee_parts`]); `[columns] fee` is then not used. A
/// part may be negative (a rebate) as long as the sum is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Field -> column name.
    columns: BTreeMap<&'static str, String>,
    /// Lower-cased word -> type.
    types: BTreeMap<String, TypeWord>,
    delimiter: u8,
    date_format: Option<String>,
    number: NumberFormat,
    amount_sign: AmountSign,
    /// Lines above the header row, skipped unread.
    skip_lines: u32,
    /// The deduction columns summed into the fee, when the export has
    /// several.
    fee_columns: Vec<String>,
}

/// The most title lines a mapping may skip: a title, not a file.
const SKIP_LINES_MAX: u32 = 100;

/// The most deduction columns a fee may be summed from.
const FEE_COLUMNS_MAX: usize = 20;

/// Which sign a line's amounts get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AmountSign {
    /// As the file writes them (a refund must be written negative).
    #[default]
    AsWritten,
    /// By the line's type: sales positive; refunds, chargebacks and
    /// reversals negative; a `reinstatement` positive.
    ByType,
}

/// What a type word of the export means: the line's kind, and whether the
/// word itself says the money comes back (`reinstatement`: a chargeback
/// credited back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TypeWord {
    kind: LineKind,
    reinstates: bool,
}

/// The word of a mapping's `[types]` for a chargeback credited back.
const REINSTATEMENT: &str = "reinstatement";

/// Which way a line's money goes, when its type says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// To the merchant: the gross must not be negative.
    Credit,
    /// Back from the merchant: the gross must not be positive.
    Debit,
}

impl TypeWord {
    /// The direction the line's gross is given under `rule`, or `None`
    /// when it keeps the sign written.
    fn direction(self, rule: AmountSign) -> Option<Direction> {
        if self.reinstates {
            return Some(Direction::Credit);
        }
        match (rule, self.kind) {
            (AmountSign::AsWritten, _) => None,
            (AmountSign::ByType, LineKind::Sale) => Some(Direction::Credit),
            (AmountSign::ByType, LineKind::Refund | LineKind::Chargeback | LineKind::Reversal) => {
                Some(Direction::Debit)
            }
            (
                AmountSign::ByType,
                LineKind::Fee | LineKind::Adjustment | LineKind::Reserve | LineKind::DisputeHold,
            ) => None,
        }
    }
}

/// The gross and written net of a line, turned when the line's direction
/// says the file wrote them with the other sign (under `amount_sign =
/// "by_type"`, or for a `reinstatement` word). Both are turned together,
/// so `net = gross − fee` still holds for a file that wrote magnitudes
/// (a chargeback of 89.00 with a fee of 15.00 written `89.00;15.00;104.00`
/// is `-89.00;15.00;-104.00`).
fn signed(
    gross: Money,
    net: Option<Money>,
    direction: Option<Direction>,
) -> Result<(Money, Option<Money>, bool), String> {
    let turn = match direction {
        Some(Direction::Credit) => gross.is_negative(),
        Some(Direction::Debit) => gross.is_positive(),
        None => false,
    };
    if !turn {
        return Ok((gross, net, false));
    }
    let negate = |m: Money| {
        Money::zero(m.currency())
            .checked_sub(&m)
            .ok_or_else(|| "the amount is out of range".to_owned())
    };
    Ok((negate(gross)?, net.map(negate).transpose()?, true))
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            columns: DEFAULT_COLUMNS
                .iter()
                .map(|c| (*c, (*c).to_owned()))
                .collect(),
            types: LineKind::ALL
                .iter()
                .map(|k| {
                    (
                        k.as_str().to_owned(),
                        TypeWord {
                            kind: *k,
                            reinstates: false,
                        },
                    )
                })
                .collect(),
            delimiter: b',',
            date_format: None,
            number: NumberFormat::default(),
            amount_sign: AmountSign::AsWritten,
            skip_lines: 0,
            fee_columns: Vec::new(),
        }
    }
}

/// Why a mapping file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapping file: {0}")]
pub struct MappingError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    types: BTreeMap<String, String>,
    delimiter: Option<String>,
    date_format: Option<String>,
    decimal_separator: Option<String>,
    thousands_separator: Option<String>,
    amount_sign: Option<String>,
    skip_lines: Option<u32>,
    fee_columns: Option<Vec<String>>,
}

impl Mapping {
    /// Reads a mapping from its TOML text; fields not named keep their
    /// default column names, type words not named keep ours.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let file: MappingFile = Figment::from(Toml::string(text))
            .extract()
            .map_err(|err| MappingError(err.to_string()))?;
        let mut mapping = Mapping::default();
        let fee_column_named = file.columns.contains_key("fee");
        for (field, column) in file.columns {
            let Some(known) = DEFAULT_COLUMNS.iter().find(|c| **c == field) else {
                return Err(MappingError(format!(
                    "[columns] `{}` is not a field; the fields are {}",
                    clip_for_display(&field, 40),
                    DEFAULT_COLUMNS.join(", ")
                )));
            };
            let column = column.trim();
            if column.is_empty() {
                return Err(MappingError(format!(
                    "[columns] {known}: the column name is empty"
                )));
            }
            mapping.columns.insert(known, column.to_owned());
        }
        for (word, kind) in file.types {
            let meaning = if kind.trim() == REINSTATEMENT {
                TypeWord {
                    kind: LineKind::Chargeback,
                    reinstates: true,
                }
            } else {
                let kind = LineKind::parse(kind.trim()).map_err(|_| {
                    MappingError(format!(
                        "[types] `{}` = `{}`: the types are {}, {REINSTATEMENT}",
                        clip_for_display(&word, 40),
                        clip_for_display(&kind, 40),
                        LineKind::ALL.map(LineKind::as_str).join(", ")
                    ))
                })?;
                TypeWord {
                    kind,
                    reinstates: false,
                }
            };
            mapping.types.insert(word.trim().to_lowercase(), meaning);
        }
        mapping.number = NumberFormat::new(
            file.decimal_separator.as_deref().unwrap_or("."),
            file.thousands_separator.as_deref(),
        )
        .map_err(MappingError)?;
        mapping.amount_sign = match file.amount_sign.as_deref().map(str::trim) {
            None | Some("as_written") => AmountSign::AsWritten,
            Some("by_type") => AmountSign::ByType,
            Some(other) => {
                return Err(MappingError(format!(
                    "amount_sign `{}` is not \"as_written\" or \"by_type\"",
                    clip_for_display(other, 40)
                )));
            }
        };
        if let Some(skip) = file.skip_lines {
            if skip > SKIP_LINES_MAX {
                return Err(MappingError(format!(
                    "skip_lines is at most {SKIP_LINES_MAX} (the title lines above the header)"
                )));
            }
            mapping.skip_lines = skip;
        }
        if let Some(columns) = file.fee_columns {
            if fee_column_named {
                return Err(MappingError(
                    "set either [columns] fee or fee_columns: with fee_columns the fee is their sum"
                        .to_owned(),
                ));
            }
            if columns.len() > FEE_COLUMNS_MAX {
                return Err(MappingError(format!(
                    "fee_columns names at most {FEE_COLUMNS_MAX} columns"
                )));
            }
            let mut seen: Vec<String> = Vec::new();
            for column in columns {
                let column = column.trim();
                if column.is_empty() {
                    return Err(MappingError(
                        "fee_columns: a column name is empty".to_owned(),
                    ));
                }
                if seen.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                    return Err(MappingError(format!(
                        "fee_columns: `{}` is named twice",
                        clip_for_display(column, 40)
                    )));
                }
                seen.push(column.to_owned());
            }
            mapping.fee_columns = seen;
        }
        if let Some(delimiter) = file.delimiter {
            match delimiter.as_bytes() {
                [byte] if byte.is_ascii() && !byte.is_ascii_alphanumeric() && *byte != b'"' => {
                    mapping.delimiter = *byte;
                }
                _ => {
                    return Err(MappingError(
                        "delimiter must be one ASCII character such as \",\", \";\" or \"\\t\""
                            .to_owned(),
                    ));
                }
            }
        }
        if let Some(format) = file.date_format {
            // A format chrono cannot use fails on every line: say so once.
            let probe = chrono::format::StrftimeItems::new(&format);
            if probe
                .into_iter()
                .any(|item| matches!(item, chrono::format::Item::Error))
            {
                return Err(MappingError(format!(
                    "date_format `{}` is not a chrono format (like %d.%m.%Y %H:%M)",
                    clip_for_display(&format, 40)
                )));
            }
            mapping.date_format = Some(format);
        }
        Ok(mapping)
    }

    /// The column name of `field`.
    pub fn column<'a>(&'a self, field: &'a str) -> &'a str {
        self.columns.get(field).map_or(field, String::as_str)
    }

    fn kind(&self, word: &str) -> Option<TypeWord> {
        self.types.get(&word.trim().to_lowercase()).copied()
    }

    /// Reads an amount of the file in the mapping's number format.
    fn amount(&self, what: &str, text: &str, code: Currency) -> Result<Money, String> {
        self.number
            .parse(text, code)
            .map_err(|err| format!("{what}: {err}"))
    }

    fn date(&self, text: &str) -> Result<DateTime<Utc>, String> {
        if let Some(format) = &self.date_format {
            // A format with an offset (`%z`, `%:z`) is read with it: the
            // naive parse below would drop it and date the line hours off.
            if let Ok(at) = DateTime::parse_from_str(text, format) {
                return Ok(at.with_timezone(&Utc));
            }
            if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
                return Ok(at.and_utc());
            }
            if let Ok(day) = NaiveDate::parse_from_str(text, format) {
                return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
            }
            return Err(format!(
                "settled_at does not have the mapping's date_format `{format}`"
            ));
        }
        parse_time(text).ok_or_else(|| {
            "settled_at must be an RFC 3339 time (2026-11-30T12:00:00Z) or a date (2026-11-30)"
                .to_owned()
        })
    }
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or a date (00:00 UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(at.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// One bad row of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file (title lines counted).
    pub line: u64,
    pub reason: String,
}

/// Why a settlement or payouts file was refused. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum SettlementFileError {
    #[error("the header lacks {missing}; found `{found}`")]
    Header { missing: String, found: String },
    #[error("{} bad line(s):\n{}", .0.len(), render_rows(.0))]
    Rows(Vec<RowError>),
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the file has no line")]
    Empty,
}

/// At most this many bad lines are listed (the count says how many).
const ROWS_SHOWN: usize = 50;

fn render_rows(rows: &[RowError]) -> String {
    let mut text: Vec<String> = rows
        .iter()
        .take(ROWS_SHOWN)
        .map(|row| format!("  line {}: {}", row.line, row.reason))
        .collect();
    if rows.len() > ROWS_SHOWN {
        text.push(format!("  ... and {} more", rows.len() - ROWS_SHOWN));
    }
    text.join("\n")
}

/// A reference (batch, REFNO, order): 1-100 characters, no control
/// characters, no card number.
fn reference(what: &'static str, text: &str, required: bool) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return if required {
            Err(format!("{what} is empty"))
        } else {
            Ok(None)
        };
    }
    if text.chars().count() > 100 || text.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be 1-100 characters without control characters"
        ));
    }
    check_free_text(what, text).map_err(|err| err.to_string())?;
    Ok(Some(text.to_owned()))
}

/// The currency of a line or payout: ISO 4217, or allowed by
/// `allow-currency` (in `currencies`, which gives it its exponent).
fn currency(currencies: &Currencies, text: &str) -> Result<Currency, String> {
    let code = currencies
        .currency(text.trim())
        .map_err(|err| format!("currency: {err}"))?;
    if currencies.is_known(code.code()) {
        Ok(code)
    } else {
        Err(format!(
            "currency {code} is not an ISO 4217 currency (allow it with --allow-currency {code}=EXPONENT)"
        ))
    }
}

fn amount(what: &str, text: &str, code: Currency) -> Result<Money, String> {
    Money::parse_amount(text.trim(), code).map_err(|err| format!("{what}: {err}"))
}

/// Reads a settlement file with `mapping` (its column names, type words,
/// delimiter, date and number formats, title lines, sign rule and fee
/// columns), naming every bad line by its line in the file (title lines
/// counted). Currencies are read with `currencies`, the settings' table:
/// one outside it is a bad line.
pub fn parse_settlement(
    input: impl Read,
    mapping: &Mapping,
    currencies: &Currencies,
) -> Result<Vec<SettlementLine>, SettlementFileError> {
    // Title lines are skipped as bytes, before the CSV reader sees them: a
    // title is not a record (it may have a stray quote or delimiter).
    let mut input = BufReader::new(input);
    let mut skipped: u64 = 0;
    let mut title = Vec::new();
    for _ in 0..mapping.skip_lines {
        title.clear();
        if input
            .read_until(b'\n', &mut title)
            .map_err(csv::Error::from)?
            == 0
        {
            break;
        }
        skipped += 1;
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(mapping.delimiter)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let position = |field: &str| {
        let name = mapping.column(field);
        header.iter().position(|h| h.eq_ignore_ascii_case(name))
    };
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| position(f).is_none())
        .map(|f| format!("`{}`", mapping.column(f)))
        .collect();
    if position("processor_ref").is_none() && position("order_ref").is_none() {
        missing.push(format!(
            "`{}` or `{}`",
            mapping.column("processor_ref"),
            mapping.column("order_ref")
        ));
    }
    let mut fee_parts: Vec<(&str, usize)> = Vec::new();
    for name in &mapping.fee_columns {
        match header.iter().position(|h| h.eq_ignore_ascii_case(name)) {
            Some(i) => fee_parts.push((name.as_str(), i)),
            None => missing.push(format!("`{name}`")),
        }
    }
    if !missing.is_empty() {
        return Err(SettlementFileError::Header {
            missing: missing.join(", "),
            found: clip_for_display(&header.join(","), 200),
        });
    }
    let columns = Columns {
        fields: DEFAULT_COLUMNS.iter().map(|f| (*f, position(f))).collect(),
        fee_parts,
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line()) + skipped;
        if record.iter().all(str::is_empty) {
            continue;
        }
        match parse_line(line, &record, &columns, mapping, currencies) {
            Ok(mut parsed) => {
                let count = occurrences.entry(parsed.key()).or_default();
                *count += 1;
                parsed.occurrence = *count;
                lines.push(parsed);
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if !errors.is_empty() {
        return Err(SettlementFileError::Rows(errors));
    }
    if lines.is_empty() {
        return Err(SettlementFileError::Empty);
    }
    Ok(lines)
}

/// Where a file's fields are: each field's column, and the fee's parts
/// (a mapping's `fee_columns`) with theirs.
struct Columns<'a> {
    fields: HashMap<&'static str, Option<usize>>,
    fee_parts: Vec<(&'a str, usize)>,
}

fn parse_line(
    line: u64,
    record: &csv::StringRecord,
    columns: &Columns<'_>,
    mapping: &Mapping,
    currencies: &Currencies,
) -> Result<SettlementLine, String> {
    let field = |name: &str| -> &str {
        columns
            .fields
            .get(name)
            .copied()
            .flatten()
            .and_then(|i| record.get(i))
            .unwrap_or("")
    };
    let batch_id = reference("batch_id", field("batch_id"), true)?.unwrap_or_default();
    let processor_ref = reference("processor_ref", field("processor_ref"), false)?;
    let order_ref = reference("order_ref", field("order_ref"), false)?;
    let word = field("type");
    let meaning = mapping.kind(word).ok_or_else(|| {
        format!(
            "type `{}` is not one of {} (map other words in the mapping file's [types])",
            clip_for_display(word, 30),
            mapping
                .types
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let kind = meaning.kind;
    let code = currency(currencies, field("currency"))?;
    let written_gross = mapping.amount("gross", field("gross"), code)?;
    let written_net = match field("net").trim() {
        "" => None,
        text => Some(mapping.amount("net", text, code)?),
    };
    let (mut gross, net, turned) = signed(
        written_gross,
        written_net,
        meaning.direction(mapping.amount_sign),
    )?;
    let (mut fee, fee_parts) = if columns.fee_parts.is_empty() {
        let fee = match field("fee").trim() {
            "" => Money::zero(code),
            text => mapping.amount("fee", text, code)?,
        };
        (fee, Vec::new())
    } else {
        let mut fee = Money::zero(code);
        let mut parts = Vec::with_capacity(columns.fee_parts.len());
        for (column, i) in &columns.fee_parts {
            let amount = match record.get(*i).unwrap_or("").trim() {
                "" => Money::zero(code),
                text => mapping.amount(&format!("fee column `{column}`"), text, code)?,
            };
            fee = fee
                .checked_add(&amount)
                .ok_or_else(|| "the fee columns' sum is out of range".to_owned())?;
            parts.push(FeePart {
                column: (*column).to_owned(),
                amount,
            });
        }
        (fee, parts)
    };
    // A fee line written as money out (gross -25.00, no fee) is a fee of
    // 25.00: the books count it as one either way, the net is the same.
    if kind == LineKind::Fee && fee.minor_units() == 0 && gross.is_negative() {
        fee = gross.abs();
        gross = Money::zero(code);
    }
    let computed = gross
        .checked_sub(&fee)
        .ok_or_else(|| "gross − fee is out of range".to_owned())?;
    let net = net.unwrap_or(computed);
    if fee.is_negative() {
        return Err("fee must not be negative (book a returned fee as an adjustment)".to_owned());
    }
    if net != computed {
        return Err(format!(
            "net {} is not gross {} − fee {}{}",
            net.format_amount(),
            gross.format_amount(),
            fee.format_amount(),
            if turned {
                " (the gross and net written were both turned to the sign of the line's type)"
            } else {
                ""
            }
        ));
    }
    match kind {
        LineKind::Sale if gross.is_negative() => {
            return Err("a sale's gross must not be negative".to_owned());
        }
        // A positive chargeback or reversal line credits a chargeback back
        // (a dispute won): matched against the ledger's reinstatement.
        LineKind::Refund if gross.is_positive() => {
            return Err(format!(
                "a {kind} takes money back: its gross must be negative (or zero); for an \
                 export that writes it positive, set amount_sign = \"by_type\" in the mapping"
            ));
        }
        _ => {}
    }
    if kind.settles_a_payment() && processor_ref.is_none() && order_ref.is_none() {
        return Err(format!(
            "a {kind} line needs a processor_ref or an order_ref to be matched"
        ));
    }
    let settled_at = mapping.date(field("settled_at").trim())?;
    Ok(SettlementLine {
        line,
        batch_id,
        processor_ref,
        order_ref,
        kind,
        gross,
        fee,
        net,
        settled_at,
        occurrence: 1,
        fee_parts,
    })
}

/// One bank transfer: what the processor paid out for a batch in one
/// currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub line: u64,
    pub batch_id: String,
    pub paid_on: NaiveDate,
    pub amount: Money,
}

/// The columns of a payouts file.
pub const PAYOUT_COLUMNS: [&str; 4] = ["batch_id", "paid_on", "amount", "currency"];

/// Reads a payouts file (`batch_id,paid_on,amount,currency`), naming every
/// bad line; a batch and currency given twice is refused. Currencies are
/// read with `currencies`, as in [`parse_settlement`].
pub fn parse_payouts(
    input: impl Read,
    currencies: &Currencies,
) -> Result<Vec<Payout>, SettlementFileError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let position = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let missing: Vec<String> = PAYOUT_COLUMNS
        .iter()
        .filter(|c| position(c).is_none())
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        return Err(SettlementFileError::Header {
            missing: missing.join(", "),
            found: clip_for_display(&header.join(","), 200),
        });
    }
    let columns: Vec<Option<usize>> = PAYOUT_COLUMNS.iter().map(|c| position(c)).collect();
    let mut payouts: Vec<Payout> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, Currency), u64> = HashMap::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |i: usize| {
            columns
                .get(i)
                .copied()
                .flatten()
                .and_then(|c| record.get(c))
                .unwrap_or("")
        };
        let parsed = (|| {
            let batch_id = reference("batch_id", field(0), true)?.unwrap_or_default();
            let paid_on = NaiveDate::parse_from_str(field(1), "%Y-%m-%d")
                .map_err(|_| "paid_on must be a date (2026-11-30)".to_owned())?;
            let code = currency(currencies, field(3))?;
            let amount = amount("amount", field(2), code)?;
            Ok::<_, String>(Payout {
                line,
                batch_id,
                paid_on,
                amount,
            })
        })();
        match parsed {
            Ok(payout) => {
                let key = (payout.batch_id.clone(), payout.amount.currency());
                if let Some(first) = seen.insert(key, line) {
                    errors.push(RowError {
                        line,
                        reason: format!(
                            "batch {} in {} repeats line {first}",
                            payout.batch_id,
                            payout.amount.currency()
                        ),
                    });
                } else {
                    payouts.push(payout);
                }
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if errors.is_empty() {
        Ok(payouts)
    } else {
        Err(SettlementFileError::Rows(errors))
    }
}

/// How far a settled amount may be from the ledger's and still agree: one
/// decimal amount (`0.01`) applied in each line's currency, rounded down
/// to its minor units (0.01 is one cent in EUR, nothing in JPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tolerance {
    /// The digits, without the point.
    mantissa: u64,
    /// How many of them are decimals.
    scale: u32,
}

/// The most decimals a tolerance may have.
const TOLERANCE_MAX_DECIMALS: u32 = 6;

impl Tolerance {
    /// No tolerance: amounts must be equal.
    pub const ZERO: Tolerance = Tolerance {
        mantissa: 0,
        scale: 0,
    };

    /// Parses a non-negative decimal (`0`, `0.01`, `1.5`), at most 6
    /// decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let usage = || {
            format!(
                "`{}`: the tolerance is a non-negative decimal amount such as 0.01 (at most {TOLERANCE_MAX_DECIMALS} decimals)",
                clip_for_display(text, 30)
            )
        };
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits(int)
            || !digits(frac)
            || (text.contains('.') && frac.is_empty())
        {
            return Err(usage());
        }
        let scale = u32::try_from(frac.len()).map_err(|_| usage())?;
        if scale > TOLERANCE_MAX_DECIMALS || int.len() > 12 {
            return Err(usage());
        }
        let mantissa = format!("{int}{frac}").parse::<u64>().map_err(|_| usage())?;
        Ok(Self { mantissa, scale })
    }

    /// The tolerance in minor units of `currency`, rounded down.
    pub fn minor_in(&self, currency: Currency) -> i64 {
        let exponent = currency.exponent();
        let value = u128::from(self.mantissa) * 10u128.pow(exponent) / 10u128.pow(self.scale);
        i64::try_from(value).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let scale = 10u64.pow(self.scale);
        write!(
            f,
            "{}.{:0width$}",
            self.mantissa / scale,
            self.mantissa % scale,
            width = self.scale as usize
        )
    }
}

/// A payment of the ledger, as matching needs it (amounts in minor units
/// of `currency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPayment {
    pub payment_id: i64,
    pub order_id: i64,
    pub order_ref: String,
    pub processor_ref: String,
    pub currency: Currency,
    pub paid: i64,
    pub refunded: i64,
    pub charged_back: i64,
    /// What came back of the chargeback (a dispute won).
    pub reinstated: i64,
    /// The commission the capturing notice carried, rounded (minor units
    /// of `currency`), when it carried one: what a settlement fee for the
    /// payment replaces ([`fee_finding`]).
    pub commission: Option<i64>,
    /// The payout side, for lines written in the payout currency
    /// ([`classify`]): the capturing notice's `PAYABLE_AMOUNT` in its
    /// `PAYOUT_CURRENCY`, signed as sent, once paid.
    pub payable: Option<Money>,
    /// The counted refunds' `PAYABLE_AMOUNT` summed, signed as sent.
    pub refunded_payable: Option<Money>,
    /// The chargeback notice's `PAYABLE_AMOUNT`, signed as sent, once
    /// charged back.
    pub charged_back_payable: Option<Money>,
}

impl LedgerPayment {
    /// Whether `currency` is this payment's payout currency (another than
    /// its order currency, named by one of its notices' `PAYOUT_CURRENCY`):
    /// then a line in it is compared with the payout side.
    pub fn pays_out_in(&self, currency: Currency) -> bool {
        currency != self.currency
            && [
                self.payable,
                self.refunded_payable,
                self.charged_back_payable,
            ]
            .iter()
            .flatten()
            .any(|m| m.currency() == currency)
    }
}

/// Whether a matched sale line's fee differs from the commission its
/// payment's notice carried by more than `tolerance`: then a `fee_differs`
/// finding. Compared in the order's currency only, the commission's: a
/// line in the payout currency has a fee the processor converted with a
/// rate and a markup the notice does not break down (its plugins count
/// the FX markup into the fee), so it cannot be compared exactly with
/// the commission, and no `fee_differs` is raised for it; its net was
/// compared with the notice's `PAYABLE_AMOUNT`, which is the commission
/// already taken off and converted ([`classify`]). Only when the notice
/// carried a commission and the line a fee. The fee replaces the
/// commission in the books either way, in whichever currency it is.
pub fn fee_finding(
    line: &SettlementLine,
    matched: &LineMatch,
    payment: &LedgerPayment,
    tolerance: Tolerance,
) -> Option<Finding> {
    let commission = payment.commission?;
    let applies = matched.status == LineStatus::Matched
        && line.kind == LineKind::Sale
        && line.fee.is_positive()
        && line.fee.currency() == payment.currency;
    if !applies {
        return None;
    }
    let difference = line.fee.minor_units().saturating_sub(commission);
    if difference.saturating_abs() <= tolerance.minor_in(payment.currency) {
        return None;
    }
    Some(Finding {
        kind: ReviewKind::FeeDiffers,
        order_ref: Some(payment.order_ref.clone()),
        processor_ref: Some(payment.processor_ref.clone()),
        details: format!(
            "settlement fee {} for processor reference {} in batch {}; the notice's commission \
             was {} (difference {}); the fee replaces the commission",
            line.fee,
            payment.processor_ref,
            line.batch_id,
            Money::from_minor(commission, payment.currency),
            Money::from_minor(difference, payment.currency),
        ),
    })
}

/// What earlier lines (earlier imports, earlier lines of the file) already
/// settled of one payment, in minor units (magnitudes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    pub sold: i64,
    pub refunded: i64,
    /// Chargebacks and reversals.
    pub taken_back: i64,
    /// Chargeback and reversal lines that credit a chargeback back
    /// (positive gross): a dispute won.
    pub credited_back: i64,
    /// Matched sale lines, in either currency (a second one is a
    /// difference).
    pub sales: u32,
    /// Refund lines in the payout currency: their net, magnitude, in minor
    /// units of the payout currency.
    pub refunded_payout: i64,
    /// Chargeback and reversal lines in the payout currency: their net,
    /// magnitude.
    pub taken_back_payout: i64,
}

/// The ledger's payments, found by REFNO and by order reference.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    payments: Vec<LedgerPayment>,
    by_refno: HashMap<String, Vec<usize>>,
    by_order: HashMap<String, Vec<usize>>,
}

impl Ledger {
    pub fn new(payments: impl IntoIterator<Item = LedgerPayment>) -> Self {
        let mut ledger = Ledger::default();
        for payment in payments {
            let i = ledger.payments.len();
            ledger
                .by_refno
                .entry(payment.processor_ref.clone())
                .or_default()
                .push(i);
            ledger
                .by_order
                .entry(payment.order_ref.clone())
                .or_default()
                .push(i);
            ledger.payments.push(payment);
        }
        ledger
    }

    /// The payment a line settles, and how it was found, or why none is.
    ///
    /// A line with a REFNO is matched by its REFNO only: the one of the
    /// line's order when several orders carry that REFNO, else the one that
    /// paid. A REFNO the ledger does not know, or one known only for orders
    /// other than the line's order reference, names another payment than
    /// the order: matching such a line by its order reference would settle
    /// the wrong payment, so it is unknown. Only a line without a REFNO is
    /// matched by order reference, when that order has exactly one payment.
    pub fn find(&self, line: &SettlementLine) -> Result<(&LedgerPayment, MatchedBy), NoMatch> {
        if let Some(refno) = &line.processor_ref {
            let candidates: Vec<&LedgerPayment> = self
                .by_refno
                .get(refno)
                .map(|found| found.iter().filter_map(|i| self.payments.get(*i)).collect())
                .unwrap_or_default();
            if candidates.is_empty() {
                return Err(NoMatch::UnknownRefno);
            }
            let best = match line.order_ref.as_deref() {
                Some(order) => candidates
                    .iter()
                    .find(|p| p.order_ref == order)
                    .ok_or(NoMatch::RefnoOfAnotherOrder)?,
                None => candidates
                    .iter()
                    .find(|p| p.paid > 0)
                    .or_else(|| candidates.first())
                    .ok_or(NoMatch::UnknownRefno)?,
            };
            return Ok((best, MatchedBy::ProcessorRef));
        }
        let order_ref = line.order_ref.as_ref().ok_or(NoMatch::NoReference)?;
        match self.by_order.get(order_ref).map(Vec::as_slice) {
            Some([only]) => self
                .payments
                .get(*only)
                .map(|payment| (payment, MatchedBy::OrderRef))
                .ok_or(NoMatch::UnknownOrder),
            Some(_) => Err(NoMatch::SeveralPayments),
            None => Err(NoMatch::UnknownOrder),
        }
    }
}

/// Why a line matched no payment (said in its `settlement_unknown` item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    /// The line's REFNO is not in the ledger (its order reference is not
    /// tried: the REFNO names a payment the books do not have).
    UnknownRefno,
    /// The line's REFNO is in the ledger, but for other orders than the
    /// line's order reference.
    RefnoOfAnotherOrder,
    /// No REFNO, and the order reference is not in the ledger.
    UnknownOrder,
    /// No REFNO, and the order has several payments: which one is unsaid.
    SeveralPayments,
    /// Neither reference.
    NoReference,
}

impl NoMatch {
    fn explain(self) -> &'static str {
        match self {
            NoMatch::UnknownRefno => {
                "no payment in the ledger has that processor reference (the order reference is not tried for a line with a processor reference)"
            }
            NoMatch::RefnoOfAnotherOrder => {
                "that processor reference belongs to another order's payment in the ledger"
            }
            NoMatch::UnknownOrder => "no payment in the ledger has that order reference",
            NoMatch::SeveralPayments => {
                "that order has several payments and the line names no processor reference"
            }
            NoMatch::NoReference => "the line names no reference",
        }
    }
}

/// A review item to open, about a settlement line, a payout or a payment.
/// `details` holds amounts and references only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    pub processor_ref: Option<String>,
    pub details: String,
}

/// How one line compares with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMatch {
    pub status: LineStatus,
    pub matched_by: Option<MatchedBy>,
    /// `(payment id, order id, order reference)` of the payment found.
    pub payment: Option<(i64, i64, String)>,
    /// The ledger's amount the line was compared with (minor units of the
    /// line's currency), when one was.
    pub expected: Option<i64>,
    /// The review item it opens (for `differs` and `unknown`).
    pub finding: Option<Finding>,
}

fn describe_line(line: &SettlementLine) -> String {
    let mut refs = Vec::new();
    if let Some(refno) = &line.processor_ref {
        refs.push(format!("processor reference {refno}"));
    }
    if let Some(order) = &line.order_ref {
        refs.push(format!("order {order}"));
    }
    format!(
        "batch {}: {} of {} (fee {}, net {}) settled {} under {}",
        line.batch_id,
        line.kind,
        line.gross,
        line.fee.format_amount(),
        line.net.format_amount(),
        line.settled_at.format("%Y-%m-%d"),
        if refs.is_empty() {
            "no reference".to_owned()
        } else {
            refs.join(", ")
        }
    )
}

/// Matches each line (in file order) to the ledger, with `settled` the
/// amounts earlier lines settled per payment id (updated as lines match,
/// so a sale listed twice in one file is a difference the second time).
pub fn classify(
    lines: &[SettlementLine],
    ledger: &Ledger,
    settled: &mut HashMap<i64, Settled>,
    tolerance: Tolerance,
) -> Vec<LineMatch> {
    lines
        .iter()
        .map(|line| classify_line(line, ledger, settled, tolerance))
        .collect()
}

fn classify_line(
    line: &SettlementLine,
    ledger: &Ledger,
    settled: &mut HashMap<i64, Settled>,
    tolerance: Tolerance,
) -> LineMatch {
    if !line.kind.settles_a_payment() {
        return LineMatch {
            status: LineStatus::Other,
            matched_by: None,
            payment: None,
            expected: None,
            finding: None,
        };
    }
    let (payment, matched_by) = match ledger.find(line) {
        Ok(found) => found,
        Err(why) => {
            return LineMatch {
                status: LineStatus::Unknown,
                matched_by: None,
                payment: None,
                expected: None,
                finding: Some(Finding {
                    kind: ReviewKind::SettlementUnknown,
                    order_ref: line.order_ref.clone(),
                    processor_ref: line.processor_ref.clone(),
                    details: format!("{}; {}", describe_line(line), why.explain()),
                }),
            };
        }
    };
    let currency = line.currency();
    if matches!(line.kind, LineKind::Chargeback | LineKind::Reversal) && line.gross.is_positive() {
        return classify_reinstatement(line, payment, matched_by, settled, tolerance);
    }
    let tolerance_minor = tolerance.minor_in(currency);
    let so_far = settled
        .get(&payment.payment_id)
        .copied()
        .unwrap_or_default();
    let magnitude = line.gross.minor_units().saturating_abs();
    let ledger_money = |minor: i64| Money::from_minor(minor, payment.currency);
    let within = |a: i64, b: i64| a.abs_diff(b) <= tolerance_minor.unsigned_abs();
    let (expected, problem): (Option<i64>, Option<String>) = if payment.pays_out_in(currency) {
        payout_comparison(line, payment, &so_far, tolerance_minor)
    } else if currency != payment.currency {
        (
            None,
            Some(format!(
                "the ledger's payment is in {}{}",
                payment.currency.as_str(),
                payment
                    .payable
                    .map(|p| format!(", its payout in {}", p.currency()))
                    .unwrap_or_default()
            )),
        )
    } else {
        match line.kind {
            LineKind::Sale => {
                let problem = if payment.paid == 0 {
                    Some("the ledger has no captured payment for it".to_owned())
                } else if so_far.sales > 0 {
                    Some(format!(
                        "the payment of {} was already settled by an earlier sale line",
                        ledger_money(payment.paid)
                    ))
                } else if !within(magnitude, payment.paid) {
                    Some(format!(
                        "the ledger's payment is {} (difference {}, tolerance {})",
                        ledger_money(payment.paid),
                        ledger_money(magnitude - payment.paid),
                        ledger_money(tolerance_minor).format_amount()
                    ))
                } else {
                    None
                };
                (Some(payment.paid), problem)
            }
            LineKind::Refund => {
                let debited = so_far.refunded.saturating_add(magnitude);
                let problem =
                    (debited > payment.refunded.saturating_add(tolerance_minor)).then(|| {
                        format!(
                            "refund lines debit {} in all, the ledger refunded {} (tolerance {})",
                            ledger_money(debited),
                            ledger_money(payment.refunded),
                            ledger_money(tolerance_minor).format_amount()
                        )
                    });
                (Some(payment.refunded), problem)
            }
            LineKind::Chargeback | LineKind::Reversal => {
                let problem = if payment.charged_back == 0 {
                    Some("the ledger has no chargeback or reversal of that payment".to_owned())
                } else if so_far.taken_back > 0 {
                    Some(format!(
                        "the chargeback of {} was already debited by an earlier line",
                        ledger_money(payment.charged_back)
                    ))
                } else if !within(magnitude, payment.charged_back) {
                    Some(format!(
                        "the ledger charged back {} (difference {}, tolerance {})",
                        ledger_money(payment.charged_back),
                        ledger_money(magnitude - payment.charged_back),
                        ledger_money(tolerance_minor).format_amount()
                    ))
                } else {
                    None
                };
                (Some(payment.charged_back), problem)
            }
            LineKind::Fee | LineKind::Adjustment | LineKind::Reserve | LineKind::DisputeHold => {
                (None, None)
            }
        }
    };
    let found = Some((
        payment.payment_id,
        payment.order_id,
        payment.order_ref.clone(),
    ));
    match problem {
        None => {
            let entry = settled.entry(payment.payment_id).or_default();
            let in_payout = currency != payment.currency;
            let net = line.net.minor_units().saturating_abs();
            match line.kind {
                LineKind::Sale => {
                    entry.sales += 1;
                    if !in_payout {
                        entry.sold = entry.sold.saturating_add(magnitude);
                    }
                }
                LineKind::Refund if in_payout => {
                    entry.refunded_payout = entry.refunded_payout.saturating_add(net);
                }
                LineKind::Refund => entry.refunded = entry.refunded.saturating_add(magnitude),
                LineKind::Chargeback | LineKind::Reversal if in_payout => {
                    entry.taken_back_payout = entry.taken_back_payout.saturating_add(net);
                }
                LineKind::Chargeback | LineKind::Reversal => {
                    entry.taken_back = entry.taken_back.saturating_add(magnitude);
                }
                LineKind::Fee
                | LineKind::Adjustment
                | LineKind::Reserve
                | LineKind::DisputeHold => {}
            }
            LineMatch {
                status: LineStatus::Matched,
                matched_by: Some(matched_by),
                payment: found,
                expected,
                finding: None,
            }
        }
        Some(problem) => LineMatch {
            status: LineStatus::Differs,
            matched_by: Some(matched_by),
            payment: found,
            expected,
            finding: Some(Finding {
                kind: ReviewKind::SettlementAmountDiffers,
                order_ref: Some(payment.order_ref.clone()),
                processor_ref: Some(payment.processor_ref.clone()),
                details: format!("{}; {problem}", describe_line(line)),
            }),
        },
    }
}

/// A chargeback or reversal line that credits money back (positive
/// gross): the processor reinstated a chargeback. It agrees when the
/// ledger reinstated the payment's chargeback (a `WON` notice) by the
/// gross within the tolerance, and no earlier line credited it. When the
/// payment is charged back but no notice reinstated it, the line opens a
/// `settlement_reinstatement` item, whose `book_reinstatement` action
/// books what the line says. A line in another currency than the order's
/// (the payout currency included) is compared by a person.
fn classify_reinstatement(
    line: &SettlementLine,
    payment: &LedgerPayment,
    matched_by: MatchedBy,
    settled: &mut HashMap<i64, Settled>,
    tolerance: Tolerance,
) -> LineMatch {
    let currency = line.currency();
    let tolerance_minor = tolerance.minor_in(currency);
    let so_far = settled
        .get(&payment.payment_id)
        .copied()
        .unwrap_or_default();
    let magnitude = line.gross.minor_units().saturating_abs();
    let ledger_money = |minor: i64| Money::from_minor(minor, payment.currency);
    let within = |a: i64, b: i64| a.abs_diff(b) <= tolerance_minor.unsigned_abs();
    let not_reinstated = payment.charged_back > 0 && payment.reinstated == 0;
    let problem = if currency != payment.currency {
        Some(format!(
            "a chargeback credited back in {}, the payment is in {}: compare it by hand",
            currency.as_str(),
            payment.currency.as_str()
        ))
    } else if payment.charged_back == 0 {
        Some("the ledger has no chargeback of that payment to reinstate".to_owned())
    } else if so_far.credited_back > 0 {
        Some(format!(
            "the reinstatement of {} was already credited by an earlier line",
            ledger_money(payment.reinstated.max(payment.charged_back))
        ))
    } else if not_reinstated {
        Some(format!(
            "no notice reinstated the chargeback of {} (no CHARGEBACK_RESOLUTION=WON)",
            ledger_money(payment.charged_back)
        ))
    } else if !within(magnitude, payment.reinstated) {
        Some(format!(
            "the ledger reinstated {} (difference {}, tolerance {})",
            ledger_money(payment.reinstated),
            ledger_money(magnitude - payment.reinstated),
            ledger_money(tolerance_minor).format_amount()
        ))
    } else {
        None
    };
    let expected = Some(if not_reinstated {
        payment.charged_back
    } else {
        payment.reinstated
    });
    let found = Some((
        payment.payment_id,
        payment.order_id,
        payment.order_ref.clone(),
    ));
    match problem {
        None => {
            let entry = settled.entry(payment.payment_id).or_default();
            entry.credited_back = entry.credited_back.saturating_add(magnitude);
            LineMatch {
                status: LineStatus::Matched,
                matched_by: Some(matched_by),
                payment: found,
                expected,
                finding: None,
            }
        }
        Some(problem) => LineMatch {
            status: LineStatus::Differs,
            matched_by: Some(matched_by),
            payment: found,
            expected,
            finding: Some(Finding {
                kind: if not_reinstated && currency == payment.currency && so_far.credited_back == 0
                {
                    ReviewKind::SettlementReinstatement
                } else {
                    ReviewKind::SettlementAmountDiffers
                },
                order_ref: Some(payment.order_ref.clone()),
                processor_ref: Some(payment.processor_ref.clone()),
                details: format!("{}; {problem}", describe_line(line)),
            }),
        },
    }
}

/// How a line in the payment's payout currency compares with the payout
/// side of the ledger (see [`classify`]): `(expected, problem)`, amounts
/// in minor units of the payout currency.
///
/// The line's **net** is compared (gross − fee; the gross when the file
/// has no fee): `PAYABLE_AMOUNT` is what the notice adds to the payout
/// after the commission, converted, so it is the line's net, and it may be
/// negative (a tiny order whose fixed fee exceeds it), which no sale's
/// gross is.
///
/// - `sale`: the payment was captured, not settled by an earlier sale
///   line (in either currency), and the net is the capture's payable
///   amount within the tolerance;
/// - `refund`: the payout-currency refund lines of the payment so far do
///   not debit more than its counted refunds' payable amounts, plus the
///   tolerance;
/// - `chargeback`, `reversal`: the payment is charged back, not debited by
///   an earlier payout-currency line, and the net is the chargeback
///   notice's payable amount within the tolerance.
fn payout_comparison(
    line: &SettlementLine,
    payment: &LedgerPayment,
    so_far: &Settled,
    tolerance_minor: i64,
) -> (Option<i64>, Option<String>) {
    let currency = line.currency();
    let net = line.net.minor_units();
    let within = |a: i64, b: i64| a.abs_diff(b) <= tolerance_minor.unsigned_abs();
    let money = |minor: i64| Money::from_minor(minor, currency);
    // The ledger's figure in the line's currency (another payout currency
    // than the line's is none: the processor pays one merchant in one).
    let side = |figure: Option<Money>| figure.filter(|m| m.currency() == currency);
    match line.kind {
        LineKind::Sale => {
            let payable = side(payment.payable);
            let problem = if payment.paid == 0 {
                Some("the ledger has no captured payment for it".to_owned())
            } else if so_far.sales > 0 {
                Some("the payment was already settled by an earlier sale line".to_owned())
            } else {
                match payable {
                    None => Some(format!(
                        "the payment's notice carried no payable amount in {currency}"
                    )),
                    Some(payable) if !within(net, payable.minor_units()) => Some(format!(
                        "the line's net {} is not the notice's payable amount {} \
                         (difference {}, tolerance {})",
                        money(net).format_amount(),
                        payable,
                        money(net.saturating_sub(payable.minor_units())),
                        money(tolerance_minor).format_amount()
                    )),
                    Some(_) => None,
                }
            };
            (payable.map(|p| p.minor_units()), problem)
        }
        LineKind::Refund => {
            let refunded = side(payment.refunded_payable).map(|m| m.minor_units().saturating_abs());
            let debited = so_far.refunded_payout.saturating_add(net.saturating_abs());
            let problem = match refunded {
                None => Some(format!(
                    "the ledger has no refund with a payable amount in {currency} for it"
                )),
                Some(refunded) if debited > refunded.saturating_add(tolerance_minor) => {
                    Some(format!(
                        "refund lines in {currency} debit {} in all, the refunds' payable \
                         amounts are {} (tolerance {})",
                        money(debited),
                        money(refunded),
                        money(tolerance_minor).format_amount()
                    ))
                }
                Some(_) => None,
            };
            (refunded, problem)
        }
        LineKind::Chargeback | LineKind::Reversal => {
            let taken =
                side(payment.charged_back_payable).map(|m| m.minor_units().saturating_abs());
            let problem = if payment.charged_back == 0 {
                Some("the ledger has no chargeback or reversal of that payment".to_owned())
            } else if so_far.taken_back_payout > 0 {
                Some(format!(
                    "the chargeback was already debited in {currency} by an earlier line"
                ))
            } else {
                match taken {
                    None => Some(format!(
                        "the chargeback's notice carried no payable amount in {currency}"
                    )),
                    Some(taken) if !within(net.saturating_abs(), taken) => Some(format!(
                        "the chargeback's payable amount is {} (difference {}, tolerance {})",
                        money(taken),
                        money(net.saturating_abs().saturating_sub(taken)),
                        money(tolerance_minor).format_amount()
                    )),
                    Some(_) => None,
                }
            };
            (taken, problem)
        }
        LineKind::Fee | LineKind::Adjustment | LineKind::Reserve | LineKind::DisputeHold => {
            (None, None)
        }
    }
}

/// Whether a batch's transfer is the sum of its net lines in its currency
/// (`lines_net`, minor units; `lines` how many): exact, since a transfer is
/// the processor's own sum.
pub fn check_payout(payout: &Payout, lines: usize, lines_net: i64) -> Option<Finding> {
    let currency = payout.amount.currency();
    if lines > 0 && lines_net == payout.amount.minor_units() {
        return None;
    }
    let sum = Money::from_minor(lines_net, currency);
    let difference = Money::from_minor(
        payout.amount.minor_units().saturating_sub(lines_net),
        currency,
    );
    Some(Finding {
        kind: ReviewKind::PayoutTotalDiffers,
        order_ref: None,
        processor_ref: None,
        details: format!(
            "payout of batch {} on {}: {} transferred, the batch's {lines} net line(s) in {} sum to {} (difference {})",
            payout.batch_id,
            payout.paid_on,
            payout.amount,
            currency,
            sum.format_amount(),
            difference.format_amount()
        ),
    })
}

/// The review item for lines added to a batch after its payout was
/// recorded: `added` new lines in the payout's currency (net `added_net`,
/// minor units) now make the batch `lines` lines summing to `lines_net`.
/// The transfer was checked against the batch as it was then; a batch that
/// changes after it was paid out is always a difference to look at, even
/// when the new sum equals the transfer (a later line may explain a
/// difference opened then, or hide one).
pub fn late_lines_finding(
    batch_id: &str,
    paid_on: NaiveDate,
    transferred: Money,
    added: usize,
    added_net: i64,
    lines: usize,
    lines_net: i64,
) -> Finding {
    let currency = transferred.currency();
    let difference = Money::from_minor(
        transferred.minor_units().saturating_sub(lines_net),
        currency,
    );
    Finding {
        kind: ReviewKind::PayoutTotalDiffers,
        order_ref: None,
        processor_ref: None,
        details: format!(
            "batch {batch_id}: {added} line(s) in {currency} (net {}) added after its payout of {transferred} on {paid_on} was recorded; the batch's {lines} net line(s) now sum to {} (difference {})",
            Money::from_minor(added_net, currency).format_amount(),
            Money::from_minor(lines_net, currency).format_amount(),
            difference.format_amount()
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use proptest::prelude::*;

    use super::*;

    fn eur() -> Currency {
        Currency::iso("EUR").expect("EUR")
    }

    fn parse(text: &str) -> Result<Vec<SettlementLine>, SettlementFileError> {
        parse_settlement(text.as_bytes(), &Mapping::default(), &Currencies::iso())
    }

    const HEADER: &str =
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n";

    #[test]
    fn kinds_and_statuses_have_fixed_string_forms() {
        assert_string_forms!(
            LineKind,
            [
                "sale",
                "refund",
                "chargeback",
                "reversal",
                "fee",
                "adjustment",
                "reserve",
                "dispute_hold"
            ]
        );
        assert_string_forms!(LineStatus, ["matched", "differs", "unknown", "other"]);
        assert_string_forms!(MatchedBy, ["processor_ref", "order_ref"]);
    }

    #[test]
    fn default_columns_parse_exactly_in_each_currency() {
        let text = format!(
            "{HEADER}B1,71000101,SHOP-1,sale,107.00,3.40,103.60,EUR,2026-11-30T10:00:00Z\n\
             B1,71000103,SHOP-3,SALE,2500,80,2420,JPY,2026-11-30\n\
             B1,71000104,,refund,-12.345,0.000,-12.345,BHD,2026-11-30 08:00:00\n\
             B1,,,fee,0.00,5.00,-5.00,EUR,2026-11-30\n"
        );
        let lines = parse(&text).expect("parses");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].gross.minor_units(), 107_00);
        assert_eq!(lines[0].fee.minor_units(), 3_40);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[1].gross.minor_units(), 2500);
        assert_eq!(lines[1].kind, LineKind::Sale);
        assert_eq!(lines[2].gross.minor_units(), -12_345);
        assert_eq!(lines[2].order_ref, None);
        assert_eq!(lines[3].kind, LineKind::Fee);
        assert_eq!(lines[3].net.minor_units(), -5_00);
        // A fee written as money out is the same fee.
        let other =
            parse(&format!("{HEADER}B1,,,fee,-5.00,0,-5.00,EUR,2026-11-30\n")).expect("parses");
        assert_eq!(
            (
                other[0].gross.minor_units(),
                other[0].fee.minor_units(),
                other[0].net.minor_units()
            ),
            (0, 5_00, -5_00)
        );
    }

    #[test]
    fn bad_lines_are_all_named_by_their_line_number() {
        let text = format!(
            "{HEADER}B1,1,S,sale,10.00,0.10,9.90,EUR,2026-11-30\n\
             B1,2,S,sale,10.001,0,10.001,EUR,2026-11-30\n\
             B1,3,S,bonus,1.00,0,1.00,EUR,2026-11-30\n\
             B1,4,S,sale,1.00,0.10,1.00,EUR,2026-11-30\n\
             B1,5,S,refund,1.00,0,1.00,EUR,2026-11-30\n\
             ,6,S,sale,1.00,0,1.00,EUR,2026-11-30\n\
             B1,7,S,sale,1.00,0,1.00,XYZ,2026-11-30\n\
             B1,8,S,sale,1.00,0,1.00,EUR,30/11/2026\n\
             B1,,,sale,1.00,0,1.00,EUR,2026-11-30\n\
             B1,4111111111111111,S,sale,1.00,0,1.00,EUR,2026-11-30\n"
        );
        let Err(SettlementFileError::Rows(rows)) = parse(&text) else {
            panic!("refused");
        };
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let all = SettlementFileError::Rows(rows).to_string();
        for says in [
            "line 3: gross: amount has more decimals",
            "line 4: type `bonus`",
            "line 5: net 1.00 is not gross 1.00 − fee 0.10",
            "line 6: a refund takes money back",
            "line 7: batch_id is empty",
            "line 8: currency XYZ is not an ISO 4217",
            "line 9: settled_at must be",
            "line 10: a sale line needs a processor_ref or an order_ref",
            "line 11: processor_ref",
        ] {
            assert!(all.contains(says), "{says}: {all}");
        }
        assert!(!all.contains("4111111111111111"), "{all}");
    }

    #[test]
    fn a_header_without_a_required_column_says_which() {
        let err = parse("batch_id,processor_ref,type,gross\nB,1,sale,1.00\n")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("`currency`") && err.contains("`settled_at`"),
            "{err}"
        );
        // Fee and net may be absent: no fee, net = gross.
        let lines = parse(
            "batch_id,order_ref,type,gross,currency,settled_at\nB,S-1,sale,1.00,EUR,2026-11-30\n",
        )
        .expect("parses");
        assert_eq!(lines[0].net.minor_units(), 1_00);
        assert!(matches!(parse(HEADER), Err(SettlementFileError::Empty)));
    }

    #[test]
    fn a_mapping_reads_another_export_without_code() {
        let mapping = Mapping::from_toml(
            r#"
            delimiter = ";"
            date_format = "%d.%m.%Y"
            [columns]
            batch_id = "Payout ID"
            processor_ref = "Reference"
            order_ref = "Merchant Order"
            type = "Kind"
            gross = "Gross Amount"
            fee = "Commission"
            net = "Net Amount"
            currency = "Cur"
            settled_at = "Date"
            [types]
            "Payment" = "sale"
            "Dispute" = "chargeback"
            "#,
        )
        .expect("mapping");
        let text = "Payout ID;Reference;Merchant Order;Kind;Gross Amount;Commission;Net Amount;Cur;Date;Extra\n\
                    P-9;71000101;SHOP-1;payment;107.00;3.40;103.60;EUR;30.11.2026;x\n\
                    P-9;71000109;SHOP-9;Dispute;-89.00;15.00;-104.00;USD;01.12.2026;y\n\
                    P-9;71000110;SHOP-10;refund;-1.00;0;-1.00;USD;01.12.2026;z\n";
        let lines =
            parse_settlement(text.as_bytes(), &mapping, &Currencies::iso()).expect("parses");
        assert_eq!(lines[0].kind, LineKind::Sale);
        assert_eq!(lines[0].batch_id, "P-9");
        assert_eq!(lines[1].kind, LineKind::Chargeback);
        assert_eq!(lines[1].fee.minor_units(), 15_00);
        assert_eq!(lines[2].kind, LineKind::Refund, "our own words still work");
        assert_eq!(
            lines[1].settled_at,
            "2026-12-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("time")
        );
        for (bad, says) in [
            ("[columns]\nbatch = \"x\"\n", "is not a field"),
            ("[types]\n\"Pay\" = \"payment\"\n", "the types are"),
            ("delimiter = \"ab\"\n", "delimiter"),
            ("colums = 1\n", "colums"),
            ("[columns]\ngross = \" \"\n", "empty"),
        ] {
            let err = Mapping::from_toml(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn an_allowed_currency_is_read_with_the_exponent_of_the_table() {
        let zzb = crate::money::CurrencyCode::parse("ZZB").expect("code");
        let allowed = Currencies::new(&[(zzb, 3)]).expect("table");
        let text = format!("{HEADER}B1,1,S,sale,12.345,0.005,12.340,ZZB,2026-11-30\n");
        let lines =
            parse_settlement(text.as_bytes(), &Mapping::default(), &allowed).expect("parses");
        assert_eq!(
            lines[0].gross,
            allowed.money("12.345", "ZZB").expect("money")
        );
        assert_eq!(
            (lines[0].gross.minor_units(), lines[0].fee.minor_units()),
            (12345, 5)
        );
        let payouts = parse_payouts(
            "batch_id,paid_on,amount,currency\nB1,2026-12-01,12.340,zzb\n".as_bytes(),
            &allowed,
        )
        .expect("parses");
        assert_eq!(payouts[0].amount.minor_units(), 12340);
        let tolerance = Tolerance::parse("0.01").expect("parses");
        assert_eq!(tolerance.minor_in(lines[0].gross.currency()), 10);
        // The same file without the table: ZZB is not known.
        let err = parse(&text).expect_err("refused").to_string();
        assert!(
            err.contains("currency ZZB is not an ISO 4217 currency"),
            "{err}"
        );
    }

    #[test]
    fn identical_lines_in_a_batch_are_counted_apart() {
        let text = format!(
            "{HEADER}B1,1,S,refund,-5.00,0,-5.00,EUR,2026-11-30\n\
             B1,1,S,refund,-5.00,0,-5.00,EUR,2026-11-30\n"
        );
        let lines = parse(&text).expect("parses");
        assert_eq!(lines[0].key(), lines[1].key());
        assert_eq!((lines[0].occurrence, lines[1].occurrence), (1, 2));
        let mut moved = lines[0].clone();
        moved.line = 40;
        assert_eq!(moved.key(), lines[0].key(), "the position is not identity");
    }

    /// Issue 22 item 5: the same line written with another date format is
    /// the same line; the key is the SHA-256 of the values without the
    /// date, each followed by 0x1f (computed here by hand).
    #[test]
    fn a_lines_identity_does_not_depend_on_how_its_date_is_written() {
        let timed = parse(&format!(
            "{HEADER}B1,71000101,SHOP-1001,sale,107.00,3.35,103.65,EUR,2026-11-30T06:00:00Z\n"
        ))
        .expect("parses");
        let dated = parse(&format!(
            "{HEADER}B1,71000101,SHOP-1001,sale,107.00,3.35,103.65,EUR,2026-11-30\n"
        ))
        .expect("parses");
        let mapping = Mapping::from_toml("date_format = \"%d.%m.%Y %H:%M\"\n").expect("mapping");
        let mapped = parse_settlement(
            format!("{HEADER}B1,71000101,SHOP-1001,sale,107.00,3.35,103.65,EUR,30.11.2026 07:15\n")
                .as_bytes(),
            &mapping,
            &Currencies::iso(),
        )
        .expect("parses");
        assert_ne!(timed[0].settled_at, dated[0].settled_at);
        assert_ne!(timed[0].settled_at, mapped[0].settled_at);
        let mut by_hand = Sha256::new();
        for part in [
            "B1",
            "71000101",
            "SHOP-1001",
            "sale",
            "10700",
            "335",
            "10365",
            "EUR",
        ] {
            by_hand.update(part.as_bytes());
            by_hand.update([0x1f]);
        }
        let expected = hex::encode(by_hand.finalize());
        assert_eq!(timed[0].key(), expected);
        assert_eq!(dated[0].key(), expected);
        assert_eq!(mapped[0].key(), expected);
        // Two lines differing only in their time are two occurrences.
        let two = parse(&format!(
            "{HEADER}B1,1,S,refund,-5.00,0,-5.00,EUR,2026-11-30T06:00:00Z\n\
             B1,1,S,refund,-5.00,0,-5.00,EUR,2026-11-30T18:00:00Z\n"
        ))
        .expect("parses");
        assert_eq!((two[0].occurrence, two[1].occurrence), (1, 2));
    }

    /// Issue 22 item 5: a line added after the payout is a
    /// `payout_total_differs`, with the new sum and its difference
    /// (103.65 + 86.17 = 189.82 transferred; a late 10.00 line makes
    /// 199.82, difference -10.00), even when the sum still agrees.
    #[test]
    fn lines_added_after_the_payout_are_a_payout_difference() {
        let on = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let finding = late_lines_finding(
            "B1",
            on,
            Money::from_minor(189_82, eur()),
            1,
            10_00,
            3,
            199_82,
        );
        assert_eq!(finding.kind, ReviewKind::PayoutTotalDiffers);
        assert_eq!(
            finding.details,
            "batch B1: 1 line(s) in EUR (net 10.00) added after its payout of 189.82 EUR on 2026-12-01 was recorded; the batch's 3 net line(s) now sum to 199.82 (difference -10.00)"
        );
        let even = late_lines_finding("B1", on, Money::from_minor(100, eur()), 2, 0, 4, 100);
        assert_eq!(even.kind, ReviewKind::PayoutTotalDiffers);
        assert!(
            even.details.ends_with("(difference 0.00)"),
            "{}",
            even.details
        );
    }

    /// Issue 22 item 5: an offset in a mapping's date format is honoured:
    /// 2026-11-30 23:30 at -02:00 is 2026-12-01 01:30 UTC (23:30 + 2 h).
    #[test]
    fn a_mapping_date_format_with_an_offset_is_honoured() {
        let expected = NaiveDate::from_ymd_opt(2026, 12, 1)
            .and_then(|d| d.and_hms_opt(1, 30, 0))
            .expect("time")
            .and_utc();
        for (format, written) in [
            ("%Y-%m-%d %H:%M:%S %z", "2026-11-30 23:30:00 -0200"),
            ("%Y-%m-%d %H:%M:%S %:z", "2026-11-30 23:30:00 -02:00"),
            ("%d.%m.%Y %H:%M%z", "01.12.2026 02:30+0100"),
        ] {
            let mapping =
                Mapping::from_toml(&format!("date_format = \"{format}\"\n")).expect("mapping");
            let lines = parse_settlement(
                format!("{HEADER}B1,1,S-1,sale,1.00,0,1.00,EUR,{written}\n").as_bytes(),
                &mapping,
                &Currencies::iso(),
            )
            .expect("parses");
            assert_eq!(lines[0].settled_at, expected, "{format}");
        }
        // Without an offset in the format, the time is UTC as before.
        let mapping = Mapping::from_toml("date_format = \"%Y-%m-%d %H:%M:%S\"\n").expect("m");
        let lines = parse_settlement(
            format!("{HEADER}B1,1,S-1,sale,1.00,0,1.00,EUR,2026-11-30 23:30:00\n").as_bytes(),
            &mapping,
            &Currencies::iso(),
        )
        .expect("parses");
        assert_eq!(
            lines[0].settled_at,
            expected - chrono::Duration::hours(2),
            "no offset: UTC"
        );
    }

    #[test]
    fn payouts_parse_and_refuse_repeats() {
        let payouts = parse_payouts(
            "batch_id,paid_on,amount,currency\nB1,2026-12-01,103.60,EUR\nB1,2026-12-01,10,JPY\n"
                .as_bytes(),
            &Currencies::iso(),
        )
        .expect("parses");
        assert_eq!(payouts[1].amount.minor_units(), 10);
        let err = parse_payouts(
            "batch_id,paid_on,amount,currency\nB1,2026-12-01,1.00,EUR\nB1,2026-12-02,2.00,EUR\nB2,yesterday,1,EUR\n"
                .as_bytes(),
            &Currencies::iso(),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("line 3: batch B1 in EUR repeats line 2"),
            "{err}"
        );
        assert!(err.contains("line 4: paid_on"), "{err}");
    }

    #[test]
    fn tolerance_is_applied_in_each_currencys_minor_units() {
        let t = Tolerance::parse("0.01").expect("parses");
        assert_eq!(t.minor_in(eur()), 1);
        assert_eq!(t.minor_in(Currency::iso("JPY").expect("JPY")), 0);
        assert_eq!(t.minor_in(Currency::iso("BHD").expect("BHD")), 10);
        assert_eq!(t.to_string(), "0.01");
        assert_eq!(Tolerance::parse("2").expect("2").minor_in(eur()), 200);
        for bad in ["-1", "0.", ".5", "1e3", "0.0000001", "", "abc"] {
            assert!(Tolerance::parse(bad).is_err(), "{bad}");
        }
    }

    fn payment(id: i64, refno: &str, order: &str, paid: i64) -> LedgerPayment {
        LedgerPayment {
            payment_id: id,
            order_id: id * 10,
            order_ref: order.to_owned(),
            processor_ref: refno.to_owned(),
            currency: eur(),
            paid,
            refunded: 0,
            charged_back: 0,
            reinstated: 0,
            commission: None,
            payable: None,
            refunded_payable: None,
            charged_back_payable: None,
        }
    }

    fn line(
        kind: LineKind,
        refno: Option<&str>,
        order: Option<&str>,
        gross: i64,
    ) -> SettlementLine {
        SettlementLine {
            line: 2,
            batch_id: "B".into(),
            processor_ref: refno.map(str::to_owned),
            order_ref: order.map(str::to_owned),
            kind,
            gross: Money::from_minor(gross, eur()),
            fee: Money::zero(eur()),
            net: Money::from_minor(gross, eur()),
            settled_at: DateTime::<Utc>::UNIX_EPOCH,
            occurrence: 1,
            fee_parts: Vec::new(),
        }
    }

    /// Issue 22, Deliver 3: a positive chargeback line credits a
    /// chargeback back. It matches a won chargeback (once), opens
    /// `settlement_reinstatement` for one no notice reinstated, and is a
    /// difference for a payment never charged back.
    #[test]
    fn a_credit_line_that_reinstates_a_chargeback() {
        let mut won = payment(1, "R1", "S-1", 100_00);
        won.charged_back = 100_00;
        won.reinstated = 100_00;
        let mut open = payment(2, "R2", "S-2", 100_00);
        open.refunded = 20_00;
        open.charged_back = 80_00;
        let never = payment(3, "R3", "S-3", 100_00);
        let ledger = Ledger::new([won, open, never]);
        let mut settled = HashMap::new();
        let lines = [
            line(LineKind::Chargeback, Some("R1"), None, 100_00),
            line(LineKind::Chargeback, Some("R1"), None, 100_00),
            line(LineKind::Reversal, Some("R2"), None, 80_00),
            line(LineKind::Chargeback, Some("R3"), None, 100_00),
        ];
        let got: Vec<(LineStatus, Option<ReviewKind>, Option<i64>)> =
            classify(&lines, &ledger, &mut settled, Tolerance::ZERO)
                .into_iter()
                .map(|m| (m.status, m.finding.map(|f| f.kind), m.expected))
                .collect();
        assert_eq!(
            got,
            [
                (LineStatus::Matched, None, Some(100_00)),
                (
                    LineStatus::Differs,
                    Some(ReviewKind::SettlementAmountDiffers),
                    Some(100_00)
                ),
                (
                    LineStatus::Differs,
                    Some(ReviewKind::SettlementReinstatement),
                    Some(80_00)
                ),
                (
                    LineStatus::Differs,
                    Some(ReviewKind::SettlementAmountDiffers),
                    Some(0)
                ),
            ]
        );
        assert_eq!(settled[&1].credited_back, 100_00);
        assert_eq!(settled[&1].taken_back, 0, "a credit takes nothing back");
        // A positive chargeback line parses; a positive refund still not.
        let parsed = parse_settlement(
            format!("{HEADER}B1,1,S-1,chargeback,100.00,15.00,85.00,EUR,2026-12-01 10:00:00\n")
                .as_bytes(),
            &Mapping::default(),
            &Currencies::iso(),
        )
        .expect("a credit chargeback line parses");
        assert!(parsed[0].gross.is_positive());
        assert!(
            parse_settlement(
                format!("{HEADER}B1,1,S-1,refund,5.00,0,5.00,EUR,2026-12-01 10:00:00\n").as_bytes(),
                &Mapping::default(),
                &Currencies::iso(),
            )
            .is_err()
        );
    }

    #[test]
    fn reserves_and_dispute_holds_of_either_sign_settle_no_payment() {
        let text = format!(
            "{HEADER}B-1,,,reserve,-50.00,,,EUR,2026-11-30\n\
             B-2,,,reserve,50.00,0.00,50.00,EUR,2026-12-30\n\
             B-1,R1,S-1,dispute_hold,-100.00,,,EUR,2026-11-30\n\
             B-2,R1,S-1,DISPUTE_HOLD,100.00,,,EUR,2026-12-30\n"
        );
        let lines = parse_settlement(text.as_bytes(), &Mapping::default(), &Currencies::iso())
            .expect("parses");
        let kinds: Vec<(LineKind, i64)> = lines
            .iter()
            .map(|l| (l.kind, l.net.minor_units()))
            .collect();
        assert_eq!(
            kinds,
            [
                (LineKind::Reserve, -50_00),
                (LineKind::Reserve, 50_00),
                (LineKind::DisputeHold, -100_00),
                (LineKind::DisputeHold, 100_00),
            ]
        );
        // Even naming a payment of the ledger, they settle nothing of it.
        let ledger = Ledger::new([payment(1, "R1", "S-1", 100_00)]);
        let mut settled = HashMap::new();
        let got: Vec<LineStatus> = classify(&lines, &ledger, &mut settled, Tolerance::ZERO)
            .into_iter()
            .map(|m| m.status)
            .collect();
        assert_eq!(got, [LineStatus::Other; 4]);
        assert!(settled.is_empty());
    }

    #[test]
    fn lines_match_by_refno_then_order_and_classify_each_difference() {
        let mut refunded = payment(2, "R2", "S-2", 50_00);
        refunded.refunded = 20_00;
        let mut charged = payment(3, "R3", "S-3", 30_00);
        charged.charged_back = 30_00;
        let ledger = Ledger::new([payment(1, "R1", "S-1", 100_00), refunded, charged]);
        let mut settled = HashMap::new();
        let lines = [
            line(LineKind::Sale, Some("R1"), None, 100_00),
            line(LineKind::Sale, Some("R1"), None, 100_00),
            line(LineKind::Sale, None, Some("S-2"), 49_99),
            line(LineKind::Refund, Some("R2"), None, -15_00),
            line(LineKind::Refund, Some("R2"), None, -6_00),
            line(LineKind::Chargeback, Some("R3"), None, -30_00),
            line(LineKind::Chargeback, Some("R1"), None, -100_00),
            line(LineKind::Sale, Some("R404"), Some("S-404"), 1_00),
            line(LineKind::Fee, None, None, 0),
        ];
        let got: Vec<(LineStatus, Option<MatchedBy>)> =
            classify(&lines, &ledger, &mut settled, Tolerance::ZERO)
                .into_iter()
                .map(|m| (m.status, m.matched_by))
                .collect();
        use LineStatus::*;
        use MatchedBy::*;
        assert_eq!(
            got,
            [
                (Matched, Some(ProcessorRef)),
                (Differs, Some(ProcessorRef)),
                (Differs, Some(OrderRef)),
                (Matched, Some(ProcessorRef)),
                (Differs, Some(ProcessorRef)),
                (Matched, Some(ProcessorRef)),
                (Differs, Some(ProcessorRef)),
                (Unknown, None),
                (Other, None),
            ]
        );
        assert_eq!(settled[&2].refunded, 15_00);
        // With a tolerance of one cent, 49.99 against 50.00 agrees.
        let matched = classify(
            &lines[2..3],
            &ledger,
            &mut HashMap::new(),
            Tolerance::parse("0.01").expect("t"),
        );
        assert_eq!(matched[0].status, Matched);
        let unknown = classify(&lines[7..8], &ledger, &mut settled, Tolerance::ZERO);
        let finding = unknown[0].finding.as_ref().expect("finding");
        assert_eq!(finding.kind, ReviewKind::SettlementUnknown);
        assert!(
            finding.details.contains("processor reference R404"),
            "{}",
            finding.details
        );
    }

    /// Issue 22 item 5: a line whose REFNO names another payment never
    /// settles a payment through its order reference.
    #[test]
    fn a_line_under_a_foreign_refno_is_unknown_not_matched_by_order() {
        let mut refunded = payment(2, "R2", "S-2", 40_00);
        refunded.refunded = 10_00;
        let ledger = Ledger::new([payment(1, "R1", "S-1", 100_00), refunded]);
        let lines = [
            // R2 is S-2's payment: the line says S-1, it settles neither.
            line(LineKind::Sale, Some("R2"), Some("S-1"), 100_00),
            // A REFNO the books do not know, under a known order.
            line(LineKind::Sale, Some("R999"), Some("S-1"), 100_00),
            // The same REFNO with its own order matches by REFNO.
            line(LineKind::Sale, Some("R1"), Some("S-1"), 100_00),
            // No REFNO: the order-reference fallback.
            line(LineKind::Sale, None, Some("S-2"), 40_00),
            // A REFNO without an order reference matches by REFNO.
            line(LineKind::Refund, Some("R2"), None, -10_00),
        ];
        let mut settled = HashMap::new();
        let got = classify(&lines, &ledger, &mut settled, Tolerance::ZERO);
        let summary: Vec<(LineStatus, Option<MatchedBy>, Option<i64>)> = got
            .iter()
            .map(|m| (m.status, m.matched_by, m.payment.as_ref().map(|p| p.0)))
            .collect();
        use LineStatus::*;
        use MatchedBy::*;
        assert_eq!(
            summary,
            [
                (Unknown, None, None),
                (Unknown, None, None),
                (Matched, Some(ProcessorRef), Some(1)),
                (Matched, Some(OrderRef), Some(2)),
                (Matched, Some(ProcessorRef), Some(2)),
            ]
        );
        let foreign = got[0].finding.as_ref().expect("finding");
        assert_eq!(foreign.kind, ReviewKind::SettlementUnknown);
        assert!(
            foreign.details.contains("belongs to another order"),
            "{}",
            foreign.details
        );
        let unknown = got[1].finding.as_ref().expect("finding");
        assert_eq!(unknown.kind, ReviewKind::SettlementUnknown);
        assert!(
            unknown.details.contains("order reference is not tried"),
            "{}",
            unknown.details
        );
        // Only the three matched lines settled anything: S-1 once (the
        // foreign and unknown lines added nothing), S-2 its 40.00 sale and
        // 10.00 refund.
        assert_eq!(settled[&1].sales, 1);
        assert_eq!(settled[&2].sales, 1);
        assert_eq!(settled[&2].refunded, 10_00);
    }

    fn usd() -> Currency {
        Currency::iso("USD").expect("USD")
    }

    /// A line in USD, with its fee.
    fn usd_line(kind: LineKind, refno: &str, gross: i64, fee: i64) -> SettlementLine {
        SettlementLine {
            gross: Money::from_minor(gross, usd()),
            fee: Money::from_minor(fee, usd()),
            net: Money::from_minor(gross - fee, usd()),
            ..line(kind, Some(refno), None, gross)
        }
    }

    /// A payment of 100.00 EUR whose notice said 88.20 USD payable.
    fn paid_in_eur_paid_out_in_usd(id: i64, refno: &str, payable: i64) -> LedgerPayment {
        LedgerPayment {
            payable: Some(Money::from_minor(payable, usd())),
            commission: Some(5_50),
            ..payment(id, refno, &format!("S-{id}"), 100_00)
        }
    }

    #[test]
    fn a_line_in_the_payout_currency_matches_through_the_payable_amount() {
        let mut refunded = paid_in_eur_paid_out_in_usd(2, "R2", 88_20);
        refunded.refunded = 100_00;
        refunded.refunded_payable = Some(Money::from_minor(-88_20, usd()));
        let mut charged = paid_in_eur_paid_out_in_usd(3, "R3", 88_20);
        charged.charged_back = 100_00;
        charged.charged_back_payable = Some(Money::from_minor(-88_20, usd()));
        let tiny = paid_in_eur_paid_out_in_usd(4, "R4", -57);
        let no_payable = payment(5, "R5", "S-5", 100_00);
        let ledger = Ledger::new([
            paid_in_eur_paid_out_in_usd(1, "R1", 88_20),
            refunded,
            charged,
            tiny,
            no_payable,
        ]);
        let lines = [
            // Net 88.20 (gross 94.00, fee 5.80): the payable amount.
            usd_line(LineKind::Sale, "R1", 94_00, 5_80),
            // Once only, whatever the currency of the second.
            line(LineKind::Sale, Some("R1"), None, 100_00),
            usd_line(LineKind::Sale, "R2", 88_20, 0),
            usd_line(LineKind::Refund, "R2", -50_00, 0),
            usd_line(LineKind::Refund, "R2", -38_20, 0),
            usd_line(LineKind::Refund, "R2", -1, 0),
            usd_line(LineKind::Chargeback, "R3", -88_20, 0),
            usd_line(LineKind::Chargeback, "R3", -88_20, 0),
            // A negative payable: the net of a sale line can be, its
            // gross cannot.
            usd_line(LineKind::Sale, "R4", 0, 57),
            // No payout side in the ledger: USD is not its currency.
            usd_line(LineKind::Sale, "R5", 88_20, 0),
            // One cent off the payable amount.
            usd_line(LineKind::Sale, "R3", 88_21, 0),
        ];
        let mut settled = HashMap::new();
        let got = classify(&lines, &ledger, &mut settled, Tolerance::ZERO);
        use LineStatus::*;
        assert_eq!(
            got.iter().map(|m| m.status).collect::<Vec<_>>(),
            [
                Matched, Differs, Matched, Matched, Matched, Differs, Matched, Differs, Matched,
                Differs, Differs
            ]
        );
        assert_eq!(got[0].expected, Some(88_20), "in the line's currency");
        assert_eq!(got[3].expected, Some(88_20));
        assert_eq!(got[6].expected, Some(88_20));
        assert_eq!(settled[&2].refunded_payout, 88_20);
        assert_eq!(settled[&2].refunded, 0, "no EUR mixed in");
        assert_eq!(settled[&3].taken_back_payout, 88_20);
        let details = |i: usize| {
            got[i]
                .finding
                .as_ref()
                .map(|f| f.details.clone())
                .unwrap_or_default()
        };
        assert!(details(9).contains("is in EUR"), "{}", details(9));
        assert!(
            details(10).contains("difference 0.01 USD"),
            "{}",
            details(10)
        );
        // Within a cent's tolerance, 88.21 agrees.
        let tolerant = classify(
            &lines[10..11],
            &ledger,
            &mut HashMap::new(),
            Tolerance::parse("0.01").expect("t"),
        );
        assert_eq!(tolerant[0].status, Matched);
    }

    #[test]
    fn a_fee_in_the_payout_currency_is_not_compared_with_the_commission() {
        let payment = paid_in_eur_paid_out_in_usd(1, "R1", 88_20);
        let ledger = Ledger::new([payment.clone()]);
        // 9.99 USD of fee against 5.50 EUR of commission: not comparable.
        let usd_sale = usd_line(LineKind::Sale, "R1", 98_19, 9_99);
        let matched = classify(
            std::slice::from_ref(&usd_sale),
            &ledger,
            &mut HashMap::new(),
            Tolerance::ZERO,
        );
        assert_eq!(matched[0].status, LineStatus::Matched);
        assert_eq!(
            fee_finding(&usd_sale, &matched[0], &payment, Tolerance::ZERO),
            None
        );
        // The same fee in EUR is compared, and differs.
        let eur_sale = SettlementLine {
            fee: Money::from_minor(9_99, eur()),
            net: Money::from_minor(90_01, eur()),
            ..line(LineKind::Sale, Some("R1"), None, 100_00)
        };
        let matched = classify(
            std::slice::from_ref(&eur_sale),
            &ledger,
            &mut HashMap::new(),
            Tolerance::ZERO,
        );
        let finding =
            fee_finding(&eur_sale, &matched[0], &payment, Tolerance::ZERO).expect("fee_differs");
        assert_eq!(finding.kind, ReviewKind::FeeDiffers);
    }

    #[test]
    fn a_payout_must_be_its_batchs_net_exactly() {
        let payout = Payout {
            line: 2,
            batch_id: "B".into(),
            paid_on: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            amount: Money::from_minor(100_00, eur()),
        };
        assert_eq!(check_payout(&payout, 3, 100_00), None);
        let finding = check_payout(&payout, 3, 99_99).expect("differs");
        assert_eq!(finding.kind, ReviewKind::PayoutTotalDiffers);
        assert!(
            finding.details.contains("difference 0.01"),
            "{}",
            finding.details
        );
        assert!(check_payout(&payout, 0, 0).is_some(), "no lines at all");
    }

    /// Issue 22 item 5: a European export (title lines, `;`, decimal
    /// commas with `.` thousands, refunds and chargebacks written
    /// positive, four deduction columns) reads to the lines the default
    /// export writes, every figure by hand.
    #[test]
    fn a_european_export_reads_exactly_through_its_mapping() {
        let mapping = Mapping::from_toml(
            r#"
            delimiter = ";"
            date_format = "%d.%m.%Y"
            decimal_separator = ","
            thousands_separator = "."
            skip_lines = 2
            amount_sign = "by_type"
            fee_columns = ["MwSt", "Provision", "Affiliate", "FX"]
            [columns]
            batch_id = "Auszahlung"
            processor_ref = "Transaktion"
            order_ref = "Bestellung"
            type = "Art"
            gross = "Betrag"
            net = "Netto"
            currency = "Währung"
            settled_at = "Datum"
            [types]
            "Verkauf" = "sale"
            "Erstattung" = "refund"
            "Rückbuchung" = "chargeback"
            "Rückbuchung storniert" = "reinstatement"
            "Reserve" = "reserve"
            "#,
        )
        .expect("mapping");
        let text = "Abrechnung November; Konto \"4711\n\
                    \n\
                    Auszahlung;Transaktion;Bestellung;Art;Betrag;MwSt;Provision;Affiliate;FX;Netto;Währung;Datum\n\
                    A-1;71000101;S-1;Verkauf;1.107,00;0,64;2,71;;0,00;1.103,65;EUR;30.11.2026\n\
                    A-1;71000102;S-2;Erstattung;20,00;;;;;20,00;EUR;30.11.2026\n\
                    A-1;71000103;S-3;Rückbuchung;89,00;0,00;15,00;0,00;0,00;104,00;EUR;30.11.2026\n\
                    A-1;71000104;S-4;Rückbuchung;-10,00;;;;;-10,00;EUR;30.11.2026\n\
                    A-1;71000105;S-5;Rückbuchung storniert;100,00;;;;;100,00;EUR;30.11.2026\n\
                    A-1;;;Reserve;-1.234,56;;;;;-1.234,56;EUR;30.11.2026\n\
                    A-1;71000106;S-6;Verkauf;2.500;15;60;10;5;2.410;JPY;30.11.2026\n\
                    A-1;71000107;S-7;Verkauf;10,00;0,50;0,40;0,00;-0,10;9,20;EUR;30.11.2026\n";
        let lines =
            parse_settlement(text.as_bytes(), &mapping, &Currencies::iso()).expect("parses");
        // (line in the file, kind, gross, fee, net), minor units by hand.
        let read: Vec<(u64, LineKind, i64, i64, i64)> = lines
            .iter()
            .map(|l| {
                (
                    l.line,
                    l.kind,
                    l.gross.minor_units(),
                    l.fee.minor_units(),
                    l.net.minor_units(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                (4, LineKind::Sale, 1_107_00, 3_35, 1_103_65),
                (5, LineKind::Refund, -20_00, 0, -20_00),
                (6, LineKind::Chargeback, -89_00, 15_00, -104_00),
                (7, LineKind::Chargeback, -10_00, 0, -10_00),
                (8, LineKind::Chargeback, 100_00, 0, 100_00),
                (9, LineKind::Reserve, -1_234_56, 0, -1_234_56),
                (10, LineKind::Sale, 2_500, 90, 2_410),
                (11, LineKind::Sale, 10_00, 80, 9_20),
            ]
        );
        // Each deduction kept, in the mapping's order; empty cells zero.
        let parts = |i: usize| -> Vec<(&str, i64)> {
            lines[i]
                .fee_parts
                .iter()
                .map(|p| (p.column.as_str(), p.amount.minor_units()))
                .collect()
        };
        assert_eq!(
            parts(0),
            [
                ("MwSt", 64),
                ("Provision", 2_71),
                ("Affiliate", 0),
                ("FX", 0)
            ]
        );
        assert_eq!(
            parts(6),
            [
                ("MwSt", 15),
                ("Provision", 60),
                ("Affiliate", 10),
                ("FX", 5)
            ]
        );
        // A rebate (negative FX) lowers the fee: 0.50 + 0.40 − 0.10.
        assert_eq!(parts(7).iter().map(|p| p.1).sum::<i64>(), 80);
        assert_eq!(
            lines[6].fee_parts_json().as_deref(),
            Some(
                r#"[{"column":"MwSt","minor":15},{"column":"Provision","minor":60},{"column":"Affiliate","minor":10},{"column":"FX","minor":5}]"#
            )
        );
        assert_eq!(
            parse(&format!("{HEADER}B,1,,sale,1.00,0,1.00,EUR,2026-11-30\n")).expect("default")[0]
                .fee_parts_json(),
            None
        );
    }

    /// Without `amount_sign = "by_type"` a positive refund is still refused
    /// (the file's sign is the truth), and the error says what to set.
    #[test]
    fn the_sign_rule_is_the_mappings_to_choose() {
        let text = format!("{HEADER}B,1,,refund,20.00,0,20.00,EUR,2026-11-30\n");
        let err = parse(&text).expect_err("refused").to_string();
        assert!(
            err.contains("line 2") && err.contains("amount_sign = \"by_type\""),
            "{err}"
        );
        let by_type = Mapping::from_toml("amount_sign = \"by_type\"\n").expect("mapping");
        let lines = parse_settlement(
            format!(
                "{HEADER}B,1,,refund,20.00,0,20.00,EUR,2026-11-30\n\
                 B,2,,sale,-5.00,0,-5.00,EUR,2026-11-30\n\
                 B,3,,adjustment,-3.00,0,-3.00,EUR,2026-11-30\n\
                 B,4,,reversal,7.00,1.00,8.00,EUR,2026-11-30\n"
            )
            .as_bytes(),
            &by_type,
            &Currencies::iso(),
        )
        .expect("parses");
        let signed: Vec<(i64, i64)> = lines
            .iter()
            .map(|l| (l.gross.minor_units(), l.net.minor_units()))
            .collect();
        // Refund and reversal turned negative, the sale positive, the
        // adjustment as written; the reversal's net −7.00 − 1.00.
        assert_eq!(
            signed,
            [
                (-20_00, -20_00),
                (5_00, 5_00),
                (-3_00, -3_00),
                (-7_00, -8_00)
            ]
        );
        // A file whose net does not follow its gross is refused, named.
        let err = parse_settlement(
            format!("{HEADER}B,1,,refund,20.00,0,-20.00,EUR,2026-11-30\n").as_bytes(),
            &by_type,
            &Currencies::iso(),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("line 2: net 20.00 is not gross -20.00 − fee 0.00 (the gross and net written were both turned"),
            "{err}"
        );
    }

    /// A malformed number names its line (title lines counted), and every
    /// new key of a mapping is checked when the mapping is read.
    #[test]
    fn a_malformed_amount_names_its_line_and_bad_mapping_keys_are_refused() {
        let mapping = Mapping::from_toml(
            "delimiter = \";\"\ndecimal_separator = \",\"\nthousands_separator = \".\"\n\
             skip_lines = 1\nfee_columns = [\"VAT\", \"Commission\"]\n",
        )
        .expect("mapping");
        let header = "batch_id;processor_ref;type;gross;VAT;Commission;net;currency;settled_at";
        let text = format!(
            "Title\n{header}\nB;1;sale;1.234,56;1,00;2,00;1.231,56;EUR;2026-11-30\n\
             B;2;sale;1,234.56;0;0;1,234.56;EUR;2026-11-30\n\
             B;3;sale;10,00;1,00;x;9,00;EUR;2026-11-30\n"
        );
        let err = parse_settlement(text.as_bytes(), &mapping, &Currencies::iso())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("2 bad line(s)"), "{err}");
        assert!(
            err.contains("line 4: gross: `1,234.56` is not an amount written like 1.234,56"),
            "{err}"
        );
        assert!(err.contains("line 5: fee column `Commission`"), "{err}");
        // A fee column the header lacks is a header error.
        let err = parse_settlement(
            "Title\nbatch_id;processor_ref;type;gross;VAT;currency;settled_at\n".as_bytes(),
            &mapping,
            &Currencies::iso(),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("lacks `Commission`"), "{err}");
        for (bad, says) in [
            ("decimal_separator = \";\"\n", "decimal_separator"),
            (
                "decimal_separator = \",\"\nthousands_separator = \",\"\n",
                "both",
            ),
            ("amount_sign = \"positive\"\n", "amount_sign"),
            ("skip_lines = 1000\n", "skip_lines"),
            ("skip_lines = -1\n", "skip_lines"),
            ("fee_columns = [\"VAT\", \"vat\"]\n", "named twice"),
            ("fee_columns = [\" \"]\n", "empty"),
            (
                "fee_columns = [\"VAT\"]\n[columns]\nfee = \"Fee\"\n",
                "either",
            ),
            ("[types]\n\"Won\" = \"reinstated\"\n", "reinstatement"),
        ] {
            let err = Mapping::from_toml(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    proptest! {
        /// Any line written out in the default format parses back to the
        /// same amounts, exactly, in any currency's exponent.
        #[test]
        fn written_lines_parse_back_exactly(
            gross in 0i64..10_000_000_000,
            fee in 0i64..1_000_000,
            code in prop::sample::select(vec!["EUR", "JPY", "BHD", "USD", "CLF"]),
            refund in any::<bool>(),
        ) {
            let currency = Currency::iso(code).expect("code");
            let gross = if refund { -gross } else { gross };
            let g = Money::from_minor(gross, currency);
            let f = Money::from_minor(fee, currency);
            let n = Money::from_minor(gross - fee, currency);
            let kind = if refund { "refund" } else { "sale" };
            let text = format!(
                "{HEADER}B,1,S,{kind},{},{},{},{code},2026-11-30\n",
                g.format_amount(), f.format_amount(), n.format_amount()
            );
            let lines = parse(&text).expect("parses");
            prop_assert_eq!(lines[0].gross, g);
            prop_assert_eq!(lines[0].fee, f);
            prop_assert_eq!(lines[0].net, n);
        }

        /// A sale matches exactly when its distance to the ledger's
        /// payment is within the tolerance.
        #[test]
        fn the_tolerance_is_a_closed_boundary(paid in 1i64..1_000_000, delta in -500i64..500, cents in 0u32..300) {
            let ledger = Ledger::new([payment(1, "R", "S", paid)]);
            let tolerance = Tolerance::parse(&format!("{}.{:02}", cents / 100, cents % 100)).expect("t");
            let gross = (paid + delta).max(0);
            let got = classify(&[line(LineKind::Sale, Some("R"), None, gross)], &ledger, &mut HashMap::new(), tolerance);
            let agrees = (gross - paid).abs() <= i64::from(cents);
            prop_assert_eq!(got[0].status == LineStatus::Matched, agrees);
        }

        /// A sale line in the payout currency matches exactly when its net
        /// is within the tolerance of the notice's payable amount (negative
        /// ones included), whatever its split into gross and fee; the same
        /// line in a third currency never does.
        #[test]
        fn a_payout_currency_sale_matches_by_its_net(
            payable in -1_000i64..1_000_000,
            delta in -500i64..500,
            fee in 0i64..10_000,
            cents in 0u32..300,
        ) {
            let ledger = Ledger::new([paid_in_eur_paid_out_in_usd(1, "R", payable)]);
            let tolerance = Tolerance::parse(&format!("{}.{:02}", cents / 100, cents % 100)).expect("t");
            let net = payable + delta;
            let gross = (net + fee).max(0);
            let fee = gross - net;
            prop_assume!(fee >= 0);
            let sale = usd_line(LineKind::Sale, "R", gross, fee);
            let got = classify(std::slice::from_ref(&sale), &ledger, &mut HashMap::new(), tolerance);
            prop_assert_eq!(got[0].status == LineStatus::Matched, delta.abs() <= i64::from(cents));
            let gbp = Currency::iso("GBP").expect("GBP");
            let elsewhere = SettlementLine {
                gross: Money::from_minor(gross, gbp),
                fee: Money::from_minor(fee, gbp),
                net: Money::from_minor(net, gbp),
                ..sale
            };
            let got = classify(&[elsewhere], &ledger, &mut HashMap::new(), tolerance);
            prop_assert_eq!(got[0].status, LineStatus::Differs);
        }
    }
}
