//! The review queue's listing (`review list`, the console's `/review`):
//! one row per group of open items of one kind for one order (an item on
//! its own is a group of one), with its resolution when resolved, and the
//! amount it is about when a stored row says
//! ([`ReviewItem::amount`](crate::store::ReviewItem::amount)), and what its
//! resolution wrote off (`--status resolved --kind KIND` is the write-off
//! schedule).

use super::{Cell, Table};
use crate::export::rfc3339;
use crate::store::review::ReviewGroup;

/// The columns, in order (scripts read the CSV by these names).
pub const COLUMNS: [&str; 17] = [
    "id",
    "status",
    "kind",
    "order_ref",
    "processor_ref",
    "amount",
    "currency",
    "created_at",
    "details",
    "resolved_at",
    "resolved_by",
    "resolution_note",
    "count",
    "item_ids",
    "resolution_action",
    "written_off",
    "written_off_currency",
];

/// Review groups as a listing, in the order given (newest first).
pub fn table(groups: &[ReviewGroup], caption: String) -> Table {
    let mut table = Table::new("review_items", caption, &COLUMNS);
    for group in groups {
        let item = &group.item;
        let ids: Vec<String> = group.item_ids.iter().map(i64::to_string).collect();
        table.push(vec![
            Cell::Number(item.id.to_string()),
            Cell::Text(item.status.clone()),
            Cell::Text(item.kind.as_str().to_owned()),
            Cell::Text(item.order_ref.clone().unwrap_or_default()),
            Cell::Text(item.processor_ref.clone().unwrap_or_default()),
            // A number (a refund's is negative), never defused as text.
            Cell::Number(item.amount.clone().unwrap_or_default()),
            Cell::Text(item.currency.clone().unwrap_or_default()),
            Cell::Text(rfc3339::format(&item.created_at)),
            Cell::Text(item.details.clone()),
            Cell::Text(
                item.resolved_at
                    .as_ref()
                    .map(rfc3339::format)
                    .unwrap_or_default(),
            ),
            Cell::Text(item.resolved_by.clone().unwrap_or_default()),
            Cell::Text(item.resolution_note.clone().unwrap_or_default()),
            Cell::Number(group.count.to_string()),
            Cell::Text(ids.join(" ")),
            Cell::Text(item.resolution_action.clone().unwrap_or_default()),
            // The write-off schedule: a number (an excess is negative).
            Cell::Number(item.written_off.clone().unwrap_or_default()),
            Cell::Text(item.written_off_currency.clone().unwrap_or_default()),
        ]);
    }
    table
}

/// What the console's queue is ordered by (`?sort=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueSort {
    /// By how long the row has waited: its oldest item's opening.
    #[default]
    Age,
    /// By currency, then amount (rows without an amount last).
    Amount,
    /// By kind, then oldest first.
    Kind,
}

impl QueueSort {
    /// Reads `?sort=`: `age`, `amount` or `kind`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "age" => Some(Self::Age),
            "amount" => Some(Self::Amount),
            "kind" => Some(Self::Kind),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Amount => "amount",
            Self::Kind => "kind",
        }
    }

    /// The direction a sort starts in: the oldest and the largest first,
    /// kinds from a to z.
    pub fn default_direction(self) -> SortDirection {
        match self {
            Self::Age | Self::Amount => SortDirection::Descending,
            Self::Kind => SortDirection::Ascending,
        }
    }
}

/// Ascending or descending (`?dir=asc|desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    Ascending,
    Descending,
}

impl SortDirection {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "asc" => Some(Self::Ascending),
            "desc" => Some(Self::Descending),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ascending => "asc",
            Self::Descending => "desc",
        }
    }

    pub fn reversed(self) -> Self {
        match self {
            Self::Ascending => Self::Descending,
            Self::Descending => Self::Ascending,
        }
    }

    fn apply(self, ordering: std::cmp::Ordering) -> std::cmp::Ordering {
        match self {
            Self::Ascending => ordering,
            Self::Descending => ordering.reverse(),
        }
    }
}

/// One row of the console's queue: a group as `review list` groups it
/// ([`crate::store::review::group_items`]), shown with its newest item's
/// fields, and when its oldest item was opened (its age).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub group: ReviewGroup,
    pub first_opened: chrono::DateTime<chrono::Utc>,
}

/// The queue's rows: `items` (newest first, as listed) grouped as `review
/// list` groups them, each with its oldest item's opening.
pub fn queue_rows(items: Vec<crate::store::ReviewItem>) -> Vec<QueueRow> {
    let opened: std::collections::HashMap<i64, chrono::DateTime<chrono::Utc>> =
        items.iter().map(|i| (i.id, i.created_at)).collect();
    crate::store::review::group_items(items)
        .into_iter()
        .map(|group| {
            let first_opened = group
                .item_ids
                .iter()
                .filter_map(|id| opened.get(id))
                .min()
                .copied()
                .unwrap_or(group.item.created_at);
            QueueRow {
                group,
                first_opened,
            }
        })
        .collect()
}

