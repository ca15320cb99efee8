//! Password verification with bounded memory: at most a fixed number of argon2 runs at
//! once, each in a working buffer that is allocated once and then reused.
//!
//! argon2id with the default parameters fills 19 MiB per verification. Allocated per call,
//! a flood of failed sign-ins left hundreds of MiB with the allocator (one arena per
//! worker thread, never given back). Here a `PasswordPool` lends one buffer per permit from a
//! bounded `pool::Pool` (shared with the signing turns in `keys`);
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

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use crate::pool::Pool;

/// The longest argon2 output a PHC string may carry (the crate's own limit is larger; ours
/// are 32 bytes).
const MAX_OUTPUT: usize = 64;
/// The largest decoded salt the PHC format allows (`password_hash::Salt::MAX_LENGTH`).
const MAX_SALT: usize = 64;

pub use crate::pool::Busy;

/// A fixed number of argon2 working buffers; one verification at a time per buffer. Each
/// buffer starts empty and grows once to the size the stored hashes need (19 MiB, 19456
/// blocks, for the default parameters), then keeps that size.
pub struct PasswordPool {
    buffers: Pool<Vec<Block>>,
}

impl PasswordPool {
    /// `permits` buffers (at least 1); a caller waits at most `wait` for one, and at most
    /// `max_waiting` callers wait at once (others are `Busy` at once).
    pub fn new(permits: usize, wait: Duration, max_waiting: usize) -> PasswordPool {
        let buffers = (0..permits.max(1)).map(|_| Vec::new()).collect();
        PasswordPool {
            buffers: Pool::new(buffers, wait, max_waiting),
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
        let mut buffer = self.buffers.take()?;
        let ok = verify_into(password, phc, &mut buffer);
        Ok(ok && real)
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
        assert_eq!(
            pool.buffers.take().expect("the one buffer").len(),
            32 * 1024
        );
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
}
