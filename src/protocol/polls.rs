//! Poll pacing for pending device codes (RFC 8628 §3.5 `slow_down`), held in memory and
//! keyed by the code's hash.
//!
//! Why memory and not SQLite: recording each poll with an UPDATE halves polling throughput
//! (a synchronous write per poll). The state is small (≈100 bytes a live code) and losing
//! it is safe: after a restart a code's next poll counts as its first (never punished) and
//! its interval restarts at the advertised one. A compliant client keeps the longer interval
//! it already adopted, so it is never told to slow down; a misbehaving one is caught again
//! from its second poll on.
//!
//! The same entry answers a poll that comes too early without reading SQLite (the read was
//! a quarter of a poll's cost, and early polls are what an impatient client sends most):
//! only while SQLite said "pending" less than `RECHECK_AFTER_SECS` ago, for the same client,
//! with no approval or denial committed by this server since (`Store::decisions_so_far`).
//! Every on-time poll, and every poll of an approved, denied, expired or unknown code, is
//! answered from SQLite, so nothing that decides which tokens are issued lives here; a
//! decision made by another process (`devicegate approve`) reaches an impatient client at
//! most `RECHECK_AFTER_SECS` late, and a patient one at once.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use crate::clock::Timestamp;

/// Polls up to this much early still count as on time (clock jitter, network delay).
pub const SLACK_MS: i64 = 1000;
/// RFC 8628 §3.5: "the interval MUST be increased by 5 seconds".
pub const SLOW_DOWN_STEP: u64 = 5;
/// The interval never grows past this, so a client is never starved.
pub const MAX_INTERVAL: u64 = 60;
/// How long SQLite's "pending" may answer early polls from memory: the default interval,
/// so no client waits longer than a compliant one would for another process's decision.
pub const RECHECK_AFTER_SECS: i64 = 5;

const SHARDS: usize = 16;

/// A device code's key here: the first 16 bytes of its SHA-256 (never the code itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PollKey(u128);

impl PollKey {
    pub fn of(device_code_sha256: &[u8; 32]) -> PollKey {
        let mut first = [0u8; 16];
        first.copy_from_slice(&device_code_sha256[..16]);
        PollKey(u128::from_le_bytes(first))
    }

