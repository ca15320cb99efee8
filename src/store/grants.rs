//! Grants and their tokens: `grants`, `access_tokens`, `refresh_tokens`.
//! A grant is one approved device login; tokens are stored as SHA-256 hashes only.

use super::db::Conn;
use super::{DeviceCodeId, GrantId, Result, Store, UserId};

/// Hashes and expiry times of freshly minted tokens: an access token, and a refresh token
/// unless `refresh_hash` is `None` (a client that requires `offline_access` for one).
pub struct IssuedTokens<'a> {
    pub access_hash: &'a str,
    pub access_expires_at: i64,
    pub refresh_hash: Option<&'a str>,
    pub refresh_expires_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// This call won: the grant exists and the tokens are stored.
    Redeemed { grant_id: GrantId, user_id: UserId },
    /// Another poll redeemed it first, it expired, it was not approved, or the approving
    /// user has been disabled.
    NotRedeemable,
}

impl Store {
    /// Turns an approved device code into a grant with its first tokens, exactly once:
    /// the conditional UPDATE inside an IMMEDIATE transaction lets one caller win even
    /// when many pollers (in any process) race on the same code.
    pub fn redeem_device_code(
        &mut self,
        device_code_id: DeviceCodeId,
        tokens: &IssuedTokens<'_>,
        now: i64,
    ) -> Result<RedeemOutcome> {
        self.transaction(|tx| {
            let claimed = tx.query_row(
                "UPDATE device_codes SET status = 'redeemed' \
                 WHERE id = ?1 AND status = 'approved' AND expires_at > ?2 \
                 AND user_id IN (SELECT id FROM users WHERE disabled = 0) \
                 RETURNING user_id, client_id, scope, decided_at, decided_ip, device_ip, \
                 device_user_agent, auth_time",
                &[&device_code_id, &now],
                |r| {
                    Ok((
                        r.get::<UserId>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<Option<i64>>(3)?,
                        r.get::<Option<String>>(4)?,
                        r.get::<String>(5)?,
                        r.get::<Option<String>>(6)?,
                        r.get::<Option<i64>>(7)?,
                    ))
                },
            )?;
            let Some((
                user_id,
                client_id,
                scope,
                decided_at,
                decided_ip,
                device_ip,
                user_agent,
                auth_time,
            )) = claimed
            else {
                return Ok(RedeemOutcome::NotRedeemable);
            };
            let grant_id: GrantId = tx
                .query_row(
                    "INSERT INTO grants (user_id, client_id, scope, approved_at, approved_ip, \
                     device_ip, device_user_agent, created_at, last_used_at, auth_time) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9) RETURNING id",
                    &[
                        &user_id,
                        &client_id,
                        &scope,
                        &decided_at.unwrap_or(now),
                        &decided_ip,
                        &device_ip,
                        &user_agent,
                        &now,
                        &auth_time,
                    ],
                    |r| r.get(0),
                )?
                .ok_or_else(|| super::Error::Internal("INSERT … RETURNING gave no id".into()))?;
            insert_token_pair(tx, grant_id, &scope, &scope, tokens, None, now)?;
            Ok(RedeemOutcome::Redeemed { grant_id, user_id })
        })
    }
}

/// Stores a token pair (or only the access token, without a refresh hash); `rotated_from`: the hash of the refresh token it was exchanged for.
/// RFC 6749 §6: a new refresh token keeps the grant's scope, while the access token carries
/// the (possibly narrowed) scope asked for.
fn insert_token_pair(
    tx: &Conn,
    grant_id: GrantId,
    access_scope: &str,
    refresh_scope: &str,
    tokens: &IssuedTokens<'_>,
    rotated_from: Option<&str>,
    now: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO access_tokens (token_hash, grant_id, scope, issued_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            &tokens.access_hash,
            &grant_id,
            &access_scope,
            &now,
            &tokens.access_expires_at,
        ],
    )?;
    let Some(refresh_hash) = tokens.refresh_hash else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, grant_id, scope, issued_at, expires_at, \
         rotated_from) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            &refresh_hash,
            &grant_id,
            &refresh_scope,
            &now,
            &tokens.refresh_expires_at,
            &rotated_from,
        ],
    )?;
    Ok(())
}

