//! `GET /account`: the signed-in person's connected devices, each with a Revoke button.

use maud::html;

use super::layout::{csrf_field, layout, Frame};
use super::{html, page_session, signed_in_form, store_failure, views, with_cookie};
use crate::app::Ctx;
use crate::clock::Timestamp;
use crate::http::{Request, Response};
use crate::logging::printable;
use crate::paths::{Prefix, ACCOUNT_PATH, ACCOUNT_REVOKE_PATH};
use crate::session;
use crate::store::GrantRow;

pub fn account(ctx: &mut Ctx<'_>, req: &Request, prefix: Prefix<'_>) -> Response {
    let (session, new_cookie) = match page_session(ctx, req, prefix) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frame = Frame {
        prefix,
        session: Some(&session),
    };
    let Some(user) = &session.user else {
        let next = format!("{}{ACCOUNT_PATH}", prefix.as_str());
        return with_cookie(
            html(200, views::sign_in(&frame, &session, &next, None, "")),
            new_cookie,
        );
    };
    let grants = match ctx
        .store
        .list_active_grants(Some(user.user_id), ctx.now.secs())
    {
        Ok(grants) => grants,
        Err(e) => return store_failure(prefix, Some(&session), e),
    };
    let page = layout(
        &frame,
        "Your devices",
        html! {
            h1 { "Your devices" }
            @if grants.is_empty() {
                p { "No device is connected to your account." }
            } @else {
                p { "These devices and apps can use your account. Revoke one and it is signed out at once." }
                @for grant in &grants { (grant_card(&frame, &session, grant)) }
            }
        },
    );
    with_cookie(html(200, page), new_cookie)
}

fn grant_card(frame: &Frame<'_>, session: &session::Session, grant: &GrantRow) -> maud::Markup {
    html! {
        section.grant {
            h2 { (grant.client_name) }
            dl.facts {
                dt { "Client" } dd { code { (grant.client_id) } }
                dt { "Can" } dd { (grant.scope) }
                dt { "Approved" } dd {
                    (Timestamp::from_secs(grant.approved_at).utc_string())
                    @if let Some(ip) = &grant.approved_ip { " from " (ip) }
                }
                @if let Some(ip) = &grant.device_ip { dt { "Device address" } dd { (ip) } }
                @if let Some(agent) = &grant.device_user_agent { dt { "Device" } dd { (agent) } }
                dt { "Last used" } dd { (Timestamp::from_secs(grant.last_used_at).utc_string()) }
            }
            form method="post" action={ (frame.prefix.as_str()) (ACCOUNT_REVOKE_PATH) } {
                (csrf_field(session))
                input type="hidden" name="grant_id" value=(grant.id);
                button.danger type="submit" { "Revoke" }
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
    let frame = Frame {
        prefix,
        session: Some(&session),
    };
    let grant_id = params.get("grant_id").and_then(|id| id.parse::<i64>().ok());
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
                grant_id
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
        Err(e) => store_failure(prefix, Some(&session), e),
    }
}
