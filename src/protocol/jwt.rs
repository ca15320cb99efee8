//! The claims of the JWTs devicegate signs: ID tokens (OpenID Connect Core §2, §3.1.3.6)
//! and JWT access tokens (RFC 9068 §2.2). Shapes only; `keys` signs them.

use serde_json::{Map, Value};

use super::claims::user_claims;
use super::scope::{has_scope, OPENID_SCOPE};
use crate::store::{Client, User};

/// RFC 9068 §2.1: the `typ` header of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `access_token_format` of a client that gets RFC 9068 access tokens.
pub const JWT_FORMAT: &str = "jwt";
/// Does a space-separated scope ask for an ID token (OIDC Core §3.1.2.1: it has `openid`)?
pub fn wants_id_token(scope: &str) -> bool {
    has_scope(scope, OPENID_SCOPE)
}

/// Who a token is issued to, and when: what every signed token needs.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    /// Exactly the issuer (`iss`).
    pub issuer: &'a str,
    pub client: &'a Client,
    pub user: &'a User,
    /// The granted scope, space-separated.
    pub scope: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Seconds the token lives.
    pub ttl: u64,
}

impl Issue<'_> {
    fn exp(&self) -> i64 {
        self.now.saturating_add_unsigned(self.ttl)
    }
}

/// OIDC Core §2 / §3.1.3.6: `iss`, `sub` (the user's opaque subject), `aud` (the
/// client_id), `exp`, `iat`, `auth_time` (Unix seconds: when the approver signed in),
/// `azp` (the client_id), and the user claims the scope releases.
pub fn id_token_claims(issue: &Issue<'_>, auth_time: i64) -> Value {
    let mut claims: Map<String, Value> = user_claims(issue.user, issue.scope);
    let client_id = Value::String(issue.client.client_id.clone());
    for (name, value) in [
        ("iss", Value::String(issue.issuer.to_string())),
        ("sub", Value::String(issue.user.subject.clone())),
        ("aud", client_id.clone()),
        ("exp", issue.exp().into()),
        ("iat", issue.now.into()),
        ("auth_time", auth_time.into()),
        ("azp", client_id),
    ] {
        claims.insert(name.into(), value);
    }
    Value::Object(claims)
}

/// RFC 9068 §2.2: `iss`, `sub`, `aud` (the client's configured audience, else its
/// client_id), `client_id`, `scope`, `exp`, `iat`, `jti` (random; its hash is what the
/// store keeps, so revocation and introspection find the token).
pub fn access_token_claims(issue: &Issue<'_>, jti: &str) -> Value {
    let client = issue.client;
    serde_json::json!({
        "iss": issue.issuer,
        "sub": issue.user.subject,
        "aud": client.access_token_audience.as_deref().unwrap_or(&client.client_id),
        "client_id": client.client_id,
        "scope": issue.scope,
        "exp": issue.exp(),
        "iat": issue.now,
        "jti": jti,
    })
}

/// What a JWT access token's row is stored under: the SHA-256 of its `jti`, marked `jwt:`.
/// The mark keeps the two kinds apart: an opaque token's stored hash is 64 hex digits and
/// never starts with `jwt:`, so presenting a JWT's bare `jti` as an opaque token (it looks
/// like one) finds nothing, and once the key that signed the JWT is retired nothing can
/// reach its row.
pub fn jti_hash(jti: &str) -> String {
    format!("jwt:{}", crate::secrets::hash_secret(jti))
}
