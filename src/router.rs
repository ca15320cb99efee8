//! The one route table: which methods each path answers, and with which handler. It is the
//! only place that maps methods, so HEAD (every GET route answers it) and 405 with its
//! `Allow` list come from here alone. Paths live in `paths`, as do the mounts every route
//! is served under (the issuer's path, Campus's `/auth/v1`, the root); handlers learn the
//! mount through `Prefix`, so the URLs they hand out keep it.

use crate::api;
use crate::app::{App, Ctx};
use crate::http::{Method, Request, Response};
use crate::pages;
use crate::paths::{self, Prefix};

/// A handler: the request, on the mount it came in on.
type Handler = fn(&mut Ctx<'_>, &Request, Prefix<'_>) -> Response;

/// Which request paths (under a mount) a route answers.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// Exactly this path.
    Exact(&'static str),
    /// This prefix followed by one path segment without `/` (a user code).
    Segment(&'static str),
}

struct Route {
    pattern: Pattern,
    /// The methods, in the order `Allow` lists them. GET implies HEAD (RFC 9110 §9.3.2);
    /// HEAD is never listed here.
    methods: &'static [(Method, Handler)],
}

/// The route table. Exact paths win over `Segment` patterns (`/oauth/device/decision` is
/// not a user code).
const ROUTES: &[Route] = &[
    Route {
        pattern: Pattern::Exact(paths::ROOT_PATH),
        methods: &[(Method::Get, |_, _, prefix| root(prefix))],
    },
    Route {
        pattern: Pattern::Exact(paths::DEVICE_AUTHORIZATION_PATH),
        methods: &[(Method::Post, api::device_authorize)],
    },
    Route {
        pattern: Pattern::Exact(paths::TOKEN_PATH),
        methods: &[(Method::Post, |ctx, req, _| api::token(ctx, req))],
    },
    Route {
        pattern: Pattern::Exact(paths::OAUTH_METADATA_PATH),
        methods: &[(Method::Get, |ctx, _, prefix| api::metadata(ctx, prefix))],
    },
    Route {
        pattern: Pattern::Exact(paths::OIDC_METADATA_PATH),
        methods: &[(Method::Get, |ctx, _, prefix| api::metadata(ctx, prefix))],
    },
    Route {
        pattern: Pattern::Exact(paths::REVOCATION_PATH),
        methods: &[(Method::Post, |ctx, req, _| api::revoke(ctx, req))],
    },
    Route {
        pattern: Pattern::Exact(paths::INTROSPECTION_PATH),
        methods: &[(Method::Post, |ctx, req, _| api::introspect(ctx, req))],
    },
    Route {
        pattern: Pattern::Exact(paths::USERINFO_PATH),
        // OIDC Core §5.3.1: the UserInfo Endpoint answers GET and POST alike.
        methods: &[
            (Method::Get, |ctx, req, _| api::userinfo(ctx, req)),
            (Method::Post, |ctx, req, _| api::userinfo(ctx, req)),
        ],
    },
    Route {
        pattern: Pattern::Exact(paths::JWKS_PATH),
        methods: &[(Method::Get, |ctx, _, _| api::jwks(ctx))],
    },
    Route {
        pattern: Pattern::Exact(paths::ACCOUNT_PATH),
        methods: &[(Method::Get, pages::account)],
    },
    Route {
        pattern: Pattern::Exact(paths::ACCOUNT_REVOKE_PATH),
        methods: &[(Method::Post, pages::revoke_grant)],
    },
    Route {
        pattern: Pattern::Exact(paths::ACCOUNT_CANCEL_PATH),
        methods: &[(Method::Post, pages::cancel_approval)],
    },
    Route {
        pattern: Pattern::Exact(paths::ACCOUNT_SIGN_OUT_EVERYWHERE_PATH),
        methods: &[(Method::Post, pages::sign_out_everywhere)],
    },
    Route {
        pattern: Pattern::Exact(paths::METRICS_PATH),
        methods: &[(Method::Get, |ctx, req, _| api::metrics(ctx, req))],
    },
    Route {
        pattern: Pattern::Exact(paths::HEALTH_PATH),
        methods: &[(Method::Get, |ctx, _, _| api::health(ctx))],
    },
    Route {
        pattern: Pattern::Exact(paths::VERIFICATION_PATH),
        methods: &[
            (Method::Get, |ctx, req, prefix| {
                pages::verification(ctx, req, prefix, None)
            }),
            (Method::Post, pages::submit_code),
        ],
    },
    Route {
        pattern: Pattern::Exact(paths::DECISION_PATH),
        methods: &[(Method::Post, pages::decide)],
    },
    Route {
        pattern: Pattern::Exact(paths::CAMPUS_APPROVAL_PATH),
        methods: &[(Method::Post, |ctx, req, _| api::campus_approve(ctx, req))],
    },
    Route {
        pattern: Pattern::Exact(paths::LOGIN_PATH),
        methods: &[
            (Method::Get, |_, _, prefix| {
                Response::redirect(&format!("{}{}", prefix.as_str(), paths::VERIFICATION_PATH))
            }),
            (Method::Post, pages::login),
        ],
    },
    Route {
        pattern: Pattern::Exact(paths::LOGOUT_PATH),
        methods: &[(Method::Post, pages::logout)],
    },
    Route {
        pattern: Pattern::Exact(paths::STYLESHEET_PATH),
        methods: &[(Method::Get, |_, _, _| pages::stylesheet())],
    },
    Route {
        pattern: Pattern::Segment(paths::VERIFICATION_CODE_PREFIX),
        methods: &[(Method::Get, |ctx, req, prefix| {
            // The pattern matched, so the last segment is the user code.
            let code = req.path.rsplit('/').next().unwrap_or_default();
            pages::verification(ctx, req, prefix, Some(code))
        })],
    },
];

/// A request path resolved to a route, on the mount it came in on.
struct Found<'m> {
    route: &'static Route,
    prefix: Prefix<'m>,
    /// The `ROUTE_LABELS` index for metrics.
    label: usize,
}

