//! Signing in and out: renders `protocol::sign_in`'s decision. Sign-in replaces the
//! session with a new one (no fixation), and one message covers every wrong credential.

use super::layout::Frame;
use super::{cookie_scope, form_session, html, locked, store_failure, views};
use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::paths::{Prefix, VERIFICATION_PATH};
use crate::protocol::sign_in::{self, SignIn};
use crate::session::{self, SignedIn};

/// `POST /login`. One message for every failure, so it does not reveal who exists.
pub fn login(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, params) = match form_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let next = safe_next(params.get("next"), prefix);
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    let decision = sign_in::sign_in(
        ctx.store,
        &ctx.app.passwords,
        &ctx.app.limits,
        username,
        password,
        req.remote_ip,
        ctx.now,
    );
    let user = match decision {
        Ok(SignIn::SignedIn(user)) => user,
        Ok(SignIn::WrongCredentials) => {
            let message = "That user name and password do not match.";
            return html(
                401,
                views::sign_in(&frame, &session, &next, Some(message), username),
            );
        }
        Ok(SignIn::SlowDown(wait)) => {
            let message =
                format!("Too many failed attempts for this name. Try again in {wait} seconds.");
            return html(
                429,
                views::sign_in(&frame, &session, &next, Some(&message), username),
            )
            .with_header("Retry-After", wait.to_string());
        }
        Ok(SignIn::Locked(wait)) => return locked(&frame, wait),
        Ok(SignIn::Busy) => {
            let message = "The server is busy signing people in. Try again in a moment.";
            return html(
                503,
                views::sign_in(&frame, &session, &next, Some(message), username),
            )
            .with_header("Retry-After", BUSY_RETRY_AFTER);
        }
        Err(e) => return store_failure(&frame, e),
    };
    let signed_in = SignedIn {
        user_id: user.id,
        username: user.username,
        signed_in_at: ctx.now.secs(),
    };
    let scope = cookie_scope(ctx, req);
    match session::sign_in(ctx.store, Some(&session), signed_in, ctx.now, scope) {
        Ok((_, cookie)) => Response::redirect(&next).with_header("Set-Cookie", cookie),
        Err(e) => store_failure(&frame, e),
    }
}

/// Seconds a sign-in refused for a busy password pool is asked to wait.
const BUSY_RETRY_AFTER: &str = "2";

/// `POST /logout`.
pub fn logout(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, _) = match form_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let scope = cookie_scope(ctx, req);
    match session::sign_out(ctx.store, &session, scope) {
        Ok(cookie) => Response::redirect(&format!("{}{VERIFICATION_PATH}", prefix.as_str()))
            .with_header("Set-Cookie", cookie),
        Err(e) => store_failure(&Frame::new(ctx.app, prefix, Some(&session)), e),
    }
}

/// Only same-site paths are redirect targets: no scheme, no `//host`, no backslashes.
fn safe_next(next: Option<&str>, prefix: Prefix<'_>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.len() <= 512
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => format!("{}{VERIFICATION_PATH}", prefix.as_str()),
    }
}
