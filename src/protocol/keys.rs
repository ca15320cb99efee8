//! Signing-key rotation rules (issue #14): which key signs, which are published, when a
//! superseded key may go. Facts in, decisions out; the keys themselves live in `keys`
//! (crypto) and `store` (rows).
//!
//! A key is published (in the JWKS) from its creation. Per algorithm, the newest key whose
//! `created_at` + the rotation delay has passed signs; before any has (a first start),
//! the oldest signs, so a server always has a key to sign with. A key is *superseded*
//! once a newer key of its algorithm has signed long enough: from then on it only
//! verifies. Its last token expires at most `token_ttl` (plus the servers' key-cache
//! lifetime, during which a worker may still sign with it) after its successor took over;
//! after that it is retired (deleted) automatically, or earlier by `key retire --force`.

/// What the rules need to know about one stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub kid: String,
    /// `RS256` or `EdDSA`.
    pub alg: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` while not known to be superseded.
    pub retire_after: Option<i64>,
}

/// The key that signs for `alg` at `now` with a rotation `delay` (seconds), if any.
pub fn signing_key<'k>(
    keys: &'k [KeyFacts],
    alg: &str,
    delay: i64,
    now: i64,
) -> Option<&'k KeyFacts> {
    let mut of_alg: Vec<&KeyFacts> = keys.iter().filter(|k| k.alg == alg).collect();
    of_alg.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
    of_alg
        .iter()
        .rev()
        .find(|k| k.created_at.saturating_add(delay) <= now)
        .or_else(|| of_alg.first())
        .copied()
}

/// When `key` stopped signing: the moment a newer key of its algorithm took over, if that
/// has happened by `now`.
pub fn superseded_at(keys: &[KeyFacts], key: &KeyFacts, delay: i64, now: i64) -> Option<i64> {
    keys.iter()
        .filter(|k| k.alg == key.alg && (k.created_at, &k.kid) > (key.created_at, &key.kid))
        .map(|k| k.created_at.saturating_add(delay))
        .filter(|took_over| *took_over <= now)
        .min()
}

/// Superseded keys without a `retire_after` yet, with the value to record: the takeover
/// plus `token_ttl` (the longest lifetime of a token it signed) plus `cache_secs` (how
/// long a server may still have signed with it after the takeover).
pub fn retire_times(
    keys: &[KeyFacts],
    delay: i64,
    token_ttl: i64,
    cache_secs: i64,
    now: i64,
) -> Vec<(String, i64)> {
    keys.iter()
        .filter(|k| k.retire_after.is_none())
        .filter_map(|k| {
            superseded_at(keys, k, delay, now).map(|at| {
                (
                    k.kid.clone(),
                    at.saturating_add(token_ttl).saturating_add(cache_secs),
                )
            })
        })
        .collect()
}

/// Keys whose every token has expired by `now`: retire them. Never the key that signs for
/// its algorithm (so an algorithm always keeps one, however many fall due together).
pub fn due_for_retirement(keys: &[KeyFacts], delay: i64, now: i64) -> Vec<String> {
    keys.iter()
        .filter(|k| k.retire_after.is_some_and(|at| at <= now))
        .filter(|k| !is_signer(keys, k, delay, now))
        .map(|k| k.kid.clone())
        .collect()
}

/// Keys that sign for their algorithm yet carry a retirement time (recorded while a newer
/// key signed, which has since been retired by force): the time must go, their tokens are
/// live again.
pub fn signers_with_retire_time(keys: &[KeyFacts], delay: i64, now: i64) -> Vec<String> {
    keys.iter()
        .filter(|k| k.retire_after.is_some() && is_signer(keys, k, delay, now))
        .map(|k| k.kid.clone())
        .collect()
}

fn is_signer(keys: &[KeyFacts], key: &KeyFacts, delay: i64, now: i64) -> bool {
    signing_key(keys, &key.alg, delay, now).is_some_and(|signer| signer.kid == key.kid)
}

/// Why `key retire` refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireRefusal {
    Unknown,
    /// The only key of its algorithm: nothing could sign (not even with `--force`).
    LastOfItsAlg,
    /// It still signs, or its successor has not taken over long enough for the server to
    /// record when its tokens end (`--force` overrides).
    StillSigning,
    /// Tokens it signed live until then (Unix seconds; `--force` overrides).
    TokensLive(i64),
}

/// May the operator retire `kid` at `now`?
pub fn may_retire(
    keys: &[KeyFacts],
    kid: &str,
    force: bool,
    now: i64,
) -> Result<(), RetireRefusal> {
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        return Err(RetireRefusal::Unknown);
    };
    if !keys.iter().any(|o| o.alg == key.alg && o.kid != key.kid) {
        return Err(RetireRefusal::LastOfItsAlg);
    }
    match key.retire_after {
        _ if force => Ok(()),
        None => Err(RetireRefusal::StillSigning),
        Some(at) if at > now => Err(RetireRefusal::TokensLive(at)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, alg: &str, created_at: i64, retire_after: Option<i64>) -> KeyFacts {
        KeyFacts {
            kid: kid.into(),
            alg: alg.into(),
            created_at,
            retire_after,
        }
    }

    #[test]
    fn a_new_key_signs_only_after_the_delay() {
        let keys = [key("a", "RS256", 0, None), key("b", "RS256", 100, None)];
        assert_eq!(
            signing_key(&keys, "RS256", 50, 120).expect("a key").kid,
            "a"
        );
        assert_eq!(
            signing_key(&keys, "RS256", 50, 150).expect("a key").kid,
            "b"
        );
        assert!(signing_key(&keys, "EdDSA", 50, 150).is_none());
        // A first start: the only key signs at once.
        let first = [key("a", "EdDSA", 1000, None)];
        assert_eq!(
            signing_key(&first, "EdDSA", 50, 1000).expect("a key").kid,
            "a"
        );
    }

    #[test]
    fn a_superseded_key_is_retired_after_its_tokens_expire() {
        let keys = [key("a", "RS256", 0, None), key("b", "RS256", 100, None)];
        assert_eq!(superseded_at(&keys, &keys[0], 50, 149), None);
        assert!(retire_times(&keys, 50, 3600, 5, 149).is_empty());
        assert_eq!(retire_times(&keys, 50, 3600, 5, 150), [("a".into(), 3755)]);
        let stamped = [
            key("a", "RS256", 0, Some(3755)),
            key("b", "RS256", 100, None),
        ];
        assert!(due_for_retirement(&stamped, 50, 3754).is_empty());
        assert_eq!(due_for_retirement(&stamped, 50, 3755), ["a".to_string()]);
    }

    /// Found in review: A, B, C rotated in turn; A and B stamped; C retired by force, so B
    /// signs again. The sweeper must not delete B (the last RS256 key, signing, with live
    /// tokens) when its old time comes, and B's old time must go.
    #[test]
    fn the_signing_key_is_never_retired_and_loses_a_stale_retirement_time() {
        let after_force = [
            key("a", "RS256", 0, Some(500)),
            key("b", "RS256", 100, Some(900)),
            key("e", "EdDSA", 0, None),
        ];
        assert_eq!(
            signing_key(&after_force, "RS256", 50, 1000)
                .expect("a key")
                .kid,
            "b"
        );
        assert_eq!(
            due_for_retirement(&after_force, 50, 1000),
            ["a".to_string()]
        );
        assert_eq!(
            signers_with_retire_time(&after_force, 50, 1000),
            ["b".to_string()]
        );
        // Once its time is cleared, B is superseded again only by a new key.
        let cleared = [key("b", "RS256", 100, None), key("e", "EdDSA", 0, None)];
        assert!(retire_times(&cleared, 50, 3600, 2, 5000).is_empty());
        assert!(signers_with_retire_time(&cleared, 50, 5000).is_empty());
    }

    #[test]
    fn retiring_early_needs_force_and_never_takes_the_last_key() {
        let keys = [
            key("a", "RS256", 0, Some(500)),
            key("b", "RS256", 100, None),
            key("e", "EdDSA", 0, None),
        ];
        assert_eq!(
            may_retire(&keys, "a", false, 499),
            Err(RetireRefusal::TokensLive(500))
        );
        assert_eq!(may_retire(&keys, "a", false, 500), Ok(()));
        assert_eq!(may_retire(&keys, "a", true, 0), Ok(()));
        assert_eq!(
            may_retire(&keys, "b", false, 0),
            Err(RetireRefusal::StillSigning)
        );
        assert_eq!(
            may_retire(&keys, "e", true, 0),
            Err(RetireRefusal::LastOfItsAlg)
        );
        assert_eq!(may_retire(&keys, "x", true, 0), Err(RetireRefusal::Unknown));
    }
}
