//! One small SQL API over the two backends (issue #15): SQLite through `rusqlite`, and,
//! with the `postgres` feature, PostgreSQL through the synchronous `postgres` crate.
//!
//! The store's modules write their SQL once, in the dialect both accept (`?1`-style
//! parameters, `RETURNING`, `ON CONFLICT`, `COALESCE`, integer Unix seconds, TEXT), bind
//! only `Value`s (integers, text, NULL) and read the same `Value`s. Where the dialects differ
//! (schema, migrations, `VACUUM INTO`) the store asks `Conn::backend`.
//!
//! Writes go through `Store::write` (one statement) or `Store::transaction` (several): the
//! one write-guard of the store (see `mod.rs`). Transactions on PostgreSQL run
//! `SERIALIZABLE`, so they mean what SQLite's single writer means (of two racing exchanges
//! of one refresh token, one sees the other's effects), and are retried from the start
//! when PostgreSQL reports a serialization failure or deadlock.

use super::{Error, Result};

/// Which database a `Conn` talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A parameter as bound, or a column as read: every column is an integer or text
/// (schema.sql's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What may be bound to a `?N`: integers (booleans as 0/1), text, and `Option`s of them.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

impl Param for i64 {
    fn value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl Param for u32 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for u64 {
    /// Values past `i64::MAX` (never stored: lifetimes and intervals are bounded by
    /// configuration) saturate.
    fn value(&self) -> Value<'_> {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

impl Param for Value<'_> {
    fn value(&self) -> Value<'_> {
        *self
    }
}

/// A `Value` that owns its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Null,
    Int(i64),
    Text(String),
}

impl Param for OwnedValue {
    fn value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Int(i) => Value::Int(*i),
            OwnedValue::Text(s) => Value::Text(s),
        }
    }
}

/// A Rust type a column's `Value` can be read as.
pub trait Column: Sized {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String>;
}

impl Column for i64 {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl Column for u64 {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        let i = i64::from_value(value)?;
        u64::try_from(i).map_err(|_| format!("expected a non-negative integer, found {i}"))
    }
}

impl Column for u32 {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        let i = i64::from_value(value)?;
        u32::try_from(i).map_err(|_| format!("expected a 32-bit count, found {i}"))
    }
}

impl Column for bool {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl Column for String {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A result row of either backend.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    #[cfg(feature = "postgres")]
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `idx` (0-based) as a `T`; a type mismatch is an `Error::Internal` naming it.
    pub fn get<T: Column>(&self, idx: usize) -> Result<T> {
        let read = |value: Value<'_>| {
            T::from_value(value).map_err(|e| Error::Internal(format!("column {idx}: {e}")))
        };
        match self {
            Row::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                let value = match row.get_ref(idx)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Text(bytes) => {
                        Value::Text(std::str::from_utf8(bytes).map_err(|_| {
                            Error::Internal(format!("column {idx}: text is not UTF-8"))
                        })?)
                    }
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(Error::Internal(format!(
                            "column {idx}: a real or blob, never stored"
                        )))
                    }
                };
                read(value)
            }
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => pg::column(row, idx).and_then(read),
        }
    }

    /// Column `idx` as an owned value, whatever its type (for `migrate`).
    pub fn owned(&self, idx: usize) -> Result<OwnedValue> {
        self.get(idx)
    }
}

impl Column for OwnedValue {
    fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
        Ok(match value {
            Value::Null => OwnedValue::Null,
            Value::Int(i) => OwnedValue::Int(i),
            Value::Text(s) => OwnedValue::Text(s.to_string()),
        })
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// What a transaction needs to see (PostgreSQL's isolation levels; SQLite's one writer
/// gives every transaction all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Every read-modify-write: as if transactions ran one at a time. Retried on a
    /// collision.
    Serializable,
    /// Inserts that decide nothing from a read, and migrations (each statement after a lock
    /// sees what the lock's previous holder committed).
    ReadCommitted,
    /// One consistent picture of everything, reading only (`migrate`'s source).
    Snapshot,
}

