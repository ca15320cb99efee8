//! The device side of the flow, as a small library: discover a server, start a device login,
//! poll it, refresh and revoke tokens, ask who a token acts for, and keep tokens in a
//! credentials file (`credentials`: the file, its lock). The `devicegate login`, `token`,
//! `logout` and `status` commands are thin over this. Every request names itself with
//! [`USER_AGENT`], so the consent page and `devicegate pending` show what is asking.
//!
//! ```no_run
//! use devicegate::device_client::{DeviceLogin, PollOutcome};
//! let mut login = DeviceLogin::start("http://127.0.0.1:8080", "guest", Some("read"))?;
//! println!("open {} and enter {}", login.authorization.verification_uri, login.authorization.user_code);
//! let tokens = loop {
//!     std::thread::sleep(login.interval());
//!     match login.poll() {
//!         Ok(PollOutcome::Pending | PollOutcome::SlowDown) => continue,
//!         Ok(PollOutcome::Done(tokens)) => break tokens,
//!         // RFC 8628 §3.5: a restarting server is waited for, not given up on (wait with
//!         // `Backoff` and stop when the code expires, as examples/login.rs does).
//!         Err(e) if e.is_transient() => continue,
//!         Err(e) => return Err(e),
//!     }
//! };
//! println!("access token: {}", tokens.access_token);
//! # Ok::<(), devicegate::device_client::LoginError>(())
//! ```

mod credentials;
mod error;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use credentials::{access_token, Credentials, SavedLogin, REFRESH_MARGIN};
pub use error::{Backoff, LoginError, MAX_BACKOFF};

/// RFC 8628 §3.5: +5 s after each `slow_down`.
const SLOW_DOWN_STEP: u64 = 5;

/// Caps on durations a server sends, in seconds, so that no value (`expires_in` =
/// 2^64−1) can overflow a clock: a device code lives at most a day, a poll interval (and
/// a `Retry-After`) at most 10 minutes, a token at most 10 years.
pub const MAX_CODE_LIFETIME: u64 = 24 * 3600;
/// See [`MAX_CODE_LIFETIME`].
pub const MAX_INTERVAL: u64 = 600;
/// See [`MAX_CODE_LIFETIME`].
pub const MAX_TOKEN_LIFETIME: u64 = 10 * 365 * 24 * 3600;

/// The `User-Agent` of every request the device side sends: `devicegate-login/<version>`.
pub const USER_AGENT: &str = concat!("devicegate-login/", env!("CARGO_PKG_VERSION"));

/// A `--server` value as the credentials file keys it: an absolute `http://` or `https://`
/// URL with a host, without trailing slashes. Anything else is `BadServerUrl`.
/// The scheme is case-insensitive (RFC 3986 §3.1) and kept lower-case; a query or a
/// fragment is refused (`Http`, saying so): the metadata URL is built by appending a path.
pub fn server_url(server: &str) -> Result<String, LoginError> {
    let trimmed = server.trim().trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("", trimmed));
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(LoginError::BadServerUrl(server.to_string()));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(LoginError::BadServerUrl(server.to_string()));
    }
    if rest.contains(['?', '#']) {
        return Err(LoginError::Http(format!(
            "the server URL {server} has a query or fragment (? or #); give the base URL \
             only, e.g. {scheme}://{}",
            rest.split(['?', '#'])
                .next()
                .unwrap_or_default()
                .trim_end_matches('/')
        )));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// The endpoints from the server's RFC 8414 metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoints {
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// Tokens as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug)]
pub enum PollOutcome {
    Pending,
    /// Told to slow down: `interval()` has grown.
    SlowDown,
    Done(Tokens),
}

/// One device login in progress.
pub struct DeviceLogin {
    agent: ureq::Agent,
    pub endpoints: Endpoints,
    pub client_id: String,
    pub authorization: DeviceAuthorization,
    interval: u64,
}

impl DeviceLogin {
    /// Discovers the server and asks it for a device code and a user code.
    pub fn start(
        server: &str,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<DeviceLogin, LoginError> {
        DeviceLogin::start_with(server, client_id, scope, false)
    }

    pub fn start_with(
        server: &str,
        client_id: &str,
        scope: Option<&str>,
        allow_insecure: bool,
    ) -> Result<DeviceLogin, LoginError> {
        let agent = agent();
        let server = server_url(server)?;
        let endpoints = discover(&agent, &server, allow_insecure)?;
        let mut form = vec![("client_id", client_id)];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let body = post_form(&agent, &endpoints.device_authorization_endpoint, &form)?;
        let mut authorization: DeviceAuthorization = serde_json::from_value(body).map_err(|e| {
            LoginError::Http(format!("unexpected device authorization answer: {e}"))
        })?;
        authorization.expires_in = authorization.expires_in.min(MAX_CODE_LIFETIME);
        authorization.interval = authorization.interval.min(MAX_INTERVAL);
        Ok(DeviceLogin {
            agent,
            endpoints,
            client_id: client_id.to_string(),
            interval: authorization.interval.max(1),
            authorization,
        })
    }

    /// How long to wait before the next poll.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval)
    }

    /// One token request (RFC 8628 §3.4). `Err(e)` with `e.is_transient()`: the server is
    /// unreachable or failing for now; wait (see `Backoff`) and poll again until the code
    /// expires.
    pub fn poll(&mut self) -> Result<PollOutcome, LoginError> {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", self.authorization.device_code.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        match post_form(&self.agent, &self.endpoints.token_endpoint, &form) {
            Ok(body) => Ok(PollOutcome::Done(tokens_from(body)?)),
            Err(LoginError::OAuth { error, description }) => match error.as_str() {
                "authorization_pending" => Ok(PollOutcome::Pending),
                "slow_down" => {
                    self.interval = (self.interval + SLOW_DOWN_STEP).min(MAX_INTERVAL);
                    Ok(PollOutcome::SlowDown)
                }
                "access_denied" => Err(LoginError::Denied),
                "expired_token" => Err(LoginError::Expired),
                _ => Err(LoginError::OAuth { error, description }),
            },
            Err(e) => Err(e),
        }
    }

    /// The server's `interval` from a `slow_down` body wins over our own +5 when larger.
    pub fn set_interval(&mut self, secs: u64) {
        self.interval = self.interval.max(secs.min(MAX_INTERVAL));
    }
}

