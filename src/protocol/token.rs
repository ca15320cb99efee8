//! The device code grant (RFC 8628 §3.4–3.5), and minting token pairs for every grant:
//! opaque or RFC 9068 JWT access tokens, and OpenID Connect ID tokens when the scope has
//! `openid`. Signatures happen only here, only when tokens are really issued (never for
//! a pending poll), and only with a signing turn (see `keys`).

use super::jwt::{self, Issue};
use super::polls::{PollKey, PollTracker, PollVerdict};
use super::scope::{has_scope, OFFLINE_ACCESS_SCOPE};
use super::{oauth, Error, ErrorCode, OAuthError, Settings, DEVICE_CODE_GRANT};
use crate::clock::Timestamp;
use crate::keys::{Alg, KeyError, KeyRing, SigningTurn};
use crate::secrets;
use crate::store::{
    self, Client, DeviceCodeStatus, IssuedTokens, RedeemOutcome, Store, User, UserId,
};

/// RFC 8628 §3.5: `slow_down` adds 5 seconds to the polling interval.
const SLOW_DOWN_STEP: u64 = 5;

/// Seconds a client refused for want of a signing turn is asked to wait (a refresh; a
/// device's poll is told `slow_down` instead).
pub const SIGNING_BUSY_RETRY_AFTER: u64 = 1;

/// RFC 6749 §5.1 success body; `id_token` per OpenID Connect Core §3.1.3.3. `scope` is
/// always sent: §5.1 requires it whenever it differs from the request (narrowed, see
/// `scope::resolve_scope`), and Campus's clients read it every time.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// What signing tokens needs from the server: its keys and its issuer (`iss`).
#[derive(Clone, Copy)]
pub struct Signing<'a> {
    pub keys: &'a KeyRing,
    pub issuer: &'a str,
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
    signing: Signing<'_>,
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
        DeviceCodeStatus::Pending if !expired => {
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
        DeviceCodeStatus::Approved if !expired => {
            let Some(user) = approver(store, code.user_id)? else {
                polls.forget(key);
                return approval_withdrawn();
            };
            // Signed before the code is spent: a 503 for want of a signing turn leaves it
            // redeemable, so the device's next poll gets its tokens.
            let auth_time = code.auth_time.or(code.decided_at).unwrap_or(now.secs());
            let granted = Granted {
                client,
                user: &user,
                auth_time,
            };
            let with_refresh = refresh_token_issued(client, &code.scope);
            let minted = mint(
                store,
                settings,
                signing,
                &granted,
                code.scope,
                with_refresh,
                now,
            );
            let (tokens, response) = match minted {
                // No signing turn: the code stays approved and unspent. Every device client
                // knows RFC 8628 §3.5's `slow_down` (wait 5 s more, poll again); few would
                // retry a 503, so a burst of redemptions costs seconds, not logins.
                Err(Error::Busy { .. }) => {
                    return slow_down(code.interval.saturating_add(SLOW_DOWN_STEP));
                }
                other => other?,
            };
            let outcome = store.redeem_device_code(code.id, &tokens.stored(), now.secs())?;
            polls.forget(key);
            match outcome {
                RedeemOutcome::Redeemed { .. } => Ok(response),
                // Something changed the code between the read and the claim: answer for
                // what it is now (a person cancelling the approval is a denial, not a use).
                RedeemOutcome::NotRedeemable => {
                    match store.find_device_code_by_hash(&secrets::hex(&digest))? {
                        // Still approved, and unexpired (the claim used this same `now`):
                        // the claim's approver check refused, so the approver was deleted or
                        // disabled after `approver` read them.
                        Some(code) if code.status == DeviceCodeStatus::Approved => {
                            approval_withdrawn()
                        }
                        Some(code) => closed(code.status),
                        // Swept away: it had expired.
                        None => closed(DeviceCodeStatus::Pending),
                    }
                }
            }
        }
        status => {
            if status != DeviceCodeStatus::Redeemed {
                polls.forget(key);
            }
            closed(status)
        }
    }
}

/// The answer for a code that will give no poll tokens: used, denied, or (pending or
/// approved, and so reached only once expired) expired.
fn closed<T>(status: DeviceCodeStatus) -> Result<T, Error> {
    match status {
        DeviceCodeStatus::Redeemed => oauth(ErrorCode::InvalidGrant, "device_code already used"),
        DeviceCodeStatus::Denied => oauth(ErrorCode::AccessDenied, "the user denied the request"),
        DeviceCodeStatus::Pending | DeviceCodeStatus::Approved => {
            oauth(ErrorCode::ExpiredToken, "the device_code has expired")
        }
    }
}

