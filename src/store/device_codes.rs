//! The `device_codes` table: one row per device authorization request (RFC 8628 §3.1)
//! from issue, through the person's decision, to redemption at the token endpoint.

use std::sync::{Arc, OnceLock};

use super::db::{Isolation, Row};
use super::{lock, DeviceCodeId, Error, Result, Store, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCodeStatus {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

impl DeviceCodeStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceCodeStatus::Pending => "pending",
            DeviceCodeStatus::Approved => "approved",
            DeviceCodeStatus::Denied => "denied",
            DeviceCodeStatus::Redeemed => "redeemed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(DeviceCodeStatus::Pending),
            "approved" => Ok(DeviceCodeStatus::Approved),
            "denied" => Ok(DeviceCodeStatus::Denied),
            "redeemed" => Ok(DeviceCodeStatus::Redeemed),
            other => Err(Error::Internal(format!("device code status {other:?}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub id: DeviceCodeId,
    pub device_code_hash: String,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub status: DeviceCodeStatus,
    pub user_id: Option<UserId>,
    pub interval: u64,
    pub device_ip: String,
    pub device_user_agent: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Unix seconds: when the approver signed in (OIDC `auth_time`); `None` until approved.
    pub auth_time: Option<i64>,
    /// Unix seconds: when it was approved or denied.
    pub decided_at: Option<i64>,
}

/// A code its person approved that the device has not redeemed yet (the account page).
#[derive(Debug, Clone)]
pub struct ApprovedCode {
    pub id: DeviceCodeId,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub device_ip: String,
    pub device_user_agent: Option<String>,
    /// Unix seconds of the approval.
    pub approved_at: i64,
    /// Unix seconds after which the device can no longer redeem it.
    pub expires_at: i64,
}

/// Most approved-but-unredeemed codes listed for one person.
const APPROVED_CODES_LISTED: i64 = 100;

/// A new request, owned: it may wait in the group-commit queue (`create_device_code`).
pub struct NewDeviceCode {
    pub device_code_hash: String,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub interval: u64,
    pub device_ip: String,
    pub device_user_agent: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// `interval` is quoted: a type name in PostgreSQL.
macro_rules! columns {
    () => {
        "id, device_code_hash, user_code, client_id, scope, status, user_id, \
         \"interval\", device_ip, device_user_agent, created_at, expires_at, auth_time, \
         decided_at"
    };
}

fn from_row(row: &Row<'_>) -> Result<DeviceCode> {
    Ok(DeviceCode {
        id: row.get(0)?,
        device_code_hash: row.get(1)?,
        user_code: row.get(2)?,
        client_id: row.get(3)?,
        scope: row.get(4)?,
        status: DeviceCodeStatus::parse(&row.get::<String>(5)?)?,
        user_id: row.get(6)?,
        interval: row.get(7)?,
        device_ip: row.get(8)?,
        device_user_agent: row.get(9)?,
        created_at: row.get(10)?,
        expires_at: row.get(11)?,
        auth_time: row.get(12)?,
        decided_at: row.get(13)?,
    })
}

/// A new request waiting for the next group commit, and where its outcome goes.
pub(super) struct QueuedCode {
    code: NewDeviceCode,
    outcome: Arc<OnceLock<Result<bool>>>,
}

impl Store {
    /// Stores a new request. `Ok(false)` when its user code is already taken by another
    /// unswept code, so the caller draws a new one.
    ///
    /// Group commit: the request is queued, then whoever holds the write turn inserts
    /// every queued request in one transaction, so concurrent authorizations share one
    /// commit (its WAL writes, locks and checkpoint share) instead of each paying for one.
    /// A request is answered only once its transaction has committed; if the commit
    /// fails, every request in it fails with the same error and none is stored.
    pub fn create_device_code(&self, code: NewDeviceCode) -> Result<bool> {
        let outcome = Arc::new(OnceLock::new());
        lock(&self.shared.codes).push(QueuedCode {
            code,
            outcome: Arc::clone(&outcome),
        });
        // The group-commit turn, on either backend: one holder inserts the whole queue.
        let _writing = lock(&self.shared.writer);
        // The previous turn's holder may have committed ours with its own.
        if outcome.get().is_none() {
            let batch = std::mem::take(&mut *lock(&self.shared.codes));
            match self.insert_device_codes(&batch) {
                Ok(stored) => {
                    for (queued, stored) in batch.iter().zip(stored) {
                        let _ = queued.outcome.set(Ok(stored));
                    }
                }
                Err(e) => {
                    for queued in &batch {
                        let _ = queued.outcome.set(Err(e.clone()));
                    }
                }
            }
        }
        outcome.get().cloned().unwrap_or_else(|| {
            // Only if a turn holder panicked between taking ours and answering it.
            Err(Error::Internal("a queued device code was lost".into()))
        })
    }

    /// One transaction for the batch: whether each row was stored (`false`: its user code
    /// was taken), or an error and nothing stored.
    fn insert_device_codes(&self, batch: &[QueuedCode]) -> Result<Vec<bool>> {
        // The group-commit turn is held (SQLite's write turn is that same mutex). Inserts
        // only, each deciding nothing from a read: PostgreSQL's READ COMMITTED is enough
        // (ON CONFLICT settles a taken code), and spares SERIALIZABLE's bookkeeping.
        self.conn.transaction_at(Isolation::ReadCommitted, |tx| {
            let mut stored = Vec::with_capacity(batch.len());
            for QueuedCode { code, .. } in batch {
                // A taken user code (or, vanishingly unlikely, device code hash) skips only
                // its own row; the rest go on. ON CONFLICT rather than a failed statement:
                // a failed statement ends a PostgreSQL transaction.
                let inserted = tx.execute(
                    "INSERT INTO device_codes (device_code_hash, user_code, client_id, scope, \
                     status, \"interval\", device_ip, device_user_agent, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                    &[
                        &code.device_code_hash,
                        &code.user_code,
                        &code.client_id,
                        &code.scope,
                        &code.interval,
                        &code.device_ip,
                        &code.device_user_agent,
                        &code.created_at,
                        &code.expires_at,
                    ],
                )?;
                stored.push(inserted == 1);
            }
            Ok(stored)
        })
    }

    pub fn find_device_code_by_hash(&self, device_code_hash: &str) -> Result<Option<DeviceCode>> {
        self.conn.query_row(
            concat!(
                "SELECT ",
                columns!(),
                " FROM device_codes WHERE device_code_hash = ?1"
            ),
            &[&device_code_hash],
            from_row,
        )
    }

    pub fn find_device_code_by_user_code(&self, user_code: &str) -> Result<Option<DeviceCode>> {
        self.conn.query_row(
            concat!(
                "SELECT ",
                columns!(),
                " FROM device_codes WHERE user_code = ?1"
            ),
            &[&user_code],
            from_row,
        )
    }

    /// Records the person's decision on a pending, unexpired code: `Some(user)` approves,
    /// `None` denies; `auth_time` (Unix seconds) is when the approver signed in. One
    /// conditional UPDATE, so of two racing decisions exactly one wins; `Ok(false)` means
    /// the code was no longer pending (the caller re-reads to say why).
    pub fn decide_device_code(
        &self,
        user_code: &str,
        approver: Option<UserId>,
        auth_time: Option<i64>,
        decided_ip: &str,
        now: i64,
    ) -> Result<bool> {
        let status = match approver {
            Some(_) => DeviceCodeStatus::Approved,
            None => DeviceCodeStatus::Denied,
        };
        let changed = self.write(|db| {
            db.execute(
                "UPDATE device_codes SET status = ?1, user_id = ?2, decided_at = ?3, \
                 decided_ip = ?4, auth_time = ?6 \
                 WHERE user_code = ?5 AND status = 'pending' AND expires_at > ?3",
                &[
                    &status.as_str(),
                    &approver,
                    &now,
                    &decided_ip,
                    &user_code,
                    &approver.and(auth_time),
                ],
            )
        })?;
        if changed == 1 {
            // After the commit, so a reader that saw the old count also saw the old row.
            self.decided();
        }
        Ok(changed == 1)
    }

    /// `user_id`'s approved codes that no device has redeemed yet and that have not expired,
    /// newest approval first (at most 100).
    pub fn list_approved_device_codes(
        &self,
        user_id: UserId,
        now: i64,
    ) -> Result<Vec<ApprovedCode>> {
        self.conn.query_rows(
            "SELECT d.id, d.client_id, c.name, d.scope, d.device_ip, d.device_user_agent, \
             COALESCE(d.decided_at, d.created_at), d.expires_at \
             FROM device_codes d JOIN clients c ON c.client_id = d.client_id \
             WHERE d.user_id = ?1 AND d.status = 'approved' AND d.expires_at > ?2 \
             ORDER BY d.decided_at DESC, d.id DESC LIMIT ?3",
            &[&user_id, &now, &APPROVED_CODES_LISTED],
            |r| {
                Ok(ApprovedCode {
                    id: r.get(0)?,
                    client_id: r.get(1)?,
                    client_name: r.get(2)?,
                    scope: r.get(3)?,
                    device_ip: r.get(4)?,
                    device_user_agent: r.get(5)?,
                    approved_at: r.get(6)?,
                    expires_at: r.get(7)?,
                })
            },
        )
    }

    /// Turns `owner`'s approved, unredeemed, unexpired code `id` into a denied one, so the
    /// device's next poll is refused. One conditional UPDATE: of this and a racing
    /// redemption exactly one wins. `Ok(false)`: no such code of `owner`'s in that state.
    pub fn cancel_approved_device_code(
        &self,
        id: DeviceCodeId,
        owner: UserId,
        now: i64,
    ) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE device_codes SET status = 'denied', decided_at = ?3 \
                 WHERE id = ?1 AND user_id = ?2 AND status = 'approved' AND expires_at > ?3",
                &[&id, &owner, &now],
            )
        })?;
        if changed == 1 {
            // A decision like any other: poll state remembered before it is stale now.
            self.decided();
        }
        Ok(changed == 1)
    }

    /// Pending, unexpired requests, newest first (for the operator).
    pub fn list_pending_device_codes(&self, now: i64) -> Result<Vec<DeviceCode>> {
        self.conn.query_rows(
            concat!(
                "SELECT ",
                columns!(),
                " FROM device_codes WHERE status = 'pending' AND expires_at > ?1 \
                 ORDER BY created_at DESC"
            ),
            &[&now],
            from_row,
        )
    }

    /// Deletes up to `limit` codes that expired before `cutoff`; returns how many. Bounded
    /// so one sweep never holds the write lock long enough to stall requests.
    pub fn delete_expired_device_codes(&self, cutoff: i64, limit: u32) -> Result<usize> {
        self.write(|db| {
            db.execute(
                "DELETE FROM device_codes WHERE id IN \
                 (SELECT id FROM device_codes WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
                &[&cutoff, &limit],
            )
        })
    }
}

