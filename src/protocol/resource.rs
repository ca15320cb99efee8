//! What happens to tokens after they are issued: revocation (RFC 7009), introspection
//! (RFC 7662) and the bearer look-up behind userinfo (RFC 6750).
//!
//! A JWT access token (RFC 9068) is stored under its `jti`'s hash; a presented one whose
//! signature one of our published keys verifies is looked up by that, so all three work
//! for JWT and opaque access tokens alike.

use super::token::Signing;
use super::{oauth, scope, Error, ErrorCode};
use crate::clock::Timestamp;
use crate::keys::KeyError;
use crate::secrets;
use crate::store::{self, AccessTokenRow, Client, Store};

/// The stored hash naming a presented token: for a JWT access token we signed, its
/// `jti`'s; otherwise (opaque tokens, and anything that is not our JWT) the token's own.
fn stored_hash(store: &Store, signing: Signing<'_>, token: &str) -> Result<String, store::Error> {
    // Opaque tokens are base64url: no dots. A JWS compact serialisation has two.
    if token.bytes().filter(|b| *b == b'.').count() == 2 {
        match signing.keys.access_token_jti(store, token, signing.issuer) {
            Ok(Some(jti)) => return Ok(super::jwt::jti_hash(&jti)),
            Ok(None) => {}
            Err(KeyError::Store(e)) => return Err(e),
            Err(KeyError::Broken(detail)) => return Err(store::Error::Internal(detail)),
        }
    }
    Ok(secrets::hash_secret(token))
}

/// `last_used_at` is written at most this often per grant.
const TOUCH_AFTER: i64 = 60;

/// RFC 7009 §2: revokes `token` if it belongs to `client`. Unknown tokens and other
/// clients' tokens are not errors (the answer is 200 either way, §2.2). A refresh token
/// ends its whole grant; an access token only itself.
pub fn revoke(
    store: &mut Store,
    client: &Client,
    token: Option<&str>,
    hint: Option<&str>,
    signing: Signing<'_>,
    now: Timestamp,
) -> Result<(), Error> {
    let Some(token) = token else {
        return oauth(ErrorCode::InvalidRequest, "token is required");
    };
    let hash = stored_hash(store, signing, token)?;
    // §2.1: the hint orders the search; an unknown hint is ignored.
    let access_first = hint == Some("access_token");
    for kind in if access_first {
        [true, false]
    } else {
        [false, true]
    } {
        if kind {
            if let Some(owner) = store.access_token_client(&hash)? {
                if owner == client.client_id {
                    store.delete_access_token(&hash)?;
                }
                return Ok(());
            }
        } else if let Some(row) = store.find_refresh_token(&hash)? {
            if row.client_id == client.client_id {
                store.revoke_grant(row.grant_id, None, now.secs())?;
            }
            return Ok(());
        }
    }
    Ok(())
}

/// RFC 7662 §2.2 answer. `sub` is the user's OpenID Connect subject (the same opaque
/// value as in userinfo and ID tokens), `username` their login name.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Introspection {
    Active {
        active: bool,
        scope: String,
        client_id: String,
        username: String,
        sub: String,
        token_type: &'static str,
        exp: i64,
        iat: i64,
        iss: String,
    },
    /// Unknown, expired, revoked or rotated: nothing else is said (§2.2).
    Inactive { active: bool },
}

pub fn introspect(
    store: &Store,
    token: Option<&str>,
    hint: Option<&str>,
    signing: Signing<'_>,
    now: Timestamp,
) -> Result<Introspection, Error> {
    let Some(token) = token else {
        return oauth(ErrorCode::InvalidRequest, "token is required");
    };
    let issuer = signing.issuer;
    let hash = stored_hash(store, signing, token)?;
    let as_access = |store: &Store| -> Result<Option<Introspection>, store::Error> {
        Ok(store
            .find_access_token(&hash, now.secs())?
            .map(|row| Introspection::Active {
                active: true,
                scope: row.scope,
                client_id: row.client_id,
                username: row.username,
                sub: row.subject,
                token_type: "Bearer",
                exp: row.expires_at,
                iat: row.issued_at,
                iss: issuer.to_string(),
            }))
    };
    let as_refresh = |store: &Store| -> Result<Option<Introspection>, store::Error> {
        Ok(store.find_refresh_token(&hash)?.and_then(|row| {
            let live = row.rotated_at.is_none()
                && !row.grant_revoked
                && !row.user_disabled
                && row.expires_at > now.secs();
            live.then(|| Introspection::Active {
                active: true,
                scope: row.scope,
                client_id: row.client_id,
                username: row.username,
                sub: row.subject,
                token_type: "refresh_token",
                exp: row.expires_at,
                iat: row.issued_at,
                iss: issuer.to_string(),
            })
        }))
    };
    let found = if hint == Some("refresh_token") {
        match as_refresh(store)? {
            Some(found) => Some(found),
            None => as_access(store)?,
        }
    } else {
        match as_access(store)? {
            Some(found) => Some(found),
            None => as_refresh(store)?,
        }
    };
    Ok(found.unwrap_or(Introspection::Inactive { active: false }))
}

/// OIDC Core §5.3.2: the userinfo answer for a live access token: the claims its scope
/// releases (`claims::user_claims`), and, for clients written before OpenID Connect
/// (Campus's CLI, `devicegate login`), `username`, `scope` and `client_id` as extra members.
/// `None` when the user is gone (removed between the token look-up and this read).
pub fn userinfo(
    store: &Store,
    token: &AccessTokenRow,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, store::Error> {
    let Some(user) = store.find_user(token.user_id)? else {
        return Ok(None);
    };
    let mut answer = super::claims::user_claims(&user, &token.scope);
    // The login name is `profile`'s to release in an OpenID Connect request; a plain OAuth
    // token (no `openid`: Campus's CLI, `devicegate login`) keeps getting it as before.
    let scopes = &token.scope;
    let username_released = !scope::has_scope(scopes, scope::OPENID_SCOPE)
        || scope::has_scope(scopes, scope::PROFILE_SCOPE);
    let mut extra = vec![("scope", scopes), ("client_id", &token.client_id)];
    if username_released {
        extra.push(("username", &user.username));
    }
    for (name, value) in extra {
        answer
            .entry(name)
            .or_insert_with(|| serde_json::Value::String(value.clone()));
    }
    Ok(Some(answer))
}

/// The live access token presented as a bearer token, recording the grant's use.
pub fn bearer(
    store: &Store,
    token: &str,
    signing: Signing<'_>,
    now: Timestamp,
) -> Result<Option<AccessTokenRow>, store::Error> {
    let row = store.find_access_token(&stored_hash(store, signing, token)?, now.secs())?;
    if let Some(row) = &row {
        if now.secs() - row.last_used_at >= TOUCH_AFTER {
            store.touch_grant(row.grant_id, now.secs())?;
        }
    }
    Ok(row)
}
