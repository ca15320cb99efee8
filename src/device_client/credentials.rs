//! The credentials file, `$XDG_CONFIG_HOME/devicegate/credentials.json` (or
//! `~/.config/…`): each saved server's endpoints, client, user and tokens, mode 0600,
//! replaced atomically. Every read-modify-write of it (a `token` that refreshes, a
//! `login`, a `logout`) runs inside `Credentials::locked`, an exclusive lock on
//! `credentials.lock` beside it, so parallel `devicegate token` calls refresh once instead
//! of each presenting the same refresh token (which a server sees as reuse, RFC 9700
//! §4.14.2). The lock is a separate file because the atomic replace gives
//! `credentials.json` a new inode on every save: a lock held on the old one would not
//! keep out a process that opened the new one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{server_url, Endpoints, LoginError, Tokens};

/// One server's entry in the credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedLogin {
    pub client_id: String,
    pub endpoints: Endpoints,
    pub tokens: Tokens,
    /// Who signed in (userinfo's `preferred_username` or `username`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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

    /// Runs `f` (typically load → refresh or insert → save) holding an exclusive lock on
    /// `credentials.lock` in the credentials directory; waits for another process that
    /// holds it. Load inside `f`: what was read before may be stale by then.
    pub fn locked<T>(f: impl FnOnce() -> Result<T, LoginError>) -> Result<T, LoginError> {
        let path = Credentials::path()?;
        let dir = path
            .parent()
            .ok_or_else(|| LoginError::Http(format!("{} has no directory", path.display())))?;
        let lock_path = dir.join("credentials.lock");
        let io = |e: std::io::Error| {
            LoginError::Http(format!("cannot lock {}: {e}", lock_path.display()))
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Never follow a symlink planted in place of the lock file.
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut lock = fd_lock::RwLock::new(options.open(&lock_path).map_err(io)?);
        let _held = lock.write().map_err(io)?;
        f()
    }

    /// Whether a login could be saved: the file reads (or is absent), its lock can be taken
    /// and a new file can be written in its directory. `login` asks this before it asks the
    /// server for a code, so a damaged file or a read-only directory never costs an
    /// approved grant that then cannot be saved.
    pub fn check_saveable() -> Result<(), LoginError> {
        Credentials::load()?;
        Credentials::locked(|| {
            let path = Credentials::path()?;
            let dir = path
                .parent()
                .ok_or_else(|| LoginError::Http(format!("{} has no directory", path.display())))?;
            // Removed again on drop.
            tempfile::NamedTempFile::new_in(dir).map_err(|e| {
                LoginError::Http(format!("cannot save the login in {}: {e}", dir.display()))
            })?;
            Credentials::load().map(drop)
        })
    }

    pub fn load() -> Result<Credentials, LoginError> {
        let path = Credentials::path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LoginError::Http(format!(
                    "{} is damaged ({e}); move it away or delete it, then run devicegate \
                     login again",
                    path.display()
                ))
            }),
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

    /// The saved server named (`BadServerUrl` without a scheme), or the only one saved.
    pub fn pick(&self, server: Option<&str>) -> Result<String, LoginError> {
        match server {
            Some(server) => {
                let key = server_url(server)?;
                if self.servers.contains_key(&key) {
                    Ok(key)
                } else {
                    Err(LoginError::Http(format!(
                        "not signed in to {key}; run devicegate login --server {key}"
                    )))
                }
            }
            None => match self.servers.keys().collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(LoginError::Http(
                    "not signed in to any server; run devicegate login --server URL".into(),
                )),
                several => Err(LoginError::Http(format!(
                    "signed in to several servers; pass --server with one of: {}",
                    several
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }
}

/// Refresh this long (seconds) before the access token expires.
pub const REFRESH_MARGIN: u64 = 60;

/// The saved access token for `server` (or the only saved server), refreshed first (RFC
/// 6749 §6) when it expires within `REFRESH_MARGIN` seconds, or when `force_refresh`: pass
/// that after a resource server answered 401 to it (the token was revoked or the server's
/// clock is ahead). It does not ask the server whether the token is still accepted.
///
/// A token that needs no refresh is read without the lock (a read-only credentials
/// directory is fine then); a refresh runs under `Credentials::locked` and reads again
/// there, so a process that waited for another's refresh (or, forced, finds the token it
/// was refused already replaced) uses the new token instead of refreshing again.
///
/// `Ok((token, Some(e)))`: the refresh was due but the server is unreachable (`e`), and the
/// saved token has not expired yet. `Err(LoginError::LoginEnded(server))`: the server
/// refused the refresh (`invalid_grant`, `invalid_client`), only a new login helps.
pub fn access_token(
    server: Option<&str>,
    force_refresh: bool,
) -> Result<(String, Option<LoginError>), LoginError> {
    let seen = {
        let credentials = Credentials::load()?;
        let key = credentials.pick(server)?;
        let saved = credentials.servers.get(&key);
        if let Some(saved) = saved {
            let fresh = saved.tokens.expires_at > super::unix_now().saturating_add(REFRESH_MARGIN);
            if fresh && !force_refresh {
                return Ok((saved.tokens.access_token.clone(), None));
            }
        }
        saved.map(|saved| saved.tokens.access_token.clone())
    };
    Credentials::locked(|| {
        let mut credentials = Credentials::load()?;
        let key = credentials.pick(server)?;
        let saved = credentials
            .servers
            .get(&key)
            .cloned()
            .ok_or_else(|| LoginError::LoginEnded(key.clone()))?;
        let now = super::unix_now();
        let fresh = saved.tokens.expires_at > now.saturating_add(REFRESH_MARGIN);
        let replaced = seen.as_deref() != Some(saved.tokens.access_token.as_str());
        if fresh && (!force_refresh || replaced) {
            return Ok((saved.tokens.access_token, None));
        }
        let Some(refresh_token) = saved.tokens.refresh_token.as_deref() else {
            // No refresh token (a client that needs `offline_access`, asked without it):
            // the access token still works until it expires; only then is the login over.
            if saved.tokens.expires_at > now && !force_refresh {
                let left = saved.tokens.expires_at - now;
                let ends = LoginError::Http(format!(
                    "this login has no refresh token and ends in {left} s; then run \
                     devicegate login --server {key}"
                ));
                return Ok((saved.tokens.access_token, Some(ends)));
            }
            return Err(LoginError::LoginEnded(key));
        };
        let tokens = match super::refresh(&saved.endpoints, &saved.client_id, refresh_token) {
            Ok(tokens) => tokens,
            // RFC 6749 §5.2: the grant is gone (revoked, expired, client removed).
            Err(LoginError::OAuth { error, .. })
                if error == "invalid_grant" || error == "invalid_client" =>
            {
                return Err(LoginError::LoginEnded(key))
            }
            // Unreachable for now, but the access token has not expired: use it.
            Err(e) if e.is_transient() && saved.tokens.expires_at > now && !force_refresh => {
                return Ok((saved.tokens.access_token, Some(e)));
            }
            Err(e) => return Err(e),
        };
        let access_token = tokens.access_token.clone();
        credentials
            .servers
            .insert(key, SavedLogin { tokens, ..saved });
        credentials.save()?;
        Ok((access_token, None))
    })
}
