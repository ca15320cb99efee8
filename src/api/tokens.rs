//! After approval: revocation (RFC 7009), introspection (RFC 7662), userinfo (RFC 6750).

use serde_json::json;

use super::{credentials, error_response, params_error};
use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::protocol::client_auth::{self, authenticate_client};
use crate::protocol::resource::{self, Introspection};
use crate::protocol::token::Signing;
use crate::protocol::{ErrorCode, OAuthError};

/// `POST /oauth/revoke`: 200 for revoked, unknown and other clients' tokens alike (§2.2).
/// Public clients authenticate with `client_id` alone, so a CLI can log out.
pub fn revoke(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let result = authenticate_client(ctx.store, credentials(req, &params)).and_then(|client| {
        resource::revoke(
            ctx.store,
            &client,
            params.get("token"),
            params.get("token_type_hint"),
            signing(ctx),
            ctx.now,
        )
    });
    match result {
        Ok(()) => Response::json(200, &json!({})).no_store(),
        Err(e) => error_response(e),
    }
}

/// `POST /oauth/introspect`: only for authenticated confidential clients, so tokens cannot
/// be scanned (RFC 7662 §2.1).
pub fn introspect(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    let params = match req.params() {
        Ok(params) => params,
        Err(e) => return params_error(&e),
    };
    let creds = credentials(req, &params);
    let result = authenticate_client(ctx.store, creds).and_then(|client| {
        if !client.is_confidential() {
            return Err(client_auth::refuse(
                creds,
                "introspection needs a confidential client's credentials",
            ));
        }
        resource::introspect(
            ctx.store,
            params.get("token"),
            params.get("token_type_hint"),
            signing(ctx),
            ctx.now,
        )
    });
    match result {
        Ok(answer @ (Introspection::Active { .. } | Introspection::Inactive { .. })) => {
            Response::json(200, &answer).no_store()
        }
        Err(e) => error_response(e),
    }
}

/// `GET /oauth/userinfo` with `Authorization: Bearer` (OIDC Core §5.3): the claims the
/// token's scope releases, `sub` always, plus `username`, `scope` and `client_id`.
pub fn userinfo(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    if req.header_repeated("authorization") {
        // RFC 6750 §3.1: more than one way of presenting a token is `invalid_request`.
        let error = OAuthError::new(ErrorCode::InvalidRequest, "send one Authorization header");
        return error_response(error).with_header(
            "WWW-Authenticate",
            "Bearer realm=\"devicegate\", error=\"invalid_request\"",
        );
    }
    let Some(token) = req.bearer_token() else {
        // RFC 6750 §3.1: no credentials, no error code.
        return bearer_challenge(None);
    };
    let invalid = "the access token is invalid, expired or revoked";
    match resource::bearer(ctx.store, token, signing(ctx), ctx.now).and_then(|row| {
        row.map(|row| resource::userinfo(ctx.store, &row))
            .transpose()
    }) {
        Ok(Some(Some(claims))) => Response::json(200, &claims).no_store(),
        Ok(Some(None) | None) => bearer_challenge(Some(invalid)),
        Err(e) => error_response(e),
    }
}

/// Our keys and issuer, to recognise the JWT access tokens we signed.
fn signing<'a>(ctx: &Ctx<'a>) -> Signing<'a> {
    Signing {
        keys: &ctx.app.keys,
        issuer: &ctx.app.issuer,
    }
}

fn bearer_challenge(invalid: Option<&str>) -> Response {
    match invalid {
        None => Response::json(401, &json!({"error_description": "a bearer token is required"}))
            .with_header("WWW-Authenticate", "Bearer realm=\"devicegate\""),
        Some(description) => Response::json(
            401,
            &json!({"error": "invalid_token", "error_description": description}),
        )
        .with_header(
            "WWW-Authenticate",
            format!("Bearer realm=\"devicegate\", error=\"invalid_token\", error_description=\"{description}\""),
        ),
    }
    .no_store()
}
