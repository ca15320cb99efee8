//! The `throttles` table: failure counts per key in fixed windows (brute-force limits).
//! The store reports and changes counts; `protocol::limits` decides what they mean.

use rusqlite::{params, OptionalExtension};

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

    /// Check and count in one step: in one `IMMEDIATE` transaction, reads every key's open
    /// window (each `(key, window)` with its own length in seconds), hands them to
    /// `decide`, and only if it answers `Ok` counts one failure against every key. Returns the windows as counted, or `decide`'s
    /// refusal (nothing written). Concurrent callers take turns, so no two of them see the
    /// same count.
    pub fn reserve_throttle_attempt<R>(
        &self,
        keys: &[(String, i64)],
        now: i64,
        decide: impl FnOnce(&[ThrottleWindow]) -> std::result::Result<(), R>,
    ) -> Result<std::result::Result<Vec<ThrottleWindow>, R>> {
        let _writing = self.shared.write_turn();
        // Unchecked because `&self`; this connection runs nothing else meanwhile, and the
        // write turn is held.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let mut windows = Vec::with_capacity(keys.len());
        for (key, window) in keys {
            let open = open_window(&tx, key, now, *window)?;
            windows.push(open.unwrap_or(ThrottleWindow {
                start: now,
                failures: 0,
            }));
        }
        if let Err(refusal) = decide(&windows) {
            return Ok(Err(refusal));
        }
        {
            let mut write = tx.prepare_cached(
                "INSERT INTO throttles (key, window_start, failures) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET \
                 window_start = excluded.window_start, failures = excluded.failures",
            )?;
            for ((key, _), counted) in keys.iter().zip(windows.iter_mut()) {
                counted.failures = counted.failures.saturating_add(1);
                write.execute(params![key, counted.start, counted.failures])?;
            }
        }
        tx.commit()?;
        Ok(Ok(windows))
    }

    /// Takes back one counted failure from each key (an attempt that turned out right, or
    /// was never made), never below zero; a counter back at zero is deleted.
    pub fn refund_throttle_attempt(&self, keys: &[String]) -> Result<()> {
        let _writing = self.shared.write_turn();
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        {
            let mut refund = tx.prepare_cached(
                "UPDATE throttles SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
            )?;
            // A counter back at zero means nothing: gone, so that attempts refunded (a
            // right password, a busy pool) leave no row behind.
            let mut forget =
                tx.prepare_cached("DELETE FROM throttles WHERE key = ?1 AND failures <= 0")?;
            for key in keys {
                refund.execute([key])?;
                forget.execute([key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Counts one failure: in the open window, or in a new one starting now. One statement,
    /// so concurrent failures all count. Returns the count including this one.
    pub fn record_throttle_failure(&self, key: &str, now: i64, window: i64) -> Result<u32> {
        let _writing = self.shared.write_turn();
        Ok(self
            .conn
            .prepare_cached(
                "INSERT INTO throttles (key, window_start, failures) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN window_start <= ?2 - ?3 THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start <= ?2 - ?3 THEN ?2 ELSE window_start END \
                 RETURNING failures",
            )?
            .query_row(params![key, now, window], |r| r.get(0))?)
    }

    pub fn clear_throttle(&self, key: &str) -> Result<()> {
        let _writing = self.shared.write_turn();
        self.conn
            .prepare_cached("DELETE FROM throttles WHERE key = ?1")?
            .execute([key])?;
        Ok(())
    }

    /// Every counter key starting with `prefix` (compared exactly, no pattern characters).
    pub fn list_throttle_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key FROM throttles WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let keys = stmt.query_map([prefix], |r| r.get(0))?;
        Ok(keys.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Deletes these counters; how many existed.
    pub fn delete_throttles(&self, keys: &[String]) -> Result<usize> {
        let _writing = self.shared.write_turn();
        let mut deleted = 0;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM throttles WHERE key = ?1")?;
        for key in keys {
            deleted += stmt.execute([key])?;
        }
        Ok(deleted)
    }

    /// Drops windows that closed before `cutoff`.
    pub fn delete_old_throttles(&self, cutoff: i64, limit: u32) -> Result<usize> {
        let _writing = self.shared.write_turn();
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM throttles WHERE key IN \
                 (SELECT key FROM throttles WHERE window_start <= ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff, limit])?)
    }
}

/// `key`'s window that is still open at `now`, read on `conn` (the store's connection, or
/// a transaction on it).
fn open_window(
    conn: &rusqlite::Connection,
    key: &str,
    now: i64,
    window: i64,
) -> Result<Option<ThrottleWindow>> {
    Ok(conn
        .prepare_cached(
            "SELECT window_start, failures FROM throttles WHERE key = ?1 AND window_start > ?2",
        )?
        .query_row(params![key, now - window], |r| {
            Ok(ThrottleWindow {
                start: r.get(0)?,
                failures: r.get(1)?,
            })
        })
        .optional()?)
}
