//! Signing keys and signatures for OpenID Connect (issue #14): key generation, the
//! server's cached key ring, the JWKS, and a bounded number of signatures at once.
//!
//! The crypto is the crates': `rsa` and `ed25519-dalek` generate keys; `jsonwebtoken`
//! (pure-Rust backend) signs and verifies JWS, and its `jwk` serde structs are the JWK
//! shapes. Nothing here writes a signature or a JWK by hand.
//!
//! Private keys stay in the database: they are loaded into memory only to sign, no
//! `Debug` here prints them (`GeneratedKey` and `store::SigningKeyRow` redact), and no
//! log line mentions them. Which key signs when is `protocol::keys`'s decision.
//!
//! RS256 signing costs milliseconds of CPU (a 2048-bit private-key operation), far more
//! than the rest of a redemption; it happens only when tokens are actually issued (never
//! on a pending poll), and at most `--signing-concurrency` at once: a caller waits
//! `--signing-wait-ms` for a turn and is then told `Busy` (503 with `Retry-After`). As
//! with password verifications, only so many may wait that one worker always stays free
//! for polls and pages.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, RSAKeyParameters, RSAKeyType,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::pool::{Loan, Pool};
use crate::protocol::keys::{self as rules, KeyFacts};
use crate::store::{self, NewSigningKey, SigningKeyRow, Store};

/// RSA modulus size for RS256 (OpenID Connect Core §15.1 makes RS256 mandatory; 2048 bits
/// is NIST SP 800-57's floor through 2030).
pub const RSA_BITS: usize = 2048;
/// The server re-reads the keys at most this often, so a `key rotate` or `key retire` in
/// another process is seen within it. Retirement waits this long beyond a key's last
/// token, since a worker may have signed with a key this long after its successor took over.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The two signing algorithms devicegate offers (OIDC Core §15.1: RS256 is mandatory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 2] = [Alg::Rs256, Alg::EdDsa];

    /// The JOSE name (RFC 7518 §3.1, RFC 8037 §3.1): `RS256`, `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// From the JOSE name, exactly as spelled.
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    fn jose(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// Something went wrong with keys: the store, or a key that cannot be used.
#[derive(Debug)]
pub enum KeyError {
    Store(store::Error),
    /// No key for the algorithm, a stored key that does not parse, or the JOSE library
    /// refused: a bug or a damaged database (500, details only in the log).
    Broken(String),
}

impl From<store::Error> for KeyError {
    fn from(e: store::Error) -> Self {
        KeyError::Store(e)
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Store(e) => write!(f, "{e}"),
            KeyError::Broken(detail) => write!(f, "signing keys: {detail}"),
        }
    }
}

/// A newly generated key, ready to store. `Debug` leaves the private key out.
pub struct GeneratedKey {
    /// RFC 7638 JWK thumbprint (SHA-256) of the public key.
    pub kid: String,
    pub alg: Alg,
    /// Secret: base64 of the DER (PKCS#1 RSA, PKCS#8 Ed25519).
    private_key: String,
    /// The public JWK, JSON.
    pub public_jwk: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl GeneratedKey {
    /// The row to store.
    pub fn as_new(&self) -> NewSigningKey<'_> {
        NewSigningKey {
            kid: &self.kid,
            alg: self.alg.as_str(),
            private_key: &self.private_key,
            public_jwk: &self.public_jwk,
        }
    }
}

/// A new key pair for `alg` from the OS's randomness. An RSA key takes a while (a random
/// prime search: tens to hundreds of milliseconds optimised).
pub fn generate(alg: Alg) -> Result<GeneratedKey, KeyError> {
    let broken = |e: &dyn std::fmt::Display| KeyError::Broken(format!("generating a key: {e}"));
    let private_der = match alg {
        Alg::Rs256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key =
                rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS).map_err(|e| broken(&e))?;
            key.to_pkcs1_der()
                .map_err(|e| broken(&e))?
                .as_bytes()
                .to_vec()
        }
        Alg::EdDsa => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            use rand_core::RngCore;
            let mut seed = ed25519_dalek::SecretKey::default();
            rand_core::OsRng.fill_bytes(&mut seed);
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            key.to_pkcs8_der()
                .map_err(|e| broken(&e))?
                .as_bytes()
                .to_vec()
        }
    };
    let parameters = public_parameters(alg, &private_der)
        .ok_or_else(|| broken(&"the new private key does not parse"))?;
    let mut jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(match alg {
                Alg::Rs256 => KeyAlgorithm::RS256,
                Alg::EdDsa => KeyAlgorithm::EdDSA,
            }),
            ..CommonParameters::default()
        },
        algorithm: parameters,
    };
    // RFC 7638: the thumbprint covers the required public members only, so it can be the
    // kid (and stays the same whoever computes it).
    let kid = jwk.thumbprint(ThumbprintHash::SHA256);
    jwk.common.key_id = Some(kid.clone());
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| broken(&e))?;
    Ok(GeneratedKey {
        kid,
        alg,
        private_key: STANDARD.encode(private_der),
        public_jwk,
    })
}

