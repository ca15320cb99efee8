//! Brute-force limits (RFC 8628 §5.1, RFC 6749 §2.3.1 / §10.10): which counters an attempt
//! is held to, and what their counts mean. The counting itself is the store's
//! (`reserve_throttle_attempt`: check and count in one transaction, so N simultaneous
//! attempts never get more than the limit's worth through).
//!
//! Every per-address counter keys on `network::address_key` (IPv6 by its /64). Counters
//! live in fixed windows of `Limits::window` seconds.
//!
//! - Sign-in: per (name, address) and per address a failure count **locks** (that pair, or
//!   that address); per name, from all addresses together, it only **slows down**: past
//!   `backoff_after` failures, each address that already failed for the name gets one
//!   attempt per `backoff` seconds (a wait never longer than that), and an address that has
//!   not failed for it is never held up. So strangers
//!   cannot lock anyone out, and the right password from a clean address signs in.
//! - Code entry: per account and per address, each locks; only submitted codes count.
//!
//! A sign-in attempt is counted *before* the password check it buys (reserved); one that
//! turns out right, or is never made, is refunded. A code look-up is cheap, so code entry
//! is checked first and counted after a wrong code. A success never clears a per-address counter (an
//! attacker with an account must not "launder" failures); it clears only its own pair.

use std::net::IpAddr;

use super::network::address_key;
use crate::clock::Timestamp;
use crate::store::{self, Store, ThrottleWindow, UserId};

const SIGN_IN_PAIR: &str = "sign-in-pair:";
const SIGN_IN_ADDRESS: &str = "sign-in-address:";
const SIGN_IN_NAME: &str = "sign-in-name:";
/// Attempts on a name from one address in the current `backoff`-second slot. Per address:
/// a slot shared by all addresses could be kept busy by strangers rotating addresses, and
/// keep out an owner who had mistyped once (found in review).
const SIGN_IN_SLOT: &str = "sign-in-slot:";
const CODE_ACCOUNT: &str = "code-account:";
const CODE_ADDRESS: &str = "code-address:";

/// The limits, from `Config` (see its fields for units and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: i64,
    pub sign_in_per_name_address: u32,
    pub sign_in_per_address: u32,
    pub sign_in_backoff_after: u32,
    pub sign_in_backoff: i64,
    pub code_per_account: u32,
    pub code_per_address: u32,
}

impl From<&crate::Config> for Limits {
    fn from(c: &crate::Config) -> Self {
        Limits {
            window: i64::try_from(c.limit_window).unwrap_or(i64::MAX),
            sign_in_per_name_address: c.sign_in_failures_per_name_address,
            sign_in_per_address: c.sign_in_failures_per_address,
            sign_in_backoff_after: c.sign_in_backoff_after,
            sign_in_backoff: i64::try_from(c.sign_in_backoff).unwrap_or(60),
            code_per_account: c.code_failures_per_account,
            code_per_address: c.code_failures_per_address,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&crate::Config::default())
    }
}

/// Why an attempt may not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Locked: try again in this many seconds (when the window closes).
    Locked(i64),
    /// Slowed down: try again in this many seconds (at most `sign_in_backoff`).
    SlowDown(i64),
}

/// An attempt that was counted in advance; `refund` it if it was right or never made.
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<(String, i64)>,
    /// The counts including this attempt, in the order of `keys`.
    counted: Vec<ThrottleWindow>,
}

impl Reservation {
    pub fn refund(&self, store: &Store) -> Result<(), store::Error> {
        store.refund_throttle_attempt(&self.key_names(..))
    }

