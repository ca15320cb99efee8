//! The `sessions` table: server-side browser sessions, keyed by the hash of the cookie value.

use super::{Result, Store, UserId};

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl Store {
    pub fn create_session(
        &self,
        id_hash: &str,
        user_id: Option<UserId>,
        csrf_token: &str,
        now: i64,
    ) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                &[&id_hash, &user_id, &csrf_token, &now],
            )
        })?;
        Ok(())
    }

    /// A session that is neither idle since `idle_cutoff` nor older than `absolute_cutoff`,
    /// and whose user (if any) is still enabled.
    pub fn find_session(
        &self,
        id_hash: &str,
        idle_cutoff: i64,
        absolute_cutoff: i64,
    ) -> Result<Option<SessionRow>> {
        self.conn.query_row(
            "SELECT s.id_hash, s.user_id, u.username, s.csrf_token, s.created_at, s.last_seen_at \
             FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = ?1 AND s.last_seen_at > ?2 AND s.created_at > ?3 \
             AND (s.user_id IS NULL OR u.disabled = 0)",
            &[&id_hash, &idle_cutoff, &absolute_cutoff],
            |r| {
                Ok(SessionRow {
                    id_hash: r.get(0)?,
                    user_id: r.get(1)?,
                    username: r.get(2)?,
                    csrf_token: r.get(3)?,
                    created_at: r.get(4)?,
                    last_seen_at: r.get(5)?,
                })
            },
        )
    }

    pub fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
                &[&id_hash, &now],
            )
        })?;
        Ok(())
    }

    pub fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.write(|db| db.execute("DELETE FROM sessions WHERE id_hash = ?1", &[&id_hash]))?;
        Ok(())
    }

    /// Ends every session of a user (after a password change).
    pub fn delete_user_sessions(&self, user_id: UserId) -> Result<usize> {
        self.write(|db| db.execute("DELETE FROM sessions WHERE user_id = ?1", &[&user_id]))
    }

    /// Removes up to `limit` sessions idle since `idle_cutoff` or created before
    /// `absolute_cutoff`.
    pub fn delete_expired_sessions(
        &self,
        idle_cutoff: i64,
        absolute_cutoff: i64,
        limit: u32,
    ) -> Result<usize> {
        self.write(|db| {
            db.execute(
                "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
                 WHERE last_seen_at <= ?1 OR created_at <= ?2 LIMIT ?3)",
                &[&idle_cutoff, &absolute_cutoff, &limit],
            )
        })
    }
}
