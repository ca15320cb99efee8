//! `devicegate status`: what this device has saved, from the credentials file alone.

use std::process::ExitCode;

use serde_json::json;

use super::fail;
use crate::device_client::{self, Credentials, LoginError};
use crate::logging::printable;

pub fn run_status(server: Option<&str>, json: bool) -> ExitCode {
    match status(server, json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// What is saved, read from the file alone (no request to any server).
///
/// `--json`: `{"servers": [{"server": "https://…", "client_id": "guest", "user": "alice" |
/// null, "scope": "read write" | null, "access_token_expires_at": <Unix seconds>,
/// "access_token_expired": bool, "can_refresh": bool}]}`, sorted by server.
fn status(server: Option<&str>, json: bool) -> Result<String, LoginError> {
    let credentials = Credentials::load()?;
    let keys = match server {
        Some(_) => vec![credentials.pick(server)?],
        None => credentials.servers.keys().cloned().collect(),
    };
    let now = device_client::unix_now();
    let entries = keys
        .iter()
        .filter_map(|key| credentials.servers.get(key).map(|saved| (key, saved)));
    if json {
        let servers: Vec<_> = entries
            .map(|(key, saved)| {
                json!({
                    "server": key,
                    "client_id": saved.client_id,
                    "user": saved.user,
                    "scope": saved.tokens.scope,
                    "access_token_expires_at": saved.tokens.expires_at,
                    "access_token_expired": saved.tokens.expires_at <= now,
                    "can_refresh": saved.tokens.refresh_token.is_some(),
                })
            })
            .collect();
        return Ok(format!("{}\n", json!({ "servers": servers })));
    }
    let mut out = String::new();
    for (key, saved) in entries {
        let expiry = match saved.tokens.expires_at.checked_sub(now) {
            Some(left) if left > 0 => format!("expires in {}", duration(left)),
            _ => format!("expired {} ago", duration(now - saved.tokens.expires_at)),
        };
        let renew = if saved.tokens.refresh_token.is_some() {
            "; devicegate token renews it"
        } else {
            "; no refresh token, log in again when it expires"
        };
        out.push_str(&format!(
            "{}\n  user:          {}\n  client:        {}\n  scopes:        {}\n  access token:  {expiry}{renew}\n",
            printable(key),
            printable(saved.user.as_deref().unwrap_or("(unknown)")),
            printable(&saved.client_id),
            printable(saved.tokens.scope.as_deref().unwrap_or("(the client's)")),
        ));
    }
    if out.is_empty() {
        out.push_str("not signed in to any server; run devicegate login --server URL\n");
    }
    Ok(out)
}

/// `3h 05m`, `12m 30s`, `45s`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}
