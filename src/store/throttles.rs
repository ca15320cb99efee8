//! The `throttles` table: failure counts per key in fixed windows (brute-force limits).
//! The store reports and changes counts; `protocol::limits` decides what they mean.

use super::db::Conn;
use super::{Result, Store};

/// One counter in its open window. A key without an open window reads as
/// `{ start: now, failures: 0 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleWindow {
    /// Unix seconds when the window opened.
    pub start: i64,
    pub failures: u32,
}

impl Store {
    /// The window for `key` that is still open at `now` (windows last `window` seconds);
    /// `None` when there is none.
    pub fn throttle_window(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<Option<ThrottleWindow>> {
        open_window(&self.conn, key, now, window)
    }

    /// Check and count in one step: in one transaction, reads every key's open window (each
    /// `(key, window)` with its own length in seconds), hands them to `decide`, and only if
    /// it answers `Ok` counts one failure against every key. Returns the windows as counted,
    /// or `decide`'s refusal (nothing written). Concurrent callers (in any instance) see
    /// each other's counts, so no two of them see the same count; on PostgreSQL a collision
    /// runs the transaction again, so `decide` may be asked more than once.
    pub fn reserve_throttle_attempt<R>(
        &self,
        keys: &[(String, i64)],
        now: i64,
        decide: impl Fn(&[ThrottleWindow]) -> std::result::Result<(), R>,
    ) -> Result<std::result::Result<Vec<ThrottleWindow>, R>> {
        self.transaction(|tx| {
            let mut windows = Vec::with_capacity(keys.len());
            for (key, window) in keys {
                let open = open_window(tx, key, now, *window)?;
                windows.push(open.unwrap_or(ThrottleWindow {
                    start: now,
                    failures: 0,
                }));
            }
            if let Err(refusal) = decide(&windows) {
                return Ok(Err(refusal));
            }
            for ((key, _), counted) in keys.iter().zip(windows.iter_mut()) {
                counted.failures = counted.failures.saturating_add(1);
                tx.execute(
                    "INSERT INTO throttles (key, window_start, failures) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET \
                     window_start = excluded.window_start, failures = excluded.failures",
                    &[key, &counted.start, &counted.failures],
                )?;
            }
            Ok(Ok(windows))
        })
    }

    /// Takes back one counted failure from each key (an attempt that turned out right, or
    /// was never made), never below zero; a counter back at zero is deleted.
    pub fn refund_throttle_attempt(&self, keys: &[String]) -> Result<()> {
        self.transaction(|tx| {
            for key in keys {
                tx.execute(
                    "UPDATE throttles SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
                    &[key],
                )?;
                // A counter back at zero means nothing: gone, so that attempts refunded (a
                // right password, a busy pool) leave no row behind.
                tx.execute(
                    "DELETE FROM throttles WHERE key = ?1 AND failures <= 0",
                    &[key],
                )?;
            }
            Ok(())
        })
    }

    /// Counts one failure: in the open window, or in a new one starting now. One statement,
    /// so concurrent failures all count. Returns the count including this one.
    pub fn record_throttle_failure(&self, key: &str, now: i64, window: i64) -> Result<u32> {
        self.write(|db| {
            db.query_row(
                "INSERT INTO throttles (key, window_start, failures) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN throttles.window_start <= ?2 - CAST(?3 AS BIGINT) THEN 1 \
                            ELSE throttles.failures + 1 END, \
                 window_start = CASE WHEN throttles.window_start <= ?2 - CAST(?3 AS BIGINT) THEN ?2 \
                                ELSE throttles.window_start END \
                 RETURNING failures",
                &[&key, &now, &window],
                |r| r.get(0),
            )?
            .ok_or_else(|| super::Error::Internal("an upsert returned no row".into()))
        })
    }

    pub fn clear_throttle(&self, key: &str) -> Result<()> {
        self.write(|db| db.execute("DELETE FROM throttles WHERE key = ?1", &[&key]))?;
        Ok(())
    }

    /// Every counter key starting with `prefix` (compared exactly, no pattern characters).
    pub fn list_throttle_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.conn.query_rows(
            "SELECT key FROM throttles WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            &[&prefix],
            |r| r.get(0),
        )
    }

    /// Deletes these counters; how many existed.
    pub fn delete_throttles(&self, keys: &[String]) -> Result<usize> {
        self.write(|db| {
            let mut deleted = 0;
            for key in keys {
                deleted += db.execute("DELETE FROM throttles WHERE key = ?1", &[key])?;
            }
            Ok(deleted)
        })
    }

    /// Drops windows that closed before `cutoff`.
    pub fn delete_old_throttles(&self, cutoff: i64, limit: u32) -> Result<usize> {
        self.write(|db| {
            db.execute(
                "DELETE FROM throttles WHERE key IN \
                 (SELECT key FROM throttles WHERE window_start <= ?1 LIMIT ?2)",
                &[&cutoff, &limit],
            )
        })
    }
}

/// `key`'s window that is still open at `now`, read on `conn` (the store's connection, or
/// a transaction on it).
fn open_window(conn: &Conn, key: &str, now: i64, window: i64) -> Result<Option<ThrottleWindow>> {
    conn.query_row(
        "SELECT window_start, failures FROM throttles WHERE key = ?1 AND window_start > ?2",
        &[&key, &(now - window)],
        |r| {
            Ok(ThrottleWindow {
                start: r.get(0)?,
                failures: r.get(1)?,
            })
        },
    )
}
