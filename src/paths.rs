//! Every path devicegate serves, and where it serves them (its mounts): a leaf module that
//! the router, the endpoints, the pages and the metrics all read, and that reads nothing
//! of the crate's. Which method a path answers is the router's business, not this one's.
//!
//! A route is served under each mount: the issuer's own path (`--issuer
//! https://host/sso` → `/sso/oauth/token`), Campus's `/auth/v1`, both (`/sso/auth/v1/…`),
//! and the root (a reverse proxy that strips the issuer's path forwards `/oauth/token`).
//! Every URL handed out is built from the issuer and the Campus prefix the request came
//! in on (`Prefix`), so it names a path that one of the mounts serves.

/// Campus mounts its auth service here; every route is also served under it.
pub const CAMPUS_PREFIX: &str = "/auth/v1";

/// `GET /`: sends people to their account page.
pub const ROOT_PATH: &str = "/";
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const VERIFICATION_PATH: &str = "/oauth/device";
/// `/oauth/device/<user_code>`: RFC 8628 §3.3.1's `verification_uri_complete` in a path.
pub const VERIFICATION_CODE_PREFIX: &str = "/oauth/device/";
pub const OAUTH_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_METADATA_PATH: &str = "/.well-known/openid-configuration";
pub const HEALTH_PATH: &str = "/healthz";
pub const REVOCATION_PATH: &str = "/oauth/revoke";
pub const INTROSPECTION_PATH: &str = "/oauth/introspect";
pub const USERINFO_PATH: &str = "/oauth/userinfo";
/// The signing keys' public halves (RFC 7517 §5), the metadata's `jwks_uri`.
pub const JWKS_PATH: &str = "/oauth/jwks";
pub const ACCOUNT_PATH: &str = "/account";
pub const ACCOUNT_REVOKE_PATH: &str = "/account/revoke";
pub const ACCOUNT_CANCEL_PATH: &str = "/account/cancel";
pub const ACCOUNT_SIGN_OUT_EVERYWHERE_PATH: &str = "/account/sign-out-everywhere";
pub const METRICS_PATH: &str = "/metrics";
pub const DECISION_PATH: &str = "/oauth/device/decision";
/// Campus's JSON approval call.
pub const CAMPUS_APPROVAL_PATH: &str = "/oauth/device/authorize";
pub const LOGIN_PATH: &str = "/login";
pub const LOGOUT_PATH: &str = "/logout";
pub const STYLESHEET_PATH: &str = "/static/style.css";

/// Label of a request to `/oauth/device/<user_code>` (the code is never a label).
pub const VERIFICATION_CODE_LABEL: &str = "/oauth/device/{user_code}";
/// Label of a request to no route.
pub const OTHER_LABEL: &str = "other";

/// Every metrics label a request can get: each route's path (without its mount), then
/// `VERIFICATION_CODE_LABEL` and `OTHER_LABEL`, so labels stay few.
pub const ROUTE_LABELS: [&str; 23] = [
    DEVICE_AUTHORIZATION_PATH,
    TOKEN_PATH,
    VERIFICATION_PATH,
    OAUTH_METADATA_PATH,
    OIDC_METADATA_PATH,
    HEALTH_PATH,
    DECISION_PATH,
    CAMPUS_APPROVAL_PATH,
    LOGIN_PATH,
    LOGOUT_PATH,
    REVOCATION_PATH,
    INTROSPECTION_PATH,
    USERINFO_PATH,
    JWKS_PATH,
    ACCOUNT_PATH,
    ACCOUNT_REVOKE_PATH,
    ACCOUNT_CANCEL_PATH,
    ACCOUNT_SIGN_OUT_EVERYWHERE_PATH,
    METRICS_PATH,
    STYLESHEET_PATH,
    ROOT_PATH,
    VERIFICATION_CODE_LABEL,
    OTHER_LABEL,
];

/// Is `path` (under a mount) one of the routes? An issuer path that is one would make
/// `/…/x` mean both "the route x" and "the root of the mount x" behind a proxy that
/// strips the issuer's path, so `Config::validate` refuses it.
pub fn is_route(path: &str) -> bool {
    let known = &ROUTE_LABELS[..ROUTE_LABELS.len() - 2];
    known.contains(&path)
        || path
            .strip_prefix(VERIFICATION_CODE_PREFIX)
            .is_some_and(|code| !code.is_empty() && !code.contains('/'))
}

/// The mount a request came in on, as the URLs handed out in its answer need it: the
/// issuer's origin (`https://host`) and the path every route is served under (`/sso`, or
/// `/sso/auth/v1` when the request used Campus's prefix; empty at the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<'a> {
    origin: &'a str,
    path: &'a str,
}

impl<'a> Prefix<'a> {
    /// The path to put before a route in a link, a form action or a redirect:
    /// `/sso`, `/auth/v1`, `/sso/auth/v1` or `""`.
    pub fn as_str(self) -> &'a str {
        self.path
    }

    /// The absolute URL of `route` (a path constant, or one with a query) under this mount.
    pub fn url(self, route: &str) -> String {
        format!("{}{}{route}", self.origin, self.path)
    }
}

