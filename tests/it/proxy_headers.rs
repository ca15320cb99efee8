//! `--trust-proxy`: every `X-Forwarded-For` / `X-Forwarded-Proto` line counts and the
//! rightmost entry wins (issue #12, item 7), and the start warns about proxy set-ups that
//! defeat per-address rules. Raw sockets: ureq merges repeated header lines.

use std::process::Stdio;

use serde_json::Value;

use crate::cli::run;
use crate::support::{
    csrf_token, free_port, raw_body, raw_http, wait_until_healthy, Browser, TestApp,
};

fn addr(app: &TestApp) -> &str {
    app.base.trim_start_matches("http://")
}

/// `POST /oauth/device_authorize` for `guest` with extra raw header lines; the user code.
fn authorize_with(app: &TestApp, header_lines: &str) -> String {
    let body = "client_id=guest";
    let response = raw_http(
        addr(app),
        format!(
            "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             {header_lines}Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json: Value = serde_json::from_str(raw_body(&response)).unwrap();
    json["user_code"].as_str().unwrap().to_string()
}

/// The device address `devicegate pending --json` shows for a user code.
fn recorded_device_ip(app: &TestApp, user_code: &str) -> String {
    let (code, out, err) = run(&app.db_path, &["pending", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let pending: Value = serde_json::from_str(&out).unwrap();
    let row = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["user_code"] == user_code)
        .unwrap_or_else(|| panic!("{user_code} not pending: {out}"));
    row["device_ip"].as_str().unwrap().to_string()
}

#[test]
fn the_proxys_appended_forwarded_for_line_wins_over_the_clients_own() {
    let app = TestApp::spawn_with(|c| c.trust_proxy = true);
    app.add_user("alice");
    // The client claims a loopback address in its own line; the proxy (HAProxy style)
    // appends a line with the address it saw.
    let user_code = authorize_with(
        &app,
        "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-For: 198.51.100.7\r\n",
    );
    assert_eq!(recorded_device_ip(&app, &user_code), "198.51.100.7");
    // So the consent page, seen from this (loopback) browser, still says the device is
    // elsewhere: the forged first line does not silence the warning.
    let browser = Browser::signed_in(&app, "alice");
    let consent = browser.confirm_code(&format!("/oauth/device?user_code={user_code}"));
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("198.51.100.7"), "{}", consent.body);
    assert!(
        consent.body.contains("different network"),
        "{}",
        consent.body
    );
    // Lists in several lines: still the last entry of the last line.
    let user_code = authorize_with(
        &app,
        "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-For: 192.0.2.1, 203.0.113.44\r\n",
    );
    assert_eq!(recorded_device_ip(&app, &user_code), "203.0.113.44");
}

#[test]
fn a_malformed_last_forwarded_for_entry_falls_back_to_the_socket_address() {
    let app = TestApp::spawn_with(|c| c.trust_proxy = true);
    for last in ["not-an-address", "", "203.0.113.9,"] {
        let user_code = authorize_with(
            &app,
            &format!("X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-For: {last}\r\n"),
        );
        assert_eq!(
            recorded_device_ip(&app, &user_code),
            "127.0.0.1",
            "last line {last:?}: the client's earlier line must not count"
        );
    }
}

/// Signs in through a raw socket with the given extra header lines; the `Set-Cookie` line.
fn sign_in_cookie(app: &TestApp, header_lines: &str) -> String {
    let browser = Browser::new(app);
    let page = browser.get("/oauth/device");
    let csrf = csrf_token(&page.body);
    let cookie = browser
        .cookie_header()
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let body = serde_urlencoded::to_string([
        ("csrf_token", csrf.as_str()),
        ("username", "alice"),
        ("password", "password123"),
        ("next", "/oauth/device"),
    ])
    .unwrap();
    let response = raw_http(
        addr(app),
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{cookie}{header_lines}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {response}"))
        .to_string()
}

#[test]
fn the_last_forwarded_proto_line_decides_secure_cookies() {
    let app = TestApp::spawn_with(|c| c.trust_proxy = true);
    app.add_user("alice");
    let cookie = sign_in_cookie(
        &app,
        "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n",
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    let cookie = sign_in_cookie(
        &app,
        "X-Forwarded-Proto: http\r\nX-Forwarded-Proto: https\r\n",
    );
    assert!(cookie.contains("Secure"), "{cookie}");
    // A malformed last line is not https, whatever came before.
    let cookie = sign_in_cookie(&app, "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: \r\n");
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// Starts the binary with `args`, waits for it on 127.0.0.1:`port`, stops it and returns
/// its log (stderr).
fn start_log(port: u16, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::test_database(dir.path());
    let mut child = crate::support::devicegate()
        .arg("--db")
        .arg(&db)
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_healthy(&format!("http://127.0.0.1:{port}"));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_warns_about_proxy_setups_that_defeat_per_address_rules() {
    // An https issuer in front of a loopback listener means a proxy: without
    // --trust-proxy every person would be the proxy's address.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = start_log(
        port,
        &["--listen", &listen, "--issuer", "https://auth.example.com"],
    );
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(
        warning.contains("every person would share one address")
            && warning.contains("pass --trust-proxy"),
        "{warning}"
    );

    // --trust-proxy on every interface: anyone reaching the port forges the address.
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let log = start_log(
        port,
        &[
            "--listen",
            &listen,
            "--issuer",
            "https://auth.example.com",
            "--trust-proxy",
        ],
    );
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(
        warning.contains(&format!(
            "anyone who can reach {listen} can forge X-Forwarded-For"
        )),
        "{warning}"
    );

    // The intended set-up, loopback behind a proxy with --trust-proxy: no warning.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = start_log(
        port,
        &[
            "--listen",
            &listen,
            "--issuer",
            "https://auth.example.com",
            "--trust-proxy",
        ],
    );
    assert!(!log.contains("WARN"), "{log}");
}
