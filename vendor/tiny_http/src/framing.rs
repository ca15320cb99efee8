//! devicegate patch: a request's head and body read by RFC 9112's rules, within limits, on
//! the connection's thread.
//!
//! Upstream parsed leniently (any `Transfer-Encoding` meant chunked, a `Content-Length` next
//! to it was ignored, two differing ones were accepted, a non-ASCII byte closed the
//! connection without a word) and left the body on the socket for whoever handled the
//! request. Here every malformed or oversized head is a `Refusal`: the caller answers its
//! status, logs its reason and closes the connection, so nothing pipelined behind a request
//! whose length is in doubt is ever read as a request (RFC 9112 §6.3, §11.2).

use std::io::{BufRead, ErrorKind, Read};

use crate::common::{HTTPVersion, Header, HeaderField, HeaderValue, Method};

/// The longest request or header line accepted, in bytes (upstream issue #56: a client
/// sending data without a newline grew memory without bound).
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// The most header lines accepted in one request.
pub(crate) const MAX_HEADERS: usize = 100;
/// The largest request head (request line and header lines), in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Empty lines tolerated before a request line (RFC 9112 §2.2: a client may send a CRLF
/// after a POST body).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Why reading a request stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Answer `status`, log `reason`, close the connection.
    Refuse { status: u16, reason: &'static str },
    /// The peer went away or the socket failed: nothing to answer, close.
    Gone(std::io::Error),
}

fn refuse(status: u16, reason: &'static str) -> Failure {
    Failure::Refuse { status, reason }
}

/// Which deadline a timed-out read ran into.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    Head,
    Body,
}

impl Failure {
    /// A read error: a passed deadline (or idle timeout) is a 408 (RFC 9110 §15.5.9),
    /// anything else means the connection is gone.
    pub(crate) fn from_io(e: std::io::Error, phase: Phase) -> Failure {
        match (e.kind(), phase) {
            (ErrorKind::TimedOut | ErrorKind::WouldBlock, Phase::Head) => {
                refuse(408, "request head not received in time")
            }
            (ErrorKind::TimedOut | ErrorKind::WouldBlock, Phase::Body) => {
                refuse(408, "request body not received in time")
            }
            _ => Failure::Gone(e),
        }
    }
}

/// A request line and its header fields.
pub(crate) struct Head {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// How the body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    Length(usize),
    Chunked,
}

