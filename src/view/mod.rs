//! Listings as data, rendered by whoever shows them.
//!
//! A listing (orders, review items, settlement batches and lines, parked
//! messages, notifications) is built once as a [`Table`]: named columns and rows of
//! [`Cell`]s, from what the store or the broker returned. The command line
//! prints it as a text table or CSV, the console renders it as HTML
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

/// A listing: rendered as HTML by the console, as a text table or CSV by
/// the command line.
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

    /// The table as CSV: its columns, then its rows as text.
    pub fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&self.columns)?;
        for row in &self.rows {
            writer.write_record(row.iter().map(Cell::text))?;
        }
        writer
            .into_inner()
            .map_err(|err| csv::Error::from(err.into_error()))
    }
}

impl Table {
    /// The table as text for a terminal: a header of the column names,
    /// then one line per row, each column as wide as its widest value,
    /// numbers aligned right, two spaces between columns. An empty table
    /// prints its header alone.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.text().chars().count());
            }
        }
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                !self.rows.is_empty()
                    && self
                        .rows
                        .iter()
                        .all(|row| matches!(row.get(i), Some(Cell::Number(_))))
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            cells
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let width = widths.get(i).copied().unwrap_or(0);
                    if numeric.get(i).copied().unwrap_or(false) {
                        format!("{text:>width$}")
                    } else if i == last {
                        (*text).to_owned()
                    } else {
                        format!("{text:<width$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        writeln!(out, "{}", line(self.columns.clone()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.iter().map(Cell::text).collect()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_columns_fit_their_widest_value_and_numbers_align_right() {
        let mut table = Table::new("t", "T", &["id", "count", "note"]);
        table.push(vec!["a".into(), Cell::Number("7".into()), "x".into()]);
        table.push(vec!["bbbb".into(), Cell::Number("123".into()), "yy".into()]);
        let mut out = Vec::new();
        table.write_text(&mut out).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "id    count  note\na         7  x\nbbbb    123  yy\n"
        );
        let csv = String::from_utf8(table.csv().expect("csv")).expect("utf-8");
        assert_eq!(csv, "id,count,note\na,7,x\nbbbb,123,yy\n");
    }
}
