//! A payment's dispute facts as the payments table keeps them (migration
//! `2026-12-08-000100_chargeback_lifecycle`): the resolutions received,
//! what the chargeback took (fixed once) and what came back of it
//! (derived, kept for the reports' SQL); and a notice's dispute fields as
//! the notifications table keeps them, so that a notification applied
//! later by a person is rebuilt with them ([`NotificationDispute`]).

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{notifications, payments};
use crate::domain::reconcile::PaymentFacts;
use crate::domain::{ChargebackNotice, OrderFacts};

/// The dispute columns of a payment row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = payments)]
pub(super) struct PaymentDisputeRow {
    pub(super) dispute_opened: bool,
    pub(super) dispute_won: bool,
    pub(super) dispute_lost: bool,
    pub(super) chargeback_minor: Option<i64>,
}

/// The columns of [`PaymentDisputeRow`] for a hand-written `SELECT` of the
/// payments table aliased `p`.
pub(super) const SELECT_COLUMNS: &str =
    "p.dispute_opened, p.dispute_won, p.dispute_lost, p.chargeback_minor";

impl PaymentDisputeRow {
    pub(super) fn fill(self, facts: &mut PaymentFacts) {
        facts.dispute_opened = self.dispute_opened;
        facts.dispute_won = self.dispute_won;
        facts.dispute_lost = self.dispute_lost;
        facts.chargeback = self.chargeback_minor;
    }
}

/// Whether two payments' dispute facts differ (what [`write_disputes`]
/// writes).
fn differ(a: &PaymentFacts, b: &PaymentFacts) -> bool {
    a.dispute_opened != b.dispute_opened
        || a.dispute_won != b.dispute_won
        || a.dispute_lost != b.dispute_lost
        || a.chargeback != b.chargeback
}

/// The statement that writes the dispute facts of the payments whose
/// dispute facts changed (`(order id, before, after)` of each changed
/// order), after the statement that upserted their rows; `None` when none
/// changed.
pub(super) fn write_disputes<'a>(
    conn: &'a AsyncPgConnection,
    changed: &[&(i64, OrderFacts, OrderFacts)],
) -> Option<futures::future::BoxFuture<'a, QueryResult<usize>>> {
    let mut order_ids = Vec::new();
    let mut refs = Vec::new();
    let mut opened = Vec::new();
    let mut won = Vec::new();
    let mut lost = Vec::new();
    let mut chargeback: Vec<Option<i64>> = Vec::new();
    let mut reinstated = Vec::new();
    let empty = PaymentFacts::default();
    for (order_id, before, after) in changed {
        for (processor_ref, p) in &after.payments {
            let was = before.payments.get(processor_ref).unwrap_or(&empty);
            // A refund after the chargeback grows `reinstated` without
            // changing a dispute fact: written too.
            if !differ(was, p) && was.reinstated() == p.reinstated() {
                continue;
            }
            order_ids.push(*order_id);
            refs.push(processor_ref.clone());
            opened.push(p.dispute_opened);
            won.push(p.dispute_won);
            lost.push(p.dispute_lost);
            chargeback.push(p.chargeback);
            reinstated.push(p.reinstated());
        }
    }
    if order_ids.is_empty() {
        return None;
    }
    Some(Box::pin(
        diesel::sql_query(
            "UPDATE payments AS p SET dispute_opened = v.opened, dispute_won = v.won, \
                 dispute_lost = v.lost, chargeback_minor = v.chargeback, \
                 reinstated_minor = v.reinstated \
             FROM unnest($1::int8[], $2::text[], $3::bool[], $4::bool[], $5::bool[], \
                         $6::int8[], $7::int8[]) \
                  AS v(order_id, processor_ref, opened, won, lost, chargeback, reinstated) \
             WHERE p.order_id = v.order_id AND p.processor_ref = v.processor_ref \
               AND p.order_id = ANY($1)",
        )
        .bind::<Array<Int8>, _>(order_ids)
        .bind::<Array<Text>, _>(refs)
        .bind::<Array<Bool>, _>(opened)
        .bind::<Array<Bool>, _>(won)
        .bind::<Array<Bool>, _>(lost)
        .bind::<Array<Nullable<Int8>>, _>(chargeback)
        .bind::<Array<Int8>, _>(reinstated)
        .execute(&mut &*conn),
    ))
}

/// The dispute columns of a notification row: the notice's
/// `CHARGEBACK_RESOLUTION` and `CHARGEBACK_REASON_CODE` as read (clipped),
/// `None` when it carried no dispute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = notifications)]
pub(super) struct NotificationDispute {
    pub(super) chargeback_resolution: Option<String>,
    pub(super) chargeback_reason_code: Option<String>,
}

impl NotificationDispute {
    #[cfg(test)]
    pub(super) fn of(notice: Option<&ChargebackNotice>) -> Self {
        Self {
            chargeback_resolution: notice.map(|n| n.resolution.as_str().to_owned()),
            chargeback_reason_code: notice.and_then(|n| n.reason_code.clone()),
        }
    }

    /// The notice's dispute again, read as the tokenizer reads it.
    pub(super) fn notice(&self) -> Option<ChargebackNotice> {
        ChargebackNotice::read(
            self.chargeback_resolution.as_deref(),
            self.chargeback_reason_code.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the notification row keeps is what the notice said.
    #[test]
    fn a_notices_dispute_survives_its_notification_row() {
        for (resolution, code) in [
            (Some("OPEN"), Some("FRAUD")),
            (Some("WON"), None),
            (Some("PRE_ARBITRATION"), Some("4837")),
            (None, None),
        ] {
            let notice = ChargebackNotice::read(resolution, code);
            let row = NotificationDispute::of(notice.as_ref());
            assert_eq!(row.notice(), notice, "{resolution:?}");
        }
    }
}
