//! The binary itself: admin commands against a database file, and `serve` with signals.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    free_port, new_database, on_postgres, serve_binary, sql_text, test_database, TestApp, TestDb,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_devicegate");

pub fn run(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = crate::support::devicegate()
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // A command that refuses its arguments exits before reading stdin: the pipe is then
        // closed (EPIPE), which is no failure of the test.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops a `serve` child with SIGTERM: (stdout, stderr).
pub fn stop(child: std::process::Child) -> (String, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs in through the real form on a separately started server; the response status.
pub fn sign_in_status(base: &str, username: &str, password: &str) -> u16 {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let page = agent.get(&format!("{base}/oauth/device")).call().unwrap();
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = crate::support::csrf_token(&page.into_string().unwrap());
    let login = agent
        .post(&format!("{base}/login"))
        .set("Cookie", &cookie)
        .send_form(&[
            ("csrf_token", &csrf),
            ("username", username),
            ("password", password),
        ]);
    match login {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn help_lists_every_serve_option_with_defaults() {
    let out = crate::support::devicegate()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--db",
        "--listen",
        "--issuer",
        "--workers",
        "--device-code-ttl",
        "--poll-interval",
        "--access-token-ttl",
        "--refresh-token-ttl",
        "--log-level",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for default in [
        "127.0.0.1:8080",
        "devicegate.db",
        "600",
        "3600",
        "2592000",
        "DEVICEGATE_DB",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
    let top = crate::support::devicegate().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("serve"));
}

#[test]
fn client_add_prints_id_and_secret_once_and_stores_only_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, out, _) = run(
        &db,
        &[
            "client",
            "add",
            "My CLI",
            "--confidential",
            "--scope",
            "read",
        ],
        None,
    );
    assert_eq!(code, 0);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap();
    assert!(id.starts_with("my-cli-"));
    let hash = devicegate::secrets::hash_secret(secret);
    let stored = TestDb::open(&db).query_string(&format!(
        "SELECT secret_hash FROM clients WHERE client_id = {}",
        sql_text(id)
    ));
    assert_eq!(stored, hash);
    if !on_postgres() {
        // Nowhere in the file either (PostgreSQL: the row above is where it would be).
        let bytes = std::fs::read(&db).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret));
        assert!(text.contains(&hash));
    }
    let (code, out, _) = run(&db, &["client", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains(id) && out.contains("confidential") && out.contains("guest"));
    // A public client gets no secret.
    let (_, out, _) = run(&db, &["client", "add", "Kiosk"], None);
    assert!(!out.contains("client_secret"));
    let (code, _, err) = run(
        &db,
        &["client", "add", "x", "--grant-types", "password"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("unknown grant type"));
}

#[test]
fn user_add_reads_the_password_from_stdin_and_hashes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, _, err) = run(&db, &["user", "add", "frank"], Some("hunter2hunter2\n"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&db, &["user", "add", "frank"], Some("hunter2hunter2\n"));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"));
    let (code, _, _) = run(&db, &["user", "add", "short"], Some("abc\n"));
    assert_eq!(code, 1);
    let (_, out, _) = run(&db, &["user", "list"], None);
    assert!(out.contains("frank"));
    let store = devicegate::store::Store::open(&db).unwrap();
    let user = store.find_user_by_name("frank").unwrap().unwrap();
    assert!(user.password_hash.starts_with("$argon2id$"));
    let pool = devicegate::passwords::PasswordPool::new(1, std::time::Duration::from_secs(5), 1);
    assert!(pool
        .verify("hunter2hunter2", Some(&user.password_hash))
        .unwrap());
}

#[test]
fn approve_and_deny_from_the_terminal_reach_the_polling_device() {
    let app = TestApp::spawn();
    let (code, _, _) = run(
        &app.db_path,
        &["user", "add", "gina"],
        Some("password123\n"),
    );
    assert_eq!(code, 0);
    let codes = app.device_authorize("guest");
    // Lower case, no dash: the CLI normalises like the page does.
    let typed = codes.user_code.replace('-', "").to_lowercase();
    let (code, out, err) = run(&app.db_path, &["approve", &typed, "--user", "gina"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("approved"));
    assert_eq!(app.poll("guest", &codes.device_code).status, 200);
    let (code, _, err) = run(&app.db_path, &["approve", &typed, "--user", "gina"], None);
    assert_eq!(code, 1);
    assert!(err.contains("already"));

    let denied = app.device_authorize("guest");
    let (code, _, _) = run(&app.db_path, &["deny", &denied.user_code], None);
    assert_eq!(code, 0);
    let resp = app.poll("guest", &denied.device_code);
    assert_eq!(resp.json()["error"], "access_denied");

    let (code, _, err) = run(
        &app.db_path,
        &["approve", "BCDF-GHJK", "--user", "nobody"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("no active user"));
    let (code, _, err) = run(&app.db_path, &["deny", "0000-0000"], None);
    assert_eq!(code, 1);
    assert!(err.contains("never contains"));
}

#[test]
fn invalid_configuration_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let (code, _, err) = run(
        &db,
        &[
            "serve",
            "--listen",
            "nowhere",
            "--workers",
            "0",
            "--issuer",
            "http://10.0.0.1",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--listen") && err.contains("--workers") && err.contains("--issuer"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn serve_creates_guest_logs_requests_without_secrets_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let child = serve_binary(&db, &listen, &[], Stdio::piped());
    let base = format!("http://{listen}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let body: serde_json::Value = serde_json::from_str(
        &agent
            .post(&format!("{base}/oauth/device_authorize"))
            .send_form(&[("client_id", "guest")])
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let device_code = body["device_code"].as_str().unwrap().to_string();
    let user_code = body["user_code"].as_str().unwrap().to_string();
    let _ = agent.post(&format!("{base}/oauth/token")).send_form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", "guest"),
        ("device_code", &device_code),
    ]);
    let _ = agent
        .get(&format!(
            "{base}/auth/v1/oauth/device/{user_code}?user_code={user_code}"
        ))
        .call();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "clean exit on SIGTERM");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("POST /oauth/device_authorize 200"), "{log}");
    assert!(log.contains("POST /oauth/token 400"), "{log}");
    assert!(!log.contains(&device_code));
    assert!(!log.contains(&user_code), "full user code logged:\n{log}");
    assert!(!log.contains(&user_code.replace('-', "")));
    assert!(!log.contains("user_code="), "query strings are not logged");
    assert!(
        log.contains("guest"),
        "first start mentions the built-in client"
    );
}

#[test]
fn grant_list_and_revoke_from_the_terminal() {
    let app = TestApp::spawn();
    let alice = app.login("alice");
    app.login("bob");
    let (code, out, _) = run(&app.db_path, &["grant", "list", "--user", "alice"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("alice") && out.contains("guest"));
    let (_, all, _) = run(&app.db_path, &["grant", "list"], None);
    assert_eq!(all.lines().count(), 2);
    let id = out.split('\t').next().unwrap();
    let (code, out, _) = run(&app.db_path, &["grant", "revoke", id], None);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"));
    assert_eq!(
        app.userinfo(alice["access_token"].as_str().unwrap()).status,
        401
    );
    let (code, _, err) = run(&app.db_path, &["grant", "revoke", id], None);
    assert_eq!(code, 1);
    assert!(err.contains("no active grant"));
}

#[test]
fn the_database_is_in_wal_mode_with_its_schema_version_recorded() {
    let app = TestApp::spawn();
    // WAL and `user_version` are SQLite's; the foreign keys below hold on both.
    if !on_postgres() {
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        // 2: refresh_tokens.rotated_from and .grace_retries (issue #12, refresh grace);
        // 3: OpenID Connect's columns (issue #14).
        assert_eq!(version, 3);
    }
    // Foreign keys are on in the server's connections: removing a user takes their grants.
    app.login("alice");
    assert_eq!(app.count_rows("grants"), 1);
    assert!(app.store().delete_user("alice").unwrap());
    assert_eq!(app.count_rows("grants"), 0);
}

#[cfg(unix)]
#[test]
fn sigint_lets_an_in_flight_request_finish_then_exits_0() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let child = serve_binary(&db, &listen, &[], Stdio::null());
    // A request whose body is still arriving when the signal comes.
    let body = "client_id=guest";
    let mut stream = std::net::TcpStream::connect(&listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nclient_",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"id=guest").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("device_code"));
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(0));
}
