//! The storage boundary: the only place that knows SQL (STYLE §3).
//!
//! `Store::open` sets the PRAGMAs, applies `schema.sql` and records migrations in
//! `PRAGMA user_version`. Each worker thread owns one `Store` (one connection). Rows are
//! plain structs; rusqlite errors never leave this module: they become a backend-neutral
//! `store::Error`. Every read-modify-write is one `IMMEDIATE` transaction or one
//! conditional `UPDATE`, so concurrent workers (and the admin CLI in another process)
//! cannot both win the same race.

mod clients;
mod copy;
mod db;
mod device_codes;
mod grants;
mod ids;
mod location;
mod sessions;
mod signing_keys;
mod throttles;
mod users;

pub use clients::{Client, ClientChanges, NewClient, CLIENT_CACHE_TTL};
pub use copy::RowCounts;
pub use device_codes::{ApprovedCode, DeviceCode, DeviceCodeStatus, NewDeviceCode};
pub use grants::{
    AccessTokenRow, GrantRow, IssuedTokens, RedeemOutcome, RefreshFacts, RefreshOutcome,
    RefreshStep, RefreshTokenRow, SignedOut,
};
pub use ids::{DeviceCodeId, GrantId, UserId};
pub use location::{describe, is_postgres_url, postgres_database_name, Location};
pub use sessions::SessionRow;
pub use signing_keys::{NewSigningKey, SigningKeyRow};
pub use throttles::ThrottleWindow;
pub use users::{ProfileChanges, User, UserProfile};

pub use db::Backend;
use db::Conn;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// The whole schema, embedded (STYLE: `schema.sql` at the top level).
const SCHEMA: &str = include_str!("../../schema.sql");
/// The same tables in PostgreSQL's dialect (BIGINT, identity columns).
#[cfg(feature = "postgres")]
const SCHEMA_POSTGRES: &str = include_str!("../../schema.postgres.sql");
/// Bump with each migration; `migrate` brings older files forward.
/// 1: the initial schema. 2: `refresh_tokens.rotated_from` and `.grace_retries`.
/// 3: OpenID Connect's columns and the `signing_keys` table (new, so `SCHEMA` creates it).
const SCHEMA_VERSION: i64 = 3;

/// A storage failure, without the backend's types.
#[derive(Debug, Clone)]
pub enum Error {
    /// Temporary: busy, locked, read-only or full. Worth a 503 and a retry.
    Unavailable(String),
    /// A bug or corruption: a 500, details only in the log.
    Internal(String),
    /// A uniqueness rule refused the write (e.g. a user name that exists).
    Conflict(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(detail) => write!(f, "database unavailable: {detail}"),
            Error::Internal(detail) => write!(f, "database error: {detail}"),
            Error::Conflict(detail) => write!(f, "already exists: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen,
            ) => Error::Unavailable(err.to_string()),
            Some(ErrorCode::ConstraintViolation) => Error::Conflict(err.to_string()),
            _ => Error::Internal(err.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct Store {
    conn: Conn,
    /// Recently read clients (see `clients::CLIENT_CACHE_TTL`); one per connection, so
    /// per worker, and never shared.
    client_cache: std::cell::RefCell<clients::ClientCache>,
    /// Shared by every `Store` of one server.
    shared: Arc<Shared>,
}

/// What every `Store` (connection) of one server process shares.
#[derive(Default)]
pub struct Shared {
    /// SQLite: our own writers take turns here instead of contending for SQLite's write
    /// lock (whose busy waits showed up as second-long stalls, and let the WAL grow without
    /// bound under concurrent writes). Other processes (the admin CLI) still meet SQLite's
    /// lock and the busy handler. PostgreSQL takes concurrent writers itself: only the
    /// group commit of device codes takes this turn there.
    writer: Mutex<()>,
    /// Approvals and denials committed through this process, so far. Bumped after each
    /// commit: whatever remembered a code as pending before it changed knows to look again.
    decisions: AtomicU32,
    /// New device codes waiting for the write turn, to be committed together (see
    /// `create_device_code`).
    codes: Mutex<Vec<device_codes::QueuedCode>>,
}

/// The store's one write guard: held for the whole of a write (`Store::write`,
/// `Store::transaction`), so the store's modules never take a lock by hand.
struct WriteTurn<'a> {
    _turn: Option<MutexGuard<'a, ()>>,
}

/// Locks a mutex of this module. A panic elsewhere while holding it leaves the data usable:
/// the turn still serialises (the data is the database's), and the queue holds whole
/// entries.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens (creating a SQLite file with mode 0600 when missing) and migrates the
    /// database: a file path, or a PostgreSQL URL (see `Location`).
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_shared(path, Arc::default())
    }

