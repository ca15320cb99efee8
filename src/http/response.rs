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

    /// 303 See Other: after a POST, the browser follows with a GET.
    pub fn redirect(location: &str) -> Response {
        Response::new(303, "text/plain; charset=utf-8", Vec::new())
            .with_header("Location", location.to_string())
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

/// Writes the response; a client that went away is not an error worth more than a debug line.
pub fn send(rq: tiny_http::Request, response: Response, head_only: bool) {
    let mut out =
        tiny_http::Response::from_data(if head_only { Vec::new() } else { response.body })
            .with_status_code(response.status);
    for (name, value) in response.headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(header);
        }
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("could not write response: {e}");
    }
}
