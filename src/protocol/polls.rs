//! Poll pacing for pending device codes (RFC 8628 §3.5 `slow_down`), held in memory and
//! keyed by the code's row id.
//!
//! Why memory and not SQLite: recording each poll with an UPDATE halves polling throughput
//! (a synchronous write per poll). The state is small (≈100 bytes a live code) and losing
//! it is safe: after a restart a code's next poll counts as its first (never punished) and
//! its interval restarts at the advertised one. A compliant client keeps the longer interval
//! it already adopted, so it is never told to slow down; a misbehaving one is caught again
//! from its second poll on. Nothing that affects which tokens are issued lives here.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::clock::Timestamp;

/// Polls up to this much early still count as on time (clock jitter, network delay).
pub const SLACK_MS: i64 = 1000;
/// RFC 8628 §3.5: "the interval MUST be increased by 5 seconds".
pub const SLOW_DOWN_STEP: u64 = 5;
/// The interval never grows past this, so a client is never starved.
pub const MAX_INTERVAL: u64 = 60;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollVerdict {
    /// On time: answer with the code's state.
    OnTime,
    /// Too early: answer `slow_down` with this new interval (seconds).
    SlowDown { interval: u64 },
}

/// 16 bytes a code (plus the 8-byte key): 100,000 live codes cost about 3 MB.
#[derive(Debug, Clone, Copy)]
struct PollState {
    last_poll_ms: i64,
    /// Unix seconds; u32 lasts until 2106.
    expires_at_secs: u32,
    interval: u16,
}

/// Last poll time and current interval per device code, keyed by the code's row id.
/// Sharded so workers polling different codes rarely wait on the same lock.
pub struct PollTracker {
    shards: Vec<Mutex<HashMap<i64, PollState>>>,
}

impl Default for PollTracker {
    fn default() -> Self {
        PollTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl PollTracker {
    fn shard(&self, key: i64) -> MutexGuard<'_, HashMap<i64, PollState>> {
        let shard = &self.shards[key.rem_euclid(SHARDS as i64) as usize];
        // A panic elsewhere while holding the lock leaves plain data; keep using it.
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a poll at `now` and says whether it came too early.
    pub fn record_poll(
        &self,
        key: i64,
        advertised_interval: u64,
        expires_at_secs: i64,
        now: Timestamp,
    ) -> PollVerdict {
        let mut shard = self.shard(key);
        let state = shard.entry(key).or_insert(PollState {
            last_poll_ms: i64::MIN,
            interval: u16::try_from(advertised_interval.min(MAX_INTERVAL)).unwrap_or(5),
            expires_at_secs: u32::try_from(expires_at_secs.max(0)).unwrap_or(u32::MAX),
        });
        let first_poll = state.last_poll_ms == i64::MIN;
        let due_ms = state
            .last_poll_ms
            .saturating_add(i64::from(state.interval) * 1000)
            .saturating_sub(SLACK_MS);
        // Always remember this poll, so a client that then waits the new interval passes.
        state.last_poll_ms = now.millis();
        if first_poll || now.millis() >= due_ms {
            PollVerdict::OnTime
        } else {
            // RFC 8628 §3.5: +5 s for this and all later polls.
            let interval = (u64::from(state.interval) + SLOW_DOWN_STEP).min(MAX_INTERVAL);
            state.interval = u16::try_from(interval).unwrap_or(u16::MAX);
            PollVerdict::SlowDown { interval }
        }
    }

    /// Drops a code's state (redeemed, denied or expired).
    pub fn forget(&self, key: i64) {
        self.shard(key).remove(&key);
    }

    /// Drops every code that expired before `cutoff_secs`; returns how many.
    pub fn prune(&self, cutoff_secs: i64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, s| i64::from(s.expires_at_secs) >= cutoff_secs);
            removed += before - map.len();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: i64 = 7;

    fn at(secs_f: f64) -> Timestamp {
        Timestamp::from_millis((secs_f * 1000.0) as i64)
    }

    #[test]
    fn first_poll_is_never_punished() {
        let polls = PollTracker::default();
        assert_eq!(polls.record_poll(KEY, 5, 600, at(0.0)), PollVerdict::OnTime);
    }

    #[test]
    fn early_poll_slows_down_and_the_new_interval_sticks() {
        let polls = PollTracker::default();
        polls.record_poll(KEY, 5, 600, at(0.0));
        assert_eq!(
            polls.record_poll(KEY, 5, 600, at(1.0)),
            PollVerdict::SlowDown { interval: 10 }
        );
        // Waiting the old interval is now too early…
        assert_eq!(
            polls.record_poll(KEY, 5, 600, at(6.0)),
            PollVerdict::SlowDown { interval: 15 }
        );
        // …waiting the new one is fine, again and again.
        assert_eq!(
            polls.record_poll(KEY, 5, 600, at(21.0)),
            PollVerdict::OnTime
        );
        assert_eq!(
            polls.record_poll(KEY, 5, 600, at(36.0)),
            PollVerdict::OnTime
        );
    }

    #[test]
    fn a_compliant_client_within_slack_is_on_time() {
        let polls = PollTracker::default();
        for i in 0..10 {
            let t = f64::from(i) * 4.1;
            assert_eq!(polls.record_poll(KEY, 5, 600, at(t)), PollVerdict::OnTime);
        }
    }

    #[test]
    fn interval_is_capped() {
        let polls = PollTracker::default();
        polls.record_poll(KEY, 5, 600, at(0.0));
        let mut last = PollVerdict::OnTime;
        for _ in 0..30 {
            last = polls.record_poll(KEY, 5, 600, at(0.0));
        }
        assert_eq!(
            last,
            PollVerdict::SlowDown {
                interval: MAX_INTERVAL
            }
        );
    }

    #[test]
    fn prune_drops_expired_codes() {
        let polls = PollTracker::default();
        polls.record_poll(1, 5, 100, at(0.0));
        polls.record_poll(2, 5, 900, at(0.0));
        assert_eq!(polls.prune(500), 1);
        assert_eq!(polls.len(), 1);
    }
}
