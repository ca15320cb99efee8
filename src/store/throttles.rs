//! The `throttles` table: failure counts per key in fixed windows (brute-force limits).

use rusqlite::{params, OptionalExtension};

use super::{Result, Store};

impl Store {
    /// Failures counted for `key` in the window that is still open at `now`, with the
    /// window's start; `None` when there is no open window.
    pub fn throttle_window(&self, key: &str, now: i64, window: i64) -> Result<Option<(i64, u32)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT window_start, failures FROM throttles WHERE key = ?1 AND window_start > ?2",
        )?;
        Ok(stmt
            .query_row(params![key, now - window], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Counts one failure: in the open window, or in a new one starting now. One statement,
    /// so concurrent failures all count.
    pub fn record_throttle_failure(&self, key: &str, now: i64, window: i64) -> Result<()> {
        let _writing = self.shared.write_turn();
        self.conn
            .prepare_cached(
                "INSERT INTO throttles (key, window_start, failures) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN window_start <= ?2 - ?3 THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start <= ?2 - ?3 THEN ?2 ELSE window_start END",
            )?
            .execute(params![key, now, window])?;
        Ok(())
    }

    pub fn clear_throttle(&self, key: &str) -> Result<()> {
        let _writing = self.shared.write_turn();
        self.conn
            .prepare_cached("DELETE FROM throttles WHERE key = ?1")?
            .execute([key])?;
        Ok(())
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
