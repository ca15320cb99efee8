//! Scope checks (RFC 6749 §3.3): what a client asked for against what it may have.
//!
//! The four scope values OpenID Connect defines (`openid`, `profile`, `email`,
//! `offline_access`, OIDC Core §3.1.2.1, §5.4, §11) are known to every client: a client
//! gets one only when its allowed scopes include it, but asking for one it may not have is
//! narrowed away (RFC 6749 §3.3 lets the server grant less than asked, and says so in the
//! token response's `scope`) instead of failing, because libraries such as MSAL add
//! `openid profile offline_access` to every request whatever the application asked for.
//! Any other scope a client may not have is still `invalid_scope`.

use super::{ErrorCode, OAuthError};

/// OIDC Core §3.1.2.1: this is an OpenID Connect request (an ID token is wanted).
pub const OPENID_SCOPE: &str = "openid";
/// OIDC Core §5.4: `name`, `preferred_username`.
pub const PROFILE_SCOPE: &str = "profile";
/// OIDC Core §5.4: `email`, `email_verified`.
pub const EMAIL_SCOPE: &str = "email";
/// OIDC Core §11: a refresh token, for clients that opt in to that rule
/// (`clients.refresh_requires_offline_access`).
pub const OFFLINE_ACCESS_SCOPE: &str = "offline_access";
/// The standard OpenID Connect scope values, in the order they are usually written.
pub const OIDC_SCOPES: &[&str] = &[
    OPENID_SCOPE,
    PROFILE_SCOPE,
    EMAIL_SCOPE,
    OFFLINE_ACCESS_SCOPE,
];

/// Whether `token` is one of the standard OpenID Connect scope values.
pub fn is_oidc_scope(token: &str) -> bool {
    OIDC_SCOPES.contains(&token)
}

/// Whether the space-separated `scope` contains exactly the value `wanted`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|t| t == wanted)
}

/// What a client gets when it names no scope (RFC 6749 §3.3's "pre-defined default"): its
/// allowed scopes without the OpenID Connect ones, which are granted only when asked for
/// (OIDC Core §3.1.2.1: without `openid` a request is plain OAuth), so a client that never
/// heard of OpenID Connect (Campus's CLI) keeps getting exactly what it got before. A client
/// allowed nothing but OpenID Connect scopes gets them, except `offline_access`, which must
/// be asked for (OIDC Core §11), or a client that opted in to needing it for a refresh
/// token would get one without asking. Deduplicated, in the client's order.
pub fn default_scope(allowed: &[String]) -> String {
    let pick = |keep: &dyn Fn(&str) -> bool| {
        let mut picked: Vec<&str> = Vec::new();
        for scope in allowed.iter().map(String::as_str).filter(|s| keep(s)) {
            if !picked.contains(&scope) {
                picked.push(scope);
            }
        }
        picked.join(" ")
    };
    let plain = pick(&|s| !is_oidc_scope(s));
    if !plain.is_empty() {
        return plain;
    }
    let oidc = pick(&|s| s != OFFLINE_ACCESS_SCOPE);
    if oidc.is_empty() {
        pick(&|_| true)
    } else {
        oidc
    }
}

/// The scope to grant: the client's default (`default_scope`) when none was asked for,
/// otherwise the request itself (deduplicated, in the order asked, so clients such as
/// oauthlib that compare the answer with the request see the same scope) less the standard
/// OpenID Connect scopes the client may not have. When that narrowing leaves nothing (MSAL
/// asking only `openid profile offline_access` of a client allowed `read`), the request
/// named nothing this client can have: `invalid_scope`, not some other scope the client
/// did not ask for (least privilege; the operator allows `openid` to fix it).
/// Malformed, unknown or disallowed non-OIDC values → `invalid_scope`.
pub fn resolve_scope(requested: Option<&str>, allowed: &[String]) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(default_scope(allowed));
    };
    let granted = select(requested, allowed, |token| {
        format!("scope `{token}` is not allowed for this client")
    })?;
    if granted.is_empty() && !requested.trim().is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is allowed for this client",
        ));
    }
    if granted.is_empty() {
        return Ok(default_scope(allowed));
    }
    Ok(granted.join(" "))
}

/// RFC 6749 §6: a refresh may ask for less than was granted, never more. Omitted means
/// the whole grant. Standard OpenID Connect values outside the grant are narrowed away as
/// in `resolve_scope` (MSAL sends its fixed scopes with every refresh too); if nothing is
/// left, the whole grant.
pub fn narrow_scope(requested: Option<&str>, granted: &str) -> Result<String, OAuthError> {
    let granted: Vec<String> = granted.split_whitespace().map(str::to_string).collect();
    let Some(requested) = requested else {
        return Ok(granted.join(" "));
    };
    let narrowed = select(requested, &granted, |_| {
        "a refresh may narrow the granted scope, never widen it".to_string()
    })?;
    if narrowed.is_empty() {
        return Ok(granted.join(" "));
    }
    Ok(narrowed.join(" "))
}