/// Where routes are served, worked out once from the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// `https://host[:port]`: the issuer up to its path.
    origin: String,
    /// The issuer's path without a trailing `/` (`/sso`; empty for a bare host).
    issuer_path: String,
    /// `issuer_path` + `CAMPUS_PREFIX`.
    campus_path: String,
}

impl Mounts {
    /// From an issuer that `Config::validate` accepted (`scheme://authority[/path]`, no
    /// query or fragment). A trailing `/` is dropped from the path for building URLs
    /// (RFC 8414 §3.1 drops it too before inserting the path into the well-known URL).
    pub fn from_issuer(issuer: &str) -> Mounts {
        let after_scheme = issuer.find("://").map_or(0, |i| i + 3);
        let (origin, path) = match issuer[after_scheme..].find('/') {
            Some(i) => issuer.split_at(after_scheme + i),
            None => (issuer, ""),
        };
        let issuer_path = path.trim_end_matches('/').to_string();
        Mounts {
            origin: origin.to_string(),
            campus_path: format!("{issuer_path}{CAMPUS_PREFIX}"),
            issuer_path,
        }
    }

    /// The issuer's path without a trailing `/` (empty for a bare host).
    pub fn issuer_path(&self) -> &str {
        &self.issuer_path
    }

    /// The mount without Campus's prefix: URLs under the issuer itself.
    pub fn root(&self) -> Prefix<'_> {
        Prefix {
            origin: &self.origin,
            path: &self.issuer_path,
        }
    }

    /// Campus's mount: URLs under the issuer + `/auth/v1`.
    pub fn campus(&self) -> Prefix<'_> {
        Prefix {
            origin: &self.origin,
            path: &self.campus_path,
        }
    }

    /// The ways to read a request path as (mount, route path), most specific first: under
    /// the issuer's path and Campus's prefix, under the issuer's path, under Campus's
    /// prefix, as it is. An empty rest (`/sso`) is the mount's `/`. The router takes the
    /// first reading that names a route, so a route whose path begins like the issuer's
    /// (issuer `/oauth`, request `/oauth/token` from a proxy that strips `/oauth`) is found.
    /// Every request reads its path this way, so the readings are an iterator over a
    /// fixed array rather than a `Vec`; the last one (the path as it is) is always there.
    pub fn readings<'m, 'p>(
        &'m self,
        path: &'p str,
    ) -> impl Iterator<Item = (Prefix<'m>, &'p str)> {
        let under_issuer = strip_mount(path, &self.issuer_path);
        [
            under_issuer
                .and_then(|rest| strip_mount(rest, CAMPUS_PREFIX))
                .map(|campus| (self.campus(), or_root(campus))),
            under_issuer.map(|rest| (self.root(), or_root(rest))),
            strip_mount(path, CAMPUS_PREFIX).map(|campus| (self.campus(), or_root(campus))),
            Some((self.root(), or_root(path))),
        ]
        .into_iter()
        .flatten()
    }
}

/// `path` without the mount `prefix` when it starts with it at a segment boundary
/// (`/sso/x` and `/sso` under `/sso`, not `/ssox`). An empty prefix strips nothing.
fn strip_mount<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    if prefix.is_empty() {
        return None;
    }
    path.strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn or_root(rest: &str) -> &str {
    if rest.is_empty() {
        ROOT_PATH
    } else {
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_splits_into_origin_and_path() {
        let m = Mounts::from_issuer("https://host.example:8443/auth/v1/");
        assert_eq!(
            m.root().url(TOKEN_PATH),
            "https://host.example:8443/auth/v1/oauth/token"
        );
        assert_eq!(
            m.campus().url(TOKEN_PATH),
            "https://host.example:8443/auth/v1/auth/v1/oauth/token"
        );
        let bare = Mounts::from_issuer("http://127.0.0.1:8080");
        assert_eq!(bare.root().as_str(), "");
        assert_eq!(bare.campus().as_str(), "/auth/v1");
        assert_eq!(Mounts::from_issuer("https://h/").issuer_path(), "");
    }

    #[test]
    fn route_paths_are_known() {
        assert!(is_route("/oauth/device"));
        assert!(is_route("/oauth/device/BCDF-GHJK"));
        assert!(is_route("/account"));
        assert!(!is_route("/oauth"));
        assert!(!is_route("/sso"));
        assert!(!is_route("/auth/v1"));
        assert!(!is_route("/oauth/device/a/b"));
    }

    #[test]
    fn readings_go_from_the_most_specific_mount_to_the_root() {
        let m = Mounts::from_issuer("https://h/sso");
        let paths = |p| {
            m.readings(p)
                .map(|(prefix, rest)| (prefix.as_str(), rest))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths("/sso/auth/v1/oauth/token"),
            [
                ("/sso/auth/v1", "/oauth/token"),
                ("/sso", "/auth/v1/oauth/token"),
                ("/sso", "/sso/auth/v1/oauth/token")
            ]
        );
        assert_eq!(paths("/sso"), [("/sso", "/"), ("/sso", "/sso")]);
        assert_eq!(paths("/ssox"), [("/sso", "/ssox")]);
        assert_eq!(
            paths("/auth/v1/"),
            [("/sso/auth/v1", "/"), ("/sso", "/auth/v1/")]
        );
    }
}
