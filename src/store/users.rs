//! The `users` table: people who sign in to approve devices.

use super::db::Row;
use super::{Error, Result, Store, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
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

macro_rules! columns {
    () => {
        "id, username, password_hash, disabled, created_at, subject, \
         display_name, email, email_verified"
    };
}

fn from_row(row: &Row<'_>) -> Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        disabled: row.get(3)?,
        created_at: row.get(4)?,
        subject: row.get::<Option<String>>(5)?.unwrap_or_default(),
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

/// The OpenID Connect profile of a user (OIDC Core §5.1), as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile<'a> {
    pub display_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub email_verified: bool,
}

/// A change to a user's profile: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChanges<'a> {
    pub display_name: Option<Option<&'a str>>,
    pub email: Option<Option<&'a str>>,
    pub email_verified: Option<bool>,
}

impl ProfileChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.email.is_none() && self.email_verified.is_none()
    }
}

impl Store {
    /// Creates a user; `Error::Conflict` when the name is taken.
    pub fn create_user(&self, username: &str, password_hash: &str, now: i64) -> Result<UserId> {
        self.create_user_with_profile(username, password_hash, &UserProfile::default(), now)
    }

    /// Creates a user with a profile, in one statement; `Error::Conflict` when the name is
    /// taken.
    pub fn create_user_with_profile(
        &self,
        username: &str,
        password_hash: &str,
        profile: &UserProfile<'_>,
        now: i64,
    ) -> Result<UserId> {
        self.write(|db| {
            db.query_row(
                "INSERT INTO users (username, password_hash, created_at, subject, display_name, \
                 email, email_verified) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                &[
                    &username,
                    &password_hash,
                    &now,
                    &new_subject(),
                    &profile.display_name,
                    &profile.email,
                    &profile.email_verified,
                ],
                |r| r.get(0),
            )?
            .ok_or_else(|| Error::Internal("INSERT … RETURNING gave no id".into()))
        })
    }

    /// Changes the profile fields given and leaves the rest, in one `UPDATE`; `false` when
    /// there is no such user. Clearing the email also clears `email_verified`.
    pub fn update_user_profile(
        &self,
        username: &str,
        changes: &ProfileChanges<'_>,
    ) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE users SET \
                 display_name = CASE WHEN ?2 = 1 THEN ?3 ELSE display_name END, \
                 email = CASE WHEN ?4 = 1 THEN ?5 ELSE email END, \
                 email_verified = CASE WHEN ?4 = 1 AND CAST(?5 AS TEXT) IS NULL THEN 0 \
                                       WHEN CAST(?6 AS BIGINT) IS NOT NULL THEN ?6 \
                                       ELSE email_verified END \
                 WHERE username = ?1",
                &[
                    &username,
                    &changes.display_name.is_some(),
                    &changes.display_name.flatten(),
                    &changes.email.is_some(),
                    &changes.email.flatten(),
                    &changes.email_verified,
                ],
            )
        })?;
        Ok(changed == 1)
    }

    pub fn find_user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.conn.query_row(
            concat!("SELECT ", columns!(), " FROM users WHERE username = ?1"),
            &[&username],
            from_row,
        )
    }

    pub fn find_user(&self, id: UserId) -> Result<Option<User>> {
        self.conn.query_row(
            concat!("SELECT ", columns!(), " FROM users WHERE id = ?1"),
            &[&id],
            from_row,
        )
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.conn.query_rows(
            concat!("SELECT ", columns!(), " FROM users ORDER BY username"),
            &[],
            from_row,
        )
    }

    pub fn set_user_password(&self, username: &str, password_hash: &str) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE users SET password_hash = ?2 WHERE username = ?1",
                &[&username, &password_hash],
            )
        })?;
        Ok(changed == 1)
    }

    /// Enables or disables a user; `false` when there is no such user.
    pub fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE users SET disabled = ?2 WHERE username = ?1",
                &[&username, &disabled],
            )
        })?;
        Ok(changed == 1)
    }

    /// Removes a user; their sessions, grants and tokens go with them (ON DELETE CASCADE).
    pub fn delete_user(&self, username: &str) -> Result<bool> {
        let changed =
            self.write(|db| db.execute("DELETE FROM users WHERE username = ?1", &[&username]))?;
        Ok(changed == 1)
    }

    pub fn count_users(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM users", &[], |r| r.get(0))?
            .unwrap_or(0))
    }
}