    fn shard(self) -> usize {
        (self.0 % SHARDS as u128) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollVerdict {
    /// On time: answer with the code's state.
    OnTime,
    /// Too early: answer `slow_down` with this new interval (seconds).
    SlowDown { interval: u64 },
}

/// 32 bytes a code (plus the 16-byte key): 100,000 live codes cost about 6 MB.
#[derive(Debug, Clone, Copy)]
struct PollState {
    last_poll_ms: i64,
    /// The client the code belongs to, as a keyed hash of its id.
    client_tag: u64,
    /// Unix seconds; u32 lasts until 2106.
    expires_at_secs: u32,
    /// When SQLite last said "pending", and `Store::decisions_so_far` just before.
    checked_at_secs: u32,
    checked_decisions: u32,
    interval: u16,
}

impl PollState {
    fn too_early(&self, now: Timestamp) -> bool {
        let due_ms = self
            .last_poll_ms
            .saturating_add(i64::from(self.interval) * 1000)
            .saturating_sub(SLACK_MS);
        self.last_poll_ms != i64::MIN && now.millis() < due_ms
    }

    /// Records a poll at `now` and says whether it came too early.
    fn poll(&mut self, now: Timestamp) -> PollVerdict {
        if self.too_early(now) {
            return PollVerdict::SlowDown {
                interval: self.slow_down(now),
            };
        }
        self.last_poll_ms = now.millis();
        PollVerdict::OnTime
    }

    /// Records a poll that came too early; returns the new interval.
    fn slow_down(&mut self, now: Timestamp) -> u64 {
        // Remember this poll too, so a client that then waits the new interval passes.
        self.last_poll_ms = now.millis();
        // RFC 8628 §3.5: +5 s for this and all later polls.
        let interval = (u64::from(self.interval) + SLOW_DOWN_STEP).min(MAX_INTERVAL);
        self.interval = u16::try_from(interval).unwrap_or(u16::MAX);
        interval
    }
}

/// Unix seconds as stored here (u32 lasts until 2106).
fn secs_u32(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

/// Last poll time, current interval and last known pending state per device code.
/// Sharded so workers polling different codes rarely wait on the same lock.
pub struct PollTracker {
    shards: Vec<Mutex<HashMap<PollKey, PollState>>>,
    /// Randomly keyed per process, so client tags cannot be made to collide.
    client_tags: RandomState,
}

impl Default for PollTracker {
    fn default() -> Self {
        PollTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            client_tags: RandomState::new(),
        }
    }
}

impl PollTracker {
    fn shard(&self, key: PollKey) -> MutexGuard<'_, HashMap<PollKey, PollState>> {
        // A panic elsewhere while holding the lock leaves plain data; keep using it.
        self.shards[key.shard()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn client_tag(&self, client_id: &str) -> u64 {
        self.client_tags.hash_one(client_id)
    }

    /// Answers a too-early poll from memory (see the module comment): `Some(interval)` is a
    /// `slow_down` with the new interval, and the poll is recorded. `None`: read the code
    /// from SQLite, then call `record_poll` if it is pending.
    pub fn early_poll(
        &self,
        key: PollKey,
        client_id: &str,
        decisions_so_far: u32,
        now: Timestamp,
    ) -> Option<u64> {
        let client_tag = self.client_tag(client_id);
        let mut shard = self.shard(key);
        let state = shard.get_mut(&key)?;
        let fresh = state.client_tag == client_tag
            && state.checked_decisions == decisions_so_far
            && now.secs() < i64::from(state.expires_at_secs)
            && now.secs() - i64::from(state.checked_at_secs) < RECHECK_AFTER_SECS;
        (fresh && state.too_early(now)).then(|| state.slow_down(now))
    }

    /// Records a poll at `now` of a code SQLite just said is pending for `client_id`
    /// (`decisions_seen`: `Store::decisions_so_far` read before that read), and says whether
    /// it came too early.
    pub fn record_poll(
        &self,
        key: PollKey,
        client_id: &str,
        advertised_interval: u64,
        expires_at_secs: i64,
        decisions_seen: u32,
        now: Timestamp,
    ) -> PollVerdict {
        let client_tag = self.client_tag(client_id);
        let mut shard = self.shard(key);
        let state = shard.entry(key).or_insert(PollState {
            last_poll_ms: i64::MIN,
            client_tag,
            expires_at_secs: secs_u32(expires_at_secs),
            checked_at_secs: 0,
            checked_decisions: decisions_seen,
            interval: u16::try_from(advertised_interval.min(MAX_INTERVAL)).unwrap_or(5),
        });
        state.client_tag = client_tag;
        state.checked_at_secs = secs_u32(now.secs());
        state.checked_decisions = decisions_seen;
        state.poll(now)
    }

    /// Drops a code's state (redeemed, denied or expired).
    pub fn forget(&self, key: PollKey) {
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

    const KEY: PollKey = PollKey(7);
    const CLIENT: &str = "guest";

    fn at(secs_f: f64) -> Timestamp {
        Timestamp::from_millis((secs_f * 1000.0) as i64)
    }

    /// A poll that SQLite found pending (advertised interval 5 s, expiring at 600 s).
    fn record(polls: &PollTracker, secs_f: f64) -> PollVerdict {
        polls.record_poll(KEY, CLIENT, 5, 600, 0, at(secs_f))
    }

    #[test]
    fn first_poll_is_never_punished() {
        let polls = PollTracker::default();
        assert_eq!(record(&polls, 0.0), PollVerdict::OnTime);
    }

    #[test]
    fn early_poll_slows_down_and_the_new_interval_sticks() {
        let polls = PollTracker::default();
        record(&polls, 0.0);
        assert_eq!(record(&polls, 1.0), PollVerdict::SlowDown { interval: 10 });
        // Waiting the old interval is now too early…
        assert_eq!(record(&polls, 6.0), PollVerdict::SlowDown { interval: 15 });
        // …waiting the new one is fine, again and again.
        assert_eq!(record(&polls, 21.0), PollVerdict::OnTime);
        assert_eq!(record(&polls, 36.0), PollVerdict::OnTime);
    }

    #[test]
    fn a_compliant_client_within_slack_is_on_time() {
        let polls = PollTracker::default();
        for i in 0..10 {
            assert_eq!(record(&polls, f64::from(i) * 4.1), PollVerdict::OnTime);
        }
    }

    #[test]
    fn interval_is_capped() {
        let polls = PollTracker::default();
        record(&polls, 0.0);
        let mut last = PollVerdict::OnTime;
        for _ in 0..30 {
            last = record(&polls, 0.0);
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
        polls.record_poll(PollKey(1), CLIENT, 5, 100, 0, at(0.0));
        polls.record_poll(PollKey(2), CLIENT, 5, 900, 0, at(0.0));
        assert_eq!(polls.prune(500), 1);
        assert_eq!(polls.len(), 1);
    }

    #[test]
    fn an_early_poll_of_a_code_known_pending_is_answered_from_memory() {
        let polls = PollTracker::default();
        assert_eq!(
            polls.early_poll(KEY, CLIENT, 0, at(0.0)),
            None,
            "never read"
        );
        record(&polls, 0.0);
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(1.0)), Some(10));
        // The slowed-down interval counts from that early poll, as when read from SQLite.
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(3.0)), Some(15));
    }

    #[test]
    fn an_on_time_poll_always_goes_to_sqlite_and_is_not_recorded_here() {
        let polls = PollTracker::default();
        record(&polls, 0.0);
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(4.5)), None);
        // The caller then reads SQLite and records it: still on time.
        assert_eq!(record(&polls, 4.5), PollVerdict::OnTime);
    }

    #[test]
    fn memory_does_not_answer_after_a_decision_another_client_or_too_long() {
        let polls = PollTracker::default();
        record(&polls, 0.0);
        assert_eq!(polls.early_poll(KEY, CLIENT, 1, at(1.0)), None, "decided");
        assert_eq!(polls.early_poll(KEY, "other", 0, at(1.0)), None, "client");
        let stale = RECHECK_AFTER_SECS as f64;
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(stale)), None, "stale");
        // None of those refusals counted as a poll.
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(1.5)), Some(10));
    }

    #[test]
    fn memory_does_not_answer_for_an_expired_code() {
        let polls = PollTracker::default();
        polls.record_poll(KEY, CLIENT, 5, 2, 0, at(0.0));
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(1.0)), Some(10));
        assert_eq!(polls.early_poll(KEY, CLIENT, 0, at(2.0)), None);
    }
}