/// A request path, resolved once per request: `route` answers from it and the metrics
/// take its `label`, so both agree and the table is searched once.
pub struct Resolved<'m>(Result<Found<'m>, Prefix<'m>>);

impl Resolved<'_> {
    /// The `ROUTE_LABELS` index: the route's path without the mount, the user-code label,
    /// or "other".
    pub fn label(&self) -> usize {
        match &self.0 {
            Ok(found) => found.label,
            Err(_) => label_of(paths::OTHER_LABEL),
        }
    }
}

/// Resolves a request path to its route and mount; no route keeps the most specific mount
/// for the 404 page's links.
pub fn resolve_path<'m>(mounts: &'m paths::Mounts, path: &str) -> Resolved<'m> {
    Resolved(resolve(mounts, path).ok_or_else(|| {
        mounts
            .readings(path)
            .next()
            .map_or(mounts.root(), |(prefix, _)| prefix)
    }))
}

/// Answers a request: its route's handler for the method, 405 with `Allow` when the route
/// does not answer that method, 404 when no route has the path.
pub fn route(ctx: &mut Ctx<'_>, req: &Request, resolved: &Resolved<'_>) -> Response {
    let found = match &resolved.0 {
        Ok(found) => found,
        Err(prefix) => return not_found(ctx.app, req, *prefix),
    };
    // RFC 9110 §9.3.2: HEAD is GET without the body (the edge leaves the body out).
    let method = match req.method {
        Method::Head => Method::Get,
        other => other,
    };
    match found.route.methods.iter().find(|(m, _)| *m == method) {
        Some((_, handler)) => handler(ctx, req, found.prefix),
        None => method_not_allowed(found.route),
    }
}

fn resolve<'m>(mounts: &'m paths::Mounts, path: &str) -> Option<Found<'m>> {
    for (prefix, rest) in mounts.readings(path) {
        if let Some((route, label)) = find(rest) {
            return Some(Found {
                route,
                prefix,
                label,
            });
        }
    }
    well_known_with_path(mounts, path)
}

/// RFC 8414 §3.1: the metadata of an issuer with a path is at the well-known path with the
/// issuer's path appended (`/.well-known/oauth-authorization-server/sso`). The same for
/// the Campus mount (`…/auth/v1`), and for the OpenID name, which some clients build the
/// same way.
fn well_known_with_path<'m>(mounts: &'m paths::Mounts, path: &str) -> Option<Found<'m>> {
    let (base, inserted) = [paths::OAUTH_METADATA_PATH, paths::OIDC_METADATA_PATH]
        .into_iter()
        .find_map(|base| {
            let inserted = path.strip_prefix(base)?;
            inserted.starts_with('/').then_some((base, inserted))
        })?;
    let (prefix, _) = mounts
        .readings(inserted)
        .find(|(_, rest)| *rest == paths::ROOT_PATH)?;
    let (route, label) = find(base)?;
    Some(Found {
        route,
        prefix,
        label,
    })
}

/// The route for a path under a mount, and its label.
fn find(rest: &str) -> Option<(&'static Route, usize)> {
    let exact = ROUTES.iter().find_map(|route| match route.pattern {
        Pattern::Exact(path) if path == rest => Some((route, label_of(path))),
        _ => None,
    });
    exact.or_else(|| {
        ROUTES.iter().find_map(|route| match route.pattern {
            Pattern::Segment(prefix) => rest
                .strip_prefix(prefix)
                .filter(|segment| !segment.contains('/'))
                .map(|_| (route, label_of(paths::VERIFICATION_CODE_LABEL))),
            Pattern::Exact(_) => None,
        })
    })
}

