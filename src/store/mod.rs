//! The storage boundary: the only place that knows SQL (STYLE §3).
//!
//! `Store::open` sets the PRAGMAs, applies `schema.sql` and records migrations in
//! `PRAGMA user_version`. Each worker thread owns one `Store` (one connection). Rows are
//! plain structs; rusqlite errors never leave this module: they become a backend-neutral
//! `store::Error`. Every read-modify-write is one `IMMEDIATE` transaction or one
//! conditional `UPDATE`, so concurrent workers (and the admin CLI in another process)
//! cannot both win the same race.

mod clients;
mod device_codes;
mod grants;
mod sessions;
mod signing_keys;
mod throttles;
mod users;

pub use clients::{Client, ClientChanges, NewClient, CLIENT_CACHE_TTL};
pub use device_codes::{ApprovedCode, DeviceCode, DeviceCodeStatus, NewDeviceCode};
pub use grants::{
    AccessTokenRow, GrantRow, IssuedTokens, RedeemOutcome, RefreshFacts, RefreshOutcome,
    RefreshStep, RefreshTokenRow, SignedOut,
};
pub use sessions::SessionRow;
pub use signing_keys::{NewSigningKey, SigningKeyRow};
pub use throttles::ThrottleWindow;
pub use users::{ProfileChanges, User, UserProfile};

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// The whole schema, embedded (STYLE: `schema.sql` at the top level).
const SCHEMA: &str = include_str!("../../schema.sql");
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
    conn: Connection,
    /// Recently read clients (see `clients::CLIENT_CACHE_TTL`); one per connection, so
    /// per worker, and never shared.
    client_cache: std::cell::RefCell<clients::ClientCache>,
    /// Shared by every `Store` of one server.
    shared: Arc<Shared>,
}

/// What every `Store` (connection) of one server process shares.
#[derive(Default)]
pub struct Shared {
    /// Our own writers take turns here instead of contending for SQLite's write lock
    /// (whose busy waits showed up as second-long stalls, and let the WAL grow without
    /// bound under concurrent writes). Other processes (the admin CLI) still meet
    /// SQLite's lock and the busy handler.
    writer: Mutex<()>,
    /// Approvals and denials committed through this process, so far. Bumped after each
    /// commit: whatever remembered a code as pending before it changed knows to look again.
    decisions: AtomicU32,
    /// New device codes waiting for the write turn, to be committed together (see
    /// `create_device_code`).
    codes: Mutex<Vec<device_codes::QueuedCode>>,
}

impl Shared {
    /// Takes the in-process write turn.
    fn write_turn(&self) -> MutexGuard<'_, ()> {
        lock(&self.writer)
    }
}

/// Locks a mutex of this module. A panic elsewhere while holding it leaves the data usable:
/// the turn still serialises (the data is SQLite's), and the queue holds whole entries.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens (creating with mode 0600 when missing) and migrates the database file.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_shared(path, Arc::default())
    }

    /// As `open`, sharing write turns and the decision count with every other `Store`
    /// holding the same `shared`.
    pub fn open_shared(path: &Path, shared: Arc<Shared>) -> Result<Store> {
        create_private_file(path)?;
        Store::connect(path, OpenFlags::SQLITE_OPEN_CREATE, shared)
    }

    /// As `open`, for a database that must already exist (the admin commands: a mistyped
    /// path must not become a new, empty database). A missing file is an
    /// `Error::Unavailable` from SQLite ("unable to open database file"); nothing is
    /// created.
    pub fn open_existing(path: &Path) -> Result<Store> {
        Store::connect(path, OpenFlags::empty(), Arc::default())
    }

    fn connect(path: &Path, create: OpenFlags, shared: Arc<Shared>) -> Result<Store> {
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
        let mut store = Store {
            conn,
            client_cache: Default::default(),
            shared,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Internal(format!(
                "the database has schema version {version}, newer than this binary's \
                 {SCHEMA_VERSION}; upgrade devicegate"
            )));
        }
        if version < SCHEMA_VERSION {
            // A file at version ≥ 1 has tables that `CREATE TABLE IF NOT EXISTS` leaves
            // alone: bring each forward one step at a time. A new file (version 0) gets
            // the current schema whole.
            if (1..2).contains(&version) {
                // 1 → 2: refresh-grace retries link to the token they retried (issue #12).
                tx.execute_batch(
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
                    add_column_if_missing(&tx, table, column, declaration)?;
                }
                // The built-in `guest` client with its version-2 default (`read write`, in
                // either order) may now also ask for OpenID Connect's scopes. Once, here: an
                // operator who later limits guest again keeps that (an edited list is left
                // alone now too).
                tx.execute(
                    "UPDATE clients SET scopes = 'read write openid profile email offline_access' \
                     WHERE client_id = 'guest' AND scopes IN ('read write', 'write read')",
                    [],
                )?;
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM users WHERE subject IS NULL")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for id in ids {
                    tx.execute(
                        "UPDATE users SET subject = ?1 WHERE id = ?2",
                        rusqlite::params![users::new_subject(), id],
                    )?;
                }
            }
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A consistent copy of the live database into a new file (`VACUUM INTO` reads one
    /// snapshot, so the server keeps running).
    pub fn backup_to(&self, target: &Path) -> Result<()> {
        let target = target
            .to_str()
            .ok_or_else(|| Error::Internal("the backup path is not valid UTF-8".into()))?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: `ok`, or the problems SQLite found.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How many approvals and denials this server has committed; read it before reading a
    /// code that you mean to remember as pending (see `protocol::polls`).
    pub fn decisions_so_far(&self) -> u32 {
        self.shared.decisions.load(Ordering::SeqCst)
    }

    /// A cheap round trip, for `/healthz`.
    pub fn ping(&self) -> Result<()> {
        self.conn
            .prepare_cached("SELECT 1")?
            .query_row([], |_| Ok(()))?;
        Ok(())
    }
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

/// `ALTER TABLE … ADD COLUMN` unless the column is there already (a step of `migrate`).
fn add_column_if_missing(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
    declaration: &str,
) -> Result<()> {
    let present: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?;
    if !present {
        tx.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
        ))?;
    }
    Ok(())
}
