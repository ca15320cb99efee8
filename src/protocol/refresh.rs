//! The refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).
//!
//! Every exchange rotates: the presented refresh token is spent and a new pair issued.
//! Presenting a spent token again is reuse, and RFC 9700 §4.14.2 revokes the whole grant:
//! one of the two presenters is a thief. `--refresh-grace N` trades a little of that for
//! devices on bad networks (a response lost after the rotation committed): within N seconds
//! of the rotation, a spent token presented again is a *retry* and gets its own new pair,
//! while the pair already handed out stays valid, so a replayed old token can never lock
//! the real device out. It stays reuse (grant revoked) when presented after the window, or
//! after its successor was itself exchanged (T0 → T1 → T2, then T0: older than the last
//! rotation). Inside the window a spent token gets at most `MAX_GRACE_RETRIES` pairs (else
//! a leaked token would be a token factory for the window); past that it is refused
//! (`invalid_grant`) without revoking anything, so a replay inside the window can never
//! end the device's grant either. The store reports the facts; `decide` is the rule.

use super::scope::narrow_scope;
use super::token::{mint, Granted, Signing, TokenResponse};
use super::{oauth, Error, ErrorCode, Settings, REFRESH_TOKEN_GRANT};
use crate::clock::Timestamp;
use crate::logging::printable;
use crate::secrets;
use crate::store::{Client, RefreshFacts, RefreshOutcome, RefreshStep, Store};

/// Retries answered per spent refresh token within the grace window; the next is reuse.
pub const MAX_GRACE_RETRIES: i64 = 3;

/// Rotate a live token. A spent one inside the grace window (`grace_secs`, 0: none) whose
/// successor is unspent is a retry while it has retries left, and refused (nothing stored,
/// nothing revoked) once they are used up; otherwise it is reuse.
pub fn decide(facts: &RefreshFacts, grace_secs: i64, now: i64) -> RefreshStep {
    match facts.rotated_at {
        None => RefreshStep::Rotate,
        Some(at) if grace_secs > 0 && now - at <= grace_secs && !facts.successor_rotated => {
            if facts.grace_retries < MAX_GRACE_RETRIES {
                RefreshStep::Retry
            } else {
                RefreshStep::Refuse
            }
        }
        Some(_) => RefreshStep::Revoke,
    }
}