/// Orders the queue's rows by `sort` in `direction`; ties (and rows
/// without an amount, always last when sorted by amount) by the row's
/// item id, so a page always holds the same rows.
pub fn sort_queue(rows: &mut [QueueRow], sort: QueueSort, direction: SortDirection) {
    use std::cmp::Ordering;
    let by_age = |a: &QueueRow, b: &QueueRow| {
        // Older (opened earlier) is a greater age.
        b.first_opened.cmp(&a.first_opened)
    };
    rows.sort_by(|a, b| {
        let (x, y) = (&a.group.item, &b.group.item);
        let ordering = match sort {
            QueueSort::Age => direction.apply(by_age(a, b)),
            QueueSort::Kind => direction
                .apply(x.kind.as_str().cmp(y.kind.as_str()))
                .then_with(|| by_age(b, a)),
            QueueSort::Amount => match (
                x.currency.as_ref().zip(x.amount_minor),
                y.currency.as_ref().zip(y.amount_minor),
            ) {
                (Some((cx, ax)), Some((cy, ay))) => {
                    cx.cmp(cy).then_with(|| direction.apply(ax.cmp(&ay)))
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
        };
        ordering.then_with(|| x.id.cmp(&y.id))
    });
}

/// One page of a listing: `number` (from 1) of `pages`, `per` rows each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageOf {
    pub number: usize,
    pub pages: usize,
    pub per: usize,
    /// Rows in the whole listing.
    pub total: usize,
}

impl PageOf {
    /// Page `number` of `total` rows, `per` a page (at least 1); a number
    /// past the last page is the last page, so a link from a queue that
    /// has shrunk still lands somewhere.
    pub fn new(number: usize, per: usize, total: usize) -> Self {
        let per = per.max(1);
        let pages = total.div_ceil(per).max(1);
        Self {
            number: number.clamp(1, pages),
            pages,
            per,
            total,
        }
    }

    /// The range of rows on this page.
    pub fn range(&self) -> std::ops::Range<usize> {
        let start = (self.number - 1).saturating_mul(self.per).min(self.total);
        start..start.saturating_add(self.per).min(self.total)
    }
}

/// How long something has waited, as people read it: `3d 4h`, `5h 12m`,
/// `12m`, `40s`.
pub fn age_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReviewKind;
    use crate::store::ReviewItem;
    use chrono::{TimeZone, Utc};

    fn item(id: i64, kind: ReviewKind, order: Option<&str>, minute: u32) -> ReviewItem {
        ReviewItem {
            id,
            kind,
            order_ref: order.map(str::to_owned),
            processor_ref: None,
            details: String::new(),
            status: "open".into(),
            resolution_note: None,
            resolved_by: None,
            resolved_at: None,
            created_at: Utc
                .with_ymd_and_hms(2026, 11, 30, 10, minute, 0)
                .single()
                .expect("time"),
            resolution_action: None,
            amount: None,
            currency: None,
            amount_minor: None,
            written_off: None,
            written_off_currency: None,
        }
    }

    fn priced(mut item: ReviewItem, currency: &str, minor: i64) -> ReviewItem {
        item.currency = Some(currency.into());
        item.amount_minor = Some(minor);
        item.amount = Some(minor.to_string());
        item
    }

    fn ids(rows: &[QueueRow]) -> Vec<i64> {
        rows.iter().map(|r| r.group.item.id).collect()
    }

    #[test]
    fn the_queue_groups_as_review_list_and_sorts_by_age_amount_and_kind() {
        // Newest first, as the store lists them; 3 and 1 are one group.
        let items = vec![
            priced(item(4, ReviewKind::Suspect, Some("B"), 4), "USD", 500),
            priced(
                item(3, ReviewKind::AmountMismatch, Some("A"), 3),
                "EUR",
                100,
            ),
            item(2, ReviewKind::StaleOrder, None, 2),
            priced(
                item(1, ReviewKind::AmountMismatch, Some("A"), 1),
                "EUR",
                900,
            ),
            priced(item(0, ReviewKind::Suspect, Some("C"), 0), "EUR", 2_000),
        ];
        let mut rows = queue_rows(items);
        assert_eq!(ids(&rows), [4, 3, 2, 0]);
        assert_eq!(rows[1].group.item_ids, [3, 1]);
        assert_eq!(rows[1].first_opened.format("%M").to_string(), "01");

        // Oldest first by default; a group is as old as its oldest item.
        sort_queue(&mut rows, QueueSort::Age, SortDirection::Descending);
        assert_eq!(ids(&rows), [0, 3, 2, 4]);
        sort_queue(&mut rows, QueueSort::Age, SortDirection::Ascending);
        assert_eq!(ids(&rows), [4, 2, 3, 0]);
        // By currency, the largest first; no amount last either way.
        sort_queue(&mut rows, QueueSort::Amount, SortDirection::Descending);
        assert_eq!(ids(&rows), [0, 3, 4, 2]);
        sort_queue(&mut rows, QueueSort::Amount, SortDirection::Ascending);
        assert_eq!(ids(&rows), [3, 0, 4, 2]);
        // Kinds a to z, the oldest first within a kind.
        sort_queue(&mut rows, QueueSort::Kind, SortDirection::Ascending);
        assert_eq!(ids(&rows), [3, 2, 0, 4]);
        sort_queue(&mut rows, QueueSort::Kind, SortDirection::Descending);
        assert_eq!(ids(&rows), [0, 4, 2, 3]);
    }

    #[test]
    fn pages_hold_what_is_left_and_a_page_past_the_end_is_the_last() {
        let page = PageOf::new(2, 50, 160);
        assert_eq!((page.pages, page.range()), (4, 50..100));
        assert_eq!(PageOf::new(4, 50, 160).range(), 150..160);
        assert_eq!(PageOf::new(9, 50, 160).number, 4);
        assert_eq!(PageOf::new(0, 50, 0).range(), 0..0);
        assert_eq!(PageOf::new(1, 0, 3).per, 1);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age_text(40), "40s");
        assert_eq!(age_text(12 * 60 + 5), "12m");
        assert_eq!(age_text(5 * 3_600 + 12 * 60), "5h 12m");
        assert_eq!(age_text(3 * 86_400 + 4 * 3_600 + 59), "3d 4h");
        assert_eq!(age_text(-5), "0s");
    }
}