/// Exchanges a refresh token for new tokens (RFC 6749 §6). A server that does not rotate
/// (no `refresh_token` in the answer) leaves the one presented in place. `invalid_grant`
/// comes back as `OAuth { error: "invalid_grant", .. }`: the login has ended.
pub fn refresh(
    endpoints: &Endpoints,
    client_id: &str,
    refresh_token: &str,
) -> Result<Tokens, LoginError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ];
    let mut tokens = tokens_from(post_form(&agent(), &endpoints.token_endpoint, &form)?)?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = Some(refresh_token.to_string());
    }
    Ok(tokens)
}

/// Who an access token acts for, from the userinfo endpoint: `preferred_username`, else
/// `username`, else `email`, else `sub` (an OpenID Connect login without `profile` gets
/// no name). `Ok(None)`: the server has no userinfo endpoint or names nobody.
pub fn user_name(endpoints: &Endpoints, access_token: &str) -> Result<Option<String>, LoginError> {
    let Some(url) = &endpoints.userinfo_endpoint else {
        return Ok(None);
    };
    let response = match userinfo_request(url, access_token).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(status, response)) => {
            return Err(status_error(url, status, &response))
        }
        Err(ureq::Error::Transport(e)) => return Err(unreachable(url, &e)),
    };
    let body: serde_json::Value = response
        .into_json()
        .map_err(|e| LoginError::Http(format!("{url} answered without JSON: {e}")))?;
    Ok(["preferred_username", "username", "email", "sub"]
        .iter()
        .find_map(|key| body.get(*key).and_then(|v| v.as_str()))
        .map(str::to_string))
}

/// Whether the server still accepts an access token, asked at its userinfo endpoint:
/// `Ok(Some(true))` on 200, `Ok(Some(false))` on 401 (revoked or expired, RFC 6750 §3.1),
/// `Ok(None)` when the server has no userinfo endpoint. `Err`: unreachable, or any other
/// answer.
pub fn accepts(endpoints: &Endpoints, access_token: &str) -> Result<Option<bool>, LoginError> {
    let Some(url) = &endpoints.userinfo_endpoint else {
        return Ok(None);
    };
    match userinfo_request(url, access_token).call() {
        Ok(_) => Ok(Some(true)),
        Err(ureq::Error::Status(401, _)) => Ok(Some(false)),
        Err(ureq::Error::Status(status, response)) => Err(status_error(url, status, &response)),
        Err(ureq::Error::Transport(e)) => Err(unreachable(url, &e)),
    }
}

/// A GET of the userinfo endpoint with an access token (RFC 6750 §2.1: in the header).
fn userinfo_request(url: &str, access_token: &str) -> ureq::Request {
    agent()
        .get(url)
        .set("Accept", "application/json")
        .set("Authorization", &format!("Bearer {access_token}"))
}

/// Revokes a token (RFC 7009); a server without revocation is not an error.
pub fn revoke(
    endpoints: &Endpoints,
    client_id: &str,
    token: &str,
    hint: &str,
) -> Result<(), LoginError> {
    let Some(url) = &endpoints.revocation_endpoint else {
        return Ok(());
    };
    let form = [
        ("token", token),
        ("token_type_hint", hint),
        ("client_id", client_id),
    ];
    post_form(&agent(), url, &form).map(|_| ())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .user_agent(USER_AGENT)
        .build()
}

