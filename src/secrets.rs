//! Secrets: random codes and tokens, the user-code alphabet and its normalisation,
//! hashing at rest, constant-time comparison, and password hashing (verification, bounded
//! in memory and number, is `passwords`).
//!
//! Requirements (RFC 8628 §5.1–5.2, §6.1; RFC 6749 §10.10; RFC 6750 §2.1):
//! - all randomness comes from the operating system;
//! - device codes, tokens and client secrets carry 256 random bits, base64url without
//!   padding, so they are valid RFC 6750 `b64token`s;
//! - user codes are 8 characters from a 28-letter alphabet without vowels or look-alikes
//!   (~38.5 bits), shown as `XXXX-XXXX`, and normalised (case, dashes, spaces) before lookup;
//! - only SHA-256 hashes of high-entropy secrets are stored; passwords use argon2id;
//! - secrets are compared in constant time.
//!
//! Nothing here knows HTTP or SQL.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 8628 §6.1 base-20 consonants plus digits without 0 and 1 (no O/0, I/1/l confusion).
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ23456789";
/// Characters in a user code, without the display dash.
pub const USER_CODE_LEN: usize = 8;

/// 256 bits: RFC 6749 §10.10 wants at most 2^-128 chance of guessing a token.
const SECRET_BYTES: usize = 32;

/// A new device code, access token, refresh token or client secret.
pub fn random_token() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    // Failing OS randomness is unrecoverable; serving predictable tokens would be worse.
    OsRng.unwrap_err().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A short random string of lower-case letters and digits, for identifiers (not secrets).
pub fn random_id(len: usize) -> String {
    random_chars(b"abcdefghijkmnopqrstuvwxyz23456789", len)
}

/// A new user code in normalised form (no dash). Uniform over the alphabet, no modulo bias.
pub fn new_user_code() -> String {
    random_chars(USER_CODE_ALPHABET, USER_CODE_LEN)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 of them). Random bytes
/// come from the OS 16 at a time (one system call per code, not one per character); a
/// byte at or above the largest multiple of the alphabet's size is skipped, so
/// `byte % size` has no bias.
fn random_chars(alphabet: &[u8], len: usize) -> String {
    let size = alphabet.len();
    let unbiased_below = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    let mut bytes = [0u8; 16];
    while out.len() < len {
        OsRng.unwrap_err().fill(&mut bytes);
        for &byte in bytes.iter().filter(|&&b| usize::from(b) < unbiased_below) {
            if out.len() == len {
                break;
            }
            out.push(char::from(alphabet[usize::from(byte) % size]));
        }
    }
    out
}

/// `BCDFGHJK` → `BCDF-GHJK`, the form a person reads and types.
pub fn display_user_code(normalised: &str) -> String {
    if normalised.len() == USER_CODE_LEN && normalised.is_ascii() {
        format!("{}-{}", &normalised[..4], &normalised[4..])
    } else {
        normalised.to_string()
    }
}

/// The first half only, for log lines: enough to correlate, not enough to use.
pub fn redacted_user_code(normalised: &str) -> String {
    let head: String = normalised.chars().take(4).collect();
    format!("{head}-****")
}

/// Why typed input is not a user code; each variant becomes a helpful message on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCodeError {
    Empty,
    /// Characters that can never appear in a code (deduplicated, in input order, at most 5).
    BadCharacters(String),
    WrongLength(usize),
}

/// Upper-case, drop dashes and white space, then check the alphabet and length.
pub fn normalize_user_code(input: &str) -> Result<String, UserCodeError> {
    let mut code = String::with_capacity(USER_CODE_LEN);
    let mut bad = String::new();
    for c in input.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let upper = c.to_ascii_uppercase();
        if upper.is_ascii() && USER_CODE_ALPHABET.contains(&(upper as u8)) {
            code.push(upper);
        } else if !bad.contains(c) && bad.chars().count() < 5 {
            bad.push(c);
        }
        if code.len() + bad.len() > 64 {
            break; // no need to look at the rest of a hostile input
        }
    }
    if !bad.is_empty() {
        return Err(UserCodeError::BadCharacters(bad));
    }
    match code.len() {
        0 => Err(UserCodeError::Empty),
        USER_CODE_LEN => Ok(code),
        n => Err(UserCodeError::WrongLength(n)),
    }
}

