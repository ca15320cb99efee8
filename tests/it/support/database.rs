//! Which database a test runs on, and a backend-neutral way to look into it.
//!
//! Without `DEVICEGATE_TEST_DATABASE` every test database is a SQLite file in a temporary
//! directory, as always. With it (a `postgres://…` URL of a role that may create databases,
//! as `.ci/postgres` exports, and `--features postgres`), every `TestApp` and every
//! `test_database` gets a fresh PostgreSQL database of its own, `dg_<random hex>`, dropped
//! again (`WITH (FORCE)`) when its guard is dropped. The database's URL travels where a
//! path did (`Config::db_path`, `--db`): the store tells the two apart.
//!
//! `TestDb` reads and pokes a database directly, on either backend, for the tests that
//! check what was stored. Its SQL must be portable: no `?1` parameters (quote values with
//! `sql_text`), `COUNT(*)` rather than a boolean expression (a `bool` in PostgreSQL), and
//! integer columns read as `i64` (BIGINT there).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// The environment variable naming the PostgreSQL server to test against.
pub const TEST_DATABASE_ENV: &str = "DEVICEGATE_TEST_DATABASE";

/// The base URL from `DEVICEGATE_TEST_DATABASE`, if the tests run on PostgreSQL. Panics when
/// it is set in a build without the `postgres` feature: the run would silently test SQLite.
fn postgres_base() -> Option<String> {
    let url = std::env::var(TEST_DATABASE_ENV)
        .ok()
        .filter(|v| !v.is_empty())?;
    if !cfg!(feature = "postgres") {
        panic!(
            "{TEST_DATABASE_ENV} is set ({url}) but the tests were built without the \
             `postgres` feature: run `cargo test --features postgres`, or unset it for the \
             SQLite run"
        );
    }
    Some(url)
}

/// Whether the tests run on PostgreSQL (`DEVICEGATE_TEST_DATABASE` set). Tests that are
/// about SQLite files (WAL, file modes, `backup`, upgrades of old files) return early when
/// this is true, saying why.
pub fn on_postgres() -> bool {
    postgres_base().is_some()
}

/// Whether `db` (a `--db` value) names a PostgreSQL database rather than a file.
pub fn is_postgres_url(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// A database for one test: a file path (SQLite) or the URL of a fresh PostgreSQL database,
/// usable wherever a `&Path` goes (`run(&db, …)`, `serve_binary(&db, …)`,
/// `Store::open(&db)`). The PostgreSQL database is dropped with the guard: drop the guard
/// after the servers using it (declare it first).
pub struct TestDatabase {
    location: PathBuf,
    /// (base URL, database name) of a database this guard made and drops.
    #[cfg_attr(
        not(feature = "postgres"),
        allow(dead_code, reason = "only set with PostgreSQL")
    )]
    made: Option<(String, String)>,
}

/// A new, empty database for a test that starts servers or admin commands itself: `d.db` in
/// `dir` (not yet created) on SQLite, a fresh database on PostgreSQL (no schema yet: the
/// first start makes it, as it makes the file).
pub fn test_database(dir: &Path) -> TestDatabase {
    test_database_named(dir, "d.db")
}

/// As `test_database`, with the SQLite file's name chosen.
pub fn test_database_named(dir: &Path, file: &str) -> TestDatabase {
    match postgres_base() {
        Some(base) => TestDatabase::create_postgres(&base),
        None => TestDatabase {
            location: dir.join(file),
            made: None,
        },
    }
}

impl TestDatabase {
    #[cfg(feature = "postgres")]
    fn create_postgres(base: &str) -> TestDatabase {
        let name = format!("dg_{:016x}", rand::random::<u64>());
        let mut admin = postgres::Client::connect(base, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_ENV}={base}: cannot connect: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {base}: {e}"));
        TestDatabase {
            location: PathBuf::from(with_database_name(base, &name)),
            made: Some((base.to_string(), name)),
        }
    }

    #[cfg(not(feature = "postgres"))]
    fn create_postgres(_base: &str) -> TestDatabase {
        unreachable!("postgres_base() panics without the feature")
    }
}

impl std::ops::Deref for TestDatabase {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.location
    }
}

impl AsRef<Path> for TestDatabase {
    fn as_ref(&self) -> &Path {
        &self.location
    }
}

impl AsRef<std::ffi::OsStr> for TestDatabase {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.location.as_os_str()
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.location.fmt(f)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Some((base, name)) = self.made.take() {
            // FORCE ends what is still connected (a killed server's sessions, a test's own
            // `TestDb`); a failure is reported, not raised: this may run while unwinding.
            let dropped = postgres::Client::connect(&base, postgres::NoTls).and_then(|mut c| {
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            });
            if let Err(e) = dropped {
                eprintln!("could not drop test database {name}: {e}");
            }
        }
    }
}

