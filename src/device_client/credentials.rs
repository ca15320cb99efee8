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
