//! The `clients` table: registered OAuth clients and their allowed scopes and grants.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::db::Row;
use super::{split_list, Result, Store};

/// Every token request reads its client; caching the row for a second saves one SQLite
/// read transaction per poll (a shared lock on the WAL index, measured at ~15% of poll
/// throughput). A client changed by the admin CLI in another process is seen within this
/// long; changes made through this `Store` are seen at once.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Only clients that exist are cached, and the cache is emptied when it grows past this,
/// so made-up client ids cannot grow it.
const CLIENT_CACHE_MAX: usize = 256;

#[derive(Default)]
pub(super) struct ClientCache(HashMap<String, (Arc<Client>, Instant)>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub device_code_ttl: Option<u64>,
    pub poll_interval: Option<u64>,
    pub created_at: i64,
    /// `"opaque"` or `"jwt"` (RFC 9068).
    pub access_token_format: String,
    /// A JWT access token's `aud`; `None`: the client_id.
    pub access_token_audience: Option<String>,
    /// The ID token's `alg`: `"RS256"` or `"EdDSA"`.
    pub id_token_signed_response_alg: String,
    /// A refresh token only when the grant's scope has `offline_access`.
    pub refresh_requires_offline_access: bool,
}

impl Client {
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

pub struct NewClient<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub secret_hash: Option<&'a str>,
    pub scopes: &'a [String],
    pub grant_types: &'a [String],
    pub device_code_ttl: Option<u64>,
    pub poll_interval: Option<u64>,
}

/// A change to a client: `None` leaves a field as it is. For the lifetimes,
/// `Some(None)` goes back to the server's setting.
#[derive(Debug, Default)]
pub struct ClientChanges<'a> {
    pub name: Option<&'a str>,
    pub scopes: Option<&'a [String]>,
    pub grant_types: Option<&'a [String]>,
    /// Seconds.
    pub device_code_ttl: Option<Option<u64>>,
    /// Seconds.
    pub poll_interval: Option<Option<u64>>,
    /// A refresh token only when the grant's scope has `offline_access`.
    pub refresh_requires_offline_access: Option<bool>,
    /// `opaque` or `jwt` (RFC 9068).
    pub access_token_format: Option<&'a str>,
    /// A JWT access token's `aud`; `Some(None)`: back to the client_id.
    pub access_token_audience: Option<Option<&'a str>>,
    /// The ID token's `alg`: `RS256` or `EdDSA`.
    pub id_token_signed_response_alg: Option<&'a str>,
}

macro_rules! columns {
    () => {
        "client_id, name, secret_hash, scopes, grant_types, device_code_ttl, \
         poll_interval, created_at, access_token_format, access_token_audience, \
         id_token_signed_response_alg, refresh_requires_offline_access"
    };
}

fn from_row(row: &Row<'_>) -> Result<Client> {
    Ok(Client {
        client_id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        scopes: split_list(&row.get::<String>(3)?),
        grant_types: split_list(&row.get::<String>(4)?),
        device_code_ttl: row.get(5)?,
        poll_interval: row.get(6)?,
        created_at: row.get(7)?,
        access_token_format: row.get(8)?,
        access_token_audience: row.get(9)?,
        id_token_signed_response_alg: row.get(10)?,
        refresh_requires_offline_access: row.get(11)?,
    })
}

impl Store {
    pub fn create_client(&self, client: &NewClient<'_>, now: i64) -> Result<()> {
        self.insert_client("", client, now).map(|_| ())
    }

    /// Inserts the client unless one with its id exists; true when it was created.
    pub fn create_client_if_missing(&self, client: &NewClient<'_>, now: i64) -> Result<bool> {
        Ok(self.insert_client(" ON CONFLICT DO NOTHING", client, now)? == 1)
    }

    fn insert_client(&self, on_conflict: &str, client: &NewClient<'_>, now: i64) -> Result<usize> {
        self.write(|db| {
            db.execute(
                &format!(
                    "INSERT INTO clients (client_id, name, secret_hash, scopes, grant_types, \
                     device_code_ttl, poll_interval, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8){on_conflict}"
                ),
                &[
                    &client.client_id,
                    &client.name,
                    &client.secret_hash,
                    &client.scopes.join(" "),
                    &client.grant_types.join(" "),
                    &client.device_code_ttl,
                    &client.poll_interval,
                    &now,
                ],
            )
        })
    }