/// The public JWK members of a private key in its stored DER (PKCS#1 RSA, PKCS#8
/// Ed25519); `None` when the bytes are not such a key.
fn public_parameters(alg: Alg, der: &[u8]) -> Option<AlgorithmParameters> {
    Some(match alg {
        Alg::Rs256 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(der).ok()?;
            AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            })
        }
        Alg::EdDsa => {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).ok()?;
            AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            })
        }
    })
}

/// A first start: a key for each algorithm that has none. Returns the kids made. Called
/// by the server only (admin commands never make keys).
pub fn ensure_first_keys(store: &Store, now: i64) -> Result<Vec<String>, KeyError> {
    let have = store.signing_key_algs()?;
    let mut made = Vec::new();
    for alg in Alg::ALL {
        if have.iter().any(|a| a == alg.as_str()) {
            continue;
        }
        let key = generate(alg)?;
        if store.create_first_signing_key(&key.as_new(), now)? {
            made.push(key.kid);
        }
    }
    Ok(made)
}

/// One stored key, parsed for use: its row's facts, and the parsed key (shared between
/// reloads, since only the facts change).
struct LoadedKey {
    facts: KeyFacts,
    parsed: Arc<ParsedKey>,
}

struct ParsedKey {
    alg: Alg,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl LoadedKey {
    fn parse(row: &SigningKeyRow) -> Result<LoadedKey, KeyError> {
        let broken = |what: &str| KeyError::Broken(format!("stored key {}: {what}", row.kid));
        let alg = Alg::parse(&row.alg).ok_or_else(|| broken("unknown alg"))?;
        let der = STANDARD
            .decode(&row.private_key)
            .map_err(|_| broken("private key is not base64"))?;
        let jwk: Jwk =
            serde_json::from_str(&row.public_jwk).map_err(|_| broken("public JWK unreadable"))?;
        // The private half must parse and match the published one: jsonwebtoken takes DER
        // bytes on trust and would fail only when signing, after the JWKS advertised it.
        let public = public_parameters(alg, &der).ok_or_else(|| {
            broken(match alg {
                Alg::Rs256 => "private key is not an RSA key",
                Alg::EdDsa => "private key is not an Ed25519 key",
            })
        })?;
        if public != jwk.algorithm {
            return Err(broken("private key does not match its public JWK"));
        }
        let encoding = match alg {
            Alg::Rs256 => EncodingKey::from_rsa_der(&der),
            Alg::EdDsa => EncodingKey::from_ed_der(&der),
        };
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| broken("public JWK unusable"))?;
        Ok(LoadedKey {
            facts: facts_of(row),
            parsed: Arc::new(ParsedKey {
                alg,
                encoding,
                decoding,
                jwk,
            }),
        })
    }
}

struct Loaded {
    read_at: Instant,
    keys: Arc<Vec<LoadedKey>>,
    /// Rows that could not be parsed (damaged in the file): left out, logged once.
    broken: Vec<String>,
}

/// No signing turn came free within the configured wait.
pub use crate::pool::Busy;

/// Why a token could not be signed.
#[derive(Debug)]
pub enum SignError {
    Busy,
    Key(KeyError),
}

impl From<KeyError> for SignError {
    fn from(e: KeyError) -> Self {
        SignError::Key(e)
    }
}

impl From<store::Error> for SignError {
    fn from(e: store::Error) -> Self {
        SignError::Key(KeyError::Store(e))
    }
}

/// Seconds a new key waits beyond `--key-rotation-delay` before it signs: its
/// `created_at` is cut to whole seconds and a server sees it up to `KEY_CACHE_TTL` late,
/// so without them a JWKS fetched just before the rotation (cached for the delay) could
/// miss a key that already signs.
pub const PUBLISH_MARGIN: i64 = 2;

