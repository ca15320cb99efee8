//! The HTTP edge, the only module that knows tiny_http: a capped body read, form-or-JSON
//! bodies into one `Params` type, headers and cookies, the client IP, and response
//! builders that attach the security and no-store headers. Parameters live in `params`,
//! responses in `response`.

mod params;
mod response;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use crate::logging::printable;

pub use params::{Params, ParamsError};
pub use response::{send, Response};

/// RFC 6749 bodies are tiny; anything larger is refused with 413 before it is read (by
/// tiny_http, on the connection's thread: see `connection_error_body`).
pub const MAX_BODY: usize = 64 * 1024;

/// The body of the answers tiny_http gives by itself before a request reaches a worker
/// (a malformed, oversized or too slow request, or an address over its connection limit):
/// RFC 6749 §5.2's JSON error, like every other refusal of ours. Shape: `(content type,
/// body)`.
pub fn connection_error_body(status: u16) -> (&'static str, Vec<u8>) {
    let (error, description) = match status {
        408 => ("invalid_request", "the request did not arrive in time"),
        413 => (
            "invalid_request",
            "the request body is larger than 65536 bytes",
        ),
        414 | 431 => ("invalid_request", "the request head is too large"),
        417 => (
            "invalid_request",
            "only the 100-continue expectation is supported",
        ),
        501 => (
            "invalid_request",
            "only the chunked transfer coding is supported, and no protocol upgrade",
        ),
        503 => (
            "temporarily_unavailable",
            "too many open connections from this address; retry later",
        ),
        505 => (
            "invalid_request",
            "only HTTP versions 1.0 and 1.1 are supported",
        ),
        _ => ("invalid_request", "malformed request"),
    };
    let body = serde_json::json!({"error": error, "error_description": description});
    ("application/json", body.to_string().into_bytes())
}

/// The answer to an HTTP/1.1 request without exactly one `Host` header (RFC 9112 §3.2):
/// 400 with RFC 6749 §5.2's JSON error.
pub fn missing_host() -> Response {
    Response::json(
        400,
        &serde_json::json!({
            "error": "invalid_request",
            "error_description": "an HTTP/1.1 request needs exactly one Host header"
        }),
    )
    .no_store()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// A request as the rest of the server sees it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path without the query string, as sent (not percent-decoded).
    pub path: String,
    pub query: String,
    headers: Vec<(String, String)>,
    body: Result<Vec<u8>, BodyError>,
    pub remote_ip: IpAddr,
    /// The client reached a TLS-terminating proxy over https (`X-Forwarded-Proto`).
    pub forwarded_https: bool,
    /// An HTTP/1.1 request without exactly one `Host` header, which RFC 9112 §3.2 says a
    /// server must answer with 400.
    pub host_missing_or_repeated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Unreadable,
}

