//! What can go wrong on the device side, and what to do about it: `LoginError` (each one
//! line, saying what to do next) and `Backoff`, the waits between retries of an error that
//! `is_transient()` (RFC 8628 §3.5).

use std::time::Duration;

#[derive(Debug)]
pub enum LoginError {
    /// The server answered something that is not OAuth, or a local problem (the file).
    Http(String),
    /// A server URL that is not an absolute `http(s)://` URL (as typed).
    BadServerUrl(String),
    /// For now: no connection (refused, reset, timed out, DNS) or a 5xx answer. Worth
    /// retrying with backoff (RFC 8628 §3.5); `retry_after` is the server's `Retry-After`
    /// in seconds, when it sent one.
    Unavailable {
        url: String,
        detail: String,
        retry_after: Option<u64>,
    },
    /// A refresh answered `invalid_grant`: the grant was revoked or has expired
    /// (RFC 6749 §5.2); only a new login helps. Holds the server's base URL.
    LoginEnded(String),
    /// The person clicked Deny.
    Denied,
    /// The code expired before anyone approved it.
    Expired,
    /// Any other OAuth error from the server.
    OAuth { error: String, description: String },
    /// Plain http to a non-loopback host without `allow_insecure`.
    Insecure(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Http(e) => write!(f, "{e}"),
            LoginError::BadServerUrl(url) => write!(
                f,
                "the server URL {url} has no http:// or https://; give the full URL, e.g. https://{}",
                url.split("://").last().unwrap_or(url).trim_start_matches('/')
            ),
            LoginError::Unavailable { url, detail, .. } => write!(f, "cannot reach {url}: {detail}"),
            LoginError::LoginEnded(server) => write!(
                f,
                "this login was revoked or has expired; run devicegate login --server {server}"
            ),
            LoginError::Denied => write!(f, "the request was denied"),
            LoginError::Expired => write!(f, "the code expired before it was approved; try again"),
            LoginError::OAuth { error, description } => write!(f, "{error}: {description}"),
            LoginError::Insecure(url) => write!(
                f,
                "refusing plain http to {url}: codes and tokens would travel in clear; use \
                 https, or pass --insecure on a network you trust"
            ),
        }
    }
}

impl std::error::Error for LoginError {}

impl LoginError {
    /// Whether waiting and trying again may help: connection errors and 5xx answers.
    pub fn is_transient(&self) -> bool {
        matches!(self, LoginError::Unavailable { .. })
    }

    /// The server's `Retry-After` (RFC 9110 §10.2.3), in seconds, on a transient error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LoginError::Unavailable { retry_after, .. } => retry_after.map(Duration::from_secs),
            _ => None,
        }
    }
}

/// The waits between retries of a transient error (RFC 8628 §3.5 asks for backoff): the
/// poll interval, doubled after each failure in a row, at most `MAX_BACKOFF` seconds, and
/// never shorter than the server's `Retry-After`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: u64,
    failures: u32,
}

/// The longest wait between retries, in seconds.
pub const MAX_BACKOFF: u64 = 30;

impl Backoff {
    /// Starts at `base` (seconds, at least 1).
    pub fn new(base: Duration) -> Backoff {
        Backoff {
            base: base.as_secs().max(1),
            failures: 0,
        }
    }

    /// The wait after one more failure; `retry_after` is the server's ask, if any.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u64 << self.failures.min(16))
            .min(MAX_BACKOFF.max(self.base));
        self.failures = self.failures.saturating_add(1);
        Duration::from_secs(doubled).max(retry_after.unwrap_or_default())
    }

    /// A success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_honours_retry_after() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| backoff.next(None).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 30, 30]);
        // A 503's Retry-After longer than our own wait wins; a shorter one does not.
        assert_eq!(backoff.next(Some(Duration::from_secs(120))).as_secs(), 120);
        backoff.reset();
        assert_eq!(backoff.next(Some(Duration::from_secs(1))).as_secs(), 5);
        // An interval above the cap is never shortened.
        assert_eq!(
            Backoff::new(Duration::from_secs(60)).next(None).as_secs(),
            60
        );
    }
}
