//! Rate limits on device authorization (RFC 8628 §3.1), held in memory: every request that
//! passes stores a device-code row (≈640 bytes, kept at least 20 minutes), so these limits
//! are what bound the database growth anyone without an account can cause.
//!
//! Two limits, checked in this order, each "N per minute in bursts of up to N":
//! - **per address** (an IPv4 address, or an IPv6 /64: `network::address_key`) bounds what
//!   one stranger can store; its default lets a classroom behind one NAT start its logins
//!   at once;
//! - **per client** bounds the total growth: the built-in public `guest` client is shared by
//!   everyone, so this is the ceiling for all addresses together. A request the address
//!   limit refuses never counts against its client, so one noisy address cannot spend the
//!   budget everyone shares (many addresses together can; the rows stay bounded either way).
//!
//! Why memory and not SQLite: what we must bound is rows; counting in a table would be a
//! write per request, the very thing being limited. Losing the state on a restart only
//! refills the buckets once. The number of tracked keys is capped (`MAX_KEYS`): when full,
//! keys whose bucket has refilled completely are dropped (they carry no information), and if
//! that frees nothing, the key closest to full is evicted.
//!
//! Each key costs one integer: the GCRA form of a token bucket (ITU-T I.371's "virtual
//! scheduling"), the time at which the bucket would be full again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::clock::Timestamp;

/// Keys tracked per limit (about 100 bytes each: 1 MB at most).
pub const MAX_KEYS: usize = 10_000;

/// One rate: `per_minute` requests a minute, in bursts of up to `per_minute`.
pub struct KeyedLimit {
    /// Microseconds between two requests at the sustained rate.
    emission_us: i64,
    /// How far ahead of now a key's schedule may run: the whole burst.
    burst_us: i64,
    /// Per key: when (Unix µs) its bucket would be full again.
    full_at: Mutex<HashMap<String, i64>>,
    max_keys: usize,
}

impl KeyedLimit {
    /// `per_minute` at least 1.
    pub fn per_minute(per_minute: u32) -> KeyedLimit {
        KeyedLimit::with_max_keys(per_minute, MAX_KEYS)
    }

