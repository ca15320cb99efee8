//! The frame every page shares: head, brand, main card, and the signed-in footer.

use maud::{html, Markup, DOCTYPE};

use crate::paths::{Prefix, ACCOUNT_PATH, LOGOUT_PATH, STYLESHEET_PATH};
use crate::session::Session;

/// What the layout needs to know about the request.
pub struct Frame<'a> {
    pub prefix: Prefix<'a>,
    pub session: Option<&'a Session>,
}

pub fn layout(frame: &Frame<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · devicegate" }
                link rel="stylesheet" href={ (frame.prefix.as_str()) (STYLESHEET_PATH) };
            }
            body {
                header.brand { "devicegate" }
                main { (body) }
                @if let Some(session) = frame.session {
                    @if let Some(user) = &session.user {
                        footer {
                            span { "Signed in as " strong { (user.username) } }
                            span { "·" }
                            a href={ (frame.prefix.as_str()) (ACCOUNT_PATH) } { "Your devices" }
                            span { "·" }
                            form method="post" action={ (frame.prefix.as_str()) (LOGOUT_PATH) } {
                                input type="hidden" name="csrf_token" value=(session.csrf_token);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(session.csrf_token); }
}
