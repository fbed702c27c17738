//! Statements of the hot path, prepared once per connection.
//!
//! diesel-async keeps a prepared statement per connection only for what
//! diesel calls safe to cache: every `UPDATE`, upsert, `sql_query` and
//! multi-row `INSERT` is not, so each execution costs two round trips
//! (prepare, then execute) and a parse on the server. Measured with
//! `bench` at 1,000 notifications/s offered, the batch path spent most of
//! the machine on PostgreSQL and the loopback network, a statement's fixed
//! cost paid several times per batch.
//!
//! diesel refuses those statements because their SQL can vary with their
//! values (a changeset that skips `None`, the number of rows of an
//! insert) while their Rust type stays the same, and its cache can be
//! keyed by type. [`Reused`] keys them by their SQL text and bind types
//! instead (it has no static query id), which is exact whatever the SQL
//! is: a statement whose text varies simply gets one entry per text. Use
//! it for statements whose text takes few forms (the batch path's inserts
//! take one per batch length, at most `batch-size`). The entries live as
//! long as the connection, so a text must not vary with the values: an
//! `Insertable` struct with `Option` fields writes `None` as `DEFAULT`
//! unless told `treat_none_as_default_value = false`, which made a new
//! statement for nearly every batch (the worker's peak RSS in `bench` went
//! from 40 to 50 MiB before this was found).

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement prepared once per connection and keyed by its SQL text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reused<Q>(Q);

/// `.reused()` on any statement.
pub(crate) trait Reuse: Sized {
    fn reused(self) -> Reused<Self> {
        Reused(self)
    }
}

impl<Q: QueryFragment<Pg>> Reuse for Q {}

impl<Q> QueryId for Reused<Q> {
    type QueryId = ();
    // Keyed by the SQL text and bind types, never by the Rust type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Reused<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: Query> Query for Reused<Q> {
    type SqlType = Q::SqlType;
}