    /// As `open`, sharing write turns and the decision count with every other `Store`
    /// holding the same `shared`.
    pub fn open_shared(path: &Path, shared: Arc<Shared>) -> Result<Store> {
        match Location::of(path) {
            Location::File(path) => {
                create_private_file(&path)?;
                Store::connect_sqlite(&path, OpenFlags::SQLITE_OPEN_CREATE, shared)
            }
            Location::Postgres(url) => Store::connect_postgres(&url, shared, true),
        }
    }

    /// As `open`, for a database that must already exist (the admin commands: a mistyped
    /// path must not become a new, empty database). A missing file is an
    /// `Error::Unavailable` from SQLite ("unable to open database file"); nothing is
    /// created. A PostgreSQL database without devicegate's tables is refused the same way
    /// (`Error::Unavailable` starting with `NO_SCHEMA`): an admin command must not fill
    /// another application's database, or `postgres`, with them.
    pub fn open_existing(path: &Path) -> Result<Store> {
        match Location::of(path) {
            Location::File(path) => {
                Store::connect_sqlite(&path, OpenFlags::empty(), Arc::default())
            }
            Location::Postgres(url) => {
                let store = Store::connect_postgres(&url, Arc::default(), false)?;
                Ok(store)
            }
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    #[cfg(feature = "postgres")]
    fn connect_postgres(url: &str, shared: Arc<Shared>, create: bool) -> Result<Store> {
        let store = Store {
            conn: Conn::Postgres(Box::new(db::pg::Pg::connect(url)?)),
            client_cache: Default::default(),
            shared,
        };
        if !create {
            let tables: i64 = store
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM pg_tables \
                     WHERE schemaname = current_schema() AND tablename = 'devicegate_schema'",
                    &[],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            if tables == 0 {
                return Err(Error::Unavailable(format!(
                    "{NO_SCHEMA}: start `devicegate serve` on it once, or fill it with \
                     `devicegate migrate --to`"
                )));
            }
        }
        store.migrate_postgres()?;
        Ok(store)
    }

    #[cfg(not(feature = "postgres"))]
    fn connect_postgres(_url: &str, _shared: Arc<Shared>, _create: bool) -> Result<Store> {
        Err(Error::Unavailable(
            "this devicegate was built without PostgreSQL; build it with \
             `cargo build --release --features postgres`"
                .into(),
        ))
    }

    fn connect_sqlite(path: &Path, create: OpenFlags, shared: Arc<Shared>) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | create,
        )?;
        // Wait for a competing writer (another worker, the admin CLI) instead of failing,
        // in short steps: SQLite's default handler sleeps up to 100 ms at a time, and under
        // concurrent writes those sleeps showed up as request stalls of whole seconds.
        conn.busy_handler(Some(retry_when_busy))?;
        // 1 KiB pages (new files only; an existing file keeps its size): our rows are ~150
        // bytes and lookups are by random hash, so small pages put more distinct rows in the
        // 512 KiB cache and an insert writes 4 KiB of WAL frames instead of 16 (polls +6%,
        // pages +5% in the benchmark). WAL: readers never block the writer. NORMAL: a commit
        // survives a process crash (SIGKILL); only an OS crash or power loss may lose the
        // last transactions.
        // wal_autocheckpoint 4096 pages: a checkpoint per 4 MiB of WAL, as SQLite's default
        // (1000 pages) gives with 4 KiB pages; with our 1 KiB pages the default checkpointed
        // and fsynced four times as often (authorize +14%).
        conn.execute_batch(
            "PRAGMA page_size = 1024;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -512;
             PRAGMA journal_size_limit = 33554432;
             PRAGMA wal_autocheckpoint = 4096;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        let store = Store {
            conn: Conn::Sqlite(conn),
            client_cache: Default::default(),
            shared,
        };
        store.migrate_sqlite()?;
        Ok(store)
    }

    /// The write turn (SQLite: this process's writers one at a time; PostgreSQL: none).
    fn turn(&self) -> WriteTurn<'_> {
        WriteTurn {
            _turn: match self.conn.backend() {
                Backend::Sqlite => Some(lock(&self.shared.writer)),
                Backend::Postgres => None,
            },
        }
    }