/// A refresh token with what deciding on it needs.
#[derive(Debug, Clone)]
pub struct RefreshTokenRow {
    pub grant_id: GrantId,
    pub client_id: String,
    pub user_id: UserId,
    pub username: String,
    /// The user's OpenID Connect `sub`.
    pub subject: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    pub grant_revoked: bool,
    pub user_disabled: bool,
    /// The grant's OIDC `auth_time` (Unix seconds), else its approval time.
    pub auth_time: i64,
}

/// A live access token with its grant, client and user.
#[derive(Debug, Clone)]
pub struct AccessTokenRow {
    pub grant_id: GrantId,
    pub client_id: String,
    pub user_id: UserId,
    pub username: String,
    /// The user's OpenID Connect `sub`.
    pub subject: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub last_used_at: i64,
}

/// One grant, for the account page and the operator.
#[derive(Debug, Clone)]
pub struct GrantRow {
    pub id: GrantId,
    pub username: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub approved_at: i64,
    pub approved_ip: Option<String>,
    pub device_ip: Option<String>,
    pub device_user_agent: Option<String>,
    pub last_used_at: i64,
}

/// What `Store::sign_out_user_everywhere` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedOut {
    /// Browser sessions deleted.
    pub sessions: usize,
    /// Grants revoked (with all their tokens).
    pub grants: usize,
    /// Approved codes no device had redeemed, now denied.
    pub codes: usize,
}

/// What the store knows about a presented refresh token, read inside the exchange's
/// transaction: the facts `protocol::refresh` decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshFacts {
    pub grant_id: GrantId,
    /// Unix seconds when it was exchanged for a successor; `None`: never exchanged.
    pub rotated_at: Option<i64>,
    /// How many times it was presented again and answered as a retry.
    pub grace_retries: i64,
    /// Whether a token issued in exchange for it (its successor, or a retry's) has itself
    /// been exchanged since. Always `false` when `rotated_at` is `None`.
    pub successor_rotated: bool,
}

/// What to do with a presented refresh token (decided by `protocol::refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStep {
    /// Mark it exchanged and store the new pair.
    Rotate,
    /// It was exchanged already; count a retry and store another new pair beside the
    /// successor, which stays valid.
    Retry,
    /// Reuse: revoke the whole grant and store nothing.
    Revoke,
    /// Answer no: store nothing, revoke nothing.
    Refuse,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// `RefreshStep::Rotate` done: new tokens stored.
    Rotated,
    /// `RefreshStep::Retry` done: new tokens stored, the earlier successor untouched.
    Retried,
    /// `RefreshStep::Revoke` done: the grant and all its tokens are gone (RFC 9700 §4.14.2).
    Revoked,
    /// `RefreshStep::Refuse`: nothing changed.
    Refused,
    /// Unknown, expired, or its grant revoked or user disabled (checked again inside the
    /// transaction).
    Invalid,
}

impl Store {
    pub fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRow>> {
        self.conn.query_row(
            "SELECT r.grant_id, g.client_id, g.user_id, u.username, r.scope, r.issued_at, \
             r.expires_at, r.rotated_at, g.revoked_at IS NOT NULL, u.disabled, \
             COALESCE(u.subject, ''), COALESCE(g.auth_time, g.approved_at) \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id \
             JOIN users u ON u.id = g.user_id WHERE r.token_hash = ?1",
            &[&token_hash],
            |r| {
                Ok(RefreshTokenRow {
                    grant_id: r.get(0)?,
                    client_id: r.get(1)?,
                    user_id: r.get(2)?,
                    username: r.get(3)?,
                    scope: r.get(4)?,
                    issued_at: r.get(5)?,
                    expires_at: r.get(6)?,
                    rotated_at: r.get(7)?,
                    grant_revoked: r.get(8)?,
                    user_disabled: r.get(9)?,
                    subject: r.get(10)?,
                    auth_time: r.get(11)?,
                })
            },
        )
    }