/// Reads one line into `line`, without its CRLF (a bare LF also ends a line, RFC 9112
/// §2.2); a CR anywhere else is refused. Longer than `max` bytes: `too_long`.
fn read_line<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
    too_long: Failure,
    phase: Phase,
) -> Result<(), Failure> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::from_io(e, phase)),
        };
        if available.is_empty() {
            let eof =
                std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed mid-request");
            return Err(Failure::Gone(eof));
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        if line.len() + part.len() > max {
            return Err(too_long);
        }
        line.extend_from_slice(part);
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.contains(&b'\r') {
                return Err(refuse(400, "bare CR in the request head"));
            }
            return Ok(());
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2): the characters of a method or a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads the request line and header fields.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> Result<Head, Failure> {
    let mut line = Vec::with_capacity(128);
    let mut empty_lines = 0;
    loop {
        read_line(
            reader,
            &mut line,
            MAX_LINE,
            refuse(414, "request line too long"),
            Phase::Head,
        )?;
        if !line.is_empty() {
            break;
        }
        empty_lines += 1;
        if empty_lines > MAX_LEADING_EMPTY_LINES {
            return Err(refuse(400, "empty lines instead of a request line"));
        }
    }
    let (method, path, version) = parse_request_line(&line)?;
    let mut head_size = line.len();

    let mut headers = Vec::with_capacity(8);
    loop {
        read_line(
            reader,
            &mut line,
            MAX_LINE,
            refuse(431, "header line too long"),
            Phase::Head,
        )?;
        if line.is_empty() {
            break;
        }
        head_size += line.len();
        if headers.len() >= MAX_HEADERS {
            return Err(refuse(431, "too many header lines"));
        }
        if head_size > MAX_HEAD {
            return Err(refuse(431, "request head too large"));
        }
        headers.push(parse_header(&line)?);
    }
    Ok(Head {
        method,
        path,
        version,
        headers,
    })
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3), single spaces.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), Failure> {
    let bad = || refuse(400, "malformed request line");
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().ok_or_else(bad)?;
    let target = parts.next().ok_or_else(bad)?;
    let version = parts.next().ok_or_else(bad)?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad());
    }
    // Visible ASCII only: no spaces, controls or raw non-ASCII bytes in a target (RFC 3986).
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(bad());
    }
    // devicegate patch: only HTTP/1.0 and 1.1 are spoken here. Any other well-formed
    // version (HTTP/0.9, HTTP/2.0 as in the h2 preface `PRI * HTTP/2.0`, HTTP/3.0) is
    // answered 505 and closed like every refusal (RFC 9110 §15.6.6). Upstream answered
    // through a second writer while the request still held the first, which deadlocked the
    // connection's thread for good (and with it its per-address slot).
    let version = match version {
        b"HTTP/1.0" => HTTPVersion(1, 0),
        b"HTTP/1.1" => HTTPVersion(1, 1),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(refuse(505, "unsupported HTTP version"))
        }
        _ => return Err(bad()),
    };
    // Both are ASCII (checked above), so these conversions cannot fail.
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or_else(bad)?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| bad())?;
    Ok((method, target, version))
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5). No whitespace before the colon
/// (§5.1: 400), no obs-fold (§5.2: 400), no CR, LF, NUL or other controls in the value
/// (RFC 9110 §5.5); bytes over 0x7F are kept as opaque data.
fn parse_header(line: &[u8]) -> Result<Header, Failure> {
    if matches!(line.first(), Some(b' ') | Some(b'\t')) {
        return Err(refuse(400, "obsolete line folding in a header"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| refuse(400, "header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(refuse(400, "malformed header name"));
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let value = &value[start..end];
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(refuse(400, "control character in a header value"));
    }
    let field =
        HeaderField::from_bytes(name.to_vec()).map_err(|_| refuse(400, "malformed header name"))?;
    Ok(Header {
        field,
        value: HeaderValue::from_bytes(value.to_vec()),
    })
}

/// How the body is delimited, by RFC 9112 §6.1–6.3, refusing what a proxy in front of us
/// could read differently: `Transfer-Encoding` other than exactly `chunked` (501, §6.1),
/// `Transfer-Encoding` together with `Content-Length` (400, §6.1 allows either; we refuse
/// to guess), `Transfer-Encoding` in HTTP/1.0 (400, §6.1), and a malformed or repeated and
/// different `Content-Length` (400, §6.3; identical repeats are one value, RFC 9110 §8.6).
/// A declared length over `max_body` is a 413 before any of the body is read.
pub(crate) fn body_framing(
    version: &HTTPVersion,
    headers: &[Header],
    max_body: usize,
) -> Result<Body, Failure> {
    let mut transfer_encoding = false;
    let mut chunked_only = true;
    let mut length: Option<u64> = None;
    let mut length_overflows = false;
    for header in headers {
        if header.field.equiv("Transfer-Encoding") {
            // Exactly one coding, `chunked`, over all lines: we decode no other coding.
            let mut codings = header.value.as_bytes().split(|&b| b == b',');
            let first = codings.next().map(trim_ows).unwrap_or_default();
            chunked_only &= !transfer_encoding
                && first.eq_ignore_ascii_case(b"chunked")
                && codings.next().is_none();
            transfer_encoding = true;
        } else if header.field.equiv("Content-Length") {
            let value = header.value.as_bytes();
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(refuse(400, "malformed Content-Length"));
            }
            let parsed = value.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
            let parsed = match parsed {
                Some(n) => n,
                None => {
                    length_overflows = true;
                    u64::MAX
                }
            };
            if length.is_some_and(|previous| previous != parsed) {
                return Err(refuse(400, "differing Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    if transfer_encoding {
        if length.is_some() {
            return Err(refuse(400, "both Transfer-Encoding and Content-Length"));
        }
        if *version < HTTPVersion(1, 1) {
            return Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !chunked_only {
            return Err(refuse(501, "Transfer-Encoding other than chunked"));
        }
        return Ok(Body::Chunked);
    }
    match length {
        None | Some(0) => Ok(Body::None),
        Some(n) if length_overflows || n > max_body as u64 => {
            Err(refuse(413, "request body over the limit"))
        }
        // n <= max_body, a usize.
        Some(n) => Ok(Body::Length(n as usize)),
    }
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Reads the whole body (at most `max_body` bytes, else 413).
pub(crate) fn read_body<R: BufRead>(
    reader: &mut R,
    body: Body,
    max_body: usize,
) -> Result<Vec<u8>, Failure> {
    match body {
        Body::None => Ok(Vec::new()),
        Body::Length(n) => {
            let mut data = vec![0; n];
            read_exact(reader, &mut data)?;
            Ok(data)
        }
        Body::Chunked => read_chunked(reader, max_body),
    }
}

fn read_exact<R: Read>(reader: &mut R, data: &mut [u8]) -> Result<(), Failure> {
    reader.read_exact(data).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => Failure::Gone(e),
        _ => Failure::from_io(e, Phase::Body),
    })
}

/// The chunked coding (RFC 9112 §7.1): `hex-size [; ext] CRLF data CRLF`…, `0 CRLF`,
/// trailer lines (read and dropped, §7.1.2), `CRLF`.
fn read_chunked<R: BufRead>(reader: &mut R, max_body: usize) -> Result<Vec<u8>, Failure> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        read_line(
            reader,
            &mut line,
            MAX_LINE,
            refuse(400, "chunk size line too long"),
            Phase::Body,
        )?;
        let size_end = line
            .iter()
            .position(|&b| b == b';' || b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let (digits, rest) = line.split_at(size_end);
        let rest = trim_ows(rest);
        if digits.is_empty()
            || digits.len() > 16
            || !digits.iter().all(u8::is_ascii_hexdigit)
            || !(rest.is_empty() || rest[0] == b';')
        {
            return Err(refuse(400, "malformed chunk size"));
        }
        let size = digits.iter().fold(0u64, |n, &d| {
            // at most 16 hex digits: fits in a u64
            (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
        });
        if size == 0 {
            break;
        }
        if size > (max_body - data.len()) as u64 {
            return Err(refuse(413, "request body over the limit"));
        }
        let start = data.len();
        data.resize(start + size as usize, 0);
        read_exact(reader, &mut data[start..])?;
        read_line(
            reader,
            &mut line,
            2,
            refuse(400, "chunk not followed by CRLF"),
            Phase::Body,
        )?;
        if !line.is_empty() {
            return Err(refuse(400, "chunk not followed by CRLF"));
        }
    }
    // Trailer fields: bounded like header fields, then dropped.
    for _ in 0..=MAX_HEADERS {
        read_line(
            reader,
            &mut line,
            MAX_LINE,
            refuse(431, "trailer line too long"),
            Phase::Body,
        )?;
        if line.is_empty() {
            return Ok(data);
        }
    }
    Err(refuse(431, "too many trailer lines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(lines: &[&str]) -> Result<Body, u16> {
        let headers: Vec<Header> = lines
            .iter()
            .map(|l| parse_header(l.as_bytes()).map_err(|_| 0u16))
            .collect::<Result<_, _>>()?;
        body_framing(&HTTPVersion(1, 1), &headers, 100).map_err(|f| match f {
            Failure::Refuse { status, .. } => status,
            Failure::Gone(_) => 0,
        })
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(framing_of(&[]), Ok(Body::None));
        assert_eq!(framing_of(&["Content-Length: 5"]), Ok(Body::Length(5)));
        assert_eq!(
            framing_of(&["Content-Length: 5", "Content-Length: 5"]),
            Ok(Body::Length(5))
        );
        assert_eq!(
            framing_of(&["Transfer-Encoding: Chunked"]),
            Ok(Body::Chunked)
        );
        for bad in ["+5", "5,6", "5, 5", "0x10", "", "5 6", "-1"] {
            let line = format!("Content-Length: {bad}");
            assert_eq!(framing_of(&[&line]), Err(400), "{bad}");
        }
        assert_eq!(
            framing_of(&["Content-Length: 5", "Content-Length: 6"]),
            Err(400)
        );
        assert_eq!(framing_of(&["Content-Length: 101"]), Err(413));
        assert_eq!(
            framing_of(&["Content-Length: 99999999999999999999999"]),
            Err(413)
        );
        for bad in [
            "gzip",
            "chunked, gzip",
            "gzip, chunked",
            "xchunked",
            "chunked;x",
        ] {
            let line = format!("Transfer-Encoding: {bad}");
            assert_eq!(framing_of(&[&line]), Err(501), "{bad}");
        }
        assert_eq!(
            framing_of(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
            Err(501)
        );
        assert_eq!(
            framing_of(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
            Err(400)
        );
    }

    #[test]
    fn header_lines_are_strict_but_values_opaque() {
        assert!(parse_header(b"Host : x").is_err());
        assert!(parse_header(b" Host: x").is_err());
        assert!(parse_header(b"Ho st: x").is_err());
        assert!(parse_header(b"Host: a\x00b").is_err());
        let header = parse_header(b"User-Agent: caf\xc3\xa9/1.0 ").expect("utf-8");
        assert_eq!(header.value.as_str(), "café/1.0");
        let header = parse_header(b"User-Agent: caf\xe9").expect("latin-1");
        assert_eq!(header.value.as_bytes(), b"caf\xe9");
        assert_eq!(header.value.as_str(), "caf\u{fffd}");
    }

    #[test]
    fn chunked_bodies_are_decoded_within_the_limit() {
        let mut input: &[u8] = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let body = read_body(&mut input, Body::Chunked, 100).expect("body");
        assert_eq!(body, b"Wikipedia");
        assert_eq!(input, b"NEXT");
        let mut over: &[u8] = b"65\r\n";
        assert!(matches!(
            read_body(&mut over, Body::Chunked, 100),
            Err(Failure::Refuse { status: 413, .. })
        ));
        let mut bad: &[u8] = b"4\r\nWikiXX\r\n0\r\n\r\n";
        assert!(matches!(
            read_body(&mut bad, Body::Chunked, 100),
            Err(Failure::Refuse { status: 400, .. })
        ));
    }
}
