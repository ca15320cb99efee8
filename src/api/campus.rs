//! Campus's JSON approval call, kept compatible on the wire but bound to the session.

use serde_json::json;

use super::{error_response, params_error};
use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::protocol::approval::{self, Actor, ApprovalError, CodeProblem, Decision};
use crate::session;

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
        username: &user.username,
        signed_in_at: user.signed_in_at,
        ip: &ip,
        limits: ctx.app.limits,
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
