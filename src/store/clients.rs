//! The `clients` table: registered OAuth clients and their allowed scopes and grants.

use rusqlite::{params, OptionalExtension, Row};

use super::{split_list, Result, Store};

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

const COLUMNS: &str = "client_id, name, secret_hash, scopes, grant_types, device_code_ttl, \
                       poll_interval, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    Ok(Client {
        client_id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        scopes: split_list(&row.get::<_, String>(3)?),
        grant_types: split_list(&row.get::<_, String>(4)?),
        device_code_ttl: row.get(5)?,
        poll_interval: row.get(6)?,
        created_at: row.get(7)?,
    })
}

impl Store {
    pub fn create_client(&self, client: &NewClient<'_>, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO clients (client_id, name, secret_hash, scopes, grant_types, \
             device_code_ttl, poll_interval, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                client.client_id,
                client.name,
                client.secret_hash,
                client.scopes.join(" "),
                client.grant_types.join(" "),
                client.device_code_ttl,
                client.poll_interval,
                now
            ],
        )?;
        Ok(())
    }

    /// Inserts the client unless one with its id exists; true when it was created.
    pub fn create_client_if_missing(&self, client: &NewClient<'_>, now: i64) -> Result<bool> {
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO clients (client_id, name, secret_hash, scopes, grant_types, \
             device_code_ttl, poll_interval, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                client.client_id,
                client.name,
                client.secret_hash,
                client.scopes.join(" "),
                client.grant_types.join(" "),
                client.device_code_ttl,
                client.poll_interval,
                now
            ],
        )?;
        Ok(changed == 1)
    }

    pub fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM clients WHERE client_id = ?1"
        ))?;
        Ok(stmt.query_row([client_id], from_row).optional()?)
    }

    /// Replaces a client's secret hash; `false` when there is no such client.
    pub fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE clients SET secret_hash = ?2 WHERE client_id = ?1",
            params![client_id, secret_hash],
        )?;
        Ok(changed == 1)
    }

    /// Removes a client with its device codes, grants and tokens (ON DELETE CASCADE).
    pub fn delete_client(&self, client_id: &str) -> Result<bool> {
        let changed = self
            .conn
            .execute("DELETE FROM clients WHERE client_id = ?1", [client_id])?;
        Ok(changed == 1)
    }

    pub fn list_clients(&self) -> Result<Vec<Client>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM clients ORDER BY created_at, client_id"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
