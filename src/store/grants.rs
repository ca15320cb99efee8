//! Grants and their tokens: `grants`, `access_tokens`, `refresh_tokens`.
//! A grant is one approved device login; tokens are stored as SHA-256 hashes only.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{Result, Store};

/// Hashes and expiry times of a freshly minted token pair.
pub struct IssuedTokens<'a> {
    pub access_hash: &'a str,
    pub access_expires_at: i64,
    pub refresh_hash: &'a str,
    pub refresh_expires_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// This call won: the grant exists and the tokens are stored.
    Redeemed { grant_id: i64, user_id: i64 },
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
        device_code_id: i64,
        tokens: &IssuedTokens<'_>,
        now: i64,
    ) -> Result<RedeemOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed = tx
            .prepare_cached(
                "UPDATE device_codes SET status = 'redeemed' \
                 WHERE id = ?1 AND status = 'approved' AND expires_at > ?2 \
                 AND user_id IN (SELECT id FROM users WHERE disabled = 0) \
                 RETURNING user_id, client_id, scope, decided_at, decided_ip, device_ip, \
                 device_user_agent",
            )?
            .query_row(params![device_code_id, now], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .optional()?;
        let Some((user_id, client_id, scope, decided_at, decided_ip, device_ip, user_agent)) =
            claimed
        else {
            return Ok(RedeemOutcome::NotRedeemable);
        };
        tx.prepare_cached(
            "INSERT INTO grants (user_id, client_id, scope, approved_at, approved_ip, device_ip, \
             device_user_agent, created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?
        .execute(params![
            user_id,
            client_id,
            scope,
            decided_at.unwrap_or(now),
            decided_ip,
            device_ip,
            user_agent,
            now
        ])?;
        let grant_id = tx.last_insert_rowid();
        insert_token_pair(&tx, grant_id, &scope, tokens, now)?;
        tx.commit()?;
        Ok(RedeemOutcome::Redeemed { grant_id, user_id })
    }

    /// The grant id and scope of a live (unexpired, unrevoked) access token.
    pub fn find_live_access_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(i64, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.grant_id, t.scope FROM access_tokens t JOIN grants g ON g.id = t.grant_id \
             WHERE t.token_hash = ?1 AND t.expires_at > ?2 AND g.revoked_at IS NULL",
        )?;
        Ok(stmt
            .query_row(params![token_hash, now], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
}

fn insert_token_pair(
    tx: &rusqlite::Transaction<'_>,
    grant_id: i64,
    scope: &str,
    tokens: &IssuedTokens<'_>,
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, grant_id, scope, issued_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        tokens.access_hash,
        grant_id,
        scope,
        now,
        tokens.access_expires_at
    ])?;
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, grant_id, scope, issued_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        tokens.refresh_hash,
        grant_id,
        scope,
        now,
        tokens.refresh_expires_at
    ])?;
    Ok(())
}