    /// Exchanges a refresh token in one transaction: reads its `RefreshFacts`, asks
    /// `decide` what to do, and does it, so of many concurrent exchanges of one token each
    /// sees the others' effects (at most one rotates it). On PostgreSQL the transaction may
    /// run again after a collision, so `decide` may be asked more than once.
    pub fn refresh_grant(
        &mut self,
        old_hash: &str,
        access_scope: &str,
        tokens: &IssuedTokens<'_>,
        now: i64,
        decide: impl Fn(&RefreshFacts) -> RefreshStep,
    ) -> Result<RefreshOutcome> {
        self.transaction(|tx| {
            let row = tx.query_row(
                "SELECT r.grant_id, r.rotated_at, r.scope, r.grace_retries FROM refresh_tokens r \
                 JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
                 WHERE r.token_hash = ?1 AND r.expires_at > ?2 AND g.revoked_at IS NULL \
                 AND u.disabled = 0",
                &[&old_hash, &now],
                |r| {
                    Ok((
                        r.get::<GrantId>(0)?,
                        r.get::<Option<i64>>(1)?,
                        r.get::<String>(2)?,
                        r.get::<i64>(3)?,
                    ))
                },
            )?;
            let Some((grant_id, rotated_at, refresh_scope, grace_retries)) = row else {
                return Ok(RefreshOutcome::Invalid);
            };
            let successor_rotated = match rotated_at {
                None => false,
                Some(_) => {
                    tx.query_row(
                        "SELECT COUNT(*) FROM refresh_tokens WHERE grant_id = ?1 \
                         AND rotated_from = ?2 AND rotated_at IS NOT NULL",
                        &[&grant_id, &old_hash],
                        |r| r.get::<i64>(0),
                    )?
                    .unwrap_or(0)
                        > 0
                }
            };
            let facts = RefreshFacts {
                grant_id,
                rotated_at,
                grace_retries,
                successor_rotated,
            };
            let outcome = match decide(&facts) {
                RefreshStep::Rotate => {
                    tx.execute(
                        "UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1",
                        &[&old_hash, &now],
                    )?;
                    RefreshOutcome::Rotated
                }
                RefreshStep::Retry => {
                    tx.execute(
                        "UPDATE refresh_tokens SET grace_retries = grace_retries + 1 \
                         WHERE token_hash = ?1",
                        &[&old_hash],
                    )?;
                    RefreshOutcome::Retried
                }
                RefreshStep::Revoke => {
                    revoke_grant_in(tx, grant_id, now)?;
                    return Ok(RefreshOutcome::Revoked);
                }
                RefreshStep::Refuse => return Ok(RefreshOutcome::Refused),
            };
            insert_token_pair(
                tx,
                grant_id,
                access_scope,
                &refresh_scope,
                tokens,
                Some(old_hash),
                now,
            )?;
            tx.execute(
                "UPDATE grants SET last_used_at = ?2 WHERE id = ?1",
                &[&grant_id, &now],
            )?;
            Ok(outcome)
        })
    }

    /// An unexpired access token of a live grant whose user is enabled.
    pub fn find_access_token(&self, token_hash: &str, now: i64) -> Result<Option<AccessTokenRow>> {
        self.conn.query_row(
            "SELECT t.grant_id, g.client_id, g.user_id, u.username, t.scope, t.issued_at, \
             t.expires_at, g.last_used_at, COALESCE(u.subject, '') \
             FROM access_tokens t JOIN grants g ON g.id = t.grant_id \
             JOIN users u ON u.id = g.user_id \
             WHERE t.token_hash = ?1 AND t.expires_at > ?2 AND g.revoked_at IS NULL \
             AND u.disabled = 0",
            &[&token_hash, &now],
            |r| {
                Ok(AccessTokenRow {
                    grant_id: r.get(0)?,
                    client_id: r.get(1)?,
                    user_id: r.get(2)?,
                    username: r.get(3)?,
                    scope: r.get(4)?,
                    issued_at: r.get(5)?,
                    expires_at: r.get(6)?,
                    last_used_at: r.get(7)?,
                    subject: r.get(8)?,
                })
            },
        )
    }

    /// The client an access token (live or not) was issued to, for revocation.
    pub fn access_token_client(&self, token_hash: &str) -> Result<Option<String>> {
        self.conn.query_row(
            "SELECT g.client_id FROM access_tokens t JOIN grants g ON g.id = t.grant_id \
             WHERE t.token_hash = ?1",
            &[&token_hash],
            |r| r.get(0),
        )
    }

    pub fn delete_access_token(&self, token_hash: &str) -> Result<()> {
        self.write(|db| {
            db.execute(
                "DELETE FROM access_tokens WHERE token_hash = ?1",
                &[&token_hash],
            )
        })?;
        Ok(())
    }

