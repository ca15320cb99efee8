//! `devicegate migrate`: every row of one database copied into another (issue #15), e.g.
//! from the SQLite file a server outgrew into PostgreSQL. The target is written in one
//! transaction, so an interrupted copy leaves it as it was; row counts are compared
//! afterwards inside that same transaction.

use super::db::{Backend, Conn, Isolation, OwnedValue, Param};
use super::{Error, Result, Store};

/// Every table with its columns, parents before children (foreign keys hold at each
/// insert). Columns are named, so the two schemas' column order does not matter.
const TABLES: &[(&str, &str)] = &[
    (
        "clients",
        "client_id, name, secret_hash, scopes, grant_types, device_code_ttl, poll_interval, \
         created_at, access_token_format, access_token_audience, id_token_signed_response_alg, \
         refresh_requires_offline_access",
    ),
    (
        "users",
        "id, username, password_hash, disabled, created_at, subject, display_name, email, \
         email_verified",
    ),
    (
        "signing_keys",
        "kid, alg, private_key, public_jwk, created_at, retire_after",
    ),
    (
        "device_codes",
        "id, device_code_hash, user_code, client_id, scope, status, user_id, \"interval\", \
         device_ip, device_user_agent, created_at, expires_at, decided_at, decided_ip, auth_time",
    ),
    (
        "grants",
        "id, user_id, client_id, scope, approved_at, approved_ip, device_ip, device_user_agent, \
         created_at, last_used_at, revoked_at, auth_time",
    ),
    (
        "access_tokens",
        "token_hash, grant_id, scope, issued_at, expires_at",
    ),
    (
        "refresh_tokens",
        "token_hash, grant_id, scope, issued_at, expires_at, rotated_at, rotated_from, \
         grace_retries",
    ),
    (
        "sessions",
        "id_hash, user_id, csrf_token, created_at, last_seen_at",
    ),
    ("throttles", "key, window_start, failures"),
];

/// Tables whose `id` the database assigns (an identity column on PostgreSQL, whose
/// sequence must continue after the copied ids).
const NUMBERED: &[&str] = &["users", "device_codes", "grants"];

/// Rows per table, in `TABLES`' order.
pub type RowCounts = Vec<(&'static str, i64)>;

impl Store {
    /// Rows per table (what `migrate` compares, and what "empty" means).
    pub fn row_counts(&self) -> Result<RowCounts> {
        row_counts(&self.conn)
    }

    /// Copies every row of `source` into this (the target) store, in one transaction.
    /// Refuses (`Error::Conflict`, nothing written) when this store has rows, unless
    /// `replace`: then they are deleted first, in the same transaction. Returns the counts,
    /// verified equal on both sides before the commit.
    pub fn copy_from(&self, source: &Store, replace: bool) -> Result<RowCounts> {
        // One snapshot of the source for the whole copy, so a server still writing to it
        // cannot make the copy inconsistent (a grant without its user): on SQLite the
        // write lock (a writer waits, or gets its busy error, until the copy is done),
        // on PostgreSQL REPEATABLE READ. What is written after the copy is not in it: the
        // caller says to stop the servers first.
        source
            .conn
            .transaction_at(Isolation::Snapshot, |src| self.copy_snapshot(src, replace))
    }

    fn copy_snapshot(&self, source: &Conn, replace: bool) -> Result<RowCounts> {
        let expected = row_counts(source)?;
        self.transaction(|tx| {
            // A server using the target would answer from rows deleted under it.
            let serving = other_instances(tx)?;
            if serving > 0 {
                return Err(Error::Conflict(format!(
                    "{serving} devicegate connections are open on the target; stop the \
                     servers using it first"
                )));
            }
            let present: i64 = row_counts(tx)?.iter().map(|(_, n)| n).sum();
            if present > 0 && !replace {
                return Err(Error::Conflict(format!(
                    "the target already holds {present} rows; pass --force to replace them"
                )));
            }
            for (table, _) in TABLES.iter().rev() {
                tx.execute(&format!("DELETE FROM {table}"), &[])?;
            }
            for (table, columns) in TABLES {
                copy_table(source, tx, table, columns)?;
            }
            if tx.backend() == Backend::Postgres {
                for table in NUMBERED {
                    // The next id after the largest copied (1 on an empty table).
                    tx.query_row(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                             COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                        ),
                        &[],
                        |_| Ok(()),
                    )?;
                }
            }
            let copied = row_counts(tx)?;
            if copied != expected {
                return Err(Error::Internal(format!(
                    "row counts differ after the copy (source {expected:?}, target \
                     {copied:?}); nothing was written"
                )));
            }
            Ok(copied)
        })
    }
}

/// PostgreSQL: other devicegate connections to this database (servers, admin commands).
/// SQLite: 0 (a server's open file cannot be seen from here; the README says to stop it).
fn other_instances(conn: &Conn) -> Result<i64> {
    if conn.backend() != Backend::Postgres {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'devicegate' AND pid <> pg_backend_pid()",
            &[],
            |r| r.get(0),
        )?
        .unwrap_or(0))
}

fn row_counts(conn: &Conn) -> Result<RowCounts> {
    TABLES
        .iter()
        .map(|(table, _)| {
            let n = conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), &[], |r| r.get(0))?
                .unwrap_or(0);
            Ok((*table, n))
        })
        .collect()
}

fn copy_table(source: &Conn, target: &Conn, table: &str, columns: &str) -> Result<()> {
    let width = columns.split(',').count();
    let placeholders = (1..=width)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO {table} ({columns}) VALUES ({placeholders})");
    let rows: Vec<Vec<OwnedValue>> =
        source.query_rows(&format!("SELECT {columns} FROM {table}"), &[], |r| {
            (0..width).map(|i| r.owned(i)).collect()
        })?;
    for row in &rows {
        let params: Vec<&dyn Param> = row.iter().map(|v| v as &dyn Param).collect();
        target.execute(&insert, &params)?;
    }
    Ok(())
}
