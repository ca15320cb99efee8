//! devicegate patch (CVE-2026-66753): a handler's header value with CR/LF never splits the
//! response on a real connection, and the connection stays in step for the next request.

use std::io::{BufRead, BufReader, Read, Write};

#[allow(dead_code)]
mod support;

/// Reads one response head (through the blank line) and its `Content-Length` body.
fn read_response(reader: &mut BufReader<std::net::TcpStream>) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end_matches("\r\n").to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let length: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (lines, String::from_utf8(body).unwrap())
}

#[test]
fn a_header_value_with_crlf_becomes_a_500_and_the_connection_stays_in_step() {
    let (server, client) = support::new_one_server_one_client();
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);

    write!(writer, "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let rq = server.recv().unwrap();
    let forged = tiny_http::Header {
        field: "Location".parse().unwrap(),
        value: ascii::AsciiString::from_ascii("/x\r\nSet-Cookie: evil=1\r\n\r\nforged body")
            .unwrap()
            .into(),
    };
    rq.respond(tiny_http::Response::from_string("first").with_header(forged))
        .unwrap();
    let (head, body) = read_response(&mut reader);
    assert!(head[0].starts_with("HTTP/1.1 500 "), "{:?}", head);
    assert!(
        !head
            .iter()
            .any(|l| l.contains("evil") || l.starts_with("Location")),
        "{:?}",
        head
    );
    assert_eq!(body, "");

    write!(
        writer,
        "GET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let rq = server.recv().unwrap();
    assert_eq!(rq.url(), "/second");
    rq.respond(tiny_http::Response::from_string("second"))
        .unwrap();
    let (head, body) = read_response(&mut reader);
    assert!(head[0].starts_with("HTTP/1.1 200 "), "{:?}", head);
    assert_eq!(body, "second");
}