    fn key_names(
        &self,
        range: impl std::slice::SliceIndex<[(String, i64)], Output = [(String, i64)]>,
    ) -> Vec<String> {
        self.keys[range]
            .iter()
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// A user name as counters see it: case-folded (so `Alice` and `alice` share a counter),
/// control characters dropped, at most 64 characters.
pub fn counted_name(username: &str) -> String {
    username
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

/// Reserves one sign-in attempt for `username` from `ip`, or says why not.
pub fn reserve_sign_in(
    store: &Store,
    limits: &Limits,
    username: &str,
    ip: IpAddr,
    now: Timestamp,
) -> Result<Result<Reservation, Refusal>, store::Error> {
    let (name, address) = (counted_name(username), address_key(ip));
    let window = limits.window;
    let keys = vec![
        (format!("{SIGN_IN_PAIR}{address}|{name}"), window),
        (format!("{SIGN_IN_ADDRESS}{address}"), window),
        (format!("{SIGN_IN_NAME}{name}"), window),
        (
            format!("{SIGN_IN_SLOT}{address}|{name}"),
            limits.sign_in_backoff,
        ),
    ];
    let now = now.secs();
    let limits = *limits;
    let reserved = store.reserve_throttle_attempt(&keys, now, |w| {
        sign_in_allowed(&limits, w[0], w[1], w[2], w[3], now)
    })?;
    Ok(reserved.map(|counted| Reservation { keys, counted }))
}

/// The sign-in rule on the counts before this attempt: pair and address lock, the name
/// only slows down addresses that have failed for it themselves, each to one attempt per
/// `slot` (its own window of `sign_in_backoff` seconds).
fn sign_in_allowed(
    limits: &Limits,
    pair: ThrottleWindow,
    address: ThrottleWindow,
    name: ThrottleWindow,
    slot: ThrottleWindow,
    now: i64,
) -> Result<(), Refusal> {
    let locked_until = |w: ThrottleWindow| (w.start + limits.window - now).max(1);
    if pair.failures >= limits.sign_in_per_name_address {
        return Err(Refusal::Locked(locked_until(pair)));
    }
    if address.failures >= limits.sign_in_per_address {
        return Err(Refusal::Locked(locked_until(address)));
    }
    if pair.failures > 0 && name.failures >= limits.sign_in_backoff_after && slot.failures > 0 {
        let wait = slot.start + limits.sign_in_backoff - now;
        return Err(Refusal::SlowDown(wait.clamp(1, limits.sign_in_backoff)));
    }
    Ok(())
}

/// After a failed sign-in: did this failure just lock the pair or the address? Returns the
/// lock's length in seconds, for the log line.
pub fn sign_in_lock_started(limits: &Limits, reservation: &Reservation) -> Option<i64> {
    let [pair, address, ..] = reservation.counted[..] else {
        return None;
    };
    let started = pair.failures == limits.sign_in_per_name_address
        || address.failures == limits.sign_in_per_address;
    started.then_some(limits.window)
}

/// After a successful sign-in: this attempt is not a failure, and the pair starts afresh.
/// The address and name counters keep their other failures.
pub fn signed_in(store: &Store, reservation: &Reservation) -> Result<(), store::Error> {
    store.refund_throttle_attempt(&reservation.key_names(1..))?;
    store.clear_throttle(&reservation.keys[0].0)
}

/// The counters one code entry by `user_id` from `ip` is held to, with their limits.
fn code_counters(limits: &Limits, user_id: UserId, ip: &str) -> [(String, u32); 2] {
    let address = ip
        .parse::<IpAddr>()
        .map_or_else(|_| ip.to_string(), address_key);
    [
        (format!("{CODE_ACCOUNT}{user_id}"), limits.code_per_account),
        (format!("{CODE_ADDRESS}{address}"), limits.code_per_address),
    ]
}

/// Seconds until code entry by `user_id` from `ip` is allowed again; `None` when it is now.
/// Code entry is checked first and counted after the look-up (a look-up is cheap and a
/// code has ~38.5 bits, so the few look-ups that can race past a limit do not matter, and
/// a right code costs no write).
pub fn code_entry_locked(
    store: &Store,
    limits: &Limits,
    user_id: UserId,
    ip: &str,
    now: Timestamp,
) -> Result<Option<i64>, store::Error> {
    let mut wait = None;
    for (key, max) in code_counters(limits, user_id, ip) {
        if let Some(open) = store.throttle_window(&key, now.secs(), limits.window)? {
            if open.failures >= max {
                let remaining = (open.start + limits.window - now.secs()).max(1);
                wait = Some(wait.map_or(remaining, |w: i64| w.max(remaining)));
            }
        }
    }
    Ok(wait)
}

/// Counts one wrong code; `true` when this one started a lock.
pub fn record_wrong_code(
    store: &Store,
    limits: &Limits,
    user_id: UserId,
    ip: &str,
    now: Timestamp,
) -> Result<bool, store::Error> {
    let mut started = false;
    for (key, max) in code_counters(limits, user_id, ip) {
        started |= store.record_throttle_failure(&key, now.secs(), limits.window)? == max;
    }
    Ok(started)
}

/// What `unlock` lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockTarget {
    Name(String),
    Address(String),
}

/// Lifts every lock and slow-down on a user name (all addresses) or on an address (its
/// own counters and its pairs with every name; IPv6: its /64). Returns what it was taken
/// as and how many counters were removed.
pub fn unlock(store: &Store, target: &str) -> Result<(UnlockTarget, usize), store::Error> {
    let mut keys = Vec::new();
    let what = match target.trim().parse::<IpAddr>() {
        Ok(ip) => {
            let address = address_key(ip);
            keys.push(format!("{SIGN_IN_ADDRESS}{address}"));
            keys.push(format!("{CODE_ADDRESS}{address}"));
            keys.extend(store.list_throttle_keys(&format!("{SIGN_IN_PAIR}{address}|"))?);
            keys.extend(store.list_throttle_keys(&format!("{SIGN_IN_SLOT}{address}|"))?);
            UnlockTarget::Address(address)
        }
        Err(_) => {
            let name = counted_name(target);
            keys.push(format!("{SIGN_IN_NAME}{name}"));
            // Pair and slot keys are `<prefix><address>|<name>`; an address never has `|`.
            for prefix in [SIGN_IN_PAIR, SIGN_IN_SLOT] {
                keys.extend(
                    store
                        .list_throttle_keys(prefix)?
                        .into_iter()
                        .filter(|key| key.split_once('|').is_some_and(|(_, n)| n == name)),
                );
            }
            UnlockTarget::Name(name)
        }
    };
    Ok((what, store.delete_throttles(&keys)?))
}

/// Clears an account's code-entry counter (the admin CLI's `unlock NAME` also needs this).
pub fn unlock_code_account(store: &Store, user_id: UserId) -> Result<usize, store::Error> {
    store.delete_throttles(&[format!("{CODE_ACCOUNT}{user_id}")])
}

/// "N minutes", rounded up, for the lockout page.
pub fn minutes_text(secs: i64) -> String {
    let minutes = (secs + 59) / 60;
    if minutes <= 1 {
        "1 minute".into()
    } else {
        format!("{minutes} minutes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, failures: u32) -> ThrottleWindow {
        ThrottleWindow { start, failures }
    }

    #[test]
    fn a_name_failing_elsewhere_slows_only_addresses_that_failed_too() {
        let limits = Limits::default();
        let (name, busy_slot, free_slot) = (w(1000, 20), w(1001, 3), w(1001, 0));
        // A clean address is never held up by the name's count.
        let clean = w(1001, 0);
        assert_eq!(
            sign_in_allowed(&limits, clean, clean, name, busy_slot, 1002),
            Ok(())
        );
        // One that failed for it waits for the next slot: at most `backoff` seconds.
        let dirty = w(1000, 1);
        assert_eq!(
            sign_in_allowed(&limits, dirty, dirty, name, busy_slot, 1002),
            Err(Refusal::SlowDown(4))
        );
        assert_eq!(
            sign_in_allowed(&limits, dirty, dirty, name, free_slot, 1006),
            Ok(())
        );
    }

    #[test]
    fn pairs_and_addresses_lock_until_the_window_closes() {
        let limits = Limits::default();
        assert_eq!(
            sign_in_allowed(
                &limits,
                w(1000, 5),
                w(1000, 5),
                w(1000, 5),
                w(1100, 0),
                1100
            ),
            Err(Refusal::Locked(500))
        );
        assert_eq!(
            sign_in_allowed(
                &limits,
                w(1000, 0),
                w(1000, 30),
                w(1000, 0),
                w(1100, 0),
                1100
            ),
            Err(Refusal::Locked(500))
        );
    }

    #[test]
    fn names_are_folded_and_stripped_of_control_characters() {
        assert_eq!(counted_name("Ad\u{1b}[31mMIN\n"), "ad[31mmin");
        assert_eq!(counted_name(&"x".repeat(100)).len(), 64);
    }
}
