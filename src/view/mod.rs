//! Listings as data, rendered by whoever shows them.
//!
//! A listing (orders, review items, settlement batches and lines, parked
//! messages, notifications) is built once as a [`Table`]: named columns and rows of
//! [`Cell`]s, from what the store or the broker returned. The command line
//! prints it as an aligned text table ([`Table::write_text`]) or as CSV,
//! the console renders it as HTML (`console::pages::render_table`) and
//! offers the same CSV for download, so a column cannot mean one thing in
//! a terminal and another in a browser. JSON output keeps serializing the
//! records themselves, whose shape scripts rely on.

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

/// A listing: rendered as HTML by the console, as text by the command
/// line, as CSV by both.
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

    /// The table for a terminal: a header of the column names (upper
    /// case, `_` as a space), one line per row with the columns aligned,
    /// then the caption (the count line, `12 order(s)`).
    ///
    /// Widths count characters, not bytes, so a reference or a note in
    /// UTF-8 keeps the columns aligned. Number cells are right-aligned
    /// (and so is the header of a column of numbers), other cells left;
    /// a link shows its text. A cell can hold what came from outside (an
    /// order reference, a resolution note, a parking reason): every
    /// control character and bidirectional override in it is shown as
    /// U+FFFD, so no cell can move the cursor, send an ANSI escape to the
    /// operator's terminal, break a row in two or reorder what is shown.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|column| column.replace('_', " ").to_uppercase())
            .collect();
        let rows: Vec<Vec<(String, bool)>> = self
            .rows
            .iter()
            .map(|row| {
                (0..self.columns.len())
                    .map(|i| match row.get(i) {
                        Some(cell) => (terminal_text(cell.text()), is_number(cell)),
                        None => (String::new(), false),
                    })
                    .collect()
            })
            .collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| !rows.is_empty() && rows.iter().all(|row| row[i].1))
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, (text, _)) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let header: Vec<(String, bool)> = header.into_iter().zip(numeric).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, ((text, right), width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(width - text.chars().count());
                if *right {
                    line.push_str(&pad);
                    line.push_str(text);
                } else {
                    line.push_str(text);
                    line.push_str(&pad);
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        writeln!(out, "{}", terminal_text(&self.caption))
    }

    /// [`Table::write_text`] as a string.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn is_number(cell: &Cell) -> bool {
    matches!(cell, Cell::Number(_))
}

/// `text` safe to print on a terminal: control characters (C0, DEL, C1:
/// escapes, carriage returns, newlines, tabs) and the bidirectional
/// formatting characters (which reorder what follows them on screen) are
/// each replaced by U+FFFD, one character for one, so widths still hold.
pub fn terminal_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// The Unicode bidirectional formatting characters: marks, embeddings,
/// overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
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

    #[test]
    fn text_aligns_by_characters_not_bytes() {
        let mut table = Table::new("t", "2 order(s)", &["order_ref", "status"]);
        table.push(vec!["Ünïcødé-€".into(), "paid".into()]);
        table.push(vec!["A".into(), "refunded".into()]);
        assert_eq!(
            table.text(),
            "ORDER REF  STATUS\n\
             Ünïcødé-€  paid\n\
             A          refunded\n\
             2 order(s)\n"
        );
    }

    #[test]
    fn text_right_aligns_numbers_and_their_header_and_shows_link_text() {
        let mut table = Table::new("t", "2 line(s)", &["order_ref", "amount", "currency"]);
        table.push(vec![
            Cell::Link {
                href: "/orders/SHOP-1".into(),
                text: "SHOP-1".into(),
            },
            Cell::Number("1234.50".into()),
            "EUR".into(),
        ]);
        table.push(vec![
            "SHOP-22".into(),
            Cell::Number("-7".into()),
            "JPY".into(),
        ]);
        assert_eq!(
            table.text(),
            "ORDER REF   AMOUNT  CURRENCY\n\
             SHOP-1     1234.50  EUR\n\
             SHOP-22         -7  JPY\n\
             2 line(s)\n"
        );
        assert!(!table.text().contains("/orders/"));
    }

    #[test]
    fn text_neutralises_escapes_and_line_breaks_in_cells() {
        let mut table = Table::new("t", "1 item(s)", &["id", "note"]);
        table.push(vec![
            Cell::Number("1".into()),
            "ok\u{1b}[2J\u{1b}]0;owned\u{7}\r\nfake row\tx\u{9b}31m\u{202E}gnp.exe".into(),
        ]);
        let text = table.text();
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || is_bidi_control(c)),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("ok\u{FFFD}[2J\u{FFFD}]0;owned\u{FFFD}\u{FFFD}\u{FFFD}fake row"));
    }

    #[test]
    fn an_empty_table_has_its_header_and_count_line() {
        let table = Table::new("t", "0 order(s)", &["order_ref", "amount"]);
        assert_eq!(table.text(), "ORDER REF  AMOUNT\n0 order(s)\n");
    }

    proptest::proptest! {
        /// Whatever the cells hold, the text is one line per row between
        /// the header and the caption, no line holds a control character,
        /// and every column starts at the same character offset on every
        /// line.
        #[test]
        fn text_lines_are_rows_and_columns_line_up(
            cells in proptest::collection::vec(
                (proptest::prelude::any::<String>(), proptest::prelude::any::<String>(), proptest::prelude::any::<bool>()),
                0..8,
            )
        ) {
            let mut table = Table::new("t", "caption", &["first", "second", "third"]);
            for (a, b, number) in &cells {
                let middle = if *number { Cell::Number(b.clone()) } else { Cell::Text(b.clone()) };
                table.push(vec![Cell::Text(a.clone()), middle, "x".into()]);
            }
            let text = table.text();
            let lines: Vec<&str> = text.lines().collect();
            proptest::prop_assert_eq!(lines.len(), cells.len() + 2);
            proptest::prop_assert!(!text.chars().any(|c| (c.is_control() && c != '\n') || is_bidi_control(c)));
            // The last column is "x" on every row, left-aligned: it ends
            // every row line at the same character offset.
            let ends: std::collections::HashSet<usize> =
                lines[1..lines.len() - 1].iter().map(|l| l.chars().count()).collect();
            proptest::prop_assert!(ends.len() <= 1, "{:?}", lines);
        }
    }
}
