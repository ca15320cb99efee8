//! Operator hygiene (issue #12, item 9): private backups that never follow a symlink, a
//! credentials file written through a fresh private temp file, no terminal escapes from
//! devices in tables or the log, and admin commands that refuse a missing database.
#![cfg(unix)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use crate::cli::run;
use crate::support::{free_port, raw_http, serve_binary, TestApp};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn backup_is_created_private() {
    // `backup` writes a SQLite file; on PostgreSQL it points to pg_dump instead.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    app.login("alice");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let (code, _, err) = run(&app.db_path, &["backup", copy.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&copy), 0o600, "password hashes inside");
    // Replaced with --force: private again. No scratch files are left beside it.
    let (code, _, err) = run(
        &app.db_path,
        &["backup", copy.to_str().unwrap(), "--force"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&copy), 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["copy.db"]);
    let (code, out, _) = run(&copy, &["user", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("alice"), "{out}");
}

#[test]
fn backup_refuses_a_dangling_symlink_and_creates_nothing_where_it_points() {
    // `backup` writes a SQLite file; on PostgreSQL it points to pg_dump instead.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.db");
    let copy = dir.path().join("copy.db");
    symlink(&elsewhere, &copy).unwrap();
    let (code, _, err) = run(&app.db_path, &["backup", copy.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("exists") || err.contains("symbolic link"),
        "{err}"
    );
    assert!(!elsewhere.exists(), "the backup followed the symlink");
    assert!(std::fs::symlink_metadata(&copy)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn backup_refuses_an_existing_file_and_leaves_it_untouched() {
    // `backup` writes a SQLite file; on PostgreSQL it points to pg_dump instead.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::write(&copy, b"precious").unwrap();
    let (code, out, err) = run(&app.db_path, &["backup", copy.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err.trim(),
        format!(
            "error: {} exists; pass --force to replace it",
            copy.display()
        )
    );
    assert_eq!(std::fs::read(&copy).unwrap(), b"precious");
}

#[test]
fn admin_commands_refuse_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x").join("missing.db");
    std::fs::create_dir(dir.path().join("x")).unwrap();
    let target = dir.path().join("copy.db");
    let commands: [&[&str]; 6] = [
        &["user", "add", "bob"],
        &["user", "list"],
        &["client", "list"],
        &["grant", "list"],
        &["pending"],
        &["backup", target.to_str().unwrap()],
    ];
    for args in commands {
        let (code, out, err) = run(&missing, args, None);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert_eq!(
            err.trim(),
            format!(
                "error: no database at {}; pass --db or set DEVICEGATE_DB",
                missing.display()
            ),
            "{args:?}"
        );
    }
    // Nothing was created: no database, no WAL, no backup.
    assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 0);
    assert!(!target.exists());
    // The environment variable is the other way to name it.
    let out = crate::support::devicegate()
        .args(["user", "list"])
        .env("DEVICEGATE_DB", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
    assert!(!missing.exists());
}

#[test]
fn credentials_are_written_through_a_fresh_private_temp_file() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("devicegate");
    std::fs::create_dir(&config).unwrap();
    let file = config.join("credentials.json");
    // Two saved logins; the servers have no revocation endpoint, so `logout` only forgets
    // (and rewrites the file) without any network.
    let entry = |token: &str| {
        serde_json::json!({
            "client_id": "guest",
            "endpoints": {
                "device_authorization_endpoint": "http://127.0.0.1:9/oauth/device_authorize",
                "token_endpoint": "http://127.0.0.1:9/oauth/token"
            },
            "tokens": {"access_token": token, "expires_at": 0}
        })
    };
    let saved = serde_json::json!({"servers": {
        "http://127.0.0.1:9": entry("first-token"),
        "http://127.0.0.1:10": entry("second-token"),
    }});
    std::fs::write(&file, serde_json::to_vec(&saved).unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Someone planted symlinks where a fixed temporary name would go.
    let victims = tempfile::tempdir().unwrap();
    let planted = [
        "credentials.json.tmp",
        "credentials.tmp",
        ".credentials.json.tmp",
        "credentials.json~",
        ".credentials.json",
        "credentials.json.new",
    ];
    for (n, name) in planted.iter().enumerate() {
        symlink(
            victims.path().join(format!("victim-{n}")),
            config.join(name),
        )
        .unwrap();
    }
    let out = crate::support::devicegate()
        .args(["logout", "--server", "http://127.0.0.1:9"])
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(victims.path()).unwrap().count(),
        0,
        "a planted symlink was followed"
    );
    for name in planted {
        assert!(std::fs::symlink_metadata(config.join(name))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let now: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(now["servers"].get("http://127.0.0.1:9").is_none());
    assert_eq!(
        now["servers"]["http://127.0.0.1:10"]["tokens"]["access_token"],
        "second-token"
    );
    // Nothing else was left behind: the planted links, the file itself and the private lock
    // file (issue #13; it stays, or two processes could lock two different files).
    let lock = std::fs::symlink_metadata(config.join("credentials.lock")).unwrap();
    assert!(lock.file_type().is_file());
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_dir(&config).unwrap().count(),
        planted.len() + 2
    );
}

/// A user agent that clears the screen, retitles the terminal, recolours and backspaces.
const HOSTILE_AGENT: &str = "evil\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x08\x7f";
/// What still passes the HTTP layer (header values are opaque bytes beyond ASCII): a C1
/// control sequence introducer (a CSI to 8-bit terminals) and a right-to-left override that
/// would reverse what follows on screen.
const HOSTILE_UTF8_AGENT: &str = "evil\u{9b}2J\u{9d}0;pwned\u{202e}der";

fn authorize_with_agent(app: &TestApp, agent: &str) -> String {
    let addr = app.base.trim_start_matches("http://");
    let body = "client_id=guest";
    raw_http(
        addr,
        format!(
            "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             User-Agent: {agent}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn pending_shows_a_devices_user_agent_without_terminal_escapes() {
    let app = TestApp::spawn();
    // C0 controls never get past the HTTP layer (RFC 9110 §5.5: not in a field value).
    let refused = authorize_with_agent(&app, HOSTILE_AGENT);
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let response = authorize_with_agent(&app, HOSTILE_UTF8_AGENT);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for args in [&["pending"][..], &["pending", "--json"]] {
        let (code, out, err) = run(&app.db_path, args, None);
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.chars()
                .any(|c| (c.is_control() && c != '\n' && c != '\t')
                    || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{args:?} printed control characters: {out:?}"
        );
        assert!(out.contains("evil"), "{out}");
    }
    // The JSON still carries the exact value, escaped the JSON way.
    let (_, json, _) = run(&app.db_path, &["pending", "--json"], None);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["device_user_agent"], HOSTILE_UTF8_AGENT);
    let (_, table, _) = run(&app.db_path, &["pending"], None);
    assert!(
        table.contains("evil\\u{9b}2J\\u{9d}0;pwned\\u{202e}der"),
        "{table}"
    );
}

#[test]
fn request_log_lines_escape_control_bytes_in_the_path_and_the_method() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::test_database(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = serve_binary(&db, &listen, &[], Stdio::piped());
    let path_response = raw_http(
        &listen,
        b"GET /x\x1b[2J\x1b[31mred\x07 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(path_response.starts_with("HTTP/1.1 4"), "{path_response}");
    let method_response = raw_http(
        &listen,
        b"G\x1b[2JET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        method_response.starts_with("HTTP/1.1 "),
        "{method_response}"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.stderr
            .iter()
            .any(|b| b.is_ascii_control() && *b != b'\n'),
        "control bytes in the log: {log:?}"
    );
    // Both are refused at the HTTP layer (a request line is visible ASCII), and the
    // refusals are logged, without the bytes.
    assert!(path_response.starts_with("HTTP/1.1 400"), "{path_response}");
    assert!(
        method_response.starts_with("HTTP/1.1 400"),
        "{method_response}"
    );
    assert!(log.matches("400 ").count() >= 2, "{log}");
}
