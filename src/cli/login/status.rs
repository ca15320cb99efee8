//! `devicegate status`: what this device has saved, and (unless `--offline`) whether each
//! server still accepts the saved access token.

use std::process::ExitCode;

use serde_json::json;

use super::fail;
use crate::device_client::{self, Credentials, LoginError};
use crate::logging::printable;

pub fn run_status(server: Option<&str>, json: bool, offline: bool) -> ExitCode {
    match status(server, json, offline) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// A saved login's state: `"active"` (the server accepted the access token at userinfo),
/// `"revoked"` (it refused a token that has not expired: revoked, or the user disabled),
/// `"expired"` (the access token expired; `devicegate token` renews it if it can),
/// `"unchecked"` (`--offline`, or the server has no userinfo endpoint), `"unreachable"`.
/// The detail is said after the state in the text form.
fn state(saved: &device_client::SavedLogin, now: u64, offline: bool) -> (&'static str, String) {
    if saved.tokens.expires_at <= now {
        return ("expired", String::new());
    }
    if offline {
        return ("unchecked", String::new());
    }
    match device_client::accepts(&saved.endpoints, &saved.tokens.access_token) {
        Ok(Some(true)) => ("active", String::new()),
        Ok(Some(false)) => ("revoked", String::new()),
        Ok(None) => ("unchecked", "the server has no userinfo endpoint".into()),
        Err(e) => ("unreachable", e.to_string()),
    }
}

/// What is saved, and (unless `offline`) whether each server still accepts it: one
/// userinfo request per server.
///
/// `--json`: `{"servers": [{"server": "https://…", "client_id": "guest", "user": "alice" |
/// null, "scope": "read write" | null, "access_token_expires_at": <Unix seconds>,
/// "access_token_expired": bool, "can_refresh": bool, "state": "active" | "revoked" |
/// "expired" | "unchecked" | "unreachable", "state_detail": "…" | null}]}`, sorted by server.
fn status(server: Option<&str>, json: bool, offline: bool) -> Result<String, LoginError> {
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
                let (state, detail) = state(saved, now, offline);
                json!({
                    "server": key,
                    "client_id": saved.client_id,
                    "user": saved.user,
                    "scope": saved.tokens.scope,
                    "access_token_expires_at": saved.tokens.expires_at,
                    "access_token_expired": saved.tokens.expires_at <= now,
                    "can_refresh": saved.tokens.refresh_token.is_some(),
                    "state": state,
                    "state_detail": Some(detail).filter(|d| !d.is_empty()),
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
        let state = match state(saved, now, offline) {
            ("active", _) => "active (the server accepts the access token)".to_string(),
            ("revoked", _) => format!(
                "revoked: the server refused the access token; run devicegate login --server {key}"
            ),
            ("expired", _) => "access token expired".to_string(),
            ("unchecked", detail) if detail.is_empty() => "not checked (--offline)".to_string(),
            (state, detail) => format!("{state} ({detail})"),
        };
        out.push_str(&format!(
            "{}\n  user:          {}\n  client:        {}\n  scopes:        {}\n  access token:  {expiry}{renew}\n  state:         {}\n",
            printable(key),
            printable(saved.user.as_deref().unwrap_or("(unknown)")),
            printable(&saved.client_id),
            printable(saved.tokens.scope.as_deref().unwrap_or("(the client's)")),
            printable(&state),
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