    /// One write statement (or a few that need no transaction), in the write turn.
    fn write<T>(&self, body: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let _turn = self.turn();
        body(&self.conn)
    }

    /// A read-modify-write in one transaction, in the write turn (see
    /// `Conn::transaction`: on PostgreSQL `body` may run more than once).
    fn transaction<T>(&self, body: impl FnMut(&Conn) -> Result<T>) -> Result<T> {
        let _turn = self.turn();
        self.conn.transaction(body)
    }

    fn migrate_sqlite(&self) -> Result<()> {
        self.transaction(|tx| {
            let version: i64 = tx
                .query_row("PRAGMA user_version", &[], |r| r.get(0))?
                .unwrap_or(0);
            if version > SCHEMA_VERSION {
                return Err(newer_schema(version));
            }
            if version < SCHEMA_VERSION {
                // A file at version ≥ 1 has tables that `CREATE TABLE IF NOT EXISTS` leaves
                // alone: bring each forward one step at a time. A new file (version 0) gets
                // the current schema whole.
                if (1..2).contains(&version) {
                    // 1 → 2: refresh-grace retries link to the token they retried (issue #12).
                    tx.batch(
                        "ALTER TABLE refresh_tokens ADD COLUMN rotated_from TEXT; \
                         ALTER TABLE refresh_tokens ADD COLUMN grace_retries INTEGER NOT NULL DEFAULT 0;",
                    )?;
                }
                if (1..3).contains(&version) {
                    // 2 → 3: OpenID Connect (issue #14). Existing users get a random subject;
                    // `users_by_subject` (in SCHEMA, below) keeps subjects unique.
                    for (table, column, declaration) in [
                        (
                            "clients",
                            "access_token_format",
                            "TEXT NOT NULL DEFAULT 'opaque'",
                        ),
                        ("clients", "access_token_audience", "TEXT"),
                        (
                            "clients",
                            "id_token_signed_response_alg",
                            "TEXT NOT NULL DEFAULT 'RS256'",
                        ),
                        (
                            "clients",
                            "refresh_requires_offline_access",
                            "INTEGER NOT NULL DEFAULT 0",
                        ),
                        ("users", "subject", "TEXT"),
                        ("users", "display_name", "TEXT"),
                        ("users", "email", "TEXT"),
                        ("users", "email_verified", "INTEGER NOT NULL DEFAULT 0"),
                        ("device_codes", "auth_time", "INTEGER"),
                        ("grants", "auth_time", "INTEGER"),
                    ] {
                        add_column_if_missing(tx, table, column, declaration)?;
                    }
                    // The built-in `guest` client with its version-2 default (`read write`, in
                    // either order) may now also ask for OpenID Connect's scopes. Once, here:
                    // an operator who later limits guest again keeps that (an edited list is
                    // left alone now too).
                    tx.execute(
                        "UPDATE clients SET scopes = 'read write openid profile email offline_access' \
                         WHERE client_id = 'guest' AND scopes IN ('read write', 'write read')",
                        &[],
                    )?;
                    let ids: Vec<UserId> = tx.query_rows(
                        "SELECT id FROM users WHERE subject IS NULL",
                        &[],
                        |r| r.get(0),
                    )?;
                    for id in ids {
                        tx.execute(
                            "UPDATE users SET subject = ?1 WHERE id = ?2",
                            &[&users::new_subject(), &id],
                        )?;
                    }
                }
                tx.batch(SCHEMA)?;
                tx.batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            }
            Ok(())
        })
    }

    /// PostgreSQL: the version lives in `devicegate_schema`; every instance migrates under
    /// one advisory lock (held to the end of the transaction), so two starting together
    /// apply each step once. DDL is transactional there: a failed step leaves nothing.
    #[cfg(feature = "postgres")]
    fn migrate_postgres(&self) -> Result<()> {
        self.conn
            .transaction_at(db::Isolation::ReadCommitted, |tx| {
                tx.query_row(
                    "SELECT pg_advisory_xact_lock(?1)",
                    &[&MIGRATION_LOCK],
                    |_| Ok(()),
                )?;
                tx.batch("CREATE TABLE IF NOT EXISTS devicegate_schema (version BIGINT NOT NULL)")?;
                let version: Option<i64> = tx
                    .query_row("SELECT MAX(version) FROM devicegate_schema", &[], |r| {
                        r.get(0)
                    })?
                    .flatten();
                let version = version.unwrap_or(0);
                if version > SCHEMA_VERSION {
                    return Err(newer_schema(version));
                }
                if version < SCHEMA_VERSION {
                    // Version 3 is PostgreSQL's first: later steps go here, one at a time.
                    tx.batch(SCHEMA_POSTGRES)?;
                    tx.execute("DELETE FROM devicegate_schema", &[])?;
                    tx.execute(
                        "INSERT INTO devicegate_schema (version) VALUES (?1)",
                        &[&SCHEMA_VERSION],
                    )?;
                }
                Ok(())
            })
    }

