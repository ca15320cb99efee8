//! Responses: built by handlers, written by `send`, with the security headers attached in
//! one place for every HTML page.

use std::borrow::Cow;

/// A response, built by handlers and written by `send`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Values are mostly fixed strings; `Cow` keeps them from being copied per response.
    headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<u8>,
}

/// Pages load only our own stylesheet; no script, no framing (clickjacking), no referrer
/// (URLs carry user codes).
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", Cow::Borrowed(content_type)),
                ("X-Content-Type-Options", Cow::Borrowed("nosniff")),
            ],
            body,
        }
    }

    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
        // Serialising our own plain structs and `json!` values cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response::new(status, "application/json", body)
    }

    /// Every HTML response goes through here, so every page gets the same protections.
    pub fn html(status: u16, markup: maud::Markup) -> Response {
        Response::new(
            status,
            "text/html; charset=utf-8",
            markup.into_string().into_bytes(),
        )
        .with_header("Content-Security-Policy", CSP)
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
        .no_store()
    }

    pub fn text(status: u16, text: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            text.as_bytes().to_vec(),
        )
    }

    /// 500 `server_error` (RFC 6749 §5.2's JSON): every internal failure's answer, whose
    /// detail goes only to the log.
    pub fn server_error() -> Response {
        Response::json(500, &serde_json::json!({"error": "server_error"})).no_store()
    }

    /// 303 See Other: after a POST, the browser follows with a GET. Bytes that may stand
    /// neither in a URI nor in a header value (controls, space, non-ASCII) are
    /// percent-encoded (RFC 3986 §2.1), so a target taken from a form always yields a
    /// `Location` and can never add a header line of its own.
    pub fn redirect(location: &str) -> Response {
        Response::new(303, "text/plain; charset=utf-8", Vec::new())
            .with_header("Location", percent_encode_unsafe(location))
            .no_store()
    }

    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// RFC 6749 §5.1: responses carrying credentials must not be cached.
    pub fn no_store(self) -> Response {
        self.with_header("Cache-Control", "no-store")
            .with_header("Pragma", "no-cache")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Every byte outside visible ASCII as `%XX`; `%` itself is kept, so encoded input stays as is.
fn percent_encode_unsafe(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_graphic() {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A tiny_http header list has no room for CR, LF, other control characters or non-ASCII
/// (CVE-2026-66753): the name of the first header that cannot be written, if any.
type Unwritable = &'static str;

/// The body always goes to tiny_http whole, also for HEAD: its length is the
/// `Content-Length` of the head, and tiny_http itself leaves the body out of the answer to a
/// HEAD request (RFC 9110 §9.3.2, §8.6: the length GET would send, never a `0` of an empty
/// stand-in body).
fn to_wire(
    response: Response,
) -> Result<tiny_http::Response<std::io::Cursor<Vec<u8>>>, Unwritable> {
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    for (name, value) in response.headers {
        let header =
            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).map_err(|()| name)?;
        out.add_header(header);
    }
    Ok(out)
}

/// Writes the response; a client that went away is not an error worth more than a debug line.
///
/// A header that cannot be written is never dropped silently (a redirect without its
/// `Location`, a sign-in without its `Set-Cookie`): the whole response becomes a 500
/// `server_error`, and the log names the header, never its value.
pub fn send(rq: tiny_http::Request, response: Response) {
    let status = response.status;
    let out = to_wire(response).or_else(|name| {
        log::error!(
            "a {status} response's {name} header holds a control character or non-ASCII; \
             answering 500 instead"
        );
        to_wire(Response::server_error())
    });
    let out = match out {
        Ok(out) => out,
        // `server_error`'s headers are fixed ASCII; this arm is for completeness.
        Err(_) => tiny_http::Response::from_data(Vec::new()).with_status_code(500),
    };
    if let Err(e) = rq.respond(out) {
        log::debug!("could not write response: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::{to_wire, Response};

    fn header<'a>(
        out: &'a tiny_http::Response<std::io::Cursor<Vec<u8>>>,
        name: &str,
    ) -> Vec<&'a str> {
        out.headers()
            .iter()
            .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
            .collect()
    }

    #[test]
    fn a_header_with_crlf_is_refused_by_name_not_dropped() {
        let response = Response::text(200, "hello")
            .with_header("Set-Cookie", "a=1\r\nSet-Cookie: evil=1".to_string())
            .no_store();
        assert_eq!(to_wire(response).err(), Some("Set-Cookie"));
        let response = Response::text(200, "hello").with_header("X-Echo", "caf\u{e9}".to_string());
        assert_eq!(to_wire(response).err(), Some("X-Echo"));
    }

    #[test]
    fn the_fallback_500_is_complete() {
        let out = to_wire(Response::server_error()).expect("fixed headers");
        assert_eq!(out.status_code().0, 500);
        assert_eq!(header(&out, "Cache-Control"), ["no-store"]);
        assert_eq!(header(&out, "Content-Type"), ["application/json"]);
    }

    #[test]
    fn redirect_targets_are_percent_encoded_not_lost() {
        let out = to_wire(Response::redirect("/caf\u{e9} x\r\nSet-Cookie: e=1")).expect("encoded");
        assert_eq!(
            header(&out, "Location"),
            ["/caf%C3%A9%20x%0D%0ASet-Cookie:%20e=1"]
        );
        assert!(header(&out, "Set-Cookie").is_empty());
        let out =
            to_wire(Response::redirect("/oauth/device?user_code=BCDF-GHJK")).expect("plain ASCII");
        assert_eq!(
            header(&out, "Location"),
            ["/oauth/device?user_code=BCDF-GHJK"]
        );
    }
}
