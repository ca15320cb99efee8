//! `--db` as a PostgreSQL URL (issue #15): what an operator meets when setting it up —
//! clear errors for what cannot work, the password from where it may come and never in a
//! log — and `devicegate migrate`, the way up from a SQLite file.

use std::process::Stdio;

use serde_json::Value;

use crate::cli::{run, stop};
use crate::support::{
    free_port, on_postgres, serve_binary, test_database, wait_until_healthy, TestDb,
};

/// A URL nothing listens at (port 1 on loopback refuses at once).
const NOWHERE: &str = "postgres://devicegate@127.0.0.1:1/devicegate";

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_in_a_build_without_the_feature_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = std::path::Path::new(NOWHERE);
    let (code, _, err) = run(url, &["user", "list"], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("built without PostgreSQL") && err.contains("--features postgres"),
        "{err}"
    );
    // `serve` says the same and creates nothing (no file named after the URL).
    let out = crate::support::devicegate()
        .current_dir(dir.path())
        .args(["--db", NOWHERE, "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("built without PostgreSQL"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_or_unsupported_database_is_one_clear_line() {
    for (url, says) in [
        (NOWHERE.to_string(), "PostgreSQL"),
        (format!("{NOWHERE}?sslmode=require"), "PostgreSQL"),
        (
            "postgres://devicegate@127.0.0.1:1/x?bogus_option=1".to_string(),
            "the PostgreSQL URL is not valid",
        ),
    ] {
        let (code, out, err) = run(std::path::Path::new(&url), &["user", "list"], None);
        assert_eq!((code, out.as_str()), (1, ""), "{url}: {err}");
        assert!(err.starts_with("error: "), "{url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{url}: {err}");
        // `serve` stops at start with the same reason.
        let out = crate::support::devicegate()
            .args(["--db", &url, "serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
    }
}

/// devicegate's tables made in `db` (as the superuser) and handed to `role`: admin
/// commands refuse a database without them.
fn grant_tables_to(db: &std::path::Path, role: &str) {
    drop(devicegate::store::Store::open(db).unwrap());
    let superuser = TestDb::open(db);
    superuser.execute(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    superuser.execute(&format!(
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
    ));
}

/// The base URL the PostgreSQL run was given, with `user:password@` in place of its user.
fn with_credentials(url: &str, user: &str, password: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    match password {
        Some(password) => format!("{scheme}://{user}:{password}@{host}"),
        None => format!("{scheme}://{user}@{host}"),
    }
}

#[test]
fn the_database_password_never_reaches_a_log_or_a_message() {
    if !on_postgres() {
        return; // A SQLite path has no password.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    // The test server trusts 127.0.0.1: any password is accepted, and must not be shown.
    let url = with_credentials(db.to_str().unwrap(), "postgres", Some("Sup3rSecretPw"));
    let listen = format!("127.0.0.1:{}", free_port());
    let child = crate::support::devicegate()
        .args([
            "--db",
            &url,
            "serve",
            "--listen",
            &listen,
            "--log-level",
            "debug",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_healthy(&format!("http://{listen}"));
    let (out, err) = stop(child);
    let path = std::path::Path::new(&url);
    let (_, check_out, check_err) = run(path, &["check", "--json"], None);
    let (_, list_out, list_err) = run(path, &["user", "list"], None);
    for text in [&out, &err, &check_out, &check_err, &list_out, &list_err] {
        assert!(
            !text.contains("Sup3rSecretPw"),
            "the password shown: {text}"
        );
    }
    // The URL is still recognisable, with the password masked.
    assert!(err.contains("postgres:***@"), "{err}");
    let checked: Value = serde_json::from_str(&check_out).unwrap();
    assert!(
        checked["database"]["path"]
            .as_str()
            .unwrap()
            .contains("postgres:***@"),
        "{check_out}"
    );
    assert_eq!(checked["database"]["ok"], true, "{check_out}");
    // The first start's password file is named after the database, in the working
    // directory (the test's temporary directory).
    let name = db.to_str().unwrap().rsplit('/').next().unwrap().to_string();
    let file = std::env::temp_dir().join(format!("devicegate-{name}.admin-password"));
    assert!(file.exists(), "{}", file.display());
    let _ = std::fs::remove_file(file);
}

#[test]
fn the_password_comes_from_the_url_pgpassword_or_a_file() {
    if !on_postgres() {
        return; // SQLite has no password.
    }
    // A role that must give a password (.ci/postgres: scram-sha-256 for `dg_scram` only),
    // owning a fresh database.
    let base = std::env::var("DEVICEGATE_TEST_DATABASE").unwrap();
    let admin = TestDb::open(std::path::Path::new(&base));
    admin.execute(
        "DO $$ BEGIN CREATE ROLE dg_scram LOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    admin.execute("ALTER ROLE dg_scram PASSWORD 'right-horse-battery'");
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let name = db.to_str().unwrap().rsplit('/').next().unwrap().to_string();
    admin.execute(&format!("ALTER DATABASE {name} OWNER TO dg_scram"));
    grant_tables_to(&db, "dg_scram");
    let bare = with_credentials(db.to_str().unwrap(), "dg_scram", None);
    let list = |url: &str, env: &[(&str, &str)]| {
        let out = crate::support::devicegate()
            .env_remove("PGPASSWORD")
            .env_remove("DEVICEGATE_DB_PASSWORD_FILE")
            .envs(env.iter().copied())
            .args(["--db", url, "client", "list"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = list(&bare, &[]);
    assert_eq!(code, 1, "no password at all: {err}");
    assert!(err.contains("password missing"), "{err}");
    let in_url = with_credentials(&bare, "dg_scram", Some("right-horse-battery"));
    assert_eq!(list(&in_url, &[]).0, 0, "{}", list(&in_url, &[]).1);
    assert_eq!(list(&bare, &[("PGPASSWORD", "right-horse-battery")]).0, 0);
    let file = dir.path().join("db-password");
    std::fs::write(&file, "right-horse-battery\n").unwrap();
    let file = file.to_str().unwrap();
    let (code, err) = list(&bare, &[("DEVICEGATE_DB_PASSWORD_FILE", file)]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("db-password"), "wrong\n").unwrap();
    let (code, err) = list(&bare, &[("DEVICEGATE_DB_PASSWORD_FILE", file)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    let missing = dir.path().join("nope");
    let (code, err) = list(
        &bare,
        &[("DEVICEGATE_DB_PASSWORD_FILE", missing.to_str().unwrap())],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("DEVICEGATE_DB_PASSWORD_FILE"), "{err}");
    // The database is dropped with `db` by the superuser, whoever owns it.
}

#[test]
fn sslmode_require_verifies_the_server_against_the_system_and_the_ca_file() {
    // .ci/postgres serves TLS with a throwaway CA when openssl is there.
    let Some(ca) = std::env::var("DEVICEGATE_TEST_DATABASE_CA").ok() else {
        return; // No TLS on this run's server (SQLite, or no openssl).
    };
    if !on_postgres() {
        return;
    }
    // `dg_tls` may connect only over TLS (pg_hba.conf: hostssl, and reject otherwise).
    let base = std::env::var("DEVICEGATE_TEST_DATABASE").unwrap();
    let admin = TestDb::open(std::path::Path::new(&base));
    admin.execute(
        "DO $$ BEGIN CREATE ROLE dg_tls LOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let name = db.to_str().unwrap().rsplit('/').next().unwrap().to_string();
    admin.execute(&format!("ALTER DATABASE {name} OWNER TO dg_tls"));
    grant_tables_to(&db, "dg_tls");
    let url = with_credentials(db.to_str().unwrap(), "dg_tls", None);
    let list = |query: &str, ca_file: Option<&str>| {
        let mut command = crate::support::devicegate();
        command.env_remove("DEVICEGATE_DB_CA_FILE");
        if let Some(file) = ca_file {
            command.env("DEVICEGATE_DB_CA_FILE", file);
        }
        let out = command
            .args(["--db", &format!("{url}{query}"), "client", "list"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Required and verified against the CA file: connected (so over TLS).
    let (code, err) = list("?sslmode=require", Some(&ca));
    assert_eq!(code, 0, "{err}");
    // libpq's verifying modes mean the same here.
    let (code, err) = list("?sslmode=verify-full", Some(&ca));
    assert_eq!(code, 0, "{err}");
    // Without the CA the server's certificate is unknown: refused, and said why.
    let (code, err) = list("?sslmode=require", None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("certificate"), "{err}");
    // `prefer` (the default) speaks plainly; this role may not.
    let (code, err) = list("", Some(&ca));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no encryption"), "{err}");
    // A CA file that holds no certificate is named.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let (code, err) = list("?sslmode=require", Some(junk.to_str().unwrap()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("DEVICEGATE_DB_CA_FILE"), "{err}");
}

/// `migrate`'s refusals: each one line, exit 1, and nothing written.
#[test]
fn migrate_refuses_what_it_cannot_copy_whole() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let target = test_database(dir.path());
    let migrate = |from: &std::path::Path, to: &std::path::Path, force: bool| {
        let mut args = vec!["migrate", "--from", from.to_str().unwrap()];
        args.extend(["--to", to.to_str().unwrap()]);
        if force {
            args.push("--force");
        }
        run(&dir.path().join("unused.db"), &args, None)
    };
    let (code, _, err) = migrate(&source, &target, false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no database at"), "{err}");
    drop(devicegate::store::Store::open(&source).unwrap());
    let (code, _, err) = run(&source, &["user", "add", "ann"], Some("first-password\n"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = migrate(&source, &source, false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--from and --to name the same database"),
        "{err}"
    );
    let (code, out, err) = migrate(&source, &target, false);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rows per table, verified on both sides"),
        "{out}"
    );
    assert!(err.contains("audit: migrate from"), "{err}");
    // The target now holds rows: a second copy is refused, and changes nothing.
    let users_before = TestDb::open(&target).count_rows("users");
    let (code, _, err) = migrate(&source, &target, false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("already holds") && err.contains("pass --force"),
        "{err}"
    );
    assert_eq!(TestDb::open(&target).count_rows("users"), users_before);
    let (code, _, err) = migrate(&source, &target, true);
    assert_eq!(code, 0, "{err}");
}

/// The round trip: a SQLite server with logins, tokens, keys and a pending code →
/// `devicegate migrate` → a server on the target, where all of it still works.
#[test]
fn a_populated_sqlite_server_moves_to_the_target_and_every_login_token_and_key_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("old.db");
    let target = test_database(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let old = serve_binary(&source, &listen, &["--log-level", "warn"], Stdio::null());
    let (code, _, err) = run(&source, &["user", "add", "alice"], Some("password123\n"));
    assert_eq!(code, 0, "{err}");
    let form = |path: &str, pairs: &[(&str, &str)]| -> (u16, Value) {
        let response = match ureq::post(&format!("{base}{path}")).send_form(pairs) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        (response.status(), response.into_json().unwrap())
    };
    // One whole login with an ID token, and one code still waiting.
    let (_, codes) = form(
        "/oauth/device_authorize",
        &[("client_id", "guest"), ("scope", "openid profile read")],
    );
    let user_code = codes["user_code"].as_str().unwrap();
    let (code, _, err) = run(&source, &["approve", user_code, "--user", "alice"], None);
    assert_eq!(code, 0, "{err}");
    let device_code = codes["device_code"].as_str().unwrap();
    let poll = [
        ("grant_type", crate::support::DEVICE_GRANT),
        ("client_id", "guest"),
        ("device_code", device_code),
    ];
    let (status, tokens) = form("/oauth/token", &poll);
    assert_eq!(status, 200, "{tokens}");
    let (_, waiting) = form("/oauth/device_authorize", &[("client_id", "guest")]);
    let jwks_before: Value = ureq::get(&format!("{base}/oauth/jwks"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    drop(crate::cli::stop(old));

    let (code, out, err) = run(
        &dir.path().join("unused.db"),
        &[
            "migrate",
            "--from",
            source.to_str().unwrap(),
            "--to",
            target.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("refresh_tokens"), "{out}");

    let new = serve_binary(&target, &listen, &["--log-level", "warn"], Stdio::null());
    // The keys came along: the same JWKS, and the old ID token's kid is in it.
    let jwks_after: Value = ureq::get(&format!("{base}/oauth/jwks"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(jwks_after, jwks_before);
    let id_token = tokens["id_token"].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(id_token).unwrap().kid.unwrap();
    assert!(jwks_after.to_string().contains(&kid));
    // The access token still works; the refresh token still rotates.
    let access = tokens["access_token"].as_str().unwrap();
    let who: Value = ureq::get(&format!("{base}/oauth/userinfo"))
        .set("Authorization", &format!("Bearer {access}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(who["preferred_username"], "alice", "{who}");
    let (status, refreshed) = form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "guest"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    );
    assert_eq!(status, 200, "{refreshed}");
    // The code already redeemed stays redeemed; the waiting one can still be approved and
    // redeemed on the new server.
    let (status, again) = form("/oauth/token", &poll);
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (code, _, err) = run(
        &target,
        &[
            "approve",
            waiting["user_code"].as_str().unwrap(),
            "--user",
            "alice",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (status, body) = form(
        "/oauth/token",
        &[
            ("grant_type", crate::support::DEVICE_GRANT),
            ("client_id", "guest"),
            ("device_code", waiting["device_code"].as_str().unwrap()),
        ],
    );
    assert_eq!(status, 200, "{body}");
    // And alice signs in with her password on the new server.
    let browser_sign_in = crate::cli::sign_in_status(&base, "alice", "password123");
    assert_eq!(browser_sign_in, 303);
    drop(crate::cli::stop(new));
}

/// Found in review: nothing bounded a request waiting on PostgreSQL. A lock held by
/// someone else (an operator's open transaction) now costs a request 5 s and a 503, never
/// a hang, and the server serves again once the lock is gone.
#[test]
fn a_request_waiting_on_a_lock_gets_503_within_seconds() {
    if !on_postgres() {
        return; // SQLite's own busy timeout is pinned in durability.rs.
    }
    // Also when the URL brings `options` of its own (found in the second review: they
    // replaced the bounds).
    for options in ["", "?options=-c%20search_path%3Dpublic"] {
        a_lock_costs_a_request_seconds(options);
    }
}

fn a_lock_costs_a_request_seconds(options: &str) {
    let app = crate::support::TestApp::spawn_with(|c| {
        c.db_path = format!("{}{options}", c.db_path.display()).into();
    });
    let operator = TestDb::open(&app.db_path);
    operator.execute("BEGIN");
    operator.execute("LOCK TABLE device_codes IN ACCESS EXCLUSIVE MODE");
    let started = std::time::Instant::now();
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
    let waited = started.elapsed();
    crate::support::assert_oauth_error(&resp, 503, "temporarily_unavailable");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
    operator.execute("ROLLBACK");
    assert_eq!(
        app.post_form("/oauth/device_authorize", &[("client_id", "guest")])
            .status,
        200
    );
}

/// Found in review: a connection the database closed (a restart, `idle_session_timeout`,
/// `pg_terminate_backend`) cost the next request on each worker a 503. An idle connection
/// is checked before use now, and replaced.
#[test]
fn connections_the_database_closed_are_replaced_without_a_failed_request() {
    if !on_postgres() {
        return;
    }
    let app = crate::support::TestApp::spawn();
    assert_eq!(app.get("/healthz").status, 200);
    let name = app
        .db_path
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let base = std::env::var("DEVICEGATE_TEST_DATABASE").unwrap();
    let admin = TestDb::open(std::path::Path::new(&base));
    // Past the idle check's threshold, then every server connection is ended.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let ended = admin.query_i64(&format!(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND application_name = 'devicegate') t"
    ));
    assert!(ended >= 4, "{ended} connections ended");
    for _ in 0..12 {
        let resp = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
}

/// Found in review: libpq's keyword/value strings became SQLite files named after them
/// (password included), and admin commands filled any database they were pointed at with
/// devicegate's tables.
#[test]
fn keyword_value_strings_are_postgresql_and_admin_commands_never_fill_a_foreign_database() {
    let dir = tempfile::tempdir().unwrap();
    let conninfo = "host=127.0.0.1 port=1 dbname=devicegate user=dg password=s3cret";
    let out = crate::support::devicegate()
        .current_dir(dir.path())
        .args(["--db", conninfo, "user", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file made"
    );
    if !on_postgres() {
        return;
    }
    // An existing database without our tables: admin commands refuse it and leave it
    // untouched; `check` calls it not yet started; `serve` would fill it.
    let db = test_database(dir.path());
    let (code, _, err) = run(&db, &["user", "list"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no devicegate tables"), "{err}");
    let tables =
        TestDb::open(&db).query_i64("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'");
    assert_eq!(tables, 0);
    let (code, out, err) = run(&db, &["check", "--json"], None);
    let checked: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(checked["database"]["ok"], true, "{out} {code}");
    // The same database as a keyword/value string works like its URL.
    let url = db.to_str().unwrap();
    let (host_port, name) = url.rsplit_once('@').unwrap().1.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let conninfo = format!("host={host} port={port} user=postgres dbname={name}");
    drop(devicegate::store::Store::open(&db).unwrap());
    let (code, _, err) = run(std::path::Path::new(&conninfo), &["client", "list"], None);
    assert_eq!(code, 0, "{err}");
}

/// Found in review: a PostgreSQL process that stops answering (here: `SIGSTOP`, as a hung
/// primary looks) held every request on its connection forever. A connection idle for a
/// while is checked with a 5 s limit before use and replaced, so requests are answered.
#[test]
fn a_database_process_that_stops_answering_costs_seconds_not_a_hang() {
    if !on_postgres() {
        return;
    }
    let app = crate::support::TestApp::spawn();
    assert_eq!(app.get("/healthz").status, 200);
    let name = app
        .db_path
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let base = std::env::var("DEVICEGATE_TEST_DATABASE").unwrap();
    let admin = TestDb::open(std::path::Path::new(&base));
    let connections = || {
        admin.query_strings(&format!(
            "SELECT pid::text FROM pg_stat_activity \
             WHERE datname = '{name}' AND application_name = 'devicegate'"
        ))
    };
    // Every worker and the sweeper have connected (the first worker answers before the
    // last has).
    let mut pids = connections();
    for _ in 0..50 {
        if pids.len() >= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        pids = connections();
    }
    assert!(pids.len() >= 5, "{pids:?}");
    /// Lets the stopped processes go again, whatever happens in between.
    struct Continue(Vec<String>);
    impl Drop for Continue {
        fn drop(&mut self) {
            for pid in &self.0 {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", pid])
                    .status();
            }
        }
    }
    let stopped = Continue(pids.clone());
    for pid in &pids {
        let status = std::process::Command::new("kill")
            .args(["-STOP", pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -STOP {pid}");
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    for _ in 0..6 {
        let resp = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    drop(stopped);
    // Once they run again, the replaced sessions end: nothing is left holding a
    // connection slot (found in the second review: they were kept forever).
    let mut left = connections().len();
    for _ in 0..100 {
        if left <= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = connections().len();
    }
    assert!(left <= 5, "{left} connections after the stop ended");
}

/// Found in the second review: `connect_timeout` bounds only the TCP connect, so a server
/// that accepts and never answers (a stopped postmaster) held a new connection forever.
#[cfg(feature = "postgres")]
#[test]
fn a_server_that_accepts_and_never_answers_is_an_error_in_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, reads nothing, answers nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("postgres://dg@127.0.0.1:{port}/dg");
    let mut child = crate::support::devicegate()
        .args(["--db", &url, "user", "list"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still waiting for the silent server after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("no answer to a new connection within 10 s"),
        "{err}"
    );
}

/// `backup` copies a SQLite file; on PostgreSQL it says what to use instead, and writes
/// nothing.
#[test]
fn backup_on_postgresql_names_pg_dump_and_writes_nothing() {
    if !on_postgres() {
        return; // On SQLite `backup` works (admin.rs, operator_hygiene.rs).
    }
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::new_database(dir.path());
    let target = dir.path().join("copy.db");
    let (code, out, err) = run(&db, &["backup", target.to_str().unwrap()], None);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!target.exists());
}

/// Found in the third review: PostgreSQL's text cannot hold NUL, and a name with one made
/// every endpoint that looks a name up answer 500. The answer is now the backend's, the
/// same as for any unknown name.
#[test]
fn a_nul_in_a_looked_up_name_is_an_unknown_name_on_either_backend() {
    let app = crate::support::TestApp::spawn();
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "gu\0est")]);
    crate::support::assert_oauth_error(&resp, 401, "invalid_client");
    let resp = app.poll("gu\0est", "not-a-code");
    crate::support::assert_oauth_error(&resp, 401, "invalid_client");
    app.add_user("admin");
    let unknown = crate::support::Browser::new(&app).sign_in("nobody", "password123");
    let with_nul = crate::support::Browser::new(&app).sign_in("ad\0min", "password123");
    assert_ne!(with_nul.status, 500, "{}", with_nul.body);
    assert_eq!(with_nul.status, unknown.status, "{}", with_nul.body);
}

/// Found in the third review: `migrate --force` replaced the rows under a server that was
/// using the target. It is refused while devicegate connections are open there.
#[test]
fn migrate_refuses_a_target_that_servers_are_using() {
    if !on_postgres() {
        return; // A SQLite file's users cannot be seen; the README says to stop them.
    }
    let app = crate::support::TestApp::spawn();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    drop(devicegate::store::Store::open(&source).unwrap());
    let (code, _, err) = run(&source, &["user", "add", "ann"], Some("first-password\n"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        &dir.path().join("unused.db"),
        &[
            "migrate",
            "--from",
            source.to_str().unwrap(),
            "--to",
            app.db_path.to_str().unwrap(),
            "--force",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("devicegate connections are open on the target"),
        "{err}"
    );
    // Nothing was replaced: the server's own built-in client is still there.
    assert_eq!(
        app.post_form("/oauth/device_authorize", &[("client_id", "guest")])
            .status,
        200
    );
}
