//! First-run set-up: the built-in public client `guest` that Campus's CLI and library use.

use crate::clock::Timestamp;
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
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
