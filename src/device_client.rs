//! The device side of the flow, as a small library: discover a server, start a device login,
//! poll it, refresh and revoke tokens, and keep them in a credentials file. The
//! `devicegate login`, `token` and `logout` commands are thin over this.
//!
//! ```no_run
//! use devicegate::device_client::{DeviceLogin, PollOutcome};
//! let mut login = DeviceLogin::start("http://127.0.0.1:8080", "guest", Some("read"))?;
//! println!("open {} and enter {}", login.authorization.verification_uri, login.authorization.user_code);
//! let tokens = loop {
//!     std::thread::sleep(login.interval());
//!     match login.poll()? {
//!         PollOutcome::Pending | PollOutcome::SlowDown => continue,
//!         PollOutcome::Done(tokens) => break tokens,
//!     }
//! };
//! println!("access token: {}", tokens.access_token);
//! # Ok::<(), devicegate::device_client::LoginError>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// RFC 8628 §3.5: +5 s after each `slow_down`.
const SLOW_DOWN_STEP: u64 = 5;

#[derive(Debug)]
pub enum LoginError {
    /// The server could not be reached or answered something that is not OAuth.
    Http(String),
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
            LoginError::Denied => write!(f, "the request was denied"),
            LoginError::Expired => write!(f, "the code expired before it was approved; try again"),
            LoginError::OAuth { error, description } => write!(f, "{error}: {description}"),
            LoginError::Insecure(url) => write!(
                f,
                "refusing plain http to {url}: codes and tokens would travel in clear"
            ),
        }
    }
}

impl std::error::Error for LoginError {}

/// The endpoints from the server's RFC 8414 metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoints {
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
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
        let endpoints = discover(&agent, server, allow_insecure)?;
        let mut form = vec![("client_id", client_id)];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let body = post_form(&agent, &endpoints.device_authorization_endpoint, &form)?;
        let authorization: DeviceAuthorization = serde_json::from_value(body).map_err(|e| {
            LoginError::Http(format!("unexpected device authorization answer: {e}"))
        })?;
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

    /// One token request.
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
                    self.interval += SLOW_DOWN_STEP;
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
        self.interval = self.interval.max(secs);
    }
}

/// Exchanges a refresh token for new tokens (RFC 6749 §6).
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
    tokens_from(post_form(&agent(), &endpoints.token_endpoint, &form)?)
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
        .build()
}

fn discover(
    agent: &ureq::Agent,
    server: &str,
    allow_insecure: bool,
) -> Result<Endpoints, LoginError> {
    let base = server.trim_end_matches('/');
    check_transport(base, allow_insecure)?;
    let url = format!("{base}/.well-known/oauth-authorization-server");
    let response = agent
        .get(&url)
        .call()
        .map_err(|e| LoginError::Http(format!("cannot read {url}: {e}")))?;
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
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => return Err(LoginError::Http(format!("{url}: {e}"))),
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
        expires_at: unix_now() + body["expires_in"].as_u64().unwrap_or(3600),
        scope: body["scope"].as_str().map(str::to_string),
    })
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One server's entry in the credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedLogin {
    pub client_id: String,
    pub endpoints: Endpoints,
    pub tokens: Tokens,
}

/// `$XDG_CONFIG_HOME/devicegate/credentials.json` (or `~/.config/…`), keyed by server URL.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub servers: BTreeMap<String, SavedLogin>,
}

impl Credentials {
    pub fn path() -> Result<PathBuf, LoginError> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".config"))
                .ok_or_else(|| {
                    LoginError::Http("neither XDG_CONFIG_HOME nor HOME is set".into())
                })?,
        };
        Ok(base.join("devicegate").join("credentials.json"))
    }

    pub fn load() -> Result<Credentials, LoginError> {
        let path = Credentials::path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LoginError::Http(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(LoginError::Http(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the file with mode 0600, atomically: into a new temporary file with a random
    /// name in the same directory (created exclusively, mode 0600, so a file or symlink
    /// planted there beforehand is never written through), flushed to disk, then renamed
    /// over `credentials.json` (a rename replaces a symlink there, never its target).
    pub fn save(&self) -> Result<(), LoginError> {
        let path = Credentials::path()?;
        let io =
            |e: std::io::Error| LoginError::Http(format!("cannot write {}: {e}", path.display()));
        let dir = path
            .parent()
            .ok_or_else(|| LoginError::Http(format!("{} has no directory", path.display())))?;
        std::fs::create_dir_all(dir).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LoginError::Http(e.to_string()))?;
        // tempfile: O_CREAT | O_EXCL, mode 0600, a random `.tmpXXXXXX` name.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        // The rename itself reaches the disk with the directory.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The saved server named, or the only one saved.
    pub fn pick(&self, server: Option<&str>) -> Result<String, LoginError> {
        match server {
            Some(server) => {
                let key = server.trim_end_matches('/').to_string();
                if self.servers.contains_key(&key) {
                    Ok(key)
                } else {
                    Err(LoginError::Http(format!(
                        "not logged in to {key}; run devicegate login"
                    )))
                }
            }
            None => match self.servers.keys().collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(LoginError::Http(
                    "not logged in; run devicegate login --server URL".into(),
                )),
                _ => Err(LoginError::Http(
                    "logged in to several servers; pass --server".into(),
                )),
            },
        }
    }
}