    fn with_max_keys(per_minute: u32, max_keys: usize) -> KeyedLimit {
        let per_minute = i64::from(per_minute.max(1));
        let emission_us = 60_000_000 / per_minute;
        KeyedLimit {
            emission_us,
            burst_us: emission_us * per_minute,
            full_at: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        // A panic elsewhere while holding the lock leaves plain data; keep using it.
        self.full_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one request from `key`'s bucket: `Ok(())`, or `Err(seconds)` until the next
    /// request would pass (at least 1, for `Retry-After`). A refused request takes nothing.
    pub fn take(&self, key: &str, now: Timestamp) -> Result<(), u64> {
        let now_us = now.millis().saturating_mul(1000);
        let mut map = self.map();
        let full_at = map.get(key).copied().unwrap_or(now_us).max(now_us);
        let next = full_at.saturating_add(self.emission_us);
        let ahead = next - now_us;
        if ahead > self.burst_us {
            // Positive here; whole seconds, rounded up, for `Retry-After`.
            let wait_us = u64::try_from(ahead - self.burst_us).unwrap_or(u64::MAX);
            return Err(wait_us.div_ceil(1_000_000).max(1));
        }
        match map.get_mut(key) {
            Some(slot) => *slot = next,
            None => {
                if map.len() >= self.max_keys {
                    make_room(&mut map, now_us, self.max_keys);
                }
                map.insert(key.to_string(), next);
            }
        }
        Ok(())
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops every key whose bucket is full again (forgetting it changes nothing); when that
/// leaves no room, the one that will be full soonest.
fn make_room(map: &mut HashMap<String, i64>, now_us: i64, max_keys: usize) {
    map.retain(|_, full_at| *full_at > now_us);
    if map.len() < max_keys {
        return;
    }
    let soonest = map
        .iter()
        .min_by_key(|(_, full_at)| **full_at)
        .map(|(key, _)| key.clone());
    if let Some(key) = soonest {
        map.remove(&key);
    }
}

/// Which limit refused a device authorization, and for how long (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address (or /64) asked too often.
    Address { retry_after: u64 },
    /// This client, across all addresses, asked too often.
    Client { retry_after: u64 },
}

/// The two limits on `POST /oauth/device_authorize`.
pub struct AuthorizeLimits {
    per_address: KeyedLimit,
    per_client: KeyedLimit,
}

impl AuthorizeLimits {
    pub fn new(per_address_per_minute: u32, per_client_per_minute: u32) -> AuthorizeLimits {
        AuthorizeLimits {
            per_address: KeyedLimit::per_minute(per_address_per_minute),
            per_client: KeyedLimit::per_minute(per_client_per_minute),
        }
    }

    /// Takes one device authorization for `address_key` (see `network::address_key`) and
    /// `client_id`. The address is checked first: a request it refuses costs the client
    /// nothing.
    pub fn take(&self, address_key: &str, client_id: &str, now: Timestamp) -> Result<(), Refusal> {
        self.per_address
            .take(address_key, now)
            .map_err(|retry_after| Refusal::Address { retry_after })?;
        self.per_client
            .take(client_id, now)
            .map_err(|retry_after| Refusal::Client { retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_f: f64) -> Timestamp {
        Timestamp::from_millis((secs_f * 1000.0) as i64)
    }

    #[test]
    fn a_burst_of_the_whole_minute_passes_then_one_every_interval() {
        let limit = KeyedLimit::per_minute(60);
        for _ in 0..60 {
            assert_eq!(limit.take("a", at(100.0)), Ok(()));
        }
        assert_eq!(limit.take("a", at(100.0)), Err(1));
        assert_eq!(limit.take("a", at(100.5)), Err(1), "refusals take nothing");
        assert_eq!(limit.take("a", at(101.0)), Ok(()));
        assert_eq!(limit.take("a", at(101.0)), Err(1));
        // Other keys are untouched.
        assert_eq!(limit.take("b", at(101.0)), Ok(()));
    }

    #[test]
    fn retry_after_counts_whole_seconds_up() {
        let limit = KeyedLimit::per_minute(2);
        assert_eq!(limit.take("a", at(0.0)), Ok(()));
        assert_eq!(limit.take("a", at(0.0)), Ok(()));
        assert_eq!(limit.take("a", at(0.0)), Err(30));
        assert_eq!(limit.take("a", at(29.5)), Err(1));
        assert_eq!(limit.take("a", at(30.0)), Ok(()));
    }

    #[test]
    fn an_idle_key_refills_to_the_burst_and_no_further() {
        let limit = KeyedLimit::per_minute(3);
        for _ in 0..3 {
            assert!(limit.take("a", at(0.0)).is_ok());
        }
        let later = at(3600.0);
        for _ in 0..3 {
            assert!(limit.take("a", later).is_ok());
        }
        assert!(limit.take("a", later).is_err());
    }

    #[test]
    fn tracked_keys_are_capped() {
        let limit = KeyedLimit::with_max_keys(1, 3);
        for key in ["a", "b", "c", "d", "e"] {
            assert_eq!(limit.take(key, at(0.0)), Ok(()));
            assert!(limit.len() <= 3);
        }
        // Keys whose bucket refilled are dropped first.
        assert_eq!(limit.take("f", at(120.0)), Ok(()));
        assert_eq!(limit.len(), 1);
    }

    #[test]
    fn the_address_is_checked_first_and_its_refusals_cost_the_client_nothing() {
        let limits = AuthorizeLimits::new(2, 3);
        let now = at(0.0);
        assert_eq!(limits.take("203.0.113.7", "guest", now), Ok(()));
        assert_eq!(limits.take("203.0.113.7", "guest", now), Ok(()));
        for _ in 0..10 {
            assert_eq!(
                limits.take("203.0.113.7", "guest", now),
                Err(Refusal::Address { retry_after: 30 })
            );
        }
        assert_eq!(limits.take("198.51.100.1", "guest", now), Ok(()));
        assert_eq!(
            limits.take("198.51.100.2", "guest", now),
            Err(Refusal::Client { retry_after: 20 })
        );
        assert_eq!(limits.take("198.51.100.2", "other", now), Ok(()));
    }
}