    /// A consistent copy of the live SQLite database into a new file (`VACUUM INTO` reads
    /// one snapshot, so the server keeps running). On PostgreSQL: `Error::Unavailable`
    /// saying that `pg_dump` is the tool.
    pub fn backup_to(&self, target: &Path) -> Result<()> {
        if self.backend() == Backend::Postgres {
            return Err(Error::Unavailable(PG_DUMP_ADVICE.into()));
        }
        let target = target
            .to_str()
            .ok_or_else(|| Error::Internal("the backup path is not valid UTF-8".into()))?;
        self.conn.execute("VACUUM INTO ?1", &[&target])?;
        Ok(())
    }

    /// SQLite: `PRAGMA integrity_check`: `ok`, or the problems SQLite found. PostgreSQL
    /// checks its own pages (checksums, `amcheck`): there, a successful round trip and a
    /// current schema version answer `ok`.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        match self.backend() {
            Backend::Sqlite => self
                .conn
                .query_rows("PRAGMA integrity_check", &[], |r| r.get::<String>(0)),
            Backend::Postgres => {
                self.ping()?;
                Ok(vec!["ok".into()])
            }
        }
    }

    /// How many approvals and denials this server has committed; read it before reading a
    /// code that you mean to remember as pending (see `protocol::polls`).
    pub fn decisions_so_far(&self) -> u32 {
        self.shared.decisions.load(Ordering::SeqCst)
    }

    /// Counts one more committed approval or denial (after its commit).
    fn decided(&self) {
        self.shared.decisions.fetch_add(1, Ordering::SeqCst);
    }

    /// A cheap round trip, for `/healthz`.
    pub fn ping(&self) -> Result<()> {
        self.conn.query_row("SELECT 1", &[], |_| Ok(()))?;
        Ok(())
    }
}

/// How `open_existing` starts its refusal of a PostgreSQL database without our tables.
pub const NO_SCHEMA: &str = "this PostgreSQL database has no devicegate tables";

/// What `backup` says on PostgreSQL.
pub const PG_DUMP_ADVICE: &str = "backup copies a SQLite file; on PostgreSQL use the \
     database's own tools: pg_dump (e.g. `pg_dump --format=custom --file devicegate.dump \
     \"$URL\"`), or your provider's backups and point-in-time recovery";

/// The advisory lock key every instance migrates under (any constant; "dg15").
#[cfg(feature = "postgres")]
const MIGRATION_LOCK: i64 = 0x6467_3135;

fn newer_schema(version: i64) -> Error {
    Error::Internal(format!(
        "the database has schema version {version}, newer than this binary's \
         {SCHEMA_VERSION}; upgrade devicegate"
    ))
}

/// The busy wait starts at 100 µs and doubles up to 4 ms a step; about 5 s in all.
const BUSY_FIRST_STEP_MICROS: u64 = 100;
const BUSY_MAX_STEP_MICROS: u64 = 4_000;
const BUSY_TRIES: i32 = 1_300;

/// SQLite's busy handler: `true` to try again after a short, growing sleep.
fn retry_when_busy(tries: i32) -> bool {
    if tries >= BUSY_TRIES {
        return false;
    }
    let doublings = u32::try_from(tries.clamp(0, 10)).unwrap_or(10);
    let micros = (BUSY_FIRST_STEP_MICROS << doublings).min(BUSY_MAX_STEP_MICROS);
    std::thread::sleep(Duration::from_micros(micros));
    true
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unavailable(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<()> {
    Ok(())
}

/// Space-separated list ⇄ vector, the portable way lists are stored.
fn split_list(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_string).collect()
}

/// `ALTER TABLE … ADD COLUMN` unless the column is there already (a step of SQLite's
/// `migrate`).
fn add_column_if_missing(tx: &Conn, table: &str, column: &str, declaration: &str) -> Result<()> {
    let present: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
            &[&table, &column],
            |r| r.get(0),
        )?
        .unwrap_or(0);
    if present == 0 {
        tx.batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
        ))?;
    }
    Ok(())
}
