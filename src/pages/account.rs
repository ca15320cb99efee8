//! `GET /account`: the signed-in person's devices. Approvals a device has not collected yet
//! (each with Cancel), connected devices (each with Revoke), and "Sign out everywhere".
//! Each device says what it is (from its `User-Agent`, see `protocol::user_agent`), where it
//! asked from and when it was last used; scopes use the consent page's words.

use maud::{html, Markup};

use super::layout::{csrf_field, layout, Frame};
use super::with_cookie;
use super::{cookie_scope, html, page_session, signed_in_form, store_failure, views, when};
use crate::app::Ctx;
use crate::clock::Timestamp;
use crate::http::{Request, Response};
use crate::logging::printable;
use crate::paths::{
    Prefix, ACCOUNT_CANCEL_PATH, ACCOUNT_PATH, ACCOUNT_REVOKE_PATH,
    ACCOUNT_SIGN_OUT_EVERYWHERE_PATH, VERIFICATION_PATH,
};
use crate::protocol::account;
use crate::protocol::user_agent::describe_device;
use crate::session::{self, Session};
use crate::store::{ApprovedCode, DeviceCodeId, GrantId, GrantRow};

pub fn account(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, new_cookie) = match page_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let Some(user) = &session.user else {
        let next = format!("{}{ACCOUNT_PATH}", prefix.as_str());
        return with_cookie(
            html(200, views::sign_in(&frame, &session, &next, None, "")),
            new_cookie,
        );
    };
    let now = ctx.now;
    let listed = ctx
        .store
        .list_approved_device_codes(user.user_id, now.secs())
        .and_then(|codes| {
            let grants = ctx
                .store
                .list_active_grants(Some(user.user_id), now.secs())?;
            Ok((codes, grants))
        });
    let (codes, grants) = match listed {
        Ok(listed) => listed,
        Err(e) => return store_failure(&frame, e),
    };
    let page = layout(
        &frame,
        "Your devices",
        html! {
            h1 { "Your devices" }
            @if !codes.is_empty() {
                h2 { "Waiting to finish signing in" }
                p { "You approved these, but the device has not collected its sign-in yet. Cancel one and the device is refused." }
                @for code in &codes { (approved_card(&frame, &session, code, now)) }
            }
            @if grants.is_empty() {
                p { "No device is connected to your account." }
            } @else {
                @if !codes.is_empty() { h2 { "Connected" } }
                p { "These devices and apps can use your account. Revoke one and it is signed out at once." }
                @for grant in &grants { (grant_card(&frame, &session, grant, now)) }
            }
            (sign_out_everywhere_form(&frame, &session))
        },
    );
    with_cookie(html(200, page), new_cookie)
}

/// Scopes in the consent page's words.
fn scope_list(scope: &str) -> Markup {
    html! {
        ul.scopes {
            @for scope in scope.split_whitespace() { li { (views::scope_words(scope)) } }
        }
    }
}

fn approved_card(
    frame: &Frame<'_>,
    session: &Session,
    code: &ApprovedCode,
    now: Timestamp,
) -> Markup {
    html! {
        section.grant {
            h3 { (code.client_name) }
            dl.facts {
                dt { "Device" } dd { (describe_device(code.device_user_agent.as_deref())) }
                dt { "Address" } dd { (code.device_ip) }
                dt { "Approved" } dd { (when::time(now, Timestamp::from_secs(code.approved_at))) }
                dt { "Expires" } dd { (when::time(now, Timestamp::from_secs(code.expires_at))) }
            }
            p { "It will be able to:" }
            (scope_list(&code.scope))
            form method="post" action={ (frame.prefix.as_str()) (ACCOUNT_CANCEL_PATH) } {
                (csrf_field(session))
                input type="hidden" name="code_id" value=(code.id);
                button.danger type="submit" { "Cancel this approval" }
            }
        }
    }
}

fn grant_card(frame: &Frame<'_>, session: &Session, grant: &GrantRow, now: Timestamp) -> Markup {
    html! {
        section.grant {
            h3 { (grant.client_name) }
            dl.facts {
                dt { "Device" } dd { (describe_device(grant.device_user_agent.as_deref())) }
                @if let Some(ip) = &grant.device_ip { dt { "Address" } dd { (ip) } }
                dt { "Last used" } dd { (when::time(now, Timestamp::from_secs(grant.last_used_at))) }
                dt { "Approved" } dd {
                    (when::time(now, Timestamp::from_secs(grant.approved_at)))
                    @if let Some(ip) = &grant.approved_ip { " from " (ip) }
                }
                dt { "App" } dd { code { (grant.client_id) } }
            }
            p { "It can:" }
            (scope_list(&grant.scope))
            form method="post" action={ (frame.prefix.as_str()) (ACCOUNT_REVOKE_PATH) } {
                (csrf_field(session))
                input type="hidden" name="grant_id" value=(grant.id);
                button.danger type="submit" { "Revoke" }
            }
        }
    }
}

