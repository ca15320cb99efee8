//! Signing in and out. Sign-in replaces the session with a new one (no fixation); failures
//! are limited per user name and per IP, and one message covers every failure.

use super::layout::Frame;
use super::{form_session, html, locked, secure_cookies, store_failure, views};
use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::protocol::limits::{self, Counter};
use crate::router::{Prefix, VERIFICATION_PATH};
use crate::secrets;
use crate::session::{self, SignedIn};

/// `POST /login`. One message for every failure, so it does not reveal who exists.
pub fn login(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix) -> Response {
    let (session, params) = match form_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame {
        prefix,
        session: Some(&session),
    };
    let next = safe_next(params.get("next"), prefix);
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    let ip = req.remote_ip.to_string();
    let counters = [Counter::login_username(username), Counter::login_ip(&ip)];
    match limits::locked_for(ctx.store, &counters, ctx.now) {
        Ok(Some(wait)) => return locked(&frame, wait),
        Ok(None) => {}
        Err(e) => return store_failure(prefix, Some(&session), e),
    }
    let user = match ctx.store.find_user_by_name(username) {
        Ok(user) => user,
        Err(e) => return store_failure(prefix, Some(&session), e),
    };
    // Verify even for unknown users, so timing does not reveal who exists.
    let password_ok =
        secrets::verify_password(password, user.as_ref().map(|u| u.password_hash.as_str()));
    let user = user.filter(|u| password_ok && !u.disabled);
    let Some(user) = user else {
        log::warn!("failed sign-in from {ip}");
        if let Err(e) = limits::record_failure(ctx.store, &counters, ctx.now) {
            return store_failure(prefix, Some(&session), e);
        }
        let message = "That user name and password do not match.";
        return html(
            401,
            views::sign_in(&frame, &session, &next, Some(message), username),
        );
    };
    // A success clears this name's counter, never the IP's.
    if let Err(e) = ctx.store.clear_throttle(&counters[0].key) {
        return store_failure(prefix, Some(&session), e);
    }
    let signed_in = SignedIn {
        user_id: user.id,
        username: user.username,
    };
    let secure = secure_cookies(ctx, req);
    match session::sign_in(ctx.store, Some(&session), signed_in, ctx.now, secure) {
        Ok((_, cookie)) => Response::redirect(&next).with_header("Set-Cookie", cookie),
        Err(e) => store_failure(prefix, Some(&session), e),
    }
}

/// `POST /logout`.
pub fn logout(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix) -> Response {
    let (session, _) = match form_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let secure = secure_cookies(ctx, req);
    match session::sign_out(ctx.store, &session, secure) {
        Ok(cookie) => Response::redirect(&format!("{}{VERIFICATION_PATH}", prefix.as_str()))
            .with_header("Set-Cookie", cookie),
        Err(e) => store_failure(prefix, Some(&session), e),
    }
}

/// Only same-site paths are redirect targets: no scheme, no `//host`, no backslashes.
fn safe_next(next: Option<&str>, prefix: Prefix) -> String {
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
