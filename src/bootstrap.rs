//! First-run set-up: the built-in public client `guest` that Campus's CLI and library use,
//! and an `admin` user with a random password when the database has no users at all.

use crate::clock::Timestamp;
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets;
use crate::store::{self, NewClient, Store};

pub const GUEST_CLIENT_ID: &str = "guest";
/// Campus's default scope for the guest client.
pub const GUEST_SCOPES: &[&str] = &["read", "write"];

/// Creates `guest` when missing; leaves an operator's changes to it alone.
pub fn ensure_builtin_clients(store: &Store, now: Timestamp) -> Result<(), store::Error> {
    let scopes: Vec<String> = GUEST_SCOPES.iter().map(|s| s.to_string()).collect();
    let grants = vec![
        DEVICE_CODE_GRANT.to_string(),
        REFRESH_TOKEN_GRANT.to_string(),
    ];
    let created = store.create_client_if_missing(
        &NewClient {
            client_id: GUEST_CLIENT_ID,
            name: "Guest (built-in public client)",
            secret_hash: None,
            scopes: &scopes,
            grant_types: &grants,
            device_code_ttl: None,
            poll_interval: None,
        },
        now.secs(),
    )?;
    if created {
        log::info!("created the built-in public client `{GUEST_CLIENT_ID}`");
    }
    Ok(())
}

pub const FIRST_ADMIN: &str = "admin";

/// On a database without users, creates `admin` with a random password and returns it, so
/// the caller can show it once on the terminal (never in the log). Later starts: `None`.
pub fn ensure_first_admin(store: &Store, now: Timestamp) -> Result<Option<String>, store::Error> {
    if store.count_users()? > 0 {
        return Ok(None);
    }
    // 20 characters from a 33-letter alphabet: ~100 bits, and easy to type.
    let password = secrets::random_id(20);
    let hash =
        secrets::hash_password(&password).map_err(|e| store::Error::Internal(e.to_string()))?;
    match store.create_user(FIRST_ADMIN, &hash, now.secs()) {
        Ok(_) => Ok(Some(password)),
        // Another process created it at the same moment: theirs stands.
        Err(store::Error::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
