//! CVE-2026-66753 (response splitting): whatever a client sends, nothing of it reaches a
//! response head as a line of its own. Each test talks over a raw socket and reads the raw
//! head back, since an HTTP client would hide a split head (or refuse it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{csrf_token, Browser, TestApp};

/// The raw head lines (status line first) and body of the answer to `request`, which asks
/// for `Connection: close`.
fn exchange(app: &TestApp, request: &str) -> (Vec<String>, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in: {raw:?}"));
    (
        head.split("\r\n").map(str::to_string).collect(),
        body.to_string(),
    )
}

/// One head, each line after the status line a `Name: value` with a token name, none of
/// them put there by the client.
fn assert_not_split(head: &[String]) {
    assert!(head[0].starts_with("HTTP/1.1 "), "{head:?}");
    for line in &head[1..] {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a header line: {line:?} in {head:?}"));
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "{head:?}"
        );
        assert!(!name.eq_ignore_ascii_case("X-Injected"), "{head:?}");
        assert!(!value.starts_with("injected"), "{head:?}");
    }
}

fn values<'a>(head: &'a [String], name: &str) -> Vec<&'a str> {
    head[1..]
        .iter()
        .filter_map(|line| line.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

fn status(head: &[String]) -> u16 {
    head[0].split(' ').nth(1).unwrap().parse().unwrap()
}

/// Signs `alice` in through the form over a raw socket, with `next` as the redirect target.
fn sign_in_with_next(app: &TestApp, next: &str) -> Vec<String> {
    let browser = Browser::new(app);
    let csrf = csrf_token(&browser.get("/oauth/device").body);
    let cookie = browser.cookie_header().unwrap();
    let body = serde_urlencoded::to_string([
        ("csrf_token", csrf.as_str()),
        ("username", "alice"),
        ("password", "password123"),
        ("next", next),
    ])
    .unwrap();
    let (head, _) = exchange(
        app,
        &format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    head
}

#[test]
fn a_sign_in_target_with_crlf_adds_no_header() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let head = sign_in_with_next(
        &app,
        "/oauth/device\r\nSet-Cookie: injected=1\r\nX-Injected: 1\r\n\r\n<h1>forged</h1>",
    );
    assert_not_split(&head);
    assert_eq!(status(&head), 303, "{head:?}");
    // The target is refused as a whole; the default one is used.
    assert_eq!(values(&head, "Location"), ["/oauth/device"]);
    let cookies = values(&head, "Set-Cookie");
    assert_eq!(cookies.len(), 1, "{head:?}");
    assert!(cookies[0].starts_with("dg_session="), "{head:?}");
}

#[test]
fn a_non_ascii_sign_in_target_keeps_its_location_and_cookie() {
    // tiny_http cannot write non-ASCII; this Location used to vanish silently, leaving a
    // 303 that led nowhere.
    let app = TestApp::spawn();
    app.add_user("alice");
    let head = sign_in_with_next(&app, "/oauth/device?user_code=caf\u{e9}");
    assert_not_split(&head);
    assert_eq!(status(&head), 303, "{head:?}");
    assert_eq!(
        values(&head, "Location"),
        ["/oauth/device?user_code=caf%C3%A9"]
    );
    assert_eq!(values(&head, "Set-Cookie").len(), 1, "{head:?}");
}

#[test]
fn a_user_code_path_with_encoded_crlf_stays_encoded_through_sign_in() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let path = "/oauth/device/BCDF%0D%0AX-Injected:%201%0D%0ASet-Cookie:%20injected=1";
    let (head, body) = exchange(
        &app,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    );
    assert_not_split(&head);
    assert_eq!(status(&head), 200, "{head:?}");
    // The sign-in form carries the path on, as it came.
    assert!(body.contains(path), "{body}");

    let head = sign_in_with_next(&app, path);
    assert_not_split(&head);
    assert_eq!(status(&head), 303, "{head:?}");
    assert_eq!(values(&head, "Location"), [path]);
}

#[test]
fn a_query_with_crlf_leaves_the_verification_page_head_alone() {
    let app = TestApp::spawn();
    let (head, _) = exchange(
        &app,
        "GET /oauth/device?user_code=%0D%0AX-Injected:%201&next=%0D%0ASet-Cookie:%20injected=1 \
         HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_not_split(&head);
    assert_eq!(status(&head), 200, "{head:?}");
}

#[test]
fn a_wrong_method_with_crlf_in_the_query_gets_one_allow_header() {
    let app = TestApp::spawn();
    let (head, body) = exchange(
        &app,
        "DELETE /oauth/token?x=%0D%0AX-Injected:%201%0D%0AAllow:%20DELETE HTTP/1.1\r\n\
         Host: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_not_split(&head);
    assert_eq!(status(&head), 405, "{head:?}");
    assert_eq!(values(&head, "Allow"), ["POST"]);
    assert_eq!(values(&head, "Content-Type"), ["application/json"]);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "invalid_request");
}
