//! The `users` table: people who sign in to approve devices.

use rusqlite::{params, OptionalExtension, Row};

use super::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: i64,
    /// OpenID Connect `sub`: random and opaque, kept across renames.
    pub subject: String,
    /// OpenID Connect `name`.
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

const COLUMNS: &str = "id, username, password_hash, disabled, created_at, subject, \
                       display_name, email, email_verified";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        disabled: row.get(3)?,
        created_at: row.get(4)?,
        subject: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
        display_name: row.get(6)?,
        email: row.get(7)?,
        email_verified: row.get(8)?,
    })
}

/// A new user's OpenID Connect `sub` (OIDC Core §2): 26 random lower-case letters and
/// digits (about 131 bits), opaque and never reassigned, so it survives a rename.
pub(super) fn new_subject() -> String {
    crate::secrets::random_id(26)
}

impl Store {
    /// Creates a user; `Error::Conflict` when the name is taken.
    pub fn create_user(&self, username: &str, password_hash: &str, now: i64) -> Result<i64> {
        let _writing = self.shared.write_turn();
        self.conn.execute(
            "INSERT INTO users (username, password_hash, created_at, subject) \
             VALUES (?1, ?2, ?3, ?4)",
            params![username, password_hash, now, new_subject()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn find_user_by_name(&self, username: &str) -> Result<Option<User>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"))?;
        Ok(stmt.query_row([username], from_row).optional()?)
    }

    pub fn find_user(&self, id: i64) -> Result<Option<User>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?;
        Ok(stmt.query_row([id], from_row).optional()?)
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn set_user_password(&self, username: &str, password_hash: &str) -> Result<bool> {
        let _writing = self.shared.write_turn();
        let changed = self.conn.execute(
            "UPDATE users SET password_hash = ?2 WHERE username = ?1",
            params![username, password_hash],
        )?;
        Ok(changed == 1)
    }

    /// Enables or disables a user; `false` when there is no such user.
    pub fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool> {
        let _writing = self.shared.write_turn();
        let changed = self.conn.execute(
            "UPDATE users SET disabled = ?2 WHERE username = ?1",
            params![username, disabled],
        )?;
        Ok(changed == 1)
    }

    /// Removes a user; their sessions, grants and tokens go with them (ON DELETE CASCADE).
    pub fn delete_user(&self, username: &str) -> Result<bool> {
        let _writing = self.shared.write_turn();
        let changed = self
            .conn
            .execute("DELETE FROM users WHERE username = ?1", [username])?;
        Ok(changed == 1)
    }

    pub fn count_users(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }
}
