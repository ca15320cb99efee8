//! The PostgreSQL side of `db` (feature `postgres`): URL → connection (TLS, password,
//! bounded waits), `?N` → `$N`, the statement cache, and SQLSTATE → `store::Error`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Param, Row, Value};
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
    retryable: Cell<bool>,
    /// A transaction is open on this connection (see `Conn::in_transaction`).
    pub(super) in_transaction: Cell<bool>,
    /// When the connection last answered.
    last_used: Cell<std::time::Instant>,
    /// A connection attempt that outlived `CONNECT_WAIT`, still going.
    pending:
        RefCell<Option<std::sync::mpsc::Receiver<std::result::Result<Client, postgres::Error>>>>,
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
            retryable: Cell::new(false),
            in_transaction: Cell::new(false),
            last_used: Cell::new(std::time::Instant::now()),
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
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
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
            let bad = |e: &dyn std::fmt::Display| format!("DEVICEGATE_DB_CA_FILE ({shown}): {e}");
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

/// Column `idx` of a PostgreSQL row as a `Value`, by the column's type.
pub fn column(row: &postgres::Row, idx: usize) -> Result<Value<'_>> {
    let ty = row
        .columns()
        .get(idx)
        .ok_or_else(|| Error::Internal(format!("column {idx}: no such column")))?
        .type_()
        .clone();
    let bad = |e: postgres::Error| Error::Internal(format!("column {idx}: {e}"));
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
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
            .map_or(Value::Null, Value::Text),
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
            // PostgreSQL's text cannot hold NUL (SQLite's can): bound as U+FFFD, a NUL in a
            // looked-up name finds nothing, as on SQLite, instead of an error (a 500 any
            // stranger could cause with `client_id=a%00b`).
            (Value::Text(s), _) if s.contains('\0') && <&str as ToSql>::accepts(ty) => {
                s.replace('\0', "\u{FFFD}").as_str().to_sql(ty, out)
            }
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