/// The server's keys: read from the store at most every `KEY_CACHE_TTL`, shared by all
/// workers, with a bounded number of signatures at once.
pub struct KeyRing {
    cache: RwLock<Option<Loaded>>,
    /// Seconds from a key's creation until it signs (`--key-rotation-delay`).
    delay: i64,
    /// One `()` per signature that may run at once.
    turns: Pool<()>,
}

impl KeyRing {
    /// `delay`: seconds a new key is only published before it signs. `concurrency`
    /// signatures at once (at least 1); a caller waits at most `wait` for a turn, and at
    /// most `max_waiting` callers wait (others are `Busy` at once).
    pub fn new(delay: u64, concurrency: usize, wait: Duration, max_waiting: usize) -> KeyRing {
        KeyRing {
            cache: RwLock::new(None),
            delay: i64::try_from(delay)
                .unwrap_or(i64::MAX)
                .saturating_add(PUBLISH_MARGIN),
            turns: Pool::new(vec![(); concurrency.max(1)], wait, max_waiting),
        }
    }

    fn keys(&self, store: &Store) -> Result<Arc<Vec<LoadedKey>>, KeyError> {
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(loaded) = cache.as_ref() {
                if loaded.read_at.elapsed() < KEY_CACHE_TTL {
                    return Ok(Arc::clone(&loaded.keys));
                }
            }
        }
        let rows = store.list_signing_keys()?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        // Keys already parsed are reused: only new rows are parsed.
        let mut old: HashMap<String, &LoadedKey> = HashMap::new();
        let mut known_broken: &[String] = &[];
        if let Some(loaded) = cache.as_ref() {
            for key in loaded.keys.iter() {
                old.insert(key.facts.kid.clone(), key);
            }
            known_broken = &loaded.broken;
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in &rows {
            if known_broken.contains(&row.kid) {
                broken.push(row.kid.clone());
                continue;
            }
            let key = match old.get(&row.kid) {
                Some(known) => LoadedKey {
                    facts: facts_of(row),
                    parsed: Arc::clone(&known.parsed),
                },
                None => match LoadedKey::parse(row) {
                    Ok(key) => key,
                    // One damaged row must not stop the others from signing and verifying
                    // (nor let a stranger's bearer token turn into a 500): it is left out.
                    Err(e) => {
                        log::error!(
                            "{e}: left out of the JWKS, it never signs or verifies; retire it \
                             (devicegate key retire {} --force) or restore a backup",
                            crate::logging::printable(&row.kid)
                        );
                        broken.push(row.kid.clone());
                        continue;
                    }
                },
            };
            keys.push(key);
        }
        let keys = Arc::new(keys);
        *cache = Some(Loaded {
            read_at: Instant::now(),
            keys: Arc::clone(&keys),
            broken,
        });
        Ok(keys)
    }

    /// The published public keys (RFC 7517 §5), oldest first.
    pub fn jwks(&self, store: &Store) -> Result<JwkSet, KeyError> {
        Ok(JwkSet {
            keys: self
                .keys(store)?
                .iter()
                .map(|k| k.parsed.jwk.clone())
                .collect(),
        })
    }

    /// Seconds a new key is only published before it signs.
    pub fn rotation_delay(&self) -> i64 {
        self.delay
    }

