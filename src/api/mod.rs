//! JSON endpoints: parameters → protocol call → JSON body, or an OAuth error body.
//! Errors of both families are rendered here and only here (STYLE §2).
//!
//! `device`: the device flow (device authorization, token grants). `tokens`: what happens
//! to tokens afterwards (revocation, introspection, userinfo). `campus`: Campus's JSON
//! approval call. This file: metadata, health, and the shared rendering.

mod campus;
mod device;
mod tokens;

pub use campus::campus_approve;
pub use device::{device_authorize, token};
pub use tokens::{introspect, revoke, userinfo};

use serde_json::json;

use crate::app::Ctx;
use crate::http::{ParamsError, Request, Response};
use crate::paths::{self, Prefix};
use crate::protocol::claims::CLAIMS_SUPPORTED;
use crate::protocol::client_auth::ClientCredentials;
use crate::protocol::scope::OIDC_SCOPES;
use crate::protocol::{self, ErrorCode, DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::store;

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`
/// (RFC 8414 §2–3), also path-inserted (§3.1) and under each mount: the same document at
/// all of them, `issuer` exactly as configured, endpoints under the mount the request
/// came in on (under `/auth/v1` when fetched under `/auth/v1`). The same document serves
/// as OpenID Connect Discovery 1.0 §3 provider metadata.
///
/// No authorization endpoint exists (devicegate has no authorization-code or implicit
/// flow), so `authorization_endpoint` is left out, as RFC 8414 §2 allows when no listed
/// grant uses it. `response_types_supported` is REQUIRED by RFC 8414 §2 and OIDC Discovery
/// §3, and an empty list is refused by validators (Authlib); `["none"]` is the one value
/// that promises no credential from an authorization endpoint (OAuth 2.0 Multiple Response
/// Type Encoding Practices §4), so no client is led to expect a flow that is not there.
pub fn metadata(ctx: &mut Ctx<'_>, prefix: Prefix<'_>) -> Response {
    let scopes = match ctx.store.list_clients() {
        Ok(clients) => {
            // Every client's scopes, and the OpenID Connect ones every client may name
            // (narrowed away when not allowed, see `protocol::scope`).
            let mut all: Vec<String> = clients.into_iter().flat_map(|c| c.scopes).collect();
            all.extend(OIDC_SCOPES.iter().map(|s| s.to_string()));
            all.sort();
            all.dedup();
            all
        }
        Err(e) => return error_response(e),
    };
    Response::json(
        200,
        &json!({
            "issuer": ctx.app.issuer,
            "device_authorization_endpoint": prefix.url(paths::DEVICE_AUTHORIZATION_PATH),
            "token_endpoint": prefix.url(paths::TOKEN_PATH),
            "revocation_endpoint": prefix.url(paths::REVOCATION_PATH),
            "introspection_endpoint": prefix.url(paths::INTROSPECTION_PATH),
            "userinfo_endpoint": prefix.url(paths::USERINFO_PATH),
            "jwks_uri": prefix.url(paths::JWKS_PATH),
            // OpenID Connect Discovery §3: RS256 for every client, EdDSA for those that ask.
            "id_token_signing_alg_values_supported":
                crate::keys::Alg::ALL.map(crate::keys::Alg::as_str),
            "grant_types_supported": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT],
            "revocation_endpoint_auth_methods_supported":
                ["none", "client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_methods_supported":
                ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": scopes,
            // OpenID Connect Discovery §3. (`jwks_uri` and
            // `id_token_signing_alg_values_supported` come with the signing keys.)
            "claims_supported": CLAIMS_SUPPORTED,
            "subject_types_supported": ["public"],
            // No authorization endpoint, see above.
            "response_types_supported": ["none"],
        }),
    )
    .with_header("Cache-Control", "public, max-age=300")
}

/// `GET /oauth/jwks`: the published signing keys' public halves (RFC 7517 §5), every key
/// that signs or may still have signed a live token. Cacheable, but never for longer than
/// `--key-rotation-delay` (and at most an hour): a verifier's copy knows a rotated-in key
/// before it signs.
pub fn jwks(ctx: &mut Ctx<'_>) -> Response {
    match ctx.app.keys.jwks(ctx.store) {
        Ok(set) => Response::json(200, &set).with_header(
            "Cache-Control",
            format!("public, max-age={}", ctx.app.config.jwks_max_age()),
        ),
        Err(crate::keys::KeyError::Store(e)) => error_response(e),
        Err(crate::keys::KeyError::Broken(detail)) => {
            error_response(store::Error::Internal(detail))
        }
    }
}

/// `GET /metrics`: Prometheus text, for callers with the configured bearer token.
/// Without a configured token the route does not exist (404).
pub fn metrics(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let Some(expected) = &ctx.app.config.metrics_token else {
        return Response::json(404, &json!({"error": "not_found"}));
    };
    let presented = req.bearer_token().unwrap_or_default();
    if !crate::secrets::constant_time_eq(
        &crate::secrets::sha256(presented),
        &crate::secrets::sha256(expected),
    ) {
        return Response::json(401, &json!({"error": "invalid_token"}))
            .with_header("WWW-Authenticate", "Bearer realm=\"devicegate-metrics\"");
    }
    match ctx.store.count_device_codes_by_state(ctx.now.secs()) {
        Ok(states) => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::METRICS.render(&states).into_bytes(),
        )
        .no_store(),
        Err(e) => error_response(e),
    }
}

/// `GET /healthz`: 200 when the database answers.
pub fn health(ctx: &mut Ctx<'_>) -> Response {
    match ctx.store.ping() {
        Ok(()) => Response::json(200, &json!({"status": "ok"})).no_store(),
        Err(e) => error_response(e),
    }
}

pub(super) fn credentials<'a>(
    req: &'a Request,
    params: &'a crate::http::Params,
) -> ClientCredentials<'a> {
    ClientCredentials {
        authorization: req.header("authorization"),
        repeated_authorization: req.header_repeated("authorization"),
        client_id: params.get("client_id"),
        client_secret: params.get("client_secret"),
    }
}

pub(super) fn params_error(e: &ParamsError) -> Response {
    let status = match e {
        ParamsError::TooLarge => 413,
        ParamsError::UnsupportedContentType
        | ParamsError::Malformed(_)
        | ParamsError::Repeated(_) => 400,
    };
    Response::json(
        status,
        &json!({"error": ErrorCode::InvalidRequest.as_str(), "error_description": e.description()}),
    )
    .no_store()
}

/// RFC 6749 §5.2's error body; `interval` only with RFC 8628's `slow_down`.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
}

/// Renders either error family. Client mistakes: RFC 6749 §5.2 JSON (429 with
/// `Retry-After` when a rate limit refused them). Store failures: 503
/// when temporary, else 500; the detail goes to the log only.
pub fn error_response(error: impl Into<protocol::Error>) -> Response {
    match error.into() {
        protocol::Error::OAuth(e) => {
            let body = ErrorBody {
                error: e.code.as_str(),
                error_description: &e.description,
                interval: e.interval,
            };
            let mut response = Response::json(e.status(), &body).no_store();
            if e.basic_challenge {
                response = response.with_header("WWW-Authenticate", "Basic realm=\"devicegate\"");
            }
            if let Some(seconds) = e.retry_after {
                response = response.with_header("Retry-After", seconds.to_string());
            }
            response
        }
        protocol::Error::Busy {
            retry_after,
            description,
        } => {
            let body = ErrorBody {
                error: ErrorCode::TemporarilyUnavailable.as_str(),
                error_description: description,
                interval: None,
            };
            Response::json(503, &body)
                .no_store()
                .with_header("Retry-After", retry_after.to_string())
        }
        protocol::Error::Store(store::Error::Unavailable(detail)) => {
            log::warn!("database unavailable: {detail}");
            Response::json(
                503,
                &json!({"error": "temporarily_unavailable",
                        "error_description": "the server is briefly unable to store data; retry"}),
            )
            .no_store()
            .with_header("Retry-After", "1")
        }
        protocol::Error::Store(e @ (store::Error::Internal(_) | store::Error::Conflict(_))) => {
            log::error!("{e}");
            Response::server_error()
        }
    }
}