    /// Ends a grant and deletes all its tokens; `false` when it was already revoked or
    /// does not exist (or, with `owner`, belongs to someone else).
    pub fn revoke_grant(
        &mut self,
        grant_id: GrantId,
        owner: Option<UserId>,
        now: i64,
    ) -> Result<bool> {
        self.transaction(|tx| {
            let owned: Option<UserId> = tx.query_row(
                "SELECT user_id FROM grants WHERE id = ?1 AND revoked_at IS NULL",
                &[&grant_id],
                |r| r.get(0),
            )?;
            let allowed = match (owned, owner) {
                (Some(actual), Some(expected)) => actual == expected,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if allowed {
                revoke_grant_in(tx, grant_id, now)?;
            }
            Ok(allowed)
        })
    }

    /// Ends everything `user_id` is signed in with, in one transaction: every browser
    /// session, every grant with its tokens, and every approved code no device has
    /// redeemed yet (denied, so the device is refused).
    pub fn sign_out_user_everywhere(&mut self, user_id: UserId, now: i64) -> Result<SignedOut> {
        let signed_out = self.transaction(|tx| {
            let sessions = tx.execute("DELETE FROM sessions WHERE user_id = ?1", &[&user_id])?;
            let grant_ids: Vec<GrantId> = tx.query_rows(
                "SELECT id FROM grants WHERE user_id = ?1 AND revoked_at IS NULL",
                &[&user_id],
                |r| r.get(0),
            )?;
            for &grant_id in &grant_ids {
                revoke_grant_in(tx, grant_id, now)?;
            }
            let codes = tx.execute(
                "UPDATE device_codes SET status = 'denied', decided_at = ?2 \
                 WHERE user_id = ?1 AND status = 'approved'",
                &[&user_id, &now],
            )?;
            Ok(SignedOut {
                sessions,
                grants: grant_ids.len(),
                codes,
            })
        })?;
        if signed_out.codes > 0 {
            self.decided();
        }
        Ok(signed_out)
    }

    /// Records use of a grant (shown on the account page).
    pub fn touch_grant(&self, grant_id: GrantId, now: i64) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE grants SET last_used_at = ?2 WHERE id = ?1",
                &[&grant_id, &now],
            )
        })?;
        Ok(())
    }

    /// Grants that still have a live refresh token (or, for a grant issued without one, a
    /// live access token), newest first; all users or one.
    pub fn list_active_grants(&self, user_id: Option<UserId>, now: i64) -> Result<Vec<GrantRow>> {
        self.conn.query_rows(
            "SELECT g.id, u.username, g.client_id, c.name, g.scope, g.approved_at, g.approved_ip, \
             g.device_ip, g.device_user_agent, g.last_used_at \
             FROM grants g JOIN users u ON u.id = g.user_id JOIN clients c ON c.client_id = g.client_id \
             WHERE g.revoked_at IS NULL AND (CAST(?1 AS BIGINT) IS NULL OR g.user_id = ?1) \
             AND (EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id \
                          AND r.rotated_at IS NULL AND r.expires_at > ?2) \
                  OR EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id \
                             AND a.expires_at > ?2)) \
             ORDER BY g.approved_at DESC, g.id DESC",
            &[&user_id, &now],
            |r| {
                Ok(GrantRow {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    client_id: r.get(2)?,
                    client_name: r.get(3)?,
                    scope: r.get(4)?,
                    approved_at: r.get(5)?,
                    approved_ip: r.get(6)?,
                    device_ip: r.get(7)?,
                    device_user_agent: r.get(8)?,
                    last_used_at: r.get(9)?,
                })
            },
        )
    }

    /// Deletes up to `limit` expired access and refresh tokens; returns how many.
    pub fn delete_expired_tokens(&self, now: i64, limit: u32) -> Result<usize> {
        self.write(|db| {
            let access = db.execute(
                "DELETE FROM access_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM access_tokens WHERE expires_at <= ?1 LIMIT ?2)",
                &[&now, &limit],
            )?;
            let refresh = db.execute(
                "DELETE FROM refresh_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
                &[&now, &limit],
            )?;
            Ok(access + refresh)
        })
    }
}

fn revoke_grant_in(tx: &Conn, grant_id: GrantId, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        &[&grant_id, &now],
    )?;
    tx.execute(
        "DELETE FROM access_tokens WHERE grant_id = ?1",
        &[&grant_id],
    )?;
    tx.execute(
        "DELETE FROM refresh_tokens WHERE grant_id = ?1",
        &[&grant_id],
    )?;
    Ok(())
}