/// `base` (a libpq URL) with its database name replaced by `name`, query string kept.
#[cfg_attr(
    not(feature = "postgres"),
    allow(dead_code, reason = "only with PostgreSQL")
)]
fn with_database_name(base: &str, name: &str) -> String {
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// `value` as an SQL string literal (quotes doubled), for `TestDb`'s parameterless SQL.
pub fn sql_text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A direct connection to a test's database (path or URL), to read what the server stored
/// or change it as an operator's SQL would. Panics on any error: it is test scaffolding.
pub struct TestDb {
    conn: RefCell<Connection>,
}

enum Connection {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Client),
}

impl TestDb {
    /// Opens `db`: a `postgres://` URL with the `postgres` crate, anything else as a SQLite
    /// file (which must exist: a mistyped path is not a new database here either).
    pub fn open(db: &Path) -> TestDb {
        let conn = if is_postgres_url(db) {
            open_postgres(db)
        } else {
            Connection::Sqlite(
                rusqlite::Connection::open_with_flags(
                    db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
                )
                .unwrap_or_else(|e| panic!("open {}: {e}", db.display())),
            )
        };
        TestDb {
            conn: RefCell::new(conn),
        }
    }

    /// The first column of the only row `sql` returns, as an integer (`COUNT(*)`, a BIGINT
    /// or INTEGER column).
    pub fn query_i64(&self, sql: &str) -> i64 {
        match &mut *self.conn.borrow_mut() {
            Connection::Sqlite(c) => c
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => {
                let row = c
                    .query_one(sql, &[])
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                row.try_get::<_, i64>(0)
                    .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                    .or_else(|_| row.try_get::<_, i16>(0).map(i64::from))
                    .unwrap_or_else(|e| panic!("{sql}: not an integer: {e}"))
            }
        }
    }

    /// The first column of every row `sql` returns, as text (NULL panics).
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        match &mut *self.conn.borrow_mut() {
            Connection::Sqlite(c) => c
                .prepare(sql)
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c
                .query(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|row| {
                    row.try_get::<_, String>(0)
                        .unwrap_or_else(|e| panic!("{sql}: not text: {e}"))
                })
                .collect(),
        }
    }

    /// The first column of the only row `sql` returns, as text.
    pub fn query_string(&self, sql: &str) -> String {
        let mut rows = self.query_strings(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows.remove(0)
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str) -> u64 {
        match &mut *self.conn.borrow_mut() {
            Connection::Sqlite(c) => c
                .execute(sql, [])
                .map(|n| n as u64)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.execute(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Rows in `table`.
    pub fn count_rows(&self, table: &str) -> i64 {
        self.query_i64(&format!("SELECT COUNT(*) FROM {table}"))
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(db: &Path) -> Connection {
    let url = db.to_str().expect("a URL is UTF-8");
    Connection::Postgres(
        postgres::Client::connect(url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {url}: {e}")),
    )
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(db: &Path) -> Connection {
    panic!(
        "{} is a PostgreSQL URL: build the tests with `--features postgres`",
        db.display()
    )
}

#[test]
fn a_database_name_replaces_the_one_in_the_url() {
    assert_eq!(
        with_database_name("postgres://u@127.0.0.1:5/postgres", "dg_1"),
        "postgres://u@127.0.0.1:5/dg_1"
    );
    assert_eq!(
        with_database_name("postgresql://u:p@h/x?sslmode=disable", "dg_1"),
        "postgresql://u:p@h/dg_1?sslmode=disable"
    );
    assert_eq!(
        with_database_name("postgres://h", "dg_1"),
        "postgres://h/dg_1"
    );
}

/// The helpers themselves, on whichever backend this run uses: a fresh database takes SQL
/// and reads it back through `TestDb`.
#[test]
fn a_test_database_takes_sql_and_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    assert_eq!(is_postgres_url(&db), on_postgres());
    if !on_postgres() {
        // SQLite makes the file on first open; TestDb only opens existing ones.
        drop(rusqlite::Connection::open(&*db).unwrap());
    }
    let conn = TestDb::open(&db);
    conn.execute("CREATE TABLE t (id BIGINT NOT NULL, name TEXT NOT NULL)");
    let inserted = conn.execute(&format!(
        "INSERT INTO t VALUES (1, {}), (2, 'b')",
        sql_text("it's")
    ));
    assert_eq!(inserted, 2);
    assert_eq!(conn.count_rows("t"), 2);
    assert_eq!(conn.query_i64("SELECT MAX(id) FROM t"), 2);
    assert_eq!(
        conn.query_strings("SELECT name FROM t ORDER BY id"),
        ["it's", "b"]
    );
    assert_eq!(conn.query_string("SELECT name FROM t WHERE id = 2"), "b");
    drop(conn);
    #[cfg(feature = "postgres")]
    if let Some((base, name)) = db.made.clone() {
        drop(db);
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        let left: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "the guard drops its database");
    }
}