impl Store {
    /// Device codes by state for metrics; pending codes past their lifetime count as `expired`.
    pub fn count_device_codes_by_state(&self, now: i64) -> Result<Vec<(String, i64)>> {
        self.conn.query_rows(
            "SELECT CASE WHEN status = 'pending' AND expires_at <= ?1 THEN 'expired' \
             ELSE status END AS state, COUNT(*) FROM device_codes GROUP BY state ORDER BY state",
            &[&now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(user_code: &str) -> QueuedCode {
        QueuedCode {
            code: NewDeviceCode {
                device_code_hash: format!("hash-{user_code}-{}", rand::random::<u64>()),
                user_code: user_code.to_string(),
                client_id: "guest".into(),
                scope: "read".into(),
                interval: 5,
                device_ip: "127.0.0.1".into(),
                device_user_agent: None,
                created_at: 0,
                expires_at: 600,
            },
            outcome: Arc::default(),
        }
    }

    #[test]
    fn a_taken_user_code_fails_only_its_own_row_of_a_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).expect("store");
        store
            .conn
            .execute(
                "INSERT INTO clients (client_id, name, scopes, grant_types, created_at) \
                 VALUES ('guest', 'Guest', 'read', 'x', 0)",
                &[],
            )
            .expect("client");
        let batch = [queued("AAAA"), queued("AAAA"), queued("BBBB")];
        let outcomes: Vec<bool> = store.insert_device_codes(&batch).expect("no store error");
        assert_eq!(outcomes, [true, false, true]);
        for (code, stored) in batch.iter().zip([true, false, true]) {
            let found = store
                .find_device_code_by_hash(&code.code.device_code_hash)
                .expect("read");
            assert_eq!(found.is_some(), stored);
        }
    }
}
