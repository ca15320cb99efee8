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
    // The listener's read timeout also bounds accept(), whose timing out must not end the
    // accept loop (it did in tiny_http 0.12).
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
    // All from 127.0.0.1: no per-address limit here (hostile_http.rs tests that one).
    let app = TestApp::spawn_with(|c| {
        c.workers = 2;
        c.max_connections_per_ip = 0;
    });
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

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status line.
fn read_response(reader: &mut std::io::BufReader<TcpStream>) -> String {
    use std::io::BufRead;
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status.trim_end().to_string()
}

#[test]
fn a_keep_alive_connection_is_served_again_after_waiting_idle() {
    // Between requests a quiet connection leaves its thread and waits in the poller; a
    // request that arrives later, or two pipelined at once, are still answered in order.
    let app = TestApp::spawn();
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let missing = b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n";
    for pause_ms in [0, 200, 600] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        stream.write_all(get).unwrap();
        assert_eq!(read_response(&mut reader), "HTTP/1.1 200 OK");
    }
    std::thread::sleep(Duration::from_millis(200));
    stream
        .write_all(&[&get[..], &missing[..]].concat())
        .unwrap();
    assert_eq!(read_response(&mut reader), "HTTP/1.1 200 OK");
    assert_eq!(read_response(&mut reader), "HTTP/1.1 404 Not Found");
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn idle_connections_do_not_cost_a_thread_each() {
    // With 1 worker, at most 64 threads read connections. 400 quiet connections (upstream
    // tiny_http: a thread each) must leave the process far below 400 threads, and a new
    // client is served meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::test_database(dir.path());
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut server = crate::support::serve_binary(
        &db,
        &listen,
        // All from 127.0.0.1: no per-address limit here (hostile_http.rs tests that one).
        &[
            "--workers",
            "1",
            "--log-level",
            "warn",
            "--max-connections-per-ip",
            "0",
        ],
        std::process::Stdio::null(),
    );
    let base = format!("http://{listen}");
    let idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(&listen).unwrap())
        .collect();
    // Half of them have sent one request and kept the connection open.
    for stream in idle.iter().step_by(2) {
        let mut stream = stream;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let threads = threads_of(server.id());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let healthy = agent
        .get(&format!("{base}/healthz"))
        .call()
        .map(|r| r.status());
    let _ = server.kill();
    let _ = server.wait();
    drop(idle);
    assert_eq!(healthy.ok(), Some(200));
    assert!(threads <= 80, "{threads} threads for 400 idle connections");
}

#[test]
fn no_connection_waits_behind_connections_kept_busy() {
    // 80 keep-alive clients, each sending requests back to back for 3 s, connecting at
    // once: every one of them is answered throughout. (tiny_http's pool could queue a new
    // connection behind threads busy with other connections for as long as those stayed
    // busy; see vendor/tiny_http/PATCHES.md.) With 1 worker at most 64 threads read
    // connections; 80 clients must also take turns.
    let app = TestApp::spawn_with(|c| c.workers = 1);
    let addr = app.base.trim_start_matches("http://").to_string();
    let start = std::sync::Arc::new(std::sync::Barrier::new(80));
    let clients: Vec<_> = (0..80)
        .map(|_| {
            let (addr, start) = (addr.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let stream = TcpStream::connect(&addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                let until = Instant::now() + Duration::from_secs(3);
                let mut answered = 0;
                while Instant::now() < until {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut reader), "HTTP/1.1 200 OK");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for client in clients {
        assert!(
            client
                .join()
                .expect("a client waited over 2 s for an answer")
                > 0
        );
    }
}

/// Seconds into the UTC day of an HTTP date (`Sat, 28 Nov 2026 14:53:04 GMT`).
fn second_of_day(http_date: &str) -> u64 {
    let time = http_date.split_whitespace().nth(4).unwrap();
    time.split(':')
        .map(|part| part.parse::<u64>().unwrap())
        .fold(0, |acc, part| acc * 60 + part)
}

#[test]
fn every_response_carries_the_current_date() {
    // Each thread formats the Date header once a second (tiny_http patch 8); it must
    // still move on with the clock.
    let app = TestApp::spawn();
    for _ in 0..3 {
        let response = app.get("/healthz");
        let date = response.header("date").unwrap().to_string();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400;
        let behind = (now + 86_400 - second_of_day(&date)) % 86_400;
        assert!(behind <= 2, "Date {date} is {behind} s behind the clock");
        std::thread::sleep(Duration::from_millis(1100));
    }
}
