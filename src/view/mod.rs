//! Listings as data, rendered by whoever shows them.
//!
//! A listing (orders, review items, settlement batches and lines, parked
//! messages, notifications) is built once as a [`Table`]: named columns and rows of
//! [`Cell`]s, from what the store or the broker returned. The command line
//! prints it as CSV, the console renders it as HTML
//! (`console::pages::render_table`) and offers the same CSV for download,
//! so a column cannot mean one thing in a terminal and another in a
//! browser. JSON output keeps serializing the records themselves, whose
//! shape scripts rely on.

pub mod notifications;
pub mod orders;
pub mod parked;
pub mod review;
pub mod settlement;

/// One cell of a table: text, or text linking somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    /// Right-aligned (amounts, counts).
    Number(String),
    Link {
        href: String,
        text: String,
    },
}

impl Cell {
    /// The text shown, whatever the kind of cell.
    pub fn text(&self) -> &str {
        match self {
            Cell::Text(text) | Cell::Number(text) | Cell::Link { text, .. } => text,
        }
    }

    /// The text as a CSV cell: see [`Table::csv`].
    fn csv_text(&self) -> String {
        match self {
            Cell::Number(text) => text.clone(),
            other => csv_text(other.text()).into_owned(),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::Text(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_owned())
    }
}

/// A text value as a CSV cell a spreadsheet shows as text: one that it
/// would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`. Every CSV the project writes puts
/// text that can come from outside (an order reference a shopper chose
/// through a buy-link parameter, a note, a batch id) through this; amounts
/// and counts, which are ours, are written as they are, so a negative
/// amount stays a number.
pub fn csv_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A listing: rendered as HTML by the console, as CSV by both.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its name in `?csv=NAME` and in the downloaded file's name.
    pub name: &'static str,
    pub caption: String,
    /// CSV column names (snake_case), shown as headers.
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(name: &'static str, caption: impl Into<String>, columns: &[&'static str]) -> Self {
        Self {
            name,
            caption: caption.into(),
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The table as CSV: its columns, then its rows as text. A text cell
    /// that a spreadsheet would run as a formula (it starts with `=`, `+`,
    /// `-`, `@`, a tab or a carriage return: an order reference, a note, a
    /// batch id can come from outside) is written with a leading `'`, which
    /// spreadsheets show as text. Number cells are ours (amounts, counts),
    /// so a negative amount stays a number.
    pub fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&self.columns)?;
        for row in &self.rows {
            writer.write_record(row.iter().map(Cell::csv_text))?;
        }
        writer
            .into_inner()
            .map_err(|err| csv::Error::from(err.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_values_and_defuses_formulas_in_text_cells() {
        let mut table = Table::new("t", "T", &["id", "amount", "note"]);
        table.push(vec!["a".into(), Cell::Number("7".into()), "x, y".into()]);
        table.push(vec![
            "=HYPERLINK(\"http://x\")".into(),
            Cell::Number("-20.00".into()),
            "@SUM(A1)".into(),
        ]);
        table.push(vec![
            Cell::Link {
                href: "/orders/x".into(),
                text: "+1".into(),
            },
            Cell::Number("0".into()),
            "-2+3".into(),
        ]);
        let csv = String::from_utf8(table.csv().expect("csv")).expect("utf-8");
        assert_eq!(
            csv,
            "id,amount,note\na,7,\"x, y\"\n\"'=HYPERLINK(\"\"http://x\"\")\",-20.00,'@SUM(A1)\n'+1,0,'-2+3\n"
        );
    }
}