/// The user who approved a code, read before signing: a deleted or disabled one gets
/// nothing (`Store::redeem_device_code` holds to the same rule when it claims the code,
/// for an approver disabled in between).
fn approver(store: &Store, user_id: Option<UserId>) -> Result<Option<User>, Error> {
    Ok(match user_id {
        Some(id) => store.find_user(id)?.filter(|user| !user.disabled),
        None => None,
    })
}

/// An approved code whose approver may no longer sign in: a denial.
fn approval_withdrawn<T>() -> Result<T, Error> {
    oauth(ErrorCode::AccessDenied, "the approval is no longer valid")
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
    /// `None`: no refresh token (`refresh_token_issued`).
    refresh_hash: Option<String>,
    refresh_expires_at: i64,
}

impl MintedTokens {
    pub fn stored(&self) -> IssuedTokens<'_> {
        IssuedTokens {
            access_hash: &self.access_hash,
            access_expires_at: self.access_expires_at,
            refresh_hash: self.refresh_hash.as_deref(),
            refresh_expires_at: self.refresh_expires_at,
        }
    }
}

/// Who tokens are minted for: the grant's client and user, and when the user signed in.
pub struct Granted<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    /// Unix seconds (OIDC `auth_time`).
    pub auth_time: i64,
}

/// A new access token, a refresh token when `with_refresh` (see `refresh_token_issued`),
/// and an ID token when `scope` has `openid`: the response to send, and what to store (hashes only; for a JWT access token, its `jti`'s
/// hash). Signing needs a turn: none free in time is `Error::Busy` (503), with nothing
/// stored.
pub fn mint(
    store: &Store,
    settings: &Settings,
    signing: Signing<'_>,
    granted: &Granted<'_>,
    scope: String,
    with_refresh: bool,
    now: Timestamp,
) -> Result<(MintedTokens, TokenResponse), Error> {
    let jwt_access = granted.client.access_token_format == jwt::JWT_FORMAT;
    let wants_id_token = jwt::wants_id_token(&scope);
    let turn = if jwt_access || wants_id_token {
        Some(signing.keys.turn().map_err(|_| Error::Busy {
            retry_after: SIGNING_BUSY_RETRY_AFTER,
            description: "the server is busy signing tokens; retry shortly",
        })?)
    } else {
        None
    };
    let issue = Issue {
        issuer: signing.issuer,
        client: granted.client,
        user: granted.user,
        scope: &scope,
        now: now.secs(),
        ttl: settings.access_token_ttl,
    };
    let (access_token, access_hash) = match &turn {
        Some(turn) if jwt_access => {
            let jti = secrets::random_token();
            let claims = jwt::access_token_claims(&issue, &jti);
            // RFC 9068 §2.1: RS256, which every resource server must support.
            let token = sign(turn, store, Alg::Rs256, jwt::ACCESS_TOKEN_TYP, &claims, now)?;
            (token, jwt::jti_hash(&jti))
        }
        _ => {
            let token = secrets::random_token();
            let hash = secrets::hash_secret(&token);
            (token, hash)
        }
    };
    let id_token = match &turn {
        Some(turn) if wants_id_token => {
            let alg =
                Alg::parse(&granted.client.id_token_signed_response_alg).unwrap_or(Alg::Rs256);
            let claims = jwt::id_token_claims(&issue, granted.auth_time);
            Some(sign(turn, store, alg, "JWT", &claims, now)?)
        }
        _ => None,
    };
    drop(turn);
    let refresh_token = with_refresh.then(secrets::random_token);
    let minted = MintedTokens {
        access_hash,
        access_expires_at: now
            .secs()
            .saturating_add_unsigned(settings.access_token_ttl),
        refresh_hash: refresh_token.as_deref().map(secrets::hash_secret),
        refresh_expires_at: now
            .secs()
            .saturating_add_unsigned(settings.refresh_token_ttl),
    };
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: settings.access_token_ttl,
        refresh_token,
        scope,
        id_token,
    };
    Ok((minted, response))
}

fn sign(
    turn: &SigningTurn<'_>,
    store: &Store,
    alg: Alg,
    typ: &str,
    claims: &serde_json::Value,
    now: Timestamp,
) -> Result<String, Error> {
    turn.sign(store, alg, typ, claims, now.secs())
        .map_err(|e| match e {
            KeyError::Store(e) => Error::Store(e),
            KeyError::Broken(detail) => Error::Store(store::Error::Internal(detail)),
        })
}
