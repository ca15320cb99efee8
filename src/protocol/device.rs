//! Device authorization (RFC 8628 §3.1–3.2): a client asks for a device code and a user code.

use super::authorize_limits::{AuthorizeLimits, Refusal};
use super::scope::resolve_scope;
use super::{oauth, Error, ErrorCode, OAuthError, Settings, DEVICE_CODE_GRANT};
use crate::clock::Timestamp;
use crate::secrets;
use crate::store::{Client, NewDeviceCode, Store};

/// What the device sent, beyond client credentials.
pub struct DeviceRequest<'a> {
    pub scope: Option<&'a str>,
    /// Shown on the consent page so a person can spot a request from elsewhere (§5.4).
    pub device_ip: &'a str,
    /// What per-address limits count under: `network::address_key` of the device's IP.
    pub address_key: &'a str,
    pub device_user_agent: Option<&'a str>,
}

/// The answer's protocol part; the edge adds the verification URIs.
#[derive(Debug)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// Normalised (no dash); show with `secrets::display_user_code`.
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// User-code collisions are astronomically rare (28^8 codes); a few retries are plenty.
const USER_CODE_ATTEMPTS: usize = 5;
/// A user agent is only for display; keep what we store bounded.
const MAX_USER_AGENT: usize = 256;

/// Issues a device code and a user code (RFC 8628 §3.2), one stored row, unless a rate
/// limit refuses: 429 with `Retry-After` (seconds), error `slow_down` when this address asked
/// too often, `temporarily_unavailable` when the client as a whole did (see
/// `authorize_limits`). Only a request that would be stored counts against the limits.
pub fn authorize_device(
    store: &Store,
    limits: &AuthorizeLimits,
    client: &Client,
    request: &DeviceRequest<'_>,
    settings: &Settings,
    now: Timestamp,
) -> Result<DeviceAuthorization, Error> {
    if !client.allows_grant(DEVICE_CODE_GRANT) {
        return oauth(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device authorization grant",
        );
    }
    let scope = resolve_scope(request.scope, &client.scopes)?;
    limits
        .take(request.address_key, &client.client_id, now)
        .map_err(refused)?;
    let expires_in = client.device_code_ttl.unwrap_or(settings.device_code_ttl);
    let interval = client.poll_interval.unwrap_or(settings.poll_interval);
    let user_agent = request
        .device_user_agent
        .map(|ua| truncate(ua, MAX_USER_AGENT));

    let device_code = secrets::random_token();
    let device_code_hash = secrets::hash_secret(&device_code);
    for _ in 0..USER_CODE_ATTEMPTS {
        let user_code = secrets::new_user_code();
        let stored = store.create_device_code(NewDeviceCode {
            device_code_hash: device_code_hash.clone(),
            user_code: user_code.clone(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            interval,
            device_ip: request.device_ip.to_string(),
            device_user_agent: user_agent.map(str::to_string),
            created_at: now.secs(),
            expires_at: now.secs().saturating_add_unsigned(expires_in),
        })?;
        if stored {
            return Ok(DeviceAuthorization {
                device_code,
                user_code,
                expires_in,
                interval,
            });
        }
    }
    Err(Error::Store(crate::store::Error::Internal(
        "could not draw an unused user code".into(),
    )))
}

/// RFC 8628 defines no error for the authorization endpoint's rate limit, so the answer
/// borrows the nearest honest words: `slow_down` (RFC 8628 §3.5, "you are asking too
/// often", which device clients already know from polling) when it is this address's own
/// doing, and `temporarily_unavailable` (RFC 6749 §4.1.2.1, "temporary overloading") when the
/// client's shared budget is spent through no fault of this caller. Both come with 429 and
/// `Retry-After`, the generic HTTP signal (RFC 6585 §4) any client can honour.
fn refused(refusal: Refusal) -> Error {
    let (code, description, retry_after) = match refusal {
        Refusal::Address { retry_after } => (
            ErrorCode::SlowDown,
            format!("too many device authorizations from this network; retry in {retry_after} s"),
            retry_after,
        ),
        Refusal::Client { retry_after } => (
            ErrorCode::TemporarilyUnavailable,
            format!("too many device authorizations for this client; retry in {retry_after} s"),
            retry_after,
        ),
    };
    Error::OAuth(OAuthError {
        retry_after: Some(retry_after),
        ..OAuthError::new(code, description)
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
