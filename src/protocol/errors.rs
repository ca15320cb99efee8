//! The two error families (STYLE §2): a client mistake is an `OAuthError` (RFC 6749 §5.2,
//! RFC 8628 §3.5); an internal failure is a `store::Error` that becomes a 500/503.

use std::borrow::Cow;

use crate::store;

/// Every error code we send. `status()` is an exhaustive match: adding a code forces a
/// decision about its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// RFC 8628 §3.5
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    /// RFC 6749 §4.1.2.1: "temporary overloading or maintenance".
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// RFC 6749 §5.2: 400, except a failed client authentication, which is 401, and a
    /// temporary overload (503, RFC 9110 §15.6.4). A rate-limited error (`retry_after`) is
    /// 429 whatever its code (see `OAuthError::status`).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidGrant
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::InvalidScope
            | ErrorCode::AuthorizationPending
            | ErrorCode::SlowDown
            | ErrorCode::AccessDenied
            | ErrorCode::ExpiredToken => 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// `slow_down` carries the new interval (RFC 8628 §3.5; GitHub and cli/oauth read it).
    pub interval: Option<u64>,
    /// The client tried HTTP Basic: answer with `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    pub basic_challenge: bool,
    /// A rate limit refused the request: answer 429 Too Many Requests (RFC 6585 §4) with
    /// `Retry-After: <seconds>` (RFC 9110 §10.2.3).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            interval: None,
            basic_challenge: false,
            retry_after: None,
        }
    }

    /// The HTTP status: 429 when rate limited, else the code's own.
    pub fn status(&self) -> u16 {
        match self.retry_after {
            Some(_) => 429,
            None => self.code.status(),
        }
    }
}

/// What a protocol decision can fail with.
#[derive(Debug)]
pub enum Error {
    OAuth(OAuthError),
    Store(store::Error),
    /// Too much of one costly kind of work at once (token signatures): 503
    /// `temporarily_unavailable` with `Retry-After: retry_after` seconds (RFC 9110
    /// §15.6.4, §10.2.3). Nothing was changed, so the same request may simply be repeated.
    Busy {
        retry_after: u64,
        description: &'static str,
    },
}

impl From<OAuthError> for Error {
    fn from(e: OAuthError) -> Self {
        Error::OAuth(e)
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// Shorthand for `Err(OAuthError::new(..).into())`.
pub fn oauth<T>(code: ErrorCode, description: &'static str) -> Result<T, Error> {
    Err(Error::OAuth(OAuthError::new(code, description)))
}