/// The values of `requested` that are in `allowed`, deduplicated in the order asked;
/// standard OpenID Connect values outside `allowed` are dropped; anything else outside it is
/// `invalid_scope` with `refused`'s description.
fn select<'a>(
    requested: &'a str,
    allowed: &[String],
    refused: impl Fn(&str) -> String,
) -> Result<Vec<&'a str>, OAuthError> {
    let mut granted: Vec<&str> = Vec::new();
    for token in requested.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope contains characters RFC 6749 §3.3 does not allow",
            ));
        }
        if !allowed.iter().any(|a| a == token) {
            if is_oidc_scope(token) {
                // RFC 6749 §3.3: granted less than asked; the response's `scope` says so.
                continue;
            }
            return Err(OAuthError::new(ErrorCode::InvalidScope, refused(token)));
        }
        if !granted.contains(&token) {
            granted.push(token);
        }
    }
    Ok(granted)
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["read".into(), "write".into()]
    }

    #[test]
    fn omitted_scope_means_the_clients_default() {
        assert_eq!(resolve_scope(None, &allowed()).as_deref(), Ok("read write"));
        assert_eq!(
            resolve_scope(Some("  "), &allowed()).as_deref(),
            Ok("read write")
        );
    }

    #[test]
    fn requested_scope_is_echoed_in_order_without_duplicates() {
        assert_eq!(
            resolve_scope(Some("write read write"), &allowed()).as_deref(),
            Ok("write read")
        );
    }

    #[test]
    fn refresh_scope_narrows_but_never_widens() {
        assert_eq!(
            narrow_scope(None, "read write").as_deref(),
            Ok("read write")
        );
        assert_eq!(
            narrow_scope(Some("read"), "read write").as_deref(),
            Ok("read")
        );
        let err = narrow_scope(Some("read write"), "read").expect_err("widen");
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }

    fn with_oidc(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn standard_oidc_scopes_the_client_may_not_have_are_narrowed_away() {
        // MSAL: the application's `read` plus its fixed `openid profile offline_access`.
        assert_eq!(
            resolve_scope(Some("read openid profile offline_access"), &allowed()).as_deref(),
            Ok("read")
        );
        let oidc = with_oidc(&["read", "openid", "email"]);
        assert_eq!(
            resolve_scope(Some("openid profile email read"), &oidc).as_deref(),
            Ok("openid email read")
        );
    }

    #[test]
    fn narrowed_to_nothing_is_invalid_scope_not_the_clients_default() {
        let err = resolve_scope(Some("openid profile offline_access"), &allowed())
            .expect_err("nothing left");
        assert_eq!(err.code, ErrorCode::InvalidScope);
        // A client allowed `openid email` asked for `profile`: not `openid email` instead.
        let err = resolve_scope(Some("profile"), &with_oidc(&["openid", "email"]))
            .expect_err("nothing left");
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn the_default_leaves_oidc_scopes_out_unless_there_is_nothing_else() {
        let guest = with_oidc(&[
            "read",
            "write",
            "openid",
            "profile",
            "email",
            "offline_access",
        ]);
        assert_eq!(resolve_scope(None, &guest).as_deref(), Ok("read write"));
        let only = with_oidc(&["openid", "profile"]);
        assert_eq!(resolve_scope(None, &only).as_deref(), Ok("openid profile"));
        // `offline_access` is never in a default: it must be asked for (OIDC Core §11).
        let offline = with_oidc(&["openid", "offline_access", "openid"]);
        assert_eq!(resolve_scope(None, &offline).as_deref(), Ok("openid"));
        // Duplicates in the client's list are not repeated in the grant.
        let twice = with_oidc(&["read", "read", "write"]);
        assert_eq!(resolve_scope(None, &twice).as_deref(), Ok("read write"));
    }

    #[test]
    fn a_refresh_narrows_away_oidc_scopes_outside_the_grant() {
        assert_eq!(
            narrow_scope(Some("read openid profile offline_access"), "read write").as_deref(),
            Ok("read")
        );
        assert_eq!(
            narrow_scope(Some("openid offline_access"), "read write").as_deref(),
            Ok("read write")
        );
        let err = narrow_scope(Some("read admin"), "read write").expect_err("admin");
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn has_scope_matches_whole_values() {
        assert!(has_scope("read offline_access", "offline_access"));
        assert!(!has_scope("read offline_accessx", "offline_access"));
        assert!(!has_scope("", "openid"));
    }

    #[test]
    fn unknown_scope_is_invalid_scope() {
        let err = resolve_scope(Some("read admin"), &allowed()).expect_err("admin");
        assert_eq!(err.code, ErrorCode::InvalidScope);
        let err = resolve_scope(Some("re\"ad"), &allowed()).expect_err("quote");
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }
}