    /// A turn to sign: hold it for all the signatures of one token response.
    pub fn turn(&self) -> Result<SigningTurn<'_>, Busy> {
        Ok(SigningTurn {
            ring: self,
            _turn: self.turns.take()?,
        })
    }

    /// The `jti` of a JWT access token (RFC 9068) that one of our published keys signed
    /// for `issuer` with `typ: at+jwt`; `None` for anything else (not a JWT, an unknown or
    /// retired kid, a bad signature). Expiry is not checked here: the store's row decides
    /// (on the server's own clock).
    pub fn access_token_jti(
        &self,
        store: &Store,
        token: &str,
        issuer: &str,
    ) -> Result<Option<String>, KeyError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        if header.typ.as_deref() != Some(crate::protocol::jwt::ACCESS_TOKEN_TYP) {
            return Ok(None);
        }
        let keys = self.keys(store)?;
        let Some(key) = keys.iter().find(|k| {
            Some(&k.facts.kid) == header.kid.as_ref() && k.parsed.alg.jose() == header.alg
        }) else {
            return Ok(None);
        };
        let mut validation = Validation::new(key.parsed.alg.jose());
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss"]);
        validation.set_issuer(&[issuer]);
        #[derive(serde::Deserialize)]
        struct Jti {
            jti: String,
        }
        Ok(
            jsonwebtoken::decode::<Jti>(token, &key.parsed.decoding, &validation)
                .ok()
                .map(|data| data.claims.jti),
        )
    }

    /// Superseded keys' retirement times to record, and keys to retire now (the sweeper):
    /// `token_ttl` is the longest lifetime of a token a key signs (seconds).
    pub fn housekeeping(&self, store: &Store, token_ttl: u64, now: i64) -> Result<(), KeyError> {
        let facts: Vec<KeyFacts> = store.list_signing_keys()?.iter().map(facts_of).collect();
        // A key that signs again (its successor was retired by force) has live tokens
        // again: its old retirement time no longer holds.
        for kid in rules::signers_with_retire_time(&facts, self.delay, now) {
            if store.clear_signing_key_retire_after(&kid)? {
                log::info!("signing key {kid} signs again: its retirement is put off");
            }
        }
        let facts: Vec<KeyFacts> = store.list_signing_keys()?.iter().map(facts_of).collect();
        let ttl = i64::try_from(token_ttl).unwrap_or(i64::MAX);
        let cache = i64::try_from(KEY_CACHE_TTL.as_secs()).unwrap_or(1) + 1;
        for (kid, at) in rules::retire_times(&facts, self.delay, ttl, cache, now) {
            if store.set_signing_key_retire_after(&kid, at)? {
                log::info!("signing key {kid} superseded: retired after its last token expires");
            }
        }
        let facts: Vec<KeyFacts> = store.list_signing_keys()?.iter().map(facts_of).collect();
        for kid in rules::due_for_retirement(&facts, self.delay, now) {
            if store.delete_signing_key(&kid)? {
                log::info!("signing key {kid} retired: every token it signed has expired");
            }
        }
        Ok(())
    }
}

/// The facts `protocol::keys` decides on, for a stored row.
pub fn facts_of(row: &SigningKeyRow) -> KeyFacts {
    KeyFacts {
        kid: row.kid.clone(),
        alg: row.alg.clone(),
        created_at: row.created_at,
        retire_after: row.retire_after,
    }
}

/// A turn to sign, given back on drop.
pub struct SigningTurn<'r> {
    ring: &'r KeyRing,
    _turn: Loan<'r, ()>,
}

impl SigningTurn<'_> {
    /// Signs `claims` (a JSON object) with the key that signs for `alg` at `now`, with
    /// header `typ` (`JWT` for ID tokens, `at+jwt` for RFC 9068 access tokens) and `kid`.
    pub fn sign(
        &self,
        store: &Store,
        alg: Alg,
        typ: &str,
        claims: &serde_json::Value,
        now: i64,
    ) -> Result<String, KeyError> {
        let keys = self.ring.keys(store)?;
        let facts: Vec<KeyFacts> = keys.iter().map(|k| k.facts.clone()).collect();
        let kid = rules::signing_key(&facts, alg.as_str(), self.ring.delay, now)
            .map(|k| k.kid.clone())
            .ok_or_else(|| KeyError::Broken(format!("no {} key", alg.as_str())))?;
        let key = keys
            .iter()
            .find(|k| k.facts.kid == kid)
            .ok_or_else(|| KeyError::Broken(format!("key {kid} vanished")))?;
        let header = Header {
            typ: Some(typ.to_string()),
            kid: Some(kid),
            ..Header::new(alg.jose())
        };
        jsonwebtoken::encode(&header, claims, &key.parsed.encoding)
            .map_err(|e| KeyError::Broken(format!("signing with {}: {e}", alg.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_and_its_jwk_verifies_without_showing_the_private_key() {
        let key = generate(Alg::EdDsa).expect("key");
        assert!(!format!("{key:?}").contains(&key.private_key));
        let row = SigningKeyRow {
            kid: key.kid.clone(),
            alg: "EdDSA".into(),
            private_key: key.private_key.clone(),
            public_jwk: key.public_jwk.clone(),
            created_at: 0,
            retire_after: None,
        };
        assert!(!format!("{row:?}").contains(&key.private_key));
        assert!(!key.public_jwk.contains(&key.private_key));
        let loaded = LoadedKey::parse(&row).expect("parse");
        let header = Header {
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::EdDSA)
        };
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
            &loaded.parsed.encoding,
        )
        .expect("sign");
        let jwk: Jwk = serde_json::from_str(&key.public_jwk).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).expect("valid");
    }
}
