//! The device code grant (RFC 8628 §3.4–3.5), and minting token pairs for every grant.

use super::polls::{PollKey, PollTracker, PollVerdict};
use super::scope::{has_scope, OFFLINE_ACCESS_SCOPE};
use super::{oauth, Error, ErrorCode, OAuthError, Settings, DEVICE_CODE_GRANT};
use crate::clock::Timestamp;
use crate::secrets;
use crate::store::{Client, DeviceCodeStatus, IssuedTokens, RedeemOutcome, Store};

/// RFC 6749 §5.1 success body. `scope` is always sent: §5.1 requires it whenever it
/// differs from the request (narrowed, see `scope::resolve_scope`), and Campus's clients
/// read it every time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    /// `None` (left out) for a client that requires `offline_access` for a refresh token
    /// when the grant's scope lacks it (`refresh_token_issued`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Whether a new device grant gets a refresh token: always (today's rule), except for a
/// client with `refresh_requires_offline_access`, which gets one only when the granted
/// scope includes `offline_access` (OIDC Core §11). Decided once, when the device code is
/// redeemed: the grant's refresh tokens then keep rotating as usual, and an operator
/// changing the setting later affects new logins only.
pub fn refresh_token_issued(client: &Client, granted_scope: &str) -> bool {
    !client.refresh_requires_offline_access || has_scope(granted_scope, OFFLINE_ACCESS_SCOPE)
}

/// One poll of the device code grant.
pub fn exchange_device_code(
    store: &mut Store,
    polls: &PollTracker,
    client: &Client,
    device_code: Option<&str>,
    settings: &Settings,
    now: Timestamp,
) -> Result<TokenResponse, Error> {
    if !client.allows_grant(DEVICE_CODE_GRANT) {
        return oauth(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device authorization grant",
        );
    }
    let Some(device_code) = device_code else {
        return oauth(ErrorCode::InvalidRequest, "device_code is required");
    };
    let digest = secrets::sha256(device_code);
    let key = PollKey::of(&digest);
    // Read before the code: a decision committed after this makes the memory stale.
    let decisions_seen = store.decisions_so_far();
    if let Some(interval) = polls.early_poll(key, &client.client_id, decisions_seen, now) {
        return slow_down(interval);
    }
    let Some(code) = store.find_device_code_by_hash(&secrets::hex(&digest))? else {
        return oauth(ErrorCode::InvalidGrant, "unknown device_code");
    };
    // RFC 8628 §3.4: a device code is bound to the client that requested it.
    if code.client_id != client.client_id {
        return oauth(ErrorCode::InvalidGrant, "unknown device_code");
    }
    let expired = now.secs() >= code.expires_at;
    match code.status {
        DeviceCodeStatus::Redeemed => oauth(ErrorCode::InvalidGrant, "device_code already used"),
        DeviceCodeStatus::Denied => {
            polls.forget(key);
            oauth(ErrorCode::AccessDenied, "the user denied the request")
        }
        _ if expired => {
            polls.forget(key);
            oauth(ErrorCode::ExpiredToken, "the device_code has expired")
        }
        DeviceCodeStatus::Pending => {
            match polls.record_poll(
                key,
                &client.client_id,
                code.interval,
                code.expires_at,
                decisions_seen,
                now,
            ) {
                PollVerdict::OnTime => oauth(
                    ErrorCode::AuthorizationPending,
                    "the user has not yet approved the request",
                ),
                PollVerdict::SlowDown { interval } => slow_down(interval),
            }
        }
        DeviceCodeStatus::Approved => {
            let access_token = secrets::random_token();
            let refresh_token =
                refresh_token_issued(client, &code.scope).then(secrets::random_token);
            let refresh_hash = refresh_token.as_deref().map(secrets::hash_secret);
            let outcome = store.redeem_device_code(
                code.id,
                &IssuedTokens {
                    access_hash: &secrets::hash_secret(&access_token),
                    access_expires_at: now
                        .secs()
                        .saturating_add_unsigned(settings.access_token_ttl),
                    refresh_hash: refresh_hash.as_deref(),
                    refresh_expires_at: now
                        .secs()
                        .saturating_add_unsigned(settings.refresh_token_ttl),
                },
                now.secs(),
            )?;
            polls.forget(key);
            match outcome {
                RedeemOutcome::Redeemed { .. } => Ok(TokenResponse {
                    access_token,
                    token_type: "Bearer",
                    expires_in: settings.access_token_ttl,
                    refresh_token,
                    scope: code.scope,
                }),
                // Something changed the code between the read and the claim: answer for
                // what it is now (a person cancelling the approval is a denial, not a use).
                RedeemOutcome::NotRedeemable => {
                    let now_status = store.find_device_code_by_hash(&secrets::hex(&digest))?;
                    match now_status.map(|code| code.status) {
                        Some(DeviceCodeStatus::Denied) => {
                            oauth(ErrorCode::AccessDenied, "the user denied the request")
                        }
                        Some(DeviceCodeStatus::Redeemed) => {
                            oauth(ErrorCode::InvalidGrant, "device_code already used")
                        }
                        // Still approved but not claimable: its approver has been disabled.
                        Some(_) => {
                            oauth(ErrorCode::AccessDenied, "the approval is no longer valid")
                        }
                        None => oauth(ErrorCode::ExpiredToken, "the device_code has expired"),
                    }
                }
            }
        }
    }
}

/// RFC 8628 §3.5: still pending, and the client must now wait `interval` seconds.
fn slow_down<T>(interval: u64) -> Result<T, Error> {
    Err(OAuthError {
        interval: Some(interval),
        ..OAuthError::new(
            ErrorCode::SlowDown,
            format!("polling too often; wait {interval} seconds between requests"),
        )
    }
    .into())
}

/// Hashes and expiry times of a freshly minted pair, owned, for the store.
pub struct MintedTokens {
    access_hash: String,
    access_expires_at: i64,
    refresh_hash: String,
    refresh_expires_at: i64,
}

impl MintedTokens {
    pub fn stored(&self) -> IssuedTokens<'_> {
        IssuedTokens {
            access_hash: &self.access_hash,
            access_expires_at: self.access_expires_at,
            refresh_hash: Some(&self.refresh_hash),
            refresh_expires_at: self.refresh_expires_at,
        }
    }
}

/// A new access and refresh token: the response to send, and what to store (hashes only).
pub fn mint(settings: &Settings, scope: String, now: Timestamp) -> (MintedTokens, TokenResponse) {
    let access_token = secrets::random_token();
    let refresh_token = secrets::random_token();
    let minted = MintedTokens {
        access_hash: secrets::hash_secret(&access_token),
        access_expires_at: now
            .secs()
            .saturating_add_unsigned(settings.access_token_ttl),
        refresh_hash: secrets::hash_secret(&refresh_token),
        refresh_expires_at: now
            .secs()
            .saturating_add_unsigned(settings.refresh_token_ttl),
    };
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: settings.access_token_ttl,
        refresh_token: Some(refresh_token),
        scope,
    };
    (minted, response)
}