pub fn refresh(
    store: &mut Store,
    client: &Client,
    refresh_token: Option<&str>,
    requested_scope: Option<&str>,
    settings: &Settings,
    signing: Signing<'_>,
    now: Timestamp,
) -> Result<TokenResponse, Error> {
    if !client.allows_grant(REFRESH_TOKEN_GRANT) {
        return oauth(
            ErrorCode::UnauthorizedClient,
            "this client may not use refresh tokens",
        );
    }
    let Some(refresh_token) = refresh_token else {
        return oauth(ErrorCode::InvalidRequest, "refresh_token is required");
    };
    let hash = secrets::hash_secret(refresh_token);
    let Some(row) = store.find_refresh_token(&hash)? else {
        return oauth(ErrorCode::InvalidGrant, "unknown refresh_token");
    };
    // Bound to its client; another client learns nothing about it.
    if row.client_id != client.client_id {
        return oauth(ErrorCode::InvalidGrant, "unknown refresh_token");
    }
    if row.grant_revoked || row.user_disabled || row.expires_at <= now.secs() {
        return oauth(
            ErrorCode::InvalidGrant,
            "the refresh_token is no longer valid",
        );
    }
    // What the client may ask for today bounds what its grants still get: an operator who
    // takes a scope from a client (`client edit guest --scope "read write"` to keep email out)
    // takes it from existing logins at their next refresh, not only from new ones.
    let still_allowed: Vec<&str> = row
        .scope
        .split(' ')
        .filter(|s| client.scopes.iter().any(|allowed| allowed == s))
        .collect();
    if still_allowed.is_empty() {
        return oauth(
            ErrorCode::InvalidGrant,
            "this client may no longer ask for any of this grant's scope",
        );
    }
    let scope = narrow_scope(requested_scope, &still_allowed.join(" "))?;
    // OIDC Core §12.2: the new ID token (if `openid` is still in scope) names the same
    // user (`sub`) and sign-in (`auth_time`) as the first.
    let Some(user) = store.find_user(row.user_id)? else {
        return oauth(
            ErrorCode::InvalidGrant,
            "the refresh_token is no longer valid",
        );
    };
    let granted = Granted {
        client,
        user: &user,
        auth_time: row.auth_time,
    };
    let (tokens, response) = mint(store, settings, signing, &granted, scope, true, now)?;
    let grace = settings.refresh_grace;
    match store.refresh_grant(
        &hash,
        &response.scope,
        &tokens.stored(),
        now.secs(),
        |facts| decide(facts, grace, now.secs()),
    )? {
        RefreshOutcome::Rotated => Ok(response),
        RefreshOutcome::Retried => {
            log::info!(
                "refresh token presented again within --refresh-grace on grant {} (client {}): \
                 answered as a retry",
                row.grant_id,
                row.client_id
            );
            Ok(response)
        }
        RefreshOutcome::Revoked => {
            log::warn!(
                "refresh token reuse on grant {} (client {}): grant revoked",
                row.grant_id,
                printable(&row.client_id)
            );
            oauth(
                ErrorCode::InvalidGrant,
                "this refresh_token was already used; the grant has been revoked",
            )
        }
        RefreshOutcome::Refused => {
            log::warn!(
                "refresh token presented again within --refresh-grace on grant {} (client {}) \
                 after {MAX_GRACE_RETRIES} retries: refused, grant kept",
                row.grant_id,
                printable(&row.client_id)
            );
            oauth(
                ErrorCode::InvalidGrant,
                "this refresh_token was already used",
            )
        }
        RefreshOutcome::Invalid => oauth(
            ErrorCode::InvalidGrant,
            "the refresh_token is no longer valid",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(rotated_at: Option<i64>, grace_retries: i64, successor_rotated: bool) -> RefreshFacts {
        RefreshFacts {
            grant_id: crate::store::GrantId::new(1),
            rotated_at,
            grace_retries,
            successor_rotated,
        }
    }

    #[test]
    fn a_live_token_rotates() {
        assert_eq!(decide(&facts(None, 0, false), 0, 100), RefreshStep::Rotate);
        assert_eq!(decide(&facts(None, 0, false), 30, 100), RefreshStep::Rotate);
    }

    #[test]
    fn a_spent_token_is_a_retry_only_inside_the_window() {
        assert_eq!(
            decide(&facts(Some(90), 0, false), 10, 100),
            RefreshStep::Retry
        );
        assert_eq!(
            decide(&facts(Some(89), 0, false), 10, 100),
            RefreshStep::Revoke
        );
        assert_eq!(
            decide(&facts(Some(100), 0, false), 0, 100),
            RefreshStep::Revoke
        );
    }

    #[test]
    fn older_than_the_last_rotation_is_reuse_and_out_of_retries_is_refused() {
        assert_eq!(
            decide(&facts(Some(99), 0, true), 10, 100),
            RefreshStep::Revoke
        );
        let last = MAX_GRACE_RETRIES - 1;
        assert_eq!(
            decide(&facts(Some(99), last, false), 10, 100),
            RefreshStep::Retry
        );
        // Out of retries inside the window: refused, the grant kept; after it: reuse.
        assert_eq!(
            decide(&facts(Some(99), MAX_GRACE_RETRIES, false), 10, 100),
            RefreshStep::Refuse
        );
        assert_eq!(
            decide(&facts(Some(89), MAX_GRACE_RETRIES, false), 10, 100),
            RefreshStep::Revoke
        );
    }
}
