//! How the domain's vocabularies travel to and from PostgreSQL.
//!
//! The domain is a crate of its own, free of diesel, so its enums cannot
//! carry diesel's traits, and the orphan rules forbid implementing them
//! here for another crate's types. They travel as [`Stored`], this crate's
//! own wrapper: queries bind `Stored(state)`, and row structs read a
//! column into a field of the domain type through it
//! (`#[diesel(deserialize_as = Stored<OrderState>)]`; insertable structs
//! hold a `Stored<_>` field). Each vocabulary is stored as its string
//! form in a `TEXT` column (`orders.status`, `notifications.outcome`,
//! `order_events.effect`, `order_events.old_status`/`new_status`,
//! `review_items.kind`, `orders.origin`), so:
//!
//! - writing binds [`as_str`](crate::domain::OrderState::as_str), the same
//!   string the CHECK constraints of `migrations/` list;
//! - reading parses with the enum's `parse` and refuses any other string
//!   with the enum's typed error (for example ``unknown order state `x` ``):
//!   a value this version does not know is an error to report, never a
//!   state to guess.
//!
//! The processor's ORDERSTATUS is not mapped: `notifications.order_status`
//! and `order_events.order_status` also keep values that are not (yet) an
//! [`crate::domain::OrderStatus`], as received.

use diesel::deserialize::{self, FromSql, Queryable};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use crate::domain::journal::MovementKind;
use crate::domain::settlement::{LineKind, LineStatus, MatchedBy};
use crate::domain::{Effect, OrderOrigin, OrderState, Outcome, ReviewKind};

/// A domain vocabulary value as a `TEXT` column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stored<T>(pub T);

/// Implements, for `Stored` of each enum, what `#[derive(AsExpression,
/// FromSqlRow)]` with `#[diesel(sql_type = Text)]` would: `ToSql` and
/// `FromSql` for `Text` on PostgreSQL, `Queryable` (so a column loads
/// alone, in a tuple, or into a field with `deserialize_as`) and
/// `AsExpression<Text>` for the value and for references (so
/// `.eq(Stored(state))` and insertable fields of type `Stored<_>` work),
/// and the conversion back that `deserialize_as` needs.
///
/// The expression is diesel's own `Text` bind of the string form: the bind
/// type the derive uses is not public API. It binds a `String` rather than
/// the `&'static str`, because a projection through `&'static str` clashes
/// with the `&'a str: AsExpression<Text>` bounds that `#[derive(Insertable)]`
/// puts on structs with borrowed fields (rustc prefers the where-clause and
/// then demands `'a: 'static`); the allocation of a short string per bind
/// is nothing next to the round trip.
macro_rules! text_vocabulary {
    ($($ty:ty),+ $(,)?) => {$(
        impl ToSql<Text, Pg> for Stored<$ty> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.0.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for Stored<$ty> {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                Ok(Stored(<$ty>::parse(text)?))
            }
        }

        impl Queryable<Text, Pg> for Stored<$ty> {
            type Row = Self;

            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl AsExpression<Text> for Stored<$ty> {
            type Expression = <String as AsExpression<Text>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <String as AsExpression<Text>>::as_expression(self.0.as_str().to_owned())
            }
        }

        impl AsExpression<Text> for &Stored<$ty> {
            type Expression = <String as AsExpression<Text>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <String as AsExpression<Text>>::as_expression(self.0.as_str().to_owned())
            }
        }

        impl From<Stored<$ty>> for $ty {
            fn from(stored: Stored<$ty>) -> Self {
                stored.0
            }
        }
    )+};
}