fn sign_out_everywhere_form(frame: &Frame<'_>, session: &Session) -> Markup {
    html! {
        section.grant {
            h2 { "Sign out everywhere" }
            p {
                "Lost a phone, or used a shared computer? This signs you out in every browser, "
                "this one included, and signs out " strong { "every device and app" }
                " connected to your account. Each device then needs a new code to sign in again."
            }
            form method="post" action={ (frame.prefix.as_str()) (ACCOUNT_SIGN_OUT_EVERYWHERE_PATH) } {
                (csrf_field(session))
                button.danger type="submit" { "Sign out everywhere, devices too" }
            }
        }
    }
}

/// `POST /account/revoke`: ends one of the signed-in person's grants.
pub fn revoke_grant(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, user, params) = match signed_in_form(ctx, req, prefix, ACCOUNT_PATH) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let grant_id = params
        .get("grant_id")
        .and_then(|id| id.parse::<GrantId>().ok());
    let revoked = match grant_id {
        // Only the session's own grants: the id in the form is a choice, not an authority.
        Some(id) => ctx
            .store
            .revoke_grant(id, Some(user.user_id), ctx.now.secs()),
        None => Ok(false),
    };
    match revoked {
        Ok(true) => {
            log::info!(
                "user {} revoked grant {:?}",
                printable(&user.username),
                grant_id.map(GrantId::get)
            );
            Response::redirect(&format!("{}{ACCOUNT_PATH}", prefix.as_str()))
        }
        Ok(false) => html(
            404,
            views::problem(
                &frame,
                "Nothing to revoke",
                "That device is not connected to your account.",
            ),
        ),
        Err(e) => store_failure(&frame, e),
    }
}

/// `POST /account/cancel`: cancels one of the signed-in person's approvals that no device
/// has collected yet; the device's next poll gets `access_denied`. 404 for anything else
/// (someone else's, already collected, expired, not a number).
pub fn cancel_approval(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix) -> Response {
    let (session, user, params) = match signed_in_form(ctx, req, prefix, ACCOUNT_PATH) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame::new(ctx.app, prefix, Some(&session));
    let code_id = params
        .get("code_id")
        .and_then(|id| id.parse::<DeviceCodeId>().ok());
    let cancelled = match code_id {
        Some(id) => account::cancel_approval(ctx.store, user.user_id, id, ctx.now),
        None => Ok(false),
    };
    match cancelled {
        Ok(true) => {
            log::info!(
                "user {} cancelled approved code {:?}",
                printable(&user.username),
                code_id.map(DeviceCodeId::get)
            );
            Response::redirect(&format!("{}{ACCOUNT_PATH}", prefix.as_str()))
        }
        Ok(false) => html(
            404,
            views::problem(
                &frame,
                "Nothing to cancel",
                "That approval is not waiting on your account: the device may have finished \
                 signing in already (revoke it from your devices page instead), or it expired.",
            ),
        ),
        Err(e) => store_failure(&frame, e),
    }
}

/// `POST /account/sign-out-everywhere`: ends every browser session of the person (this one
/// too), revokes every grant and cancels every uncollected approval; the answer clears the
/// session cookie.
pub fn sign_out_everywhere(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix) -> Response {
    let (session, user, _) = match signed_in_form(ctx, req, prefix, ACCOUNT_PATH) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let ended = account::sign_out_everywhere(ctx.store, user.user_id, ctx.now);
    let frame = Frame::new(ctx.app, prefix, None);
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => return store_failure(&Frame::new(ctx.app, prefix, Some(&session)), e),
    };
    log::info!(
        "user {} signed out everywhere: {} sessions, {} grants, {} approvals",
        printable(&user.username),
        ended.sessions,
        ended.grants,
        ended.codes
    );
    let page = layout(
        &frame,
        "Signed out everywhere",
        html! {
            h1 { "Signed out everywhere" }
            p { "You are signed out in every browser, and every device and app connected to your account is signed out." }
            p { a href={ (prefix.as_str()) (VERIFICATION_PATH) } { "Sign in again" } }
        },
    );
    html(200, page).with_header(
        "Set-Cookie",
        session::cleared_cookie(cookie_scope(ctx, req)),
    )
}
