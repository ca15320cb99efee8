//! HTML pages: the verification journey a person takes on their phone or laptop
//! (RFC 8628 §3.3): sign in → enter the code → see who is asking → approve or deny.
//! The only module that knows maud. Works without JavaScript; every POST form carries the
//! session's CSRF token (before sign-in: the `dg_csrf` cookie's, see `session`); the
//! person's identity comes only from the server-side session.

mod account;
mod layout;
mod signin;
mod views;
mod when;

use maud::Markup;

use crate::app::{App, Ctx};
use crate::config::issuer_is_https;
use crate::http::{Params, ParamsError, Request, Response};
use crate::logging::printable;
use crate::paths::{Prefix, VERIFICATION_PATH};
use crate::protocol::approval::{self, Actor, ApprovalError, CodeProblem, Decision};
use crate::protocol::limits;
use crate::protocol::network;
use crate::secrets::{self, UserCodeError};
use crate::session::{self, CookieScope, Session, SignedIn};
use crate::store::{self, DeviceCode};
pub use account::{account, cancel_approval, revoke_grant, sign_out_everywhere};
use layout::Frame;
pub use signin::{login, logout};

const STYLESHEET: &str = include_str!("style.css");

/// `GET /oauth/device`, `?user_code=`, and `/oauth/device/<user_code>`. A code in the URL
/// (RFC 8628 §3.3.1 `verification_uri_complete`) is only shown, prefilled, for the person
/// to confirm: a page view never looks a code up, so it never counts against the limits
/// and cannot be used to probe codes; the POST of the form does both.
pub fn verification(
    ctx: &mut Ctx<'_>,
    req: &Request,
    prefix: Prefix<'_>,
    in_path: Option<&str>,
) -> Response {
    let (session, new_cookie) = match page_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let typed: Option<String> = match in_path {
        Some(code) => Some(
            percent_encoding::percent_decode_str(code)
                .decode_utf8_lossy()
                .into_owned(),
        ),
        None => match req.query_params() {
            Ok(query) => query.get("user_code").map(str::to_string),
            Err(_) => Some(String::new()),
        },
    };
    let response = match &session.user {
        None => {
            // Sign in first, then come back here with the code kept: under the mount as
            // handed out (a proxy may have stripped the issuer's path from `req.path`).
            let mut next = format!("{}{VERIFICATION_PATH}", prefix.as_str());
            if let Some(code) = in_path {
                next = format!("{next}/{code}");
            }
            if !req.query.is_empty() {
                next = format!("{next}?{}", req.query);
            }
            html(200, views::sign_in(&frame, &session, &next, None, ""))
        }
        Some(_) => {
            let typed: String = typed.unwrap_or_default().chars().take(32).collect();
            html(200, views::code_entry(&frame, &session, None, &typed))
        }
    };
    with_cookie(response, new_cookie)
}

/// `POST /oauth/device`: the code form. A valid code shows the consent page; a wrong one
/// counts against the person's and the address's limits.
pub fn submit_code(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, user, params) = match signed_in_form(ctx, req, prefix, VERIFICATION_PATH) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let typed = params.get("user_code").unwrap_or_default();
    match lookup(ctx, req, &user, typed) {
        Ok(code) => consent(ctx, req, &frame, &session, &code),
        Err(e) => approval_failure(&frame, &session, typed, e),
    }
}

/// `POST /oauth/device/decision`: Approve or Deny from the consent page.
pub fn decide(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, user, params) = match signed_in_form(ctx, req, prefix, VERIFICATION_PATH) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let typed = params.get("user_code").unwrap_or_default();
    let decision = match params.get("decision") {
        Some("approve") => Decision::Approve {
            user_id: user.user_id,
        },
        Some("deny") => Decision::Deny,
        _ => {
            return html(
                400,
                views::problem(&frame, "Choose Approve or Deny", "The form was incomplete."),
            )
        }
    };
    let ip = req.remote_ip.to_string();
    let actor = Actor::Person {
        user_id: user.user_id,
        username: &user.username,
        signed_in_at: user.signed_in_at,
        ip: &ip,
        limits: ctx.app.limits,
    };
    match approval::decide(ctx.store, typed, decision, actor, ctx.now) {
        Ok(code) => {
            let client_name = match ctx.store.find_client(&code.client_id) {
                Ok(Some(client)) => client.name.clone(),
                Ok(None) => code.client_id.clone(),
                Err(e) => return store_failure(&frame, e),
            };
            log::info!(
                "user {} {} code {} for client {}",
                printable(&user.username),
                if decision == Decision::Deny {
                    "denied"
                } else {
                    "approved"
                },
                secrets::redacted_user_code(&code.user_code),
                printable(&code.client_id)
            );
            match decision {
                Decision::Approve { .. } => html(200, views::approved(&frame, &client_name)),
                Decision::Deny => html(200, views::denied(&frame)),
            }
        }
        Err(e) => approval_failure(&frame, &session, typed, e),
    }
}

