//! Scope checks (RFC 6749 §3.3): what a client asked for against what it may have.

use super::{ErrorCode, OAuthError};

/// The scope to grant: the client's full allowed set when none was asked for, otherwise the
/// request itself (deduplicated, in the order asked, so clients such as oauthlib that compare
/// the answer with the request see the same scope). Unknown or disallowed → `invalid_scope`.
pub fn resolve_scope(requested: Option<&str>, allowed: &[String]) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.join(" "));
    };
    let mut granted: Vec<&str> = Vec::new();
    for token in requested.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope contains characters RFC 6749 §3.3 does not allow",
            ));
        }
        if !allowed.iter().any(|a| a == token) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope `{token}` is not allowed for this client"),
            ));
        }
        if !granted.contains(&token) {
            granted.push(token);
        }
    }
    if granted.is_empty() {
        return Ok(allowed.join(" "));
    }
    Ok(granted.join(" "))
}

/// RFC 6749 §6: a refresh may ask for less than was granted, never more. Omitted means
/// the whole grant.
pub fn narrow_scope(requested: Option<&str>, granted: &str) -> Result<String, OAuthError> {
    let granted: Vec<String> = granted.split_whitespace().map(str::to_string).collect();
    match requested {
        None => Ok(granted.join(" ")),
        Some(requested) => resolve_scope(Some(requested), &granted).map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidScope,
                "a refresh may narrow the granted scope, never widen it",
            )
        }),
    }
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

    #[test]
    fn unknown_scope_is_invalid_scope() {
        let err = resolve_scope(Some("read admin"), &allowed()).expect_err("admin");
        assert_eq!(err.code, ErrorCode::InvalidScope);
        let err = resolve_scope(Some("re\"ad"), &allowed()).expect_err("quote");
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }
}
