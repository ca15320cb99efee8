//! The frame every page shares: head, brand, main card, and the signed-in footer.

use maud::{html, Markup, DOCTYPE};

use crate::app::App;
use crate::paths::{Prefix, ACCOUNT_PATH, LOGOUT_PATH, STYLESHEET_PATH};
use crate::session::Session;

/// The operator's branding: `--site-name` and `--help-text`.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub name: &'a str,
    /// Plain text (escaped like every splice) under sign-in and on lock-out pages.
    pub help_text: Option<&'a str>,
}

/// What the layout needs to know about the request.
pub struct Frame<'a> {
    pub prefix: Prefix<'a>,
    pub session: Option<&'a Session>,
    pub site: Site<'a>,
}

impl<'a> Frame<'a> {
    pub fn new(app: &'a App, prefix: Prefix<'a>, session: Option<&'a Session>) -> Frame<'a> {
        Frame {
            prefix,
            session,
            site: Site {
                name: &app.config.site_name,
                help_text: app.config.help_text.as_deref(),
            },
        }
    }
}

pub fn layout(frame: &Frame<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · " (frame.site.name) }
                link rel="stylesheet" href={ (frame.prefix.as_str()) (STYLESHEET_PATH) };
            }
            body {
                header.brand { (frame.site.name) }
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

/// The operator's help text (`--help-text`), when there is one.
pub fn help_text(frame: &Frame<'_>) -> Markup {
    html! {
        @if let Some(text) = frame.site.help_text {
            p.help role="note" { (text) }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(session.csrf_token); }
}