fn label_of(label: &str) -> usize {
    paths::ROUTE_LABELS
        .iter()
        .position(|l| *l == label)
        .unwrap_or(paths::ROUTE_LABELS.len() - 1)
}

/// The `Allow` value for a route (RFC 9110 §10.2.1): its methods in table order, HEAD
/// right after GET.
fn allow(route: &Route) -> String {
    let mut names = Vec::with_capacity(route.methods.len() + 1);
    for (method, _) in route.methods {
        match method {
            Method::Get => names.extend(["GET", "HEAD"]),
            Method::Post => names.push("POST"),
            // Never in the table: HEAD comes with GET, and "other" is no method.
            Method::Head | Method::Other => {}
        }
    }
    names.join(", ")
}

/// 405 (RFC 9110 §15.5.6) with the route's `Allow` list, in RFC 6749 §5.2's JSON.
fn method_not_allowed(route: &Route) -> Response {
    Response::json(
        405,
        &serde_json::json!({
            "error": "invalid_request",
            "error_description": "method not allowed"
        }),
    )
    .with_header("Allow", allow(route))
}

/// `GET /`: people who open the bare address land on their account page.
fn root(prefix: Prefix<'_>) -> Response {
    Response::redirect(&format!("{}{}", prefix.as_str(), paths::ACCOUNT_PATH))
}

/// 404: a page for browsers (they prefer `text/html`), `{"error":"not_found"}` for
/// everyone else, as before.
fn not_found(app: &App, req: &Request, prefix: Prefix<'_>) -> Response {
    let answer = if req.prefers_html() {
        pages::not_found(app, prefix)
    } else {
        Response::json(404, &serde_json::json!({"error": "not_found"}))
    };
    // The answer depends on `Accept`: a shared cache must not hand one to the other.
    answer.with_header("Vary", "Accept")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_label_and_an_allow_list() {
        for route in ROUTES {
            let label = match route.pattern {
                Pattern::Exact(path) => label_of(path),
                Pattern::Segment(_) => label_of(paths::VERIFICATION_CODE_LABEL),
            };
            assert_ne!(label, label_of(paths::OTHER_LABEL), "{:?}", route.pattern);
            assert!(!allow(route).is_empty());
        }
    }

    #[test]
    fn exact_paths_win_over_the_user_code_pattern() {
        let (route, _) = find(paths::CAMPUS_APPROVAL_PATH).expect("route");
        assert_eq!(allow(route), "POST");
        let (route, label) = find("/oauth/device/BCDF-GHJK").expect("route");
        assert_eq!(allow(route), "GET, HEAD");
        assert_eq!(label, label_of(paths::VERIFICATION_CODE_LABEL));
        assert!(find("/oauth/device/a/b").is_none());
        assert_eq!(
            allow(find(paths::VERIFICATION_PATH).expect("route").0),
            "GET, HEAD, POST"
        );
    }

    #[test]
    fn the_issuer_path_is_a_mount_and_metadata_is_path_inserted() {
        let mounts = paths::Mounts::from_issuer("https://h/sso");
        let found = resolve(&mounts, "/.well-known/oauth-authorization-server/sso").expect("found");
        assert_eq!(found.prefix.as_str(), "/sso");
        let found = resolve(&mounts, "/sso/auth/v1/oauth/token").expect("found");
        assert_eq!(
            found.prefix.url(paths::TOKEN_PATH),
            "https://h/sso/auth/v1/oauth/token"
        );
        // A proxy that strips the issuer's path forwards the bare route.
        let found = resolve(&mounts, "/oauth/token").expect("found");
        assert_eq!(
            found.prefix.url(paths::TOKEN_PATH),
            "https://h/sso/oauth/token"
        );
        assert!(resolve(&mounts, "/.well-known/oauth-authorization-server/other").is_none());
    }

    #[test]
    fn an_issuer_path_that_begins_like_a_route_shadows_nothing() {
        let mounts = paths::Mounts::from_issuer("https://h/oauth");
        for path in ["/oauth/oauth/token", "/oauth/token"] {
            let found = resolve(&mounts, path).expect(path);
            assert_eq!(found.label, label_of(paths::TOKEN_PATH), "{path}");
            assert_eq!(found.prefix.as_str(), "/oauth");
        }
        let found = resolve(&mounts, "/oauth/device/BCDF-GHJK").expect("code");
        assert_eq!(found.label, label_of(paths::VERIFICATION_CODE_LABEL));
    }
}