/// A connection-level failure, briefly: the innermost cause ("Connection refused (os
/// error 111)"), not ureq's whole chain.
fn unreachable(url: &str, error: &ureq::Transport) -> LoginError {
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    LoginError::Unavailable {
        url: url.to_string(),
        detail: innermost.map_or_else(|| error.to_string(), |cause| cause.to_string()),
        retry_after: None,
    }
}

/// A non-JSON error status: 5xx is transient (with its `Retry-After`), the rest is not.
fn status_error(url: &str, status: u16, response: &ureq::Response) -> LoginError {
    if status >= 500 {
        LoginError::Unavailable {
            url: url.to_string(),
            detail: format!("the server answered {status}"),
            retry_after: response
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.min(MAX_INTERVAL)),
        }
    } else {
        LoginError::Http(format!("{url} answered {status}"))
    }
}

fn discover(
    agent: &ureq::Agent,
    server: &str,
    allow_insecure: bool,
) -> Result<Endpoints, LoginError> {
    let base = server.trim_end_matches('/');
    check_transport(base, allow_insecure)?;
    let url = format!("{base}/.well-known/oauth-authorization-server");
    let response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(ureq::Error::Transport(e)) => {
            return Err(match unreachable(base, &e) {
                LoginError::Unavailable { url, detail, .. } => LoginError::Unavailable {
                    detail: format!("{detail}; is the server running and the URL right?"),
                    url,
                    retry_after: None,
                },
                other => other,
            })
        }
        Err(ureq::Error::Status(status, response)) => {
            return Err(match status_error(&url, status, &response) {
                LoginError::Http(_) => LoginError::Http(format!(
                    "{url} answered {status}: is {base} a devicegate (OAuth) server?"
                )),
                transient => transient,
            })
        }
    };
    let endpoints: Endpoints = response
        .into_json()
        .map_err(|e| LoginError::Http(format!("{url} is not OAuth metadata: {e}")))?;
    check_transport(&endpoints.token_endpoint, allow_insecure)?;
    Ok(endpoints)
}

/// RFC 8628 §3.1: TLS, except on loopback (development) or when explicitly allowed.
fn check_transport(url: &str, allow_insecure: bool) -> Result<(), LoginError> {
    if !crate::config::is_insecure_remote_url(url) || allow_insecure {
        Ok(())
    } else {
        Err(LoginError::Insecure(url.to_string()))
    }
}

fn post_form(
    agent: &ureq::Agent,
    url: &str,
    form: &[(&str, &str)],
) -> Result<serde_json::Value, LoginError> {
    let response = match agent
        .post(url)
        .set("Accept", "application/json")
        .send_form(form)
    {
        Ok(response) => response,
        // RFC 8628 §3.5: a failing server is waited for, whatever its body says.
        Err(ureq::Error::Status(status, response)) if status >= 500 => {
            return Err(status_error(url, status, &response))
        }
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => return Err(unreachable(url, &e)),
    };
    let status = response.status();
    let body: serde_json::Value = response
        .into_json()
        .map_err(|e| LoginError::Http(format!("{url} answered {status} without JSON: {e}")))?;
    match body.get("error").and_then(|e| e.as_str()) {
        Some(error) => Err(LoginError::OAuth {
            error: error.to_string(),
            description: body
                .get("error_description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
        }),
        None if status == 200 => Ok(body),
        None => Err(LoginError::Http(format!("{url} answered {status}"))),
    }
}

fn tokens_from(body: serde_json::Value) -> Result<Tokens, LoginError> {
    let access_token = body["access_token"]
        .as_str()
        .ok_or_else(|| LoginError::Http("token answer without access_token".into()))?;
    Ok(Tokens {
        access_token: access_token.to_string(),
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
        expires_at: unix_now().saturating_add(
            body["expires_in"]
                .as_u64()
                .unwrap_or(3600)
                .min(MAX_TOKEN_LIFETIME),
        ),
        scope: body["scope"].as_str().map(str::to_string),
    })
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_need_a_scheme_and_a_host() {
        assert_eq!(
            server_url("https://auth.example.com/").ok(),
            Some("https://auth.example.com".into())
        );
        assert_eq!(
            server_url("http://127.0.0.1:8080").ok(),
            Some("http://127.0.0.1:8080".into())
        );
        for bad in [
            "auth.example.com",
            "https://",
            "ftp://x",
            "//x",
            "http:///x",
            "",
        ] {
            assert!(
                matches!(server_url(bad), Err(LoginError::BadServerUrl(_))),
                "{bad}"
            );
        }
    }
}
