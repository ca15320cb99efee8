//! HTML pages, rendered with maud (auto-escaped). The only module that knows maud.

use maud::{html, Markup, DOCTYPE};

use crate::app::Ctx;
use crate::http::{Request, Response};
use crate::router::Prefix;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · devicegate" }
            }
            body { main { (body) } }
        }
    }
}

/// `GET /oauth/device`: where a person enters the code their device shows.
pub fn verification(
    _ctx: &mut Ctx<'_>,
    _req: &Request,
    _prefix: Prefix,
    _code_in_path: Option<&str>,
) -> Response {
    Response::html(
        200,
        layout(
            "Connect a device",
            html! {
                h1 { "Connect a device" }
                p { "Ask the operator to approve your code with `devicegate approve`." }
            },
        ),
    )
}