text_vocabulary!(
    OrderOrigin,
    OrderState,
    Outcome,
    Effect,
    ReviewKind,
    MovementKind,
    LineKind,
    LineStatus,
    MatchedBy
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Every `up.sql` of `migrations/`, in the order they apply.
    fn migrations_sql() -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut dirs: Vec<_> = std::fs::read_dir(&root)
            .expect("migrations directory")
            .map(|entry| entry.expect("migration entry").path())
            .collect();
        dirs.sort();
        dirs.iter()
            .filter_map(|dir| std::fs::read_to_string(dir.join("up.sql")).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The values a `CHECK (column IN (...))` of `table` allows (the last
    /// one, should a later migration replace it).
    fn check_values(sql: &str, table: &str, column: &str) -> BTreeSet<String> {
        let marker = format!("CHECK ({column} IN (");
        let table_at = sql
            .find(&format!("CREATE TABLE {table} ("))
            .unwrap_or_else(|| panic!("no table {table}"));
        let body = &sql[table_at..];
        let body = &body[..body.find(");\n").unwrap_or(body.len())];
        let mut list = body.rfind(&marker).map(|at| &body[at + marker.len()..]);
        // A later migration that replaces the constraint wins.
        let altered = format!("ALTER TABLE {table} ADD CONSTRAINT");
        for (at, _) in sql.match_indices(&altered) {
            let statement = &sql[at..];
            let statement = &statement[..statement.find(";\n").unwrap_or(statement.len())];
            if let Some(found) = statement.find(&marker) {
                list = Some(&statement[found + marker.len()..]);
            }
        }
        let list = list.unwrap_or_else(|| panic!("no CHECK on {table}.{column}"));
        let list = &list[..list.find(')').expect("closing parenthesis")];
        list.split(',')
            .map(|value| value.trim().trim_matches('\'').to_owned())
            .collect()
    }

    fn strings(values: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
        values.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn order_states_are_what_orders_status_allows() {
        let sql = migrations_sql();
        let states = strings(OrderState::ALL.map(OrderState::as_str));
        assert_eq!(states, check_values(&sql, "orders", "status"));
    }

    #[test]
    fn stored_outcomes_are_what_notifications_outcome_allows() {
        // A duplicate is never stored: it is the notification already
        // recorded under its own outcome.
        let sql = migrations_sql();
        let stored = strings(
            Outcome::ALL
                .into_iter()
                .filter(|outcome| *outcome != Outcome::Duplicate)
                .map(Outcome::as_str),
        );
        assert_eq!(stored, check_values(&sql, "notifications", "outcome"));
    }

    #[test]
    fn review_actions_are_what_review_resolutions_action_allows() {
        // Besides the actions a person takes: the system closing an item,
        // and resolutions made before actions existed.
        let sql = migrations_sql();
        let mut actions = strings(
            crate::domain::review::ReviewAction::ALL
                .map(crate::domain::review::ReviewAction::as_str),
        );
        actions.extend(strings(["closed_by_system", "note"]));
        assert_eq!(actions, check_values(&sql, "review_resolutions", "action"));
    }

    #[test]
    fn effects_are_what_order_events_effect_allows() {
        let sql = migrations_sql();
        let effects = strings(Effect::ALL.map(Effect::as_str));
        assert_eq!(effects, check_values(&sql, "order_events", "effect"));
    }

    #[test]
    fn stored_movement_kinds_are_what_money_movements_kind_allows() {
        // Fees, the commission a fee settles, payouts and adjustments come
        // from settlement lines and payouts, and write-offs from the
        // resolution ledger, never from a ledger row.
        let sql = migrations_sql();
        let kinds = strings(
            MovementKind::ALL
                .into_iter()
                .filter(|kind| {
                    !kind.from_settlement()
                        && !matches!(
                            kind,
                            MovementKind::WriteOffShortfall
                                | MovementKind::WriteOffExcess
                                | MovementKind::WriteOffShortPayment
                                | MovementKind::WriteOffOverRefund
                        )
                })
                .map(MovementKind::as_str),
        );
        assert_eq!(kinds, check_values(&sql, "money_movements", "kind"));
    }

    #[test]
    fn settlement_vocabularies_are_what_settlement_lines_allows() {
        let sql = migrations_sql();
        assert_eq!(
            strings(LineKind::ALL.map(LineKind::as_str)),
            check_values(&sql, "settlement_lines", "kind")
        );
        assert_eq!(
            strings(LineStatus::ALL.map(LineStatus::as_str)),
            check_values(&sql, "settlement_lines", "status")
        );
        assert_eq!(
            strings(MatchedBy::ALL.map(MatchedBy::as_str)),
            check_values(&sql, "settlement_lines", "matched_by")
        );
    }

    #[test]
    fn the_check_parser_reads_the_lists() {
        let sql = "CREATE TABLE t (\n    a TEXT CHECK (a IN ('x', 'y_z')),\n    b INT\n);\n";
        assert_eq!(check_values(sql, "t", "a"), strings(["x", "y_z"]));
    }
}
