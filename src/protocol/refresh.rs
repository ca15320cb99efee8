//! The refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

use super::scope::narrow_scope;
use super::token::{mint, TokenResponse};
use super::{oauth, Error, ErrorCode, Settings, REFRESH_TOKEN_GRANT};
use crate::clock::Timestamp;
use crate::logging::printable;
use crate::secrets;
use crate::store::{Client, RefreshOutcome, Store};

pub fn refresh(
    store: &mut Store,
    client: &Client,
    refresh_token: Option<&str>,
    requested_scope: Option<&str>,
    settings: &Settings,
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
    let scope = narrow_scope(requested_scope, &row.scope)?;
    let (tokens, response) = mint(settings, scope, now);
    match store.refresh_grant(
        &hash,
        &response.scope,
        &tokens.stored(),
        settings.refresh_grace,
        now.secs(),
    )? {
        RefreshOutcome::Rotated => Ok(response),
        RefreshOutcome::ReuseDetected => {
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
        RefreshOutcome::Invalid => oauth(
            ErrorCode::InvalidGrant,
            "the refresh_token is no longer valid",
        ),
    }
}