impl Isolation {
    #[cfg(feature = "postgres")]
    fn postgres_begin(self) -> &'static str {
        match self {
            Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            Isolation::ReadCommitted => "BEGIN",
            Isolation::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

/// A connection to either backend. Not `Sync`: each worker owns one.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(Box<pg::Pg>),
}

impl Conn {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize> {
        match self {
            Conn::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.iter().map(|p| p.value())))?),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => pg.execute(sql, params),
        }
    }

    /// The first row of a query, read by `read`; `None` when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        read: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(params.iter().map(|p| p.value())))?;
                match rows.next()? {
                    Some(row) => read(&Row::Sqlite(row)).map(Some),
                    None => Ok(None),
                }
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => pg.query_row(sql, params, read),
        }
    }

    /// Every row of a query, each read by `read`.
    pub fn query_rows<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut read: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(params.iter().map(|p| p.value())))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(read(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => pg.query_rows(sql, params, read),
        }
    }

    /// Runs statements without parameters (schema, migrations, `BEGIN`).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => pg.batch(sql),
        }
    }

    /// Runs `body` in one serializable transaction: committed when it returns `Ok`,
    /// rolled back when it returns `Err` (`Isolation::Serializable`).
    pub fn transaction<T>(&self, body: impl FnMut(&Conn) -> Result<T>) -> Result<T> {
        self.transaction_at(Isolation::Serializable, body)
    }

    /// Runs `body` in one transaction of the given isolation. SQLite has one: `BEGIN
    /// IMMEDIATE`, the write lock (the caller holds the write turn). On PostgreSQL a
    /// serializable transaction is run again from the start (up to `RETRIES` times, after
    /// a short random pause) when PostgreSQL reports a serialization failure or deadlock,
    /// so `body` must do nothing but SQL that it cannot undo; the others run once.
    #[cfg_attr(
        not(feature = "postgres"),
        allow(unused_mut, unused_variables, reason = "both are PostgreSQL's")
    )]
    pub fn transaction_at<T>(
        &self,
        isolation: Isolation,
        mut body: impl FnMut(&Conn) -> Result<T>,
    ) -> Result<T> {
        match self {
            Conn::Sqlite(_) => self.transaction_once("BEGIN IMMEDIATE", &mut body),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => {
                let begin = isolation.postgres_begin();
                let mut attempt = 0;
                loop {
                    // Only this attempt's own collision counts (an earlier statement outside
                    // any transaction may have left the mark).
                    pg.take_retryable();
                    let outcome = self.transaction_once(begin, &mut body);
                    // A committed transaction is never run again.
                    if outcome.is_ok()
                        || isolation != Isolation::Serializable
                        || !pg.take_retryable()
                        || attempt >= pg::RETRIES
                    {
                        return outcome;
                    }
                    attempt += 1;
                    pg::pause_before_retry(attempt);
                }
            }
        }
    }

    fn transaction_once<T>(
        &self,
        begin: &str,
        body: &mut impl FnMut(&Conn) -> Result<T>,
    ) -> Result<T> {
        self.batch(begin)?;
        self.in_transaction(true);
        let outcome = match body(self).and_then(|value| self.batch("COMMIT").map(|()| value)) {
            Ok(value) => Ok(value),
            Err(e) => {
                // Nothing to roll back when COMMIT itself failed and ended the transaction;
                // a failed ROLLBACK on a broken connection changes nothing for the caller.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        };
        self.in_transaction(false);
        outcome
    }

    /// PostgreSQL: while a transaction is open, a lost connection must fail the
    /// transaction, never be replaced under it (the rest would run outside it).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    fn in_transaction(&self, open: bool) {
        match self {
            Conn::Sqlite(_) => {}
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => pg.in_transaction.set(open),
        }
    }
}

#[cfg(feature = "postgres")]
pub mod pg;