/// `GET /static/style.css`.
pub fn stylesheet() -> Response {
    Response::new(
        200,
        "text/css; charset=utf-8",
        STYLESHEET.as_bytes().to_vec(),
    )
    .with_header("Cache-Control", "public, max-age=3600")
}

/// The 404 page for browsers: no session needed, a way back to the start (code entry).
pub fn not_found(app: &App, prefix: Prefix<'_>) -> Response {
    let frame = Frame::new(app, prefix, None);
    html(
        404,
        views::problem(
            &frame,
            "Page not found",
            "There is nothing at this address. To connect a device, enter the code it shows.",
        ),
    )
}

/// A rate-limited look-up of a pending code by a signed-in person.
fn lookup(
    ctx: &mut Ctx<'_>,
    req: &Request,
    user: &SignedIn,
    typed: &str,
) -> Result<DeviceCode, ApprovalError> {
    let ip = req.remote_ip.to_string();
    let actor = Actor::Person {
        user_id: user.user_id,
        username: &user.username,
        signed_in_at: user.signed_in_at,
        ip: &ip,
        limits: ctx.app.limits,
    };
    approval::find_pending(ctx.store, typed, actor, ctx.now)
}

fn consent(
    ctx: &mut Ctx<'_>,
    req: &Request,
    frame: &Frame<'_>,
    session: &Session,
    code: &DeviceCode,
) -> Response {
    let client = match ctx.store.find_client(&code.client_id) {
        Ok(Some(client)) => client,
        Ok(None) => {
            return html(
                404,
                views::problem(frame, "Unknown app", "The app that asked no longer exists."),
            )
        }
        Err(e) => return store_failure(frame, e),
    };
    let other_network = code.device_ip.parse().map_or(true, |device_ip| {
        !network::same_network(device_ip, req.remote_ip)
    });
    let view = views::ConsentView {
        code,
        client: &client,
        now: ctx.now,
        other_network,
    };
    html(200, views::consent(frame, session, &view))
}

/// Renders why a code could not be used, with the right status.
fn approval_failure(
    frame: &Frame<'_>,
    session: &Session,
    typed: &str,
    error: ApprovalError,
) -> Response {
    let typed: String = typed.chars().take(32).collect();
    match error {
        ApprovalError::Locked(wait) => locked(frame, wait),
        ApprovalError::Store(e) => store_failure(frame, e),
        ApprovalError::Code(CodeProblem::Malformed(problem)) => {
            let message = match problem {
                UserCodeError::Empty => "Enter the code shown on your device.".to_string(),
                UserCodeError::BadCharacters(chars) => format!(
                    "A code never contains “{chars}”: it uses consonants (no vowels or Y) \
                     and the digits 2 to 9."
                ),
                UserCodeError::WrongLength(n) => {
                    format!("A code has 8 characters, like BCDF-GHJK; this one has {n}.")
                }
            };
            html(
                400,
                views::code_entry(frame, session, Some(&message), &typed),
            )
        }
        ApprovalError::Code(CodeProblem::Unknown) => {
            let message = "We could not find that code. Check it on your device and try again.";
            html(
                404,
                views::code_entry(frame, session, Some(message), &typed),
            )
        }
        ApprovalError::Code(CodeProblem::Expired) => html(
            410,
            views::problem(
                frame,
                "This code has expired",
                "Start again on your device to get a new code.",
            ),
        ),
        ApprovalError::Code(CodeProblem::AlreadyUsed) => html(
            409,
            views::problem(
                frame,
                "This code was already used",
                "The device has already been approved. Each code works once.",
            ),
        ),
        ApprovalError::Code(CodeProblem::Denied) => html(
            409,
            views::problem(
                frame,
                "This request was denied",
                "Start again on your device if you do want to connect it.",
            ),
        ),
    }
}

