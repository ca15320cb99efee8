//! JSON endpoints: parameters → protocol call → JSON body, or an OAuth error body.
//! Errors of both families are rendered here and only here (STYLE §2).

use serde_json::json;

use crate::app::Ctx;
use crate::http::{ParamsError, Request, Response};
use crate::protocol::approval::{self, Actor, ApprovalError, CodeProblem, Decision};
use crate::protocol::client_auth::{authenticate_client, ClientCredentials};
use crate::protocol::device::{authorize_device, DeviceRequest};
use crate::protocol::token::exchange_device_code;
use crate::protocol::{self, ErrorCode, OAuthError, DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::router::{self, Prefix};
use crate::secrets;
use crate::session;
use crate::store;

/// `POST /oauth/device_authorize` (RFC 8628 §3.1–3.2).
pub fn device_authorize(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let device_ip = req.remote_ip.to_string();
    let result = authenticate_client(ctx.store, credentials(req, &params)).and_then(|client| {
        let request = DeviceRequest {
            scope: params.get("scope"),
            device_ip: &device_ip,
            device_user_agent: req.header("user-agent"),
        };
        authorize_device(ctx.store, &client, &request, &ctx.app.settings, ctx.now)
    });
    match result {
        Ok(grant) => {
            let verification_uri = format!(
                "{}{}{}",
                ctx.app.issuer.trim_end_matches('/'),
                prefix.as_str(),
                router::VERIFICATION_PATH
            );
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
    let result =
        authenticate_client(ctx.store, credentials(req, &params)).and_then(
            |client| match grant_type {
                DEVICE_CODE_GRANT => exchange_device_code(
                    ctx.store,
                    &ctx.app.polls,
                    &client,
                    params.get("device_code"),
                    &ctx.app.settings,
                    ctx.now,
                ),
                REFRESH_TOKEN_GRANT => protocol::oauth(
                    ErrorCode::UnsupportedGrantType,
                    "refresh_token is not supported yet",
                ),
                _ => protocol::oauth(
                    ErrorCode::UnsupportedGrantType,
                    "grant_type is not supported",
                ),
            },
        );
    match result {
        Ok(tokens) => Response::json(200, &tokens).no_store(),
        Err(e) => error_response(e),
    }
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`
/// (RFC 8414 §2–3): the same document at both, `issuer` exactly as configured.
pub fn metadata(ctx: &mut Ctx<'_>) -> Response {
    let base = ctx.app.issuer.trim_end_matches('/');
    let scopes = match ctx.store.list_clients() {
        Ok(clients) => {
            let mut all: Vec<String> = clients.into_iter().flat_map(|c| c.scopes).collect();
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
            "device_authorization_endpoint": format!("{base}{}", router::DEVICE_AUTHORIZATION_PATH),
            "token_endpoint": format!("{base}{}", router::TOKEN_PATH),
            "grant_types_supported": [DEVICE_CODE_GRANT],
            "token_endpoint_auth_methods_supported":
                ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": scopes,
            // No authorization endpoint: devicegate only does the device grant.
            "response_types_supported": [],
        }),
    )
    .with_header("Cache-Control", "public, max-age=300")
}

/// `GET /healthz`: 200 when the database answers.
pub fn health(ctx: &mut Ctx<'_>) -> Response {
    match ctx.store.ping() {
        Ok(()) => Response::json(200, &json!({"status": "ok"})).no_store(),
        Err(e) => error_response(e),
    }
}

fn credentials<'a>(req: &'a Request, params: &'a crate::http::Params) -> ClientCredentials<'a> {
    ClientCredentials {
        authorization: req.header("authorization"),
        client_id: params.get("client_id"),
        client_secret: params.get("client_secret"),
    }
}

fn params_error(e: &ParamsError) -> Response {
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

/// Renders either error family. Client mistakes: RFC 6749 §5.2 JSON. Store failures: 503
/// when temporary, else 500; the detail goes to the log only.
pub fn error_response(error: impl Into<protocol::Error>) -> Response {
    match error.into() {
        protocol::Error::OAuth(e) => {
            let mut body = json!({"error": e.code.as_str(), "error_description": e.description});
            if let Some(interval) = e.interval {
                body["interval"] = json!(interval);
            }
            let response = Response::json(e.code.status(), &body).no_store();
            if e.basic_challenge {
                response.with_header("WWW-Authenticate", "Basic realm=\"devicegate\"")
            } else {
                response
            }
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
            Response::json(500, &json!({"error": "server_error"})).no_store()
        }
    }
}

/// `POST /auth/v1/oauth/device/authorize`: Campus's JSON approval call, made safe. It
/// approves for the **signed-in** user only (session cookie plus CSRF token in the
/// `X-CSRF-Token` header or a `csrf_token` field). A `user_id` in the body is never trusted:
/// one that names anyone but the session's user is refused with 403.
pub fn campus_approve(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let session = match session::current(ctx.store, req, ctx.now) {
        Ok(session) => session,
        Err(e) => return error_response(e),
    };
    let Some(session) = session else {
        return campus_error(401, "login_required", "sign in first");
    };
    let presented = req.header("x-csrf-token").or(params.get("csrf_token"));
    if !session::csrf_ok(&session, presented) {
        return campus_error(403, "csrf_failed", "missing or wrong CSRF token");
    }
    let Some(user) = &session.user else {
        return campus_error(401, "login_required", "sign in first");
    };
    if let Some(claimed) = params.get("user_id") {
        if claimed != user.username && claimed != user.user_id.to_string() {
            return campus_error(403, "forbidden", "user_id is not the signed-in user");
        }
    }
    let ip = req.remote_ip.to_string();
    let actor = Actor::Person {
        user_id: user.user_id,
        ip: &ip,
    };
    let typed = params.get("user_code").unwrap_or_default();
    let decision = Decision::Approve {
        user_id: user.user_id,
    };
    match approval::decide(ctx.store, typed, decision, actor, ctx.now) {
        Ok(_) => Response::json(200, &json!({"success": true})).no_store(),
        Err(ApprovalError::Code(problem)) => {
            let status = match problem {
                CodeProblem::Malformed(_) | CodeProblem::Unknown => 404,
                CodeProblem::Expired | CodeProblem::AlreadyUsed | CodeProblem::Denied => 409,
            };
            campus_error(status, problem.campus_code(), "the code cannot be approved")
        }
        Err(ApprovalError::Locked(wait)) => {
            campus_error(429, "too_many_attempts", "too many failed attempts; wait")
                .with_header("Retry-After", wait.to_string())
        }
        Err(ApprovalError::Store(e)) => error_response(e),
    }
}

fn campus_error(status: u16, code: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"success": false, "error": code, "error_description": description}),
    )
    .no_store()
}
