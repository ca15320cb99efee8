//! The device flow's JSON endpoints: device authorization (RFC 8628 §3.1–3.2) and the
//! token endpoint (RFC 6749 §3.2, RFC 8628 §3.4, refresh per RFC 6749 §6).

use serde_json::json;

use super::{credentials, error_response, params_error};
use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::metrics::{Metrics, METRICS};
use crate::paths::{self, Prefix};
use crate::protocol::client_auth::authenticate_client;
use crate::protocol::device::{authorize_device, DeviceRequest};
use crate::protocol::network;
use crate::protocol::refresh::refresh;
use crate::protocol::token::{exchange_device_code, Signing};
use crate::protocol::{self, ErrorCode, OAuthError, DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets;

/// `POST /oauth/device_authorize` (RFC 8628 §3.1–3.2).
pub fn device_authorize(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let device_ip = req.remote_ip.to_string();
    let address_key = network::address_key(req.remote_ip);
    let result = authenticate_client(ctx.store, credentials(req, &params)).and_then(|client| {
        let request = DeviceRequest {
            scope: params.get("scope"),
            device_ip: &device_ip,
            address_key: &address_key,
            device_user_agent: req.header("user-agent"),
        };
        authorize_device(
            ctx.store,
            &ctx.app.authorize_limits,
            &client,
            &request,
            &ctx.app.settings,
            ctx.now,
        )
    });
    match result {
        Ok(grant) => {
            let verification_uri = prefix.url(paths::VERIFICATION_PATH);
            let user_code = secrets::display_user_code(&grant.user_code);
            Response::json(
                200,
                &json!({
                    "device_code": grant.device_code,
                    "user_code": user_code,
                    "verification_uri_complete":
                        format!("{verification_uri}?user_code={user_code}"),
                    "verification_uri": verification_uri,
                    "expires_in": grant.expires_in,
                    // Always sent: cli/oauth fails without it (RFC 8628 §3.2 makes it optional).
                    "interval": grant.interval,
                }),
            )
            .no_store()
        }
        Err(e) => error_response(e),
    }
}

/// `POST /oauth/token` (RFC 6749 §3.2, RFC 8628 §3.4).
pub fn token(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let Some(grant_type) = params.get("grant_type") else {
        return error_response(OAuthError::new(
            ErrorCode::InvalidRequest,
            "grant_type is required",
        ));
    };
    let signing = Signing {
        keys: &ctx.app.keys,
        issuer: &ctx.app.issuer,
    };
    let result =
        authenticate_client(ctx.store, credentials(req, &params)).and_then(
            |client| match grant_type {
                DEVICE_CODE_GRANT => exchange_device_code(
                    ctx.store,
                    &ctx.app.polls,
                    &client,
                    params.get("device_code"),
                    &ctx.app.settings,
                    signing,
                    ctx.now,
                ),
                REFRESH_TOKEN_GRANT => refresh(
                    ctx.store,
                    &client,
                    params.get("refresh_token"),
                    params.get("scope"),
                    &ctx.app.settings,
                    signing,
                    ctx.now,
                ),
                _ => protocol::oauth(
                    ErrorCode::UnsupportedGrantType,
                    "grant_type is not supported",
                ),
            },
        );
    match &result {
        Ok(_) => Metrics::count(&METRICS.tokens_issued),
        Err(protocol::Error::OAuth(e)) if e.code == ErrorCode::SlowDown => {
            Metrics::count(&METRICS.slow_down)
        }
        Err(_) => {}
    }
    match result {
        Ok(tokens) => Response::json(200, &tokens).no_store(),
        Err(e) => error_response(e),
    }
}
