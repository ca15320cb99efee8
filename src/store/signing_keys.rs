//! The `signing_keys` table: OpenID Connect signing keys (issue #14). Private keys are
//! read only to sign; `SigningKeyRow`'s `Debug` leaves them out, and nothing here logs.

use super::db::Row;
use super::{Result, Store};

/// One signing key. `private_key` is secret: base64 of the DER (PKCS#1 for RSA, PKCS#8
/// for Ed25519); it is never printed (see the `Debug` below).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    /// `RS256` or `EdDSA`.
    pub alg: String,
    pub private_key: String,
    /// The public half as a JWK (RFC 7517 §4), JSON.
    pub public_jwk: String,
    /// Unix seconds: published in the JWKS from then on.
    pub created_at: i64,
    /// Unix seconds after which every token it signed has expired; `None` while it still
    /// signs (or its successor has not taken over yet).
    pub retire_after: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    // By hand, so the private key never reaches a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retire_after", &self.retire_after)
            .finish_non_exhaustive()
    }
}

/// A key to store (`kid`, `alg`, secret `private_key`, `public_jwk`, as in the row).
pub struct NewSigningKey<'a> {
    pub kid: &'a str,
    pub alg: &'a str,
    pub private_key: &'a str,
    pub public_jwk: &'a str,
}

macro_rules! columns {
    () => {
        "kid, alg, private_key, public_jwk, created_at, retire_after"
    };
}

fn from_row(row: &Row<'_>) -> Result<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: row.get(0)?,
        alg: row.get(1)?,
        private_key: row.get(2)?,
        public_jwk: row.get(3)?,
        created_at: row.get(4)?,
        retire_after: row.get(5)?,
    })
}

impl Store {
    /// Adds a key (`key rotate`); `Error::Conflict` when the kid exists.
    pub fn create_signing_key(&self, key: &NewSigningKey<'_>, now: i64) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[&key.kid, &key.alg, &key.private_key, &key.public_jwk, &now],
            )
        })?;
        Ok(())
    }

    /// Adds the key unless a key of its `alg` exists (a first start; two processes racing
    /// on a new file leave one key per algorithm). True when it was added.
    pub fn create_first_signing_key(&self, key: &NewSigningKey<'_>, now: i64) -> Result<bool> {
        // A transaction: on PostgreSQL, two instances' first starts must not both see "no
        // key" (SERIALIZABLE makes one of them retry and then see the other's).
        let added = self.transaction(|tx| {
            tx.execute(
                "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at) \
                 SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), \
                 CAST(?4 AS TEXT), CAST(?5 AS BIGINT) \
                 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE alg = ?2)",
                &[&key.kid, &key.alg, &key.private_key, &key.public_jwk, &now],
            )
        })?;
        Ok(added == 1)
    }

    /// Which algorithms have at least one key.
    pub fn signing_key_algs(&self) -> Result<Vec<String>> {
        self.conn.query_rows(
            "SELECT DISTINCT alg FROM signing_keys ORDER BY alg",
            &[],
            |r| r.get(0),
        )
    }

    /// Every key, oldest first (ties by kid).
    pub fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        self.conn.query_rows(
            concat!(
                "SELECT ",
                columns!(),
                " FROM signing_keys ORDER BY created_at, kid"
            ),
            &[],
            from_row,
        )
    }

    /// Records when a superseded key's last token expires, once (an existing value stays).
    pub fn set_signing_key_retire_after(&self, kid: &str, at: i64) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE signing_keys SET retire_after = ?2 WHERE kid = ?1 AND retire_after IS NULL",
                &[&kid, &at],
            )
        })?;
        Ok(changed == 1)
    }

    /// Forgets a key's retirement time (it signs again); true when there was one.
    pub fn clear_signing_key_retire_after(&self, kid: &str) -> Result<bool> {
        let changed = self.write(|db| {
            db.execute(
                "UPDATE signing_keys SET retire_after = NULL WHERE kid = ?1 AND retire_after IS NOT NULL",
                &[&kid],
            )
        })?;
        Ok(changed == 1)
    }

    /// Deletes a key with its private half (retirement); false when there is no such kid.
    pub fn delete_signing_key(&self, kid: &str) -> Result<bool> {
        let changed =
            self.write(|db| db.execute("DELETE FROM signing_keys WHERE kid = ?1", &[&kid]))?;
        Ok(changed == 1)
    }
}