impl Request {
    /// The head and the body, which tiny_http has already read whole (at most `MAX_BODY`
    /// bytes, within `--body-timeout`): nothing here waits on the client. Header values are
    /// text; bytes that are not UTF-8 (RFC 9110 §5.5 lets them through as opaque data)
    /// become U+FFFD.
    pub fn read(rq: &mut tiny_http::Request) -> Request {
        let headers: Vec<(String, String)> = rq
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1 (HTTP/1.0 clients may leave it out).
        let host_missing_or_repeated = *rq.http_version() == (1, 1)
            && headers.iter().filter(|(name, _)| name == "host").count() != 1;
        let method = match rq.method() {
            tiny_http::Method::Get => Method::Get,
            tiny_http::Method::Head => Method::Head,
            tiny_http::Method::Post => Method::Post,
            _ => Method::Other,
        };
        let (path, query) = match rq.url().split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (rq.url().to_string(), String::new()),
        };
        let remote_ip = rq
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let declared_too_large = rq.body_length().is_some_and(|n| n > MAX_BODY);
        let body = if declared_too_large {
            Err(BodyError::TooLarge)
        } else {
            // Sized from the body's length (already capped), not grown a few bytes at a time.
            let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0) + 1);
            // A reader over memory; one byte past the cap tells "exactly the cap" from "more".
            match rq
                .as_reader()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
            {
                Ok(n) if n > MAX_BODY => Err(BodyError::TooLarge),
                Ok(_) => Ok(body),
                Err(_) => Err(BodyError::Unreadable),
            }
        };
        Request {
            method,
            path,
            query,
            headers,
            body,
            remote_ip,
            forwarded_https: false,
            host_missing_or_repeated,
        }
    }

    /// Behind a trusted reverse proxy: the client is the rightmost address in
    /// `X-Forwarded-For` (the one our proxy appended; earlier ones are the client's claims),
    /// and the scheme is the rightmost `X-Forwarded-Proto` entry. Every line of each header
    /// counts, joined in order (RFC 9110 §5.3): a proxy that appends a line of its own
    /// (HAProxy's `option forwardfor`) must win over a line the client sent. An entry is an
    /// IP address (`203.0.113.9`, `2001:db8::1`), or one with a port (`[2001:db8::1]:443`).
    /// A malformed or empty rightmost entry leaves the socket's address: never an earlier,
    /// client-controlled entry. Never called unless `--trust-proxy`.
    pub fn apply_forwarded_headers(&mut self) {
        let forwarded = self
            .combined_header("x-forwarded-for")
            .and_then(|list| rightmost(&list).and_then(parse_forwarded_ip));
        if let Some(ip) = forwarded {
            self.remote_ip = ip;
        }
        self.forwarded_https = self
            .combined_header("x-forwarded-proto")
            .and_then(|list| rightmost(&list).map(|proto| proto.eq_ignore_ascii_case("https")))
            .unwrap_or(false);
    }

    /// Every line of a header, in order, joined with `, ` as RFC 9110 §5.3 combines field
    /// lines; `None` when there is none. Borrowed when there is exactly one line.
    pub fn combined_header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut lines = self.header_lines(name);
        let first = lines.next()?;
        Some(lines.fold(first.into(), |joined, line| {
            format!("{joined}, {line}").into()
        }))
    }

    /// A request built in memory, for unit tests.
    #[cfg(test)]
    pub fn synthetic(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string()))
                .collect(),
            body: Ok(body.to_vec()),
            remote_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            forwarded_https: false,
            host_missing_or_repeated: false,
        }
    }

    /// The first line of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_lines(name).next()
    }

    /// Every line of a header, in the order sent: the one lookup the accessors share.
    fn header_lines<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_error(&self) -> Option<BodyError> {
        self.body.as_ref().err().copied()
    }

    /// The body's parameters: `application/x-www-form-urlencoded` (RFC 6749) or
    /// `application/json` (Campus's Python library), into the same `Params`.
    pub fn params(&self) -> Result<Params, ParamsError> {
        let body = match &self.body {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Err(ParamsError::TooLarge),
            Err(BodyError::Unreadable) => return Err(ParamsError::Malformed("unreadable body")),
        };
        let media_type = self.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match media_type.as_deref() {
            Some("application/x-www-form-urlencoded") => params::parse_form(body),
            Some("application/json") => params::parse_json(body),
            None if body.is_empty() => Ok(Params::default()),
            _ => Err(ParamsError::UnsupportedContentType),
        }
    }

    /// The query string's parameters, under the same rules.
    pub fn query_params(&self) -> Result<Params, ParamsError> {
        params::parse_form(self.query.as_bytes())
    }

    /// Was `name` sent more than once? For a field that is not a list (`Authorization`,
    /// RFC 9110 §11.6.2) that makes the request ambiguous, so it is refused, not guessed.
    pub fn header_repeated(&self, name: &str) -> bool {
        self.header_lines(name).nth(1).is_some()
    }

    /// The token of an `Authorization: Bearer …` header (RFC 6750 §2.1; the scheme is
    /// case-insensitive, RFC 7235 §2.1).
    pub fn bearer_token(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Does the client rank `text/html` above `application/json` in `Accept` (RFC 9110
    /// §12.5.1: the most specific matching range gives each type its `q`)? Browsers do
    /// (`text/html,…,*/*;q=0.8`); API clients sending `*/*`, `application/json` or no
    /// `Accept` at all do not, so a tie is JSON.
    pub fn prefers_html(&self) -> bool {
        let Some(accept) = self.combined_header("accept") else {
            return false;
        };
        accept_quality(&accept, "text", "html") > accept_quality(&accept, "application", "json")
    }

    /// One cookie's value from the `Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_lines("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// The `q` (0–1000, thousandths) that an `Accept` value gives `kind/subtype`: that of the
/// most specific range matching it (`kind/subtype` over `kind/*` over `*/*`), 0 when none
/// does. A malformed `q` counts as 0.
fn accept_quality(accept: &str, kind: &str, subtype: &str) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let Some((k, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (k.trim(), s.trim()) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, value)| parse_q(value.trim()));
        if best.is_none_or(|(seen, _)| specificity > seen) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// RFC 9110 §12.4.2's `qvalue` (`0`, `0.5`, `1.000`) in thousandths; anything else is 0.
fn parse_q(value: &str) -> u16 {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().unwrap_or(0);
    match whole {
        "0" => thousandths,
        "1" if thousandths == 0 => 1000,
        _ => 0,
    }
}

/// The last entry of a comma-separated header list, trimmed; `None` when it is empty.
fn rightmost(list: &str) -> Option<&str> {
    list.rsplit(',')
        .next()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// An `X-Forwarded-For` entry: an address, or an address with a port.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The path as it may appear in a log line: a user code in the path is cut to its first
/// half (the query string, which may carry one too, is never logged), and control
/// characters are escaped (`logging::printable`), so a path cannot forge or colour a line.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = "/oauth/device/";
    match path.find(MARKER) {
        Some(i) => {
            let (head, code) = path.split_at(i + MARKER.len());
            let visible: String = code.chars().take(4).collect();
            format!("{}{}…", printable(head), printable(&visible)).into()
        }
        // At most 200 characters; borrowed, so the usual short path is not copied.
        None => {
            let cut = path.char_indices().nth(200).map_or(path.len(), |(i, _)| i);
            printable(&path[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Request {
        Request::synthetic(
            Method::Post,
            "/x",
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )],
            body.as_bytes(),
        )
    }

    #[test]
    fn empty_values_are_absent_and_repeats_refused() {
        let params = form("a=&b=1&c=x+y").params().expect("params");
        assert_eq!(params.get("a"), None);
        assert_eq!(params.get("b"), Some("1"));
        assert_eq!(params.get("c"), Some("x y"));
        assert_eq!(
            form("a=1&a=2").params().expect_err("repeat"),
            ParamsError::Repeated("a".into())
        );
    }

    #[test]
    fn json_bodies_map_to_the_same_params() {
        let req = Request::synthetic(
            Method::Post,
            "/x",
            &[("Content-Type", "application/json")],
            br#"{"client_id":"guest","n":5,"z":null}"#,
        );
        let params = req.params().expect("params");
        assert_eq!(params.get("client_id"), Some("guest"));
        assert_eq!(params.get("n"), Some("5"));
        assert_eq!(params.get("z"), None);
        let dup = Request::synthetic(
            Method::Post,
            "/x",
            &[("Content-Type", "application/json")],
            br#"{"a":"1","a":"2"}"#,
        );
        assert_eq!(
            dup.params().expect_err("dup"),
            ParamsError::Repeated("a".into())
        );
        let nested = Request::synthetic(
            Method::Post,
            "/x",
            &[("Content-Type", "application/json")],
            br#"{"a":{"b":1}}"#,
        );
        assert!(matches!(nested.params(), Err(ParamsError::Malformed(_))));
    }

    #[test]
    fn unknown_content_type_is_refused() {
        let req = Request::synthetic(
            Method::Post,
            "/x",
            &[("Content-Type", "text/plain")],
            b"a=1",
        );
        assert_eq!(
            req.params().expect_err("ct"),
            ParamsError::UnsupportedContentType
        );
    }

    #[test]
    fn forwarded_headers_take_the_rightmost_address() {
        let mut req = Request::synthetic(
            Method::Get,
            "/",
            &[
                ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
            ],
            b"",
        );
        req.apply_forwarded_headers();
        assert_eq!(req.remote_ip.to_string(), "203.0.113.9");
        assert!(req.forwarded_https);
    }

    fn forwarded(headers: &[(&str, &str)]) -> Request {
        let mut req = Request::synthetic(Method::Get, "/", headers, b"");
        req.apply_forwarded_headers();
        req
    }

    #[test]
    fn every_forwarded_line_counts_and_the_last_one_wins() {
        // The client's own line first, the proxy's appended line last.
        let req = forwarded(&[
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Proto", "http"),
        ]);
        assert_eq!(req.remote_ip.to_string(), "198.51.100.7");
        assert!(!req.forwarded_https);
        let req = forwarded(&[
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Proto", "https"),
        ]);
        assert!(req.forwarded_https);
        let req = forwarded(&[("X-Forwarded-For", "[2001:db8::1]:443")]);
        assert_eq!(req.remote_ip.to_string(), "2001:db8::1");
        assert_eq!(
            req.combined_header("x-forwarded-for").as_deref(),
            Some("[2001:db8::1]:443")
        );
    }

    #[test]
    fn a_malformed_last_entry_keeps_the_socket_address() {
        for last in ["garbage", "", " ", "203.0.113.9,"] {
            let req = forwarded(&[
                ("X-Forwarded-For", "203.0.113.5"),
                ("X-Forwarded-For", last),
            ]);
            assert_eq!(req.remote_ip.to_string(), "127.0.0.1", "last line {last:?}");
        }
        let req = forwarded(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "")]);
        assert!(!req.forwarded_https);
    }

    #[test]
    fn browsers_prefer_html_and_api_clients_do_not() {
        let prefers = |accept: &str| {
            Request::synthetic(Method::Get, "/", &[("Accept", accept)], b"").prefers_html()
        };
        // Firefox, Chrome, Safari.
        assert!(prefers(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(prefers("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"));
        assert!(prefers("text/*"));
        for api in [
            "*/*",
            "application/json",
            "application/json, text/html;q=0.5",
            "text/html;q=0, */*",
            "text/html;q=bogus",
            "",
        ] {
            assert!(!prefers(api), "{api}");
        }
        assert!(!Request::synthetic(Method::Get, "/", &[], b"").prefers_html());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let req = Request::synthetic(Method::Get, "/", &[("Cookie", "a=1; dg_session=xyz")], b"");
        assert_eq!(req.cookie("dg_session"), Some("xyz"));
        assert_eq!(req.cookie("b"), None);
    }

    #[test]
    fn user_codes_in_paths_are_not_logged_whole() {
        assert_eq!(
            loggable_path("/auth/v1/oauth/device/BCDF-GHJK"),
            "/auth/v1/oauth/device/BCDF…"
        );
        assert_eq!(loggable_path("/oauth/token"), "/oauth/token");
        // Long paths are cut at 200 characters, never inside one.
        let long = format!("/{}", "é".repeat(300));
        assert_eq!(loggable_path(&long).chars().count(), 200);
        // Control characters cannot reach the log line.
        assert_eq!(loggable_path("/x\x1b[2J\r\n"), "/x\\x1b[2J\\x0d\\x0a");
        assert_eq!(
            loggable_path("/oauth/device/\x1bBCDF"),
            "/oauth/device/\\x1bBCD…"
        );
    }
}
