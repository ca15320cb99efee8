//! The one route table: (method, path) → handler. Every route is also served under
//! Campus's prefix `/auth/v1` (e.g. `/auth/v1/oauth/token`), which handlers learn through
//! `Prefix` so the URLs they hand out keep the prefix the client used.

use crate::api;
use crate::app::Ctx;
use crate::http::{Method, Request, Response};
use crate::pages;

/// Campus mounts its auth service here.
pub const CAMPUS_PREFIX: &str = "/auth/v1";

pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const VERIFICATION_PATH: &str = "/oauth/device";
pub const OAUTH_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_METADATA_PATH: &str = "/.well-known/openid-configuration";
pub const HEALTH_PATH: &str = "/healthz";
pub const REVOCATION_PATH: &str = "/oauth/revoke";
pub const INTROSPECTION_PATH: &str = "/oauth/introspect";
pub const USERINFO_PATH: &str = "/oauth/userinfo";
pub const ACCOUNT_PATH: &str = "/account";
pub const ACCOUNT_REVOKE_PATH: &str = "/account/revoke";
pub const ACCOUNT_CANCEL_PATH: &str = "/account/cancel";
pub const ACCOUNT_SIGN_OUT_EVERYWHERE_PATH: &str = "/account/sign-out-everywhere";
pub const METRICS_PATH: &str = "/metrics";
pub const DECISION_PATH: &str = "/oauth/device/decision";
/// Campus's JSON approval call.
pub const CAMPUS_APPROVAL_PATH: &str = "/oauth/device/authorize";
pub const LOGIN_PATH: &str = "/login";
pub const LOGOUT_PATH: &str = "/logout";

/// Which mount a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Root,
    Campus,
}

impl Prefix {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Root => "",
            Prefix::Campus => CAMPUS_PREFIX,
        }
    }
}

pub fn route(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let (prefix, path) = match req.path.strip_prefix(CAMPUS_PREFIX) {
        Some(rest) if rest.starts_with('/') => (Prefix::Campus, rest),
        _ => (Prefix::Root, req.path.as_str()),
    };
    let get = matches!(req.method, Method::Get | Method::Head);
    let post = req.method == Method::Post;
    match path {
        DEVICE_AUTHORIZATION_PATH if post => api::device_authorize(ctx, req, prefix),
        DEVICE_AUTHORIZATION_PATH => method_not_allowed("POST"),
        TOKEN_PATH if post => api::token(ctx, req),
        TOKEN_PATH => method_not_allowed("POST"),
        OAUTH_METADATA_PATH | OIDC_METADATA_PATH if get => api::metadata(ctx),
        OAUTH_METADATA_PATH | OIDC_METADATA_PATH => method_not_allowed("GET, HEAD"),
        REVOCATION_PATH if post => api::revoke(ctx, req),
        REVOCATION_PATH => method_not_allowed("POST"),
        INTROSPECTION_PATH if post => api::introspect(ctx, req),
        INTROSPECTION_PATH => method_not_allowed("POST"),
        USERINFO_PATH if get => api::userinfo(ctx, req),
        USERINFO_PATH => method_not_allowed("GET, HEAD"),
        ACCOUNT_PATH if get => pages::account(ctx, req, prefix),
        ACCOUNT_PATH => method_not_allowed("GET, HEAD"),
        ACCOUNT_REVOKE_PATH if post => pages::revoke_grant(ctx, req, prefix),
        ACCOUNT_REVOKE_PATH => method_not_allowed("POST"),
        ACCOUNT_CANCEL_PATH if post => pages::cancel_approval(ctx, req, prefix),
        ACCOUNT_CANCEL_PATH => method_not_allowed("POST"),
        ACCOUNT_SIGN_OUT_EVERYWHERE_PATH if post => pages::sign_out_everywhere(ctx, req, prefix),
        ACCOUNT_SIGN_OUT_EVERYWHERE_PATH => method_not_allowed("POST"),
        METRICS_PATH if get => api::metrics(ctx, req),
        METRICS_PATH => method_not_allowed("GET, HEAD"),
        HEALTH_PATH if get => api::health(ctx),
        HEALTH_PATH => method_not_allowed("GET, HEAD"),
        VERIFICATION_PATH if get => pages::verification(ctx, req, prefix, None),
        VERIFICATION_PATH if post => pages::submit_code(ctx, req, prefix),
        VERIFICATION_PATH => method_not_allowed("GET, HEAD, POST"),
        DECISION_PATH if post => pages::decide(ctx, req, prefix),
        DECISION_PATH => method_not_allowed("POST"),
        CAMPUS_APPROVAL_PATH if post => api::campus_approve(ctx, req),
        LOGIN_PATH if post => pages::login(ctx, req, prefix),
        LOGIN_PATH if get => Response::redirect(&format!("{}{VERIFICATION_PATH}", prefix.as_str())),
        LOGIN_PATH => method_not_allowed("GET, HEAD, POST"),
        LOGOUT_PATH if post => pages::logout(ctx, req, prefix),
        LOGOUT_PATH => method_not_allowed("POST"),
        pages::STYLESHEET_PATH if get => pages::stylesheet(),
        _ => match path.strip_prefix("/oauth/device/") {
            Some(code) if get => pages::verification(ctx, req, prefix, Some(code)),
            Some(_) => method_not_allowed("GET, HEAD"),
            None => not_found(),
        },
    }
}

/// Every metrics label a request can get (`route_index` picks one).
pub const ROUTE_LABELS: [&str; 21] = [
    DEVICE_AUTHORIZATION_PATH,
    TOKEN_PATH,
    VERIFICATION_PATH,
    OAUTH_METADATA_PATH,
    OIDC_METADATA_PATH,
    HEALTH_PATH,
    DECISION_PATH,
    CAMPUS_APPROVAL_PATH,
    LOGIN_PATH,
    LOGOUT_PATH,
    REVOCATION_PATH,
    INTROSPECTION_PATH,
    USERINFO_PATH,
    ACCOUNT_PATH,
    ACCOUNT_REVOKE_PATH,
    ACCOUNT_CANCEL_PATH,
    ACCOUNT_SIGN_OUT_EVERYWHERE_PATH,
    METRICS_PATH,
    pages::STYLESHEET_PATH,
    "/oauth/device/{user_code}",
    "other",
];

/// The index in `ROUTE_LABELS` of a request path: without the Campus prefix or a user
/// code, so labels stay few.
pub fn route_index(path: &str) -> usize {
    let path = match path.strip_prefix(CAMPUS_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    };
    let known = ROUTE_LABELS.len() - 2;
    match ROUTE_LABELS[..known]
        .iter()
        .position(|label| *label == path)
    {
        Some(index) => index,
        None if path.starts_with("/oauth/device/") => known,
        None => known + 1,
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::json(
        405,
        &serde_json::json!({
            "error": "invalid_request",
            "error_description": "method not allowed"
        }),
    )
    .with_header("Allow", allow)
}

fn not_found() -> Response {
    Response::json(404, &serde_json::json!({"error": "not_found"}))
}
