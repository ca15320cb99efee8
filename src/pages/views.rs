//! The verification journey's pages as plain functions returning `Markup`. Every dynamic
//! string goes through a maud splice (escaped); nothing here reads a request.

use maud::{html, Markup};

use super::layout::{csrf_field, help_text, layout, Frame};
use super::when;
use crate::clock::Timestamp;
use crate::paths::{ACCOUNT_PATH, VERIFICATION_PATH};
use crate::protocol::user_agent::describe_device;
use crate::secrets;
use crate::session::Session;
use crate::store::{Client, DeviceCode};

pub fn sign_in(
    frame: &Frame<'_>,
    session: &Session,
    next: &str,
    error: Option<&str>,
    username: &str,
) -> Markup {
    layout(
        frame,
        "Sign in",
        html! {
            @if next.split('?').next().is_some_and(|path| path.ends_with(ACCOUNT_PATH)) {
                h1 { "Sign in to see your devices" }
                p.muted { "Your account page lists the devices and apps signed in as you." }
            } @else {
                h1 { "Sign in to connect a device" }
                p.muted { "A device or app is waiting for you to approve it. Sign in first." }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action={ (frame.prefix.as_str()) "/login" } {
                (csrf_field(session))
                input type="hidden" name="next" value=(next);
                label for="username" { "User name" }
                input #username type="text" name="username" value=(username)
                    autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            (help_text(frame))
        },
    )
}

pub fn code_entry(
    frame: &Frame<'_>,
    session: &Session,
    error: Option<&str>,
    typed: &str,
) -> Markup {
    layout(
        frame,
        "Connect a device",
        html! {
            h1 { "Connect a device" }
            @if error.is_none() && !typed.is_empty() {
                p { "Check that this is the code your device or terminal shows, then continue." }
            } @else {
                p { "Enter the code shown on your device or in your terminal." }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action={ (frame.prefix.as_str()) (VERIFICATION_PATH) } {
                (csrf_field(session))
                label for="user_code" { "Code" }
                input #user_code .code type="text" name="user_code" value=(typed)
                    placeholder="BCDF-GHJK" maxlength="32" autocomplete="one-time-code"
                    autocapitalize="characters" autocorrect="off" spellcheck="false"
                    inputmode="text" required autofocus;
                button type="submit" { "Continue" }
            }
        },
    )
}

/// What the consent page shows about a request.
pub struct ConsentView<'a> {
    pub code: &'a DeviceCode,
    pub client: &'a Client,
    pub now: Timestamp,
    /// The device asked from a different network than this browser (RFC 8628 §5.4).
    pub other_network: bool,
}

pub fn consent(frame: &Frame<'_>, session: &Session, view: &ConsentView<'_>) -> Markup {
    let code = view.code;
    let user_code = secrets::display_user_code(&code.user_code);
    let asked = Timestamp::from_secs(code.created_at);
    html! {
        (layout(frame, "Approve this device?", html! {
            h1 { "Approve this device?" }
            p {
                "A device is asking to sign in to your account using "
                strong { (view.client.name) } " "
                span.muted { "(client " code { (view.client.client_id) } ")" } "."
            }
            @if view.other_network {
                div.warning role="alert" {
                    strong { "This request came from a different network than yours." }
                    p {
                        "The device asked from " code { (code.device_ip) } ", which is not the "
                        "network this browser is on. If the device is not in front of you, "
                        "someone may be trying to trick you into giving them your account. "
                        "Unless you are sure, choose " strong { "Deny" } "."
                    }
                }
            }
            p { "Check that the device shows exactly this code:" }
            div.usercode aria-label="user code" { (user_code) }
            p { "It will be able to:" }
            ul.scopes {
                @for scope in code.scope.split_whitespace() { li { (scope_words(scope)) } }
            }
            dl.facts {
                dt { "Asked" } dd { (when::time(view.now, asked)) }
                dt { "From" } dd { (code.device_ip) }
                @if code.device_user_agent.is_some() {
                    // The device chooses its User-Agent: a claim, not a fact (RFC 8628 §5.4).
                    dt { "Says it is" } dd { (describe_device(code.device_user_agent.as_deref())) }
                }
            }
            form method="post" action={ (frame.prefix.as_str()) (VERIFICATION_PATH) "/decision" } {
                (csrf_field(session))
                input type="hidden" name="user_code" value=(user_code);
                div.actions {
                    @if view.other_network {
                        button.danger type="submit" name="decision" value="deny" { "Deny" }
                        button.secondary type="submit" name="decision" value="approve" { "Approve" }
                    } @else {
                        button type="submit" name="decision" value="approve" { "Approve" }
                        button.secondary type="submit" name="decision" value="deny" { "Deny" }
                    }
                }
            }
        }))
    }
}

pub fn approved(frame: &Frame<'_>, client: &str) -> Markup {
    layout(
        frame,
        "Device connected",
        html! {
            h1.success { "Device connected" }
            p { (client) " can now use your account. You can return to your device; it will finish signing in by itself." }
            p.muted {
                "Changed your mind? "
                a href={ (frame.prefix.as_str()) "/account" } { "See and disconnect your devices" } "."
            }
        },
    )
}

pub fn denied(frame: &Frame<'_>) -> Markup {
    layout(
        frame,
        "Request denied",
        html! {
            h1 { "Request denied" }
            p { "The device was not given access. It will be told the next time it checks." }
        },
    )
}

/// A page that explains a dead end, with a way forward.
pub fn problem(frame: &Frame<'_>, title: &str, message: &str) -> Markup {
    layout(
        frame,
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href={ (frame.prefix.as_str()) (VERIFICATION_PATH) } { "Enter a code" } }
        },
    )
}

/// Too many attempts: when to come back, and a way forward that is not the locked form
/// itself (the operator's help text; a signed-in person can still see their devices).
pub fn locked(frame: &Frame<'_>, message: &str) -> Markup {
    let signed_in = frame.session.is_some_and(|s| s.user.is_some());
    layout(
        frame,
        "Please wait",
        html! {
            h1 { "Please wait" }
            p { (message) }
            @if frame.site.help_text.is_some() {
                (help_text(frame))
            } @else {
                p.muted { "If you cannot wait, ask the person who runs this service for help." }
            }
            @if signed_in {
                p { a href={ (frame.prefix.as_str()) (ACCOUNT_PATH) } { "See your devices" } }
            }
        },
    )
}

/// Scopes in plain words, for the consent and account pages.
pub fn scope_words(scope: &str) -> String {
    match scope {
        "read" => "Read your data".into(),
        "write" => "Change your data".into(),
        "openid" => "Know who you are (an ID that stays the same for your account)".into(),
        "profile" => "See your name and user name".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay signed in when you are not using it".into(),
        other => format!("Use the “{other}” permission"),
    }
}