/// The lock-out page (429): when to try again, the operator's help text, and no link back
/// into the locked form.
pub(super) fn locked(frame: &Frame<'_>, wait: i64) -> Response {
    let message = format!(
        "Too many attempts. For your safety, try again in {}.",
        limits::minutes_text(wait)
    );
    html(429, views::locked(frame, &message)).with_header("Retry-After", wait.to_string())
}

/// The session behind a page view, or an anonymous one (with the `dg_csrf` cookie to set
/// when the browser has none). A page view never stores a session row.
pub(super) fn page_session(
    ctx: &mut Ctx<'_>,
    req: &Request,
    prefix: Prefix<'_>,
) -> Result<(Session, Option<String>), Response> {
    let scope = cookie_scope(ctx, req);
    session::for_page(ctx.store, req, ctx.now, scope)
        .map_err(|e| store_failure(&Frame::new(ctx.app, prefix, None), e))
}

/// A POST form's parameters and its session (stored, or anonymous from the `dg_csrf`
/// cookie), after the CSRF check (403 without it).
pub(super) fn form_session(
    ctx: &mut Ctx<'_>,
    req: &Request,
    prefix: Prefix<'_>,
) -> Result<(Session, Params), Response> {
    let params = req.params().map_err(|e| {
        let status = if e == ParamsError::TooLarge { 413 } else { 400 };
        let frame = Frame::new(ctx.app, prefix, None);
        html(
            status,
            views::problem(&frame, "Something went wrong", &e.description()),
        )
    })?;
    let session = match session::current_or_anonymous(ctx.store, req, ctx.now) {
        Ok(session) => session,
        Err(e) => return Err(store_failure(&Frame::new(ctx.app, prefix, None), e)),
    };
    match session {
        Some(session) if session::csrf_ok(&session, params.get("csrf_token")) => {
            Ok((session, params))
        }
        _ => {
            let frame = Frame::new(ctx.app, prefix, None);
            Err(html(
                403,
                views::problem(
                    &frame,
                    "This form has expired",
                    "For your safety the form could not be used. Reload the page and try again.",
                ),
            ))
        }
    }
}

/// A signed-in person's POST form: the session, its user and the CSRF-checked parameters.
/// Someone whose session has no user (signed out meanwhile) is sent back to `back`.
pub(super) fn signed_in_form(
    ctx: &mut Ctx<'_>,
    req: &Request,
    prefix: Prefix<'_>,
    back: &str,
) -> Result<(Session, SignedIn, Params), Response> {
    let (session, params) = form_session(ctx, req, prefix)?;
    match session.user.clone() {
        Some(user) => Ok((session, user, params)),
        None => Err(Response::redirect(&format!("{}{back}", prefix.as_str()))),
    }
}

/// Cookies for the issuer's path (every mount handed out is under it), `Secure` when the
/// issuer is https or a trusted proxy says the browser used https.
pub(super) fn cookie_scope<'a>(ctx: &Ctx<'a>, req: &Request) -> CookieScope<'a> {
    let app = ctx.app;
    CookieScope {
        secure: issuer_is_https(&app.issuer) || req.forwarded_https,
        path: match app.mounts.issuer_path() {
            "" => "/",
            path => path,
        },
    }
}

pub(super) fn html(status: u16, markup: Markup) -> Response {
    Response::html(status, markup)
}

pub(super) fn with_cookie(response: Response, cookie: Option<String>) -> Response {
    match cookie {
        Some(cookie) => response.with_header("Set-Cookie", cookie),
        None => response,
    }
}

pub(super) fn store_failure(frame: &Frame<'_>, error: store::Error) -> Response {
    let (status, detail) = match &error {
        store::Error::Unavailable(_) => (
            503,
            "The server is briefly unable to save data. Try again in a moment.",
        ),
        store::Error::Internal(_) | store::Error::Conflict(_) => {
            (500, "Something went wrong on our side.")
        }
    };
    log::error!("{error}");
    let response = html(status, views::problem(frame, "Sorry", detail));
    if status == 503 {
        response.with_header("Retry-After", "1")
    } else {
        response
    }
}
