//! Running it for real: first-run admin, a reverse proxy in front, metrics.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::cli::{sign_in_status, stop};
use crate::support::{free_port, serve_binary, Browser, TestApp};

/// Starts `devicegate serve` on `db`, waits for /healthz, returns the child and base URL.
fn serve(db: &std::path::Path) -> (std::process::Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = serve_binary(db, &listen, &[], Stdio::piped());
    (child, format!("http://{listen}"))
}

#[test]
fn first_start_creates_admin_and_leaves_its_password_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let (child, base) = serve(&db);
    // stdout is a pipe here, not a terminal: the password is in the file beside the
    // database (issue #13), and the log names only the file.
    let (stdout, stderr) = stop(child);
    let file = dir.path().join("d.db.admin-password");
    let password = std::fs::read_to_string(&file)
        .unwrap()
        .trim_end()
        .to_string();
    assert!(password.len() >= 16);
    assert!(
        !stderr.contains(&password) && !stdout.contains(&password),
        "the password must not reach the log"
    );
    assert!(stderr.contains(&format!("{base}/oauth/device")), "{stderr}");
    std::fs::remove_file(&file).unwrap();
    let (child, base) = serve(&db);
    let status = sign_in_status(&base, "admin", &password);
    assert_eq!(status, 303, "admin signs in with the printed password");
    let (stdout, _) = stop(child);
    assert!(
        !stdout.contains("Password:"),
        "later starts print nothing: {stdout}"
    );
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_and_scheme_count() {
    let app = TestApp::spawn_with(|c| c.trust_proxy = true);
    app.add_user("alice");
    let resp = app.post_form_with(
        "/oauth/device_authorize",
        &[("client_id", "guest")],
        &[("X-Forwarded-For", "10.1.1.1, 203.0.113.77")],
    );
    let user_code = resp.json()["user_code"].as_str().unwrap().to_string();
    let browser = Browser::signed_in(&app, "alice");
    let consent = browser.enter_code(&user_code);
    assert!(consent.body.contains("203.0.113.77"));
    assert!(consent.body.contains("different network"));
    let https = app.request(
        "GET",
        "/oauth/device",
        &[("X-Forwarded-Proto", "https")],
        None,
    );
    assert!(https.header("set-cookie").unwrap().contains("Secure"));
}

#[test]
fn without_trust_proxy_forwarded_headers_are_ignored() {
    let app = TestApp::spawn();
    let resp = app.post_form_with(
        "/oauth/device_authorize",
        &[("client_id", "guest")],
        &[("X-Forwarded-For", "203.0.113.77")],
    );
    assert_eq!(resp.status, 200);
    let pending = app
        .store()
        .list_pending_device_codes(app.clock.now().secs())
        .unwrap();
    assert_eq!(pending[0].device_ip, "127.0.0.1");
    let https = app.request(
        "GET",
        "/oauth/device",
        &[("X-Forwarded-Proto", "https")],
        None,
    );
    assert!(!https.header("set-cookie").unwrap().contains("Secure"));
}

#[test]
fn metrics_are_off_by_default_and_token_protected_when_on() {
    let off = TestApp::spawn();
    assert_eq!(off.get("/metrics").status, 404);
    let token = "a-long-metrics-token";
    let app = TestApp::spawn_with(|c| c.metrics_token = Some(token.into()));
    let codes = app.device_authorize("guest");
    app.poll("guest", &codes.device_code);
    app.poll("guest", &codes.device_code); // slow_down
    app.login("alice");
    assert_eq!(app.get("/metrics").status, 401);
    let wrong = app.request("GET", "/metrics", &[("Authorization", "Bearer nope")], None);
    assert_eq!(wrong.status, 401);
    let auth = format!("Bearer {token}");
    let resp = app.request("GET", "/metrics", &[("Authorization", &auth)], None);
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "devicegate_http_requests_total{route=\"/oauth/token\",status=\"400\"}",
        "devicegate_http_requests_total{route=\"/oauth/device_authorize\",status=\"200\"}",
        "devicegate_http_request_duration_seconds_bucket{le=\"+Inf\"}",
        "devicegate_device_codes{state=\"pending\"} 1",
        "devicegate_device_codes{state=\"redeemed\"} 1",
        "devicegate_tokens_issued_total",
        "devicegate_slow_down_total",
        "devicegate_lockouts_total",
    ] {
        assert!(
            resp.body.contains(line),
            "missing {line} in:\n{}",
            resp.body
        );
    }
}

#[test]
fn login_command_runs_the_device_flow_and_saves_tokens_privately() {
    let app = TestApp::spawn_with(|c| c.poll_interval = 1);
    app.add_user("alice");
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::support::devicegate()
        .args(["login", "--server", &app.base, "--scope", "read"])
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let user_code = loop {
        let line = lines.next().expect("login ended early").unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(code) = line.trim().strip_prefix("and enter the code") {
            break code.trim().to_string();
        }
    };
    assert!(printed.contains(&format!("{}/oauth/device", app.base)));
    // The QR code (half blocks) follows.
    let qr: Vec<String> = (0..5).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        qr.iter()
            .any(|l| l.contains('█') || l.contains('▀') || l.contains('▄')),
        "{qr:?}"
    );
    let (code, _, err) = crate::cli::run(
        &app.db_path,
        &["approve", &user_code, "--user", "alice"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    let file = home.path().join("devicegate/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entry = &saved["servers"][&app.base];
    assert_eq!(entry["tokens"]["scope"], "read");

    // `token` prints a working access token…
    let token = |args: &[&str]| {
        let out = crate::support::devicegate()
            .args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let (code, access) = token(&["token"]);
    assert_eq!(code, Some(0));
    assert_eq!(access, entry["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(app.userinfo(&access).status, 200);
    // …and refreshes first when it is about to expire.
    let mut aged = saved.clone();
    aged["servers"][&app.base]["tokens"]["expires_at"] = 0.into();
    std::fs::write(&file, serde_json::to_vec(&aged).unwrap()).unwrap();
    let (code, renewed) = token(&["token", "--server", &app.base]);
    assert_eq!(code, Some(0));
    assert_ne!(renewed, access);
    assert_eq!(app.userinfo(&renewed).status, 200);
    // `logout` revokes at the server and forgets.
    let (code, _) = token(&["logout"]);
    assert_eq!(code, Some(0));
    assert_eq!(app.userinfo(&renewed).status, 401);
    let (code, _) = token(&["token"]);
    assert_eq!(code, Some(1));
}

#[test]
fn login_command_stops_with_a_clear_message_when_denied() {
    let app = TestApp::spawn_with(|c| c.poll_interval = 1);
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::support::devicegate()
        .args(["login", "--server", &app.base])
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let user_code = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(code) = line.trim().strip_prefix("and enter the code") {
            break code.trim().to_string();
        }
    };
    assert_eq!(
        crate::cli::run(&app.db_path, &["deny", &user_code], None).0,
        0
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"));
}

#[test]
fn login_command_refuses_plain_http_to_a_remote_host() {
    let out = crate::support::devicegate()
        .args(["login", "--server", "http://192.0.2.1:8080"])
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain http"));
}

#[cfg(unix)]
#[test]
fn login_command_exits_cleanly_on_ctrl_c() {
    let app = TestApp::spawn();
    let home = tempfile::tempdir().unwrap();
    let mut child = crate::support::devicegate()
        .args(["login", "--server", &app.base])
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next().unwrap().unwrap().contains("enter the code") {}
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    assert!(!home.path().join("devicegate/credentials.json").exists());
}