/// SHA-256 of a secret, as lower-case hex: the only form in which secrets are stored.
pub fn hash_secret(secret: &str) -> String {
    hex(&sha256(secret))
}

/// Raw SHA-256 of a secret (the in-memory poll table keys on this).
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Constant-time equality (length is not secret: both sides are fixed-size hashes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Does `secret` hash to `stored_hash`? Compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(hash_secret(secret).as_bytes(), stored_hash.as_bytes())
}

#[derive(Debug)]
pub struct PasswordHashError(String);

impl std::fmt::Display for PasswordHashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not hash password: {}", self.0)
    }
}

/// argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    let mut salt = [0u8; 16];
    OsRng.unwrap_err().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordHashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordHashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_base64url() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(t, random_token());
    }

    #[test]
    fn user_codes_use_only_the_alphabet() {
        for _ in 0..200 {
            let code = new_user_code();
            assert_eq!(code.len(), USER_CODE_LEN);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn every_letter_of_the_alphabet_turns_up_about_equally() {
        let mut counts = [0u32; 256];
        for _ in 0..2_000 {
            for b in new_user_code().bytes() {
                counts[usize::from(b)] += 1;
            }
        }
        // 16,000 letters over 28: ~571 each, so ±30% is over 7 standard deviations. This
        // catches a missing or favoured letter; the bias rule itself is in `random_chars`.
        for &letter in USER_CODE_ALPHABET {
            let n = counts[usize::from(letter)];
            assert!(
                (400..=743).contains(&n),
                "{} came {n} times",
                letter as char
            );
        }
    }

    #[test]
    fn normalisation_accepts_case_dashes_and_spaces() {
        assert_eq!(normalize_user_code("bcdf-ghjk").as_deref(), Ok("BCDFGHJK"));
        assert_eq!(
            normalize_user_code(" bcdf ghjk ").as_deref(),
            Ok("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJK").as_deref(), Ok("BCDFGHJK"));
    }

    #[test]
    fn normalisation_names_bad_characters_and_lengths() {
        assert_eq!(
            normalize_user_code("BCDF-GHJ0"),
            Err(UserCodeError::BadCharacters("0".into()))
        );
        assert_eq!(
            normalize_user_code("aeio-uBCD"),
            Err(UserCodeError::BadCharacters("aeiou".into()))
        );
        assert_eq!(
            normalize_user_code("BCD"),
            Err(UserCodeError::WrongLength(3))
        );
        assert_eq!(normalize_user_code(" - "), Err(UserCodeError::Empty));
        let hostile = "<script>".repeat(2000);
        assert!(matches!(
            normalize_user_code(&hostile),
            Err(UserCodeError::BadCharacters(_))
        ));
    }

    #[test]
    fn display_and_redaction() {
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(redacted_user_code("BCDFGHJK"), "BCDF-****");
    }

    #[test]
    fn hashes_compare_in_constant_time_helper() {
        let h = hash_secret("s3cret");
        assert_eq!(h.len(), 64);
        assert!(secret_matches("s3cret", &h));
        assert!(!secret_matches("s3cres", &h));
    }

    #[test]
    fn passwords_round_trip() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        // Verified where the server verifies: the bounded pool (`passwords`).
        let pool = crate::passwords::PasswordPool::new(1, std::time::Duration::from_secs(5), 1);
        assert!(pool
            .verify("correct horse", Some(&phc))
            .expect("a free buffer"));
        assert!(!pool.verify("wrong", Some(&phc)).expect("a free buffer"));
        assert!(!pool.verify("correct horse", None).expect("a free buffer"));
    }
}
