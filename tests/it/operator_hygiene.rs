//! Operator hygiene (issue #12, item 9): no terminal escapes from devices in tables or the
//! log.

use std::process::Stdio;

use crate::cli::run;
use crate::support::{free_port, raw_http, serve_binary, TestApp};

/// A user agent that clears the screen, retitles the terminal, recolours and backspaces.
const HOSTILE_AGENT: &str = "evil\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x08\x7f";

#[test]
fn pending_shows_a_devices_user_agent_without_terminal_escapes() {
    let app = TestApp::spawn();
    let addr = app.base.trim_start_matches("http://");
    let body = "client_id=guest";
    let response = raw_http(
        addr,
        format!(
            "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             User-Agent: {HOSTILE_AGENT}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for args in [&["pending"][..], &["pending", "--json"]] {
        let (code, out, err) = run(&app.db_path, args, None);
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.bytes()
                .any(|b| b.is_ascii_control() && b != b'\n' && b != b'\t'),
            "{args:?} printed control bytes: {out:?}"
        );
        assert!(out.contains("evil"), "{out}");
    }
    // The JSON still carries the exact value, escaped the JSON way.
    let (_, json, _) = run(&app.db_path, &["pending", "--json"], None);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["device_user_agent"], HOSTILE_AGENT);
    let (_, table, _) = run(&app.db_path, &["pending"], None);
    assert!(
        table.contains("evil\\x1b[2J\\x1b]0;pwned\\x07\\x1b[31mred\\x08\\x7f"),
        "{table}"
    );
}

#[test]
fn request_log_lines_escape_control_bytes_in_the_path_and_the_method() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
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
    assert!(log.contains("GET /x\\x1b[2J\\x1b[31mred\\x07 "), "{log}");
    assert!(log.contains("G\\x1b[2JET /healthz "), "{log}");
}
