//! One small SQL API over the two backends (issue #15): SQLite through `rusqlite`, and,
//! with the `postgres` feature, PostgreSQL through the synchronous `postgres` crate.
//!
//! The store's modules write their SQL once, in the dialect both accept (`?1`-style
//! parameters, `RETURNING`, `ON CONFLICT`, `COALESCE`, integer Unix seconds, TEXT), bind
//! only `Value`s (integers, text, NULL) and read only `Cell`s. Where the dialects differ
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

/// A parameter as bound: every column is an integer or text (schema.sql's rule).
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

/// One column of a result row, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(&'a str),
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

/// A Rust type a `Cell` can be read as.
pub trait Column: Sized {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String>;
}

impl Column for i64 {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        match cell {
            Cell::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl Column for u64 {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        let i = i64::from_cell(cell)?;
        u64::try_from(i).map_err(|_| format!("expected a non-negative integer, found {i}"))
    }
}

impl Column for u32 {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        let i = i64::from_cell(cell)?;
        u32::try_from(i).map_err(|_| format!("expected a 32-bit count, found {i}"))
    }
}

impl Column for bool {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_cell(cell)? != 0)
    }
}

impl Column for String {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        match cell {
            Cell::Text(s) => Ok(s.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
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
        let read = |cell: Cell<'_>| {
            T::from_cell(cell).map_err(|e| Error::Internal(format!("column {idx}: {e}")))
        };
        match self {
            Row::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                let cell = match row.get_ref(idx)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(i) => Cell::Int(i),
                    ValueRef::Text(bytes) => {
                        Cell::Text(std::str::from_utf8(bytes).map_err(|_| {
                            Error::Internal(format!("column {idx}: text is not UTF-8"))
                        })?)
                    }
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(Error::Internal(format!(
                            "column {idx}: a real or blob, never stored"
                        )))
                    }
                };
                read(cell)
            }
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => pg::cell(row, idx).and_then(read),
        }
    }

    /// Column `idx` as an owned value, whatever its type (for `migrate`).
    pub fn owned(&self, idx: usize) -> Result<OwnedValue> {
        struct Any(OwnedValue);
        impl Column for Any {
            fn from_cell(cell: Cell<'_>) -> std::result::Result<Self, String> {
                Ok(Any(match cell {
                    Cell::Null => OwnedValue::Null,
                    Cell::Int(i) => OwnedValue::Int(i),
                    Cell::Text(s) => OwnedValue::Text(s.to_string()),
                }))
            }
        }
        Ok(self.get::<Any>(idx)?.0)
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

    /// Runs `body` in one transaction: committed when it returns `Ok`, rolled back when it
    /// returns `Err`. SQLite: `BEGIN IMMEDIATE` (the caller holds the write turn).
    /// PostgreSQL: `SERIALIZABLE`, run again from the start (up to `RETRIES` times, after a
    /// short random pause) when PostgreSQL reports a serialization failure or deadlock, so
    /// `body` must do nothing but SQL that it cannot undo.
    #[allow(unused_mut)] // mutated only with the `postgres` feature
    pub fn transaction<T>(&self, mut body: impl FnMut(&Conn) -> Result<T>) -> Result<T> {
        match self {
            Conn::Sqlite(_) => self.transaction_with("BEGIN IMMEDIATE", body),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pg) => {
                let mut attempt = 0;
                loop {
                    // Only this attempt's own collision counts (an earlier statement outside
                    // any transaction may have left the mark).
                    pg.take_retryable();
                    let outcome =
                        self.transaction_once("BEGIN ISOLATION LEVEL SERIALIZABLE", &mut body);
                    // A committed transaction is never run again.
                    if outcome.is_ok() || !pg.take_retryable() || attempt >= pg::RETRIES {
                        return outcome;
                    }
                    attempt += 1;
                    pg::pause_before_retry(attempt);
                }
            }
        }
    }

    /// One attempt at a transaction opened by `begin` (e.g. plain `BEGIN`: PostgreSQL's
    /// READ COMMITTED, which migrations need so that a statement after a lock sees what
    /// the lock's previous holder committed).
    pub fn transaction_with<T>(
        &self,
        begin: &str,
        mut body: impl FnMut(&Conn) -> Result<T>,
    ) -> Result<T> {
        self.transaction_once(begin, &mut body)
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
pub mod pg {
    //! The PostgreSQL side: URL → connection, `?N` → `$N`, statement cache, error mapping.

    use std::cell::{Cell as StdCell, RefCell};
    use std::collections::HashMap;
    use std::time::Duration;

    use postgres::config::SslMode;
    use postgres::types::{IsNull, ToSql, Type};
    use postgres::{Client, NoTls, Statement};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::{Cell, Param, Row, Value};
    use crate::store::{Error, Result};

    /// A transaction that keeps colliding is retried this many times, then the caller gets
    /// `Error::Unavailable` (a 503).
    pub const RETRIES: u32 = 8;

    /// One connection with its prepared statements, reconnected when it was lost (the
    /// server restarted, the network dropped it): the next use connects again.
    pub struct Pg {
        config: postgres::Config,
        client: RefCell<Option<Client>>,
        statements: RefCell<HashMap<String, Statement>>,
        /// The last error was a serialization failure or deadlock (SQLSTATE 40001/40P01).
        retryable: StdCell<bool>,
        /// A transaction is open on this connection (see `Conn::in_transaction`).
        pub(super) in_transaction: StdCell<bool>,
        /// When the connection last answered.
        last_used: StdCell<std::time::Instant>,
        /// A connection attempt that outlived `CONNECT_WAIT`, still going.
        pending: RefCell<
            Option<std::sync::mpsc::Receiver<std::result::Result<Client, postgres::Error>>>,
        >,
    }

    /// Lets a connection that stopped answering go without waiting for it: dropping a
    /// client waits until the server has closed the connection (its Terminate message
    /// answered), which a stopped server does only once it runs again. A background thread
    /// waits instead, and ends the session then, so nothing is leaked. At most one such
    /// thread per connection that stopped answering (a worker's next connection is a new
    /// session, answering or bounded by `CONNECT_WAIT`).
    fn let_go(client: Client) {
        log::warn!("a PostgreSQL connection stopped answering; replaced");
        let spawned = std::thread::Builder::new()
            .name("pg-let-go".into())
            .spawn(move || drop(client));
        if let Err(e) = spawned {
            log::error!("cannot let a PostgreSQL connection go in the background: {e}");
        }
    }

    /// How long a request waits for a new connection (TCP, TLS and the login) before it
    /// gets a 503; the attempt goes on in the background and a later request takes it up.
    const CONNECT_WAIT: Duration = Duration::from_secs(10);

    /// A connection unused for this long is checked (one empty query) before its next use.
    const VALIDATE_AFTER_IDLE: Duration = Duration::from_secs(2);
    /// How long that check may take before the connection is given up.
    const VALIDATION_TIMEOUT: Duration = Duration::from_secs(5);

    impl Pg {
        /// Parses `url` and connects. The password comes from the URL, else `PGPASSWORD`,
        /// else the file named by `DEVICEGATE_DB_PASSWORD_FILE` (trimmed). TLS: see `tls`.
        pub fn connect(url: &str) -> Result<Pg> {
            let config = parse(url)?;
            let pg = Pg {
                config,
                client: RefCell::new(None),
                statements: RefCell::default(),
                retryable: StdCell::new(false),
                in_transaction: StdCell::new(false),
                last_used: StdCell::new(std::time::Instant::now()),
                pending: RefCell::new(None),
            };
            pg.with_client(|_| Ok(()))?;
            Ok(pg)
        }

        pub fn take_retryable(&self) -> bool {
            self.retryable.replace(false)
        }

        fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
            let mut slot = self.client.borrow_mut();
            if self.in_transaction.get() {
                // Never a new connection under an open transaction.
                let client = slot
                    .as_mut()
                    .filter(|client| !client.is_closed())
                    .ok_or_else(|| {
                        Error::Unavailable("PostgreSQL: connection lost mid-transaction".into())
                    })?;
                return f(client);
            }
            // A connection idle for a while may have been closed under us (a database
            // restart, a failover, idle_session_timeout): ask before using it, so the
            // request gets a new connection instead of an error.
            if let Some(client) = slot.as_mut() {
                if self.last_used.get().elapsed() > VALIDATE_AFTER_IDLE
                    && client.is_valid(VALIDATION_TIMEOUT).is_err()
                {
                    if let Some(dead) = slot.take() {
                        let_go(dead);
                    }
                }
            }
            if slot.as_ref().is_none_or(Client::is_closed) {
                self.statements.borrow_mut().clear();
                let client = self.connect_bounded()?;
                *slot = Some(client);
            }
            let client = slot
                .as_mut()
                .ok_or_else(|| Error::Internal("no PostgreSQL connection".into()))?;
            let outcome = f(client);
            self.last_used.set(std::time::Instant::now());
            outcome
        }

        /// A new connection, waiting at most `CONNECT_WAIT`: `connect_timeout` bounds only
        /// the TCP connect, and a server that accepts but never answers (a stopped
        /// postmaster) would hold the login forever. The attempt runs on its own thread;
        /// one that outlives the wait is kept and taken up by the next call, so a worker
        /// never has more than one in flight.
        fn connect_bounded(&self) -> Result<Client> {
            use std::sync::mpsc;
            let pending = self.pending.borrow_mut().take();
            let attempt = match pending {
                Some(attempt) => attempt,
                None => {
                    // `prefer` as libpq without a root certificate means it: encryption if
                    // the server offers it, unverified. Unverified TLS protects against no
                    // one who can intercept, so devicegate speaks plainly unless TLS is
                    // required, and then verifies (see `tls`).
                    let tls = match self.config.get_ssl_mode() {
                        SslMode::Require => Some(tls()?),
                        _ => None,
                    };
                    let config = self.config.clone();
                    let (sender, attempt) = mpsc::channel();
                    std::thread::Builder::new()
                        .name("pg-connect".into())
                        .spawn(move || {
                            let client = match tls {
                                Some(tls) => config.connect(tls),
                                None => config.connect(NoTls),
                            };
                            // Nobody waiting any more (the store is gone): dropped here.
                            let _ = sender.send(client);
                        })
                        .map_err(|e| {
                            Error::Unavailable(format!("cannot start a PostgreSQL connection: {e}"))
                        })?;
                    attempt
                }
            };
            match attempt.recv_timeout(CONNECT_WAIT) {
                Ok(client) => client.map_err(|e| self.connect_error(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    *self.pending.borrow_mut() = Some(attempt);
                    Err(Error::Unavailable(format!(
                        "PostgreSQL: no answer to a new connection within {} s",
                        CONNECT_WAIT.as_secs()
                    )))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Unavailable(
                    "PostgreSQL: the connection attempt ended without an answer".into(),
                )),
            }
        }

        /// A failed connection attempt; "too many clients" says what each instance holds.
        fn connect_error(&self, e: postgres::Error) -> Error {
            let too_many = e.code() == Some(&postgres::error::SqlState::TOO_MANY_CONNECTIONS);
            match self.error(e) {
                Error::Unavailable(detail) if detail.ends_with("password missing") => {
                    Error::Unavailable(format!(
                        "{detail} (give it in the URL, PGPASSWORD or \
                         DEVICEGATE_DB_PASSWORD_FILE)"
                    ))
                }
                Error::Unavailable(detail) if too_many => Error::Unavailable(format!(
                    "{detail} (each devicegate instance holds --workers + 1 connections, \
                     plus one per admin command: raise max_connections or lower --workers)"
                )),
                other => other,
            }
        }

        fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement> {
            if let Some(stmt) = self.statements.borrow().get(sql) {
                return Ok(stmt.clone());
            }
            let stmt = client
                .prepare(&dollar_params(sql))
                .map_err(|e| self.error(e))?;
            let mut cache = self.statements.borrow_mut();
            // Our statements are a fixed set; a bound keeps a bug from growing it.
            if cache.len() >= 256 {
                cache.clear();
            }
            cache.insert(sql.to_string(), stmt.clone());
            Ok(stmt)
        }

        pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize> {
            let values = values(params);
            let refs = bound(&values);
            self.with_client(|client| {
                let stmt = self.statement(client, sql)?;
                let n = client.execute(&stmt, &refs).map_err(|e| self.error(e))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            })
        }

        fn query(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<postgres::Row>> {
            let values = values(params);
            let refs = bound(&values);
            self.with_client(|client| {
                let stmt = self.statement(client, sql)?;
                client.query(&stmt, &refs).map_err(|e| self.error(e))
            })
        }

        pub fn query_row<T>(
            &self,
            sql: &str,
            params: &[&dyn Param],
            read: impl FnOnce(&Row<'_>) -> Result<T>,
        ) -> Result<Option<T>> {
            match self.query(sql, params)?.first() {
                Some(row) => read(&Row::Postgres(row)).map(Some),
                None => Ok(None),
            }
        }

        pub fn query_rows<T>(
            &self,
            sql: &str,
            params: &[&dyn Param],
            mut read: impl FnMut(&Row<'_>) -> Result<T>,
        ) -> Result<Vec<T>> {
            self.query(sql, params)?
                .iter()
                .map(|row| read(&Row::Postgres(row)))
                .collect()
        }

        pub fn batch(&self, sql: &str) -> Result<()> {
            self.with_client(|client| client.batch_execute(sql).map_err(|e| self.error(e)))
        }

        /// Maps a client error to the store's, noting whether a retry may succeed.
        fn error(&self, e: postgres::Error) -> Error {
            use postgres::error::SqlState;
            let Some(code) = e.code() else {
                // No SQLSTATE: the connection failed or was closed, or the configuration
                // cannot connect ("invalid configuration: password missing").
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    detail.push_str(": ");
                    detail.push_str(&cause.to_string());
                    source = cause.source();
                }
                return Error::Unavailable(format!("PostgreSQL: {detail}"));
            };
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
            {
                self.retryable.set(true);
                return Error::Unavailable(format!("PostgreSQL: {e} (retried)"));
            }
            let class = &code.code()[..2];
            let detail = e
                .as_db_error()
                .map(|db| db.message().to_string())
                .unwrap_or_else(|| e.to_string());
            match class {
                // Integrity constraint violations: unique, foreign key, check, not null.
                "23" => Error::Conflict(detail),
                // Connection exceptions, insufficient resources, operator intervention
                // (shutdown), a read-only standby (25006), lock timeouts (55P03).
                "08" | "53" | "57" | "58" => Error::Unavailable(detail),
                _ if *code == SqlState::READ_ONLY_SQL_TRANSACTION
                    || *code == SqlState::LOCK_NOT_AVAILABLE =>
                {
                    Error::Unavailable(detail)
                }
                _ => Error::Internal(format!("PostgreSQL: {detail} ({})", code.code())),
            }
        }
    }

    fn values<'a>(params: &'a [&dyn Param]) -> Vec<Value<'a>> {
        params.iter().map(|p| p.value()).collect()
    }

    /// The parameters as the client takes them.
    fn bound<'a>(values: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }

    fn parse(url: &str) -> Result<postgres::Config> {
        // libpq's verifying modes are what `require` does here (see `tls`); the client
        // library knows only disable, prefer and require.
        let mut url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        // The scheme in any case, as libpq takes it.
        if let Some((scheme, rest)) = url.split_once("://") {
            url = format!("{}://{rest}", scheme.to_ascii_lowercase());
        }
        let mut config: postgres::Config = url.parse().map_err(|e| {
            Error::Unavailable(format!(
                "the PostgreSQL URL is not valid: {e} (sslmode: disable, prefer, require, \
                 verify-ca or verify-full; a CA file comes from DEVICEGATE_DB_CA_FILE, not \
                 sslrootcert)"
            ))
        })?;
        if config.get_ssl_mode() != SslMode::Require
            && std::env::var_os("DEVICEGATE_DB_CA_FILE").is_some()
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "DEVICEGATE_DB_CA_FILE is set but the URL does not require TLS: add \
                     sslmode=require, or this connection is not encrypted"
                );
            });
        }
        // A dead peer (a network cut, a failover) ends a connection within seconds
        // instead of the kernel's quarter of an hour: unacknowledged data for 10 s, or an
        // idle connection whose keepalive probes go unanswered.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(10));
        }
        // (Each only where the URL left the client's default.)
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        if config.get_password().is_none() {
            if let Some(password) = password_from_environment()? {
                config.password(password);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // The schema's `IF NOT EXISTS` notices are no news for the log. A request never
        // waits on a lock (an operator's open transaction, a long migration) for more than
        // 5 s, nor on one statement for more than 15 s: it gets a 503 instead. Each is
        // added unless the URL's own `options` set it.
        let mut options = config.get_options().unwrap_or_default().to_string();
        for (name, value) in [
            ("client_min_messages", "warning"),
            ("lock_timeout", "5s"),
            ("statement_timeout", "15s"),
        ] {
            if !options.contains(name) {
                options = format!("{options} -c {name}={value}")
                    .trim_start()
                    .to_string();
            }
        }
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("devicegate");
        }
        Ok(config)
    }

    /// The TLS connector for `sslmode=require` (and libpq's `verify-ca`, `verify-full`):
    /// rustls, verifying the server's certificate and its name (as libpq's `verify-full`)
    /// against the system's trust anchors plus the PEM certificates in the file named by
    /// `DEVICEGATE_DB_CA_FILE` (a private CA, e.g. a managed database's). Built once per
    /// process.
    fn tls() -> Result<MakeRustlsConnect> {
        static TLS: std::sync::OnceLock<std::result::Result<MakeRustlsConnect, String>> =
            std::sync::OnceLock::new();
        TLS.get_or_init(|| {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let mut roots = rustls::RootCertStore::empty();
            // Unreadable system certificates are skipped: the CA file may be all we need.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if let Some(file) = std::env::var_os("DEVICEGATE_DB_CA_FILE") {
                let shown = std::path::Path::new(&file).display().to_string();
                let bad =
                    |e: &dyn std::fmt::Display| format!("DEVICEGATE_DB_CA_FILE ({shown}): {e}");
                let mut added = 0;
                for cert in CertificateDer::pem_file_iter(&file).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(bad(&"no PEM certificate in it"));
                }
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(MakeRustlsConnect::new(config))
        })
        .clone()
        .map_err(Error::Unavailable)
    }

    fn password_from_environment() -> Result<Option<String>> {
        // An empty PGPASSWORD (a template left blank) gives no password.
        if let Ok(password) = std::env::var("PGPASSWORD") {
            if !password.is_empty() {
                return Ok(Some(password));
            }
        }
        let Some(file) = std::env::var_os("DEVICEGATE_DB_PASSWORD_FILE") else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Error::Unavailable(format!(
                "DEVICEGATE_DB_PASSWORD_FILE ({}): {e}",
                std::path::Path::new(&file).display()
            ))
        })?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// `?1` → `$1`: the store writes SQLite's numbered parameters; PostgreSQL numbers its
    /// own with `$`. Our SQL has no `?` inside string literals.
    pub fn dollar_params(sql: &str) -> String {
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('$');
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A random pause, longer with each attempt (up to ~50 ms), so two colliding
    /// transactions do not collide again in lockstep.
    pub fn pause_before_retry(attempt: u32) {
        let ceiling = 1u64 << attempt.min(5);
        let micros = rand::random_range(0..ceiling * 1_500);
        std::thread::sleep(Duration::from_micros(micros));
    }

    /// Column `idx` of a PostgreSQL row as a `Cell`, by the column's type.
    pub fn cell(row: &postgres::Row, idx: usize) -> Result<Cell<'_>> {
        let ty = row
            .columns()
            .get(idx)
            .ok_or_else(|| Error::Internal(format!("column {idx}: no such column")))?
            .type_()
            .clone();
        let bad = |e: postgres::Error| Error::Internal(format!("column {idx}: {e}"));
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        Ok(match ty {
            Type::INT8 => int(row.try_get::<_, Option<i64>>(idx).map_err(bad)?),
            Type::INT4 => int(row
                .try_get::<_, Option<i32>>(idx)
                .map_err(bad)?
                .map(i64::from)),
            Type::INT2 => int(row
                .try_get::<_, Option<i16>>(idx)
                .map_err(bad)?
                .map(i64::from)),
            Type::BOOL => int(row
                .try_get::<_, Option<bool>>(idx)
                .map_err(bad)?
                .map(i64::from)),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<&str>>(idx)
                .map_err(bad)?
                .map_or(Cell::Null, Cell::Text),
            other => {
                return Err(Error::Internal(format!(
                    "column {idx}: type {other} is never read"
                )))
            }
        })
    }

    impl ToSql for Value<'_> {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut postgres::types::private::BytesMut,
        ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match (self, ty) {
                (Value::Null, _) => Ok(IsNull::Yes),
                (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
                (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
                (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
                (Value::Text(s), _) if <&str as ToSql>::accepts(ty) => s.to_sql(ty, out),
                (value, ty) => Err(format!("cannot bind {value:?} to a {ty} parameter").into()),
            }
        }

        fn accepts(ty: &Type) -> bool {
            matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
                || <&str as ToSql>::accepts(ty)
        }

        postgres::types::to_sql_checked!();
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn numbered_parameters_become_dollars() {
            assert_eq!(
                super::dollar_params("SELECT a FROM t WHERE b = ?1 AND c = ?12 OR d ?"),
                "SELECT a FROM t WHERE b = $1 AND c = $12 OR d ?"
            );
        }
    }
}
