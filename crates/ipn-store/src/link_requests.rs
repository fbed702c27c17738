//! `link_order_requests`: a `link_order` above `four-eyes-amount`, asked
//! for and waiting for a second resolver (see
//! [`crate::domain::four_eyes`]). A request moves no money; its
//! confirmation, by another person, does, in the transaction that marks
//! it confirmed. At most one request waits per item.

use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::action_log::ActorSource;
use super::{Store, StoreError};
use crate::domain::{Currencies, Money};

/// A request, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    pub id: i64,
    pub review_item_id: i64,
    /// The order the orphan's money is to be linked to.
    pub order_ref: String,
    /// The money the link books, as checked when asked.
    pub amount: Money,
    pub requested_by: String,
    /// `console` or `cli`.
    pub source: String,
    pub note: String,
    /// The item's whole group was to be resolved with it.
    pub group: bool,
    pub requested_at: DateTime<Utc>,
}

/// A request to record.
#[derive(Debug, Clone)]
pub struct NewLinkRequest<'a> {
    pub review_item_id: i64,
    pub order_ref: &'a str,
    pub amount: Money,
    pub requested_by: &'a str,
    pub source: ActorSource,
    pub note: &'a str,
    pub group: bool,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    review_item_id: i64,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Text)]
    requested_by: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    note: String,
    #[diesel(sql_type = Bool)]
    grouped: bool,
    #[diesel(sql_type = Timestamptz)]
    requested_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

const COLUMNS: &str = "id, review_item_id, order_ref, amount_minor, currency, requested_by, \
                       source, note, grouped, requested_at";

fn request_of(row: Row, currencies: &Currencies) -> Result<LinkRequest, StoreError> {
    let currency = currencies
        .currency(&row.currency)
        .map_err(|err| StoreError::Invalid(format!("link request #{}: {err}", row.id)))?;
    Ok(LinkRequest {
        id: row.id,
        review_item_id: row.review_item_id,
        order_ref: row.order_ref,
        amount: Money::from_minor(row.amount_minor, currency),
        requested_by: row.requested_by,
        source: row.source,
        note: row.note,
        group: row.grouped,
        requested_at: row.requested_at,
    })
}

/// Records a pending request; returns its id.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    request: &NewLinkRequest<'_>,
) -> Result<i64, StoreError> {
    let row: Id = diesel::sql_query(
        "INSERT INTO link_order_requests \
             (review_item_id, order_ref, amount_minor, currency, requested_by, source, note, grouped) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind::<BigInt, _>(request.review_item_id)
    .bind::<Text, _>(request.order_ref)
    .bind::<BigInt, _>(request.amount.minor_units())
    .bind::<Text, _>(request.amount.currency().as_str())
    .bind::<Text, _>(request.requested_by)
    .bind::<Text, _>(request.source.as_str())
    .bind::<Text, _>(request.note)
    .bind::<Bool, _>(request.group)
    .get_result(conn)
    .await?;
    Ok(row.id)
}

/// The request waiting on item `item_id`, locked (`FOR UPDATE`) until the
/// caller's transaction ends.
pub async fn lock_pending(
    conn: &mut AsyncPgConnection,
    item_id: i64,
    currencies: &Currencies,
) -> Result<Option<LinkRequest>, StoreError> {
    let row: Option<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM link_order_requests \
         WHERE review_item_id = $1 AND status = 'pending' FOR UPDATE"
    ))
    .bind::<BigInt, _>(item_id)
    .get_result(conn)
    .await
    .optional()?;
    row.map(|r| request_of(r, currencies)).transpose()
}

/// Marks request `id` confirmed by `confirmed_by` (a different person:
/// the table refuses the requester).
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    id: i64,
    confirmed_by: &str,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE link_order_requests SET status = 'confirmed', confirmed_by = $2, \
         confirmed_at = now() WHERE id = $1 AND status = 'pending'",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(confirmed_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the requests waiting on `items` superseded: the items were
/// resolved otherwise.
pub async fn supersede(conn: &mut AsyncPgConnection, items: &[i64]) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE link_order_requests SET status = 'superseded' \
         WHERE review_item_id = ANY($1) AND status = 'pending'",
    )
    .bind::<Array<BigInt>, _>(items)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The request waiting on item `item_id`, for its page.
    pub async fn pending_link_request(
        &self,
        item_id: i64,
    ) -> Result<Option<LinkRequest>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM link_order_requests \
             WHERE review_item_id = $1 AND status = 'pending'"
        ))
        .bind::<BigInt, _>(item_id)
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(|r| request_of(r, self.currencies())).transpose()
    }
}
