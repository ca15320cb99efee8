//! Bad input and bad clients: nothing panics, nothing 5xx's, the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::TestApp;

fn raw(app: &TestApp, bytes: &[u8]) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_server_keeps_accepting_after_being_idle_longer_than_the_io_timeout() {
    // The listener's read timeout also bounds accept(); the heartbeat keeps it awake.
    let app = TestApp::spawn_with(|c| c.io_timeout = 1);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(app.get("/healthz").status, 200);
}

#[test]
fn idle_connections_are_closed_after_the_io_timeout() {
    let app = TestApp::spawn_with(|c| c.io_timeout = 1);
    let addr = app.base.trim_start_matches("http://");
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the server's timeout"
    );
}

#[test]
fn a_slow_body_sender_is_cut_off_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with(|c| {
        c.io_timeout = 1;
        c.workers = 2;
    });
    let addr = app.base.trim_start_matches("http://").to_string();
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type")
            .unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(app.get("/healthz").status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "served while the slow sender stalls"
    );
    let answer = slow.join().unwrap();
    // The stalled request gets a 4xx, or the connection is simply closed.
    if let Some(status) = status_of(&answer) {
        assert!((400..500).contains(&status), "{answer}");
    }
}

#[test]
fn idle_connections_do_not_stop_other_clients() {
    let app = TestApp::spawn_with(|c| c.workers = 2);
    let addr = app.base.trim_start_matches("http://");
    // 300 here (the test process shares its file descriptors with the in-process server);
    // the benchmark holds 1,000.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(app.device_authorize("guest").device_code.len(), 43);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(idle);
}

#[test]
fn oversized_and_garbage_requests_get_4xx_or_a_closed_connection() {
    let app = TestApp::spawn();
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    for request in [
        huge_header.into_bytes(),
        b"\x00\x01\x02garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n".to_vec(),
        b"GET /%ff%fe/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /oauth/device?user_code=%ZZ HTTP/1.1\r\nHost: x\r\nCookie: dg_session=\xff\xfe\r\n\r\n".to_vec(),
    ] {
        let answer = raw(&app, &request);
        if let Some(status) = status_of(&answer) {
            assert!((200..500).contains(&status), "{status}: {answer:.200}");
        }
    }
    assert_eq!(app.get("/healthz").status, 200);
}