    pub fn find_client(&self, client_id: &str) -> Result<Option<Arc<Client>>> {
        if let Some((client, read_at)) = self.client_cache.borrow().0.get(client_id) {
            if read_at.elapsed() < CLIENT_CACHE_TTL {
                return Ok(Some(Arc::clone(client)));
            }
        }
        // Shared with the cache: a poll looks its client up, and copying it was 6 allocations.
        let found = self
            .conn
            .query_row(
                concat!("SELECT ", columns!(), " FROM clients WHERE client_id = ?1"),
                &[&client_id],
                from_row,
            )?
            .map(Arc::new);
        let mut cache = self.client_cache.borrow_mut();
        match &found {
            Some(client) => {
                if cache.0.len() >= CLIENT_CACHE_MAX {
                    cache.0.clear();
                }
                cache
                    .0
                    .insert(client_id.to_string(), (Arc::clone(client), Instant::now()));
            }
            None => {
                cache.0.remove(client_id);
            }
        }
        Ok(found)
    }

    fn forget_client(&self, client_id: &str) {
        self.client_cache.borrow_mut().0.remove(client_id);
    }

    /// Replaces a client's secret hash; `false` when there is no such client.
    pub fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool> {
        self.forget_client(client_id);
        let changed = self.write(|db| {
            db.execute(
                "UPDATE clients SET secret_hash = ?2 WHERE client_id = ?1",
                &[&client_id, &secret_hash],
            )
        })?;
        Ok(changed == 1)
    }

    /// Changes the fields given (`Some`) and leaves the rest; `false` when there is no such
    /// client. One `UPDATE`, so a concurrent edit of other fields is never undone.
    pub fn update_client(&self, client_id: &str, changes: &ClientChanges<'_>) -> Result<bool> {
        self.forget_client(client_id);
        let changed = self.write(|db| {
            db.execute(
                "UPDATE clients SET name = COALESCE(?2, name), scopes = COALESCE(?3, scopes), \
             grant_types = COALESCE(?4, grant_types), \
             device_code_ttl = CASE WHEN ?5 = 1 THEN ?6 ELSE device_code_ttl END, \
             poll_interval = CASE WHEN ?7 = 1 THEN ?8 ELSE poll_interval END, \
             refresh_requires_offline_access = \
                 COALESCE(?9, refresh_requires_offline_access), \
             access_token_format = COALESCE(?10, access_token_format), \
             access_token_audience = CASE WHEN ?11 = 1 THEN ?12 ELSE access_token_audience END, \
             id_token_signed_response_alg = COALESCE(?13, id_token_signed_response_alg) \
             WHERE client_id = ?1",
                &[
                    &client_id,
                    &changes.name,
                    &changes.scopes.map(|s| s.join(" ")),
                    &changes.grant_types.map(|g| g.join(" ")),
                    &changes.device_code_ttl.is_some(),
                    &changes.device_code_ttl.flatten(),
                    &changes.poll_interval.is_some(),
                    &changes.poll_interval.flatten(),
                    &changes.refresh_requires_offline_access,
                    &changes.access_token_format,
                    &changes.access_token_audience.is_some(),
                    &changes.access_token_audience.flatten(),
                    &changes.id_token_signed_response_alg,
                ],
            )
        })?;
        Ok(changed == 1)
    }

    /// Renames a client only while it still has the name `old` (a default being replaced
    /// must not overwrite an operator's choice); true when it was renamed.
    pub fn rename_client_if_named(&self, client_id: &str, old: &str, new: &str) -> Result<bool> {
        self.forget_client(client_id);
        let changed = self.write(|db| {
            db.execute(
                "UPDATE clients SET name = ?3 WHERE client_id = ?1 AND name = ?2",
                &[&client_id, &old, &new],
            )
        })?;
        Ok(changed == 1)
    }

    /// Removes a client with its device codes, grants and tokens (ON DELETE CASCADE).
    pub fn delete_client(&self, client_id: &str) -> Result<bool> {
        self.forget_client(client_id);
        let changed =
            self.write(|db| db.execute("DELETE FROM clients WHERE client_id = ?1", &[&client_id]))?;
        Ok(changed == 1)
    }

    pub fn list_clients(&self) -> Result<Vec<Client>> {
        self.conn.query_rows(
            concat!(
                "SELECT ",
                columns!(),
                " FROM clients ORDER BY created_at, client_id"
            ),
            &[],
            from_row,
        )
    }
}
