//! Password verification with bounded memory: at most a fixed number of argon2 runs at
//! once, each in a working buffer that is allocated once and then reused.
//!
//! argon2id with the default parameters fills 19 MiB per verification. Allocated per call,
//! a flood of failed sign-ins left hundreds of MiB with the allocator (one arena per
//! worker thread, never given back). Here a `PasswordPool` owns one buffer per permit;
//! `verify` waits a short, configured time for a permit and answers `Busy` past it, so the
//! caller can say 503 with `Retry-After` instead of queueing without bound. Only a bounded
//! number of callers may wait at all (the server leaves at least one worker free of
//! password work, so `/healthz`, polls and pages still move during a sign-in flood);
//! past that, `Busy` at once.
//!
//! The crypto is the `argon2` crate's (`hash_password_into_with_memory`); this module only
//! parses the stored PHC string (algorithm, version, parameters, salt, output), recomputes
//! the output into the pooled buffer and compares it in constant time (`subtle`). Stored
//! hashes made by `secrets::hash_password` (or any argon2 PHC string) stay valid. This is
//! the only place a password is verified.
//!
//! Nothing here knows HTTP or SQL.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

/// The longest argon2 output a PHC string may carry (the crate's own limit is larger; ours
/// are 32 bytes).
const MAX_OUTPUT: usize = 64;
/// The largest decoded salt the PHC format allows (`password_hash::Salt::MAX_LENGTH`).
const MAX_SALT: usize = 64;

/// No permit came free within the configured wait: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A fixed number of argon2 working buffers; one verification at a time per buffer.
pub struct PasswordPool {
    state: Mutex<State>,
    returned: Condvar,
    wait: Duration,
    max_waiting: usize,
}

struct State {
    /// Free buffers. Each starts empty and grows once to the size the stored hashes need
    /// (19 MiB, 19456 blocks, for the default parameters), then keeps that size.
    free: Vec<Vec<Block>>,
    /// Callers waiting for a buffer now.
    waiting: usize,
}

impl PasswordPool {
    /// `permits` buffers (at least 1); a caller waits at most `wait` for one, and at most
    /// `max_waiting` callers wait at once (others are `Busy` at once).
    pub fn new(permits: usize, wait: Duration, max_waiting: usize) -> PasswordPool {
        PasswordPool {
            state: Mutex::new(State {
                free: (0..permits.max(1)).map(|_| Vec::new()).collect(),
                waiting: 0,
            }),
            returned: Condvar::new(),
            wait,
            max_waiting,
        }
    }

    /// Does `password` match the stored argon2 PHC string? `None` (an unknown user) still
    /// spends one verification of a hash with the default parameters, in the same pool,
    /// so neither the time taken nor a `Busy` reveals whether the user exists.
    /// A malformed stored string is a mismatch. `Err(Busy)` when no buffer came free in time.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Busy> {
        let (phc, real) = match stored {
            Some(phc) => (phc, true),
            None => (dummy_hash(), false),
        };
        let mut buffer = self.take()?;
        let ok = verify_into(password, phc, &mut buffer.blocks);
        Ok(ok && real)
    }

    fn take(&self) -> Result<Permit<'_>, Busy> {
        let mut state = self.lock();
        if let Some(blocks) = state.free.pop() {
            return Ok(Permit { pool: self, blocks });
        }
        if state.waiting >= self.max_waiting {
            return Err(Busy);
        }
        state.waiting += 1;
        let deadline = Instant::now() + self.wait;
        let taken = loop {
            if let Some(blocks) = state.free.pop() {
                break Ok(blocks);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(Busy);
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        };
        state.waiting -= 1;
        taken.map(|blocks| Permit { pool: self, blocks })
    }

    /// A panic while holding the lock leaves whole buffers in the list: still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A buffer on loan; given back (not freed) on drop, also when a verification panics.
struct Permit<'a> {
    pool: &'a PasswordPool,
    blocks: Vec<Block>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut self.blocks);
        self.pool.lock().free.push(blocks);
        self.pool.returned.notify_one();
    }
}

/// The stored hash unknown users are checked against: default parameters, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| crate::secrets::hash_password("not a real password").unwrap_or_default())
}

/// Recomputes the PHC string's output for `password` in `blocks` (grown when the stored
/// parameters need more) and compares in constant time.
fn verify_into(password: &str, phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; MAX_SALT];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let expected = expected.as_bytes();
    let mut out = [0u8; MAX_OUTPUT];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::new());
    }
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..])
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn pool() -> PasswordPool {
        PasswordPool::new(1, Duration::from_secs(5), 1)
    }

    #[test]
    fn hashes_from_secrets_verify_in_the_pool_and_back() {
        let phc = crate::secrets::hash_password("correct horse").expect("hash");
        let pool = pool();
        assert_eq!(pool.verify("correct horse", Some(&phc)), Ok(true));
        assert_eq!(pool.verify("wrong", Some(&phc)), Ok(false));
        assert_eq!(pool.verify("correct horse", None), Ok(false));
        // And the argon2 crate's own verifier agrees (the reference for the PHC format).
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&phc).expect("phc");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
    }

    #[test]
    fn other_parameters_and_algorithms_still_verify() {
        let salt = SaltString::encode_b64(b"sixteen byte slt").expect("salt");
        let pool = pool();
        for (algorithm, m_cost, t_cost) in [
            (Algorithm::Argon2id, 8 * 1024, 3),
            (Algorithm::Argon2id, 32 * 1024, 1),
            (Algorithm::Argon2i, 4096, 2),
            (Algorithm::Argon2d, 4096, 1),
        ] {
            let params = Params::new(m_cost, t_cost, 1, None).expect("params");
            let phc = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"pw 1", &salt)
                .expect("hash")
                .to_string();
            assert_eq!(pool.verify("pw 1", Some(&phc)), Ok(true), "{phc}");
            assert_eq!(pool.verify("pw 2", Some(&phc)), Ok(false), "{phc}");
        }
        // The buffer grew to the largest need (32 MiB) and is kept for reuse.
        assert_eq!(pool.lock().free[0].len(), 32 * 1024);
    }

    #[test]
    fn malformed_stored_strings_never_match() {
        let pool = pool();
        for phc in [
            "",
            "x",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            "$scrypt$ln=1$aa$bb",
        ] {
            assert_eq!(pool.verify("", Some(phc)), Ok(false), "{phc}");
        }
    }

    #[test]
    fn no_free_buffer_within_the_wait_is_busy() {
        let pool = PasswordPool::new(1, Duration::from_millis(10), 1);
        let held = pool.take().expect("first permit");
        assert!(matches!(pool.take(), Err(Busy)));
        drop(held);
        assert!(pool.take().is_ok());
    }

    #[test]
    fn a_returned_buffer_goes_to_a_waiter_and_extra_waiters_are_busy_at_once() {
        let pool = PasswordPool::new(1, Duration::from_secs(30), 1);
        let held = pool.take().expect("first permit");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.take().map(|_| ()));
            while pool.lock().waiting == 0 {
                std::thread::yield_now();
            }
            // The one place in the queue is taken: no wait for this one.
            let started = Instant::now();
            assert!(matches!(pool.take(), Err(Busy)));
            assert!(started.elapsed() < Duration::from_secs(5));
            drop(held);
            assert_eq!(waiter.join().expect("waiter"), Ok(()));
        });
    }
}
