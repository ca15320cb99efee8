//! OpenID Connect claims about a user (OIDC Core §5.1, §5.4): which claims a scope
//! releases, the list discovery advertises (`claims_supported`), and the rules for the
//! profile data an operator types in (email address, display name).
//!
//! One function, `user_claims`, decides what is said about a user; the userinfo endpoint
//! (OIDC Core §5.3) and the ID token (§2, §5.4) both call it, so they always agree.
//! Nothing here reads the store or knows HTTP.

use serde_json::{Map, Value};

use super::scope::{has_scope, EMAIL_SCOPE, PROFILE_SCOPE};
use crate::logging::{needs_escape, printable};
use crate::store;

/// The user claims devicegate can release, for discovery's `claims_supported` (OIDC
/// Discovery §3). `sub` always; `name` and `preferred_username` with `profile`; `email`
/// and `email_verified` with `email`.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "name",
    "preferred_username",
    "email",
    "email_verified",
];

/// The claims `scope` (space-separated, as granted) releases about `user` (OIDC Core §5.4):
///
/// - `sub` always: `users.subject`, random and opaque, kept across renames (§2, §5.7); never
///   the user name, which can change and be reused.
/// - with `profile`: `preferred_username` (the login name) and `name` (the display name).
///   Without a display name `name` is left out rather than filled with the login name: §5.1
///   defines `name` as the person's full name in displayable form, and §5.3.2 says a claim
///   without a value is omitted, not sent empty or null.
/// - with `email`: `email` and `email_verified` (a JSON boolean), both left out when the
///   user has no address.
///
/// Other scope values release nothing here. The map serialises as a JSON object.
pub fn user_claims(user: &store::User, scope: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.subject.clone()));
    if has_scope(scope, PROFILE_SCOPE) {
        if let Some(name) = &user.display_name {
            claims.insert("name".into(), Value::String(name.clone()));
        }
        claims.insert(
            "preferred_username".into(),
            Value::String(user.username.clone()),
        );
    }
    if has_scope(scope, EMAIL_SCOPE) {
        if let Some(email) = &user.email {
            claims.insert("email".into(), Value::String(email.clone()));
            claims.insert("email_verified".into(), Value::Bool(user.email_verified));
        }
    }
    claims
}

/// RFC 5321 §4.5.3.1: the longest forward path is 256 octets including `<` and `>`.
pub const MAX_EMAIL: usize = 254;
/// RFC 5321 §4.5.3.1.1: the local part is at most 64 octets.
const MAX_EMAIL_LOCAL: usize = 64;
/// RFC 1035 §2.3.4: a label is at most 63 octets.
const MAX_DOMAIN_LABEL: usize = 63;
/// The longest display name, in characters (it is shown on pages and in tokens).
pub const MAX_DISPLAY_NAME: usize = 100;

/// Why an email address or display name was refused; the text names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError(pub String);

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the shape of an email address an operator typed: `local@domain.tld`, at most
/// 254 bytes, a local part of 1–64 bytes of RFC 5322 `atext` and dots (no leading,
/// trailing or double dot; no quoted forms), a domain of at least two dot-separated labels
/// of letters, digits and `-` (1–63 bytes each, no leading or trailing `-`). Non-ASCII
/// letters are allowed (RFC 6531). It is a typo check, not a proof that mail arrives: see
/// `email_verified` in the README.
pub fn check_email(email: &str) -> Result<(), ProfileError> {
    let bad = |why: &str| {
        Err(ProfileError(format!(
            "`{}` is not an email address: {why}",
            printable(email)
        )))
    };
    if email.len() > MAX_EMAIL {
        return bad(&format!("longer than {MAX_EMAIL} bytes"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return bad("it has no `@`");
    };
    if local.is_empty() || local.len() > MAX_EMAIL_LOCAL {
        return bad(&format!(
            "the part before `@` must be 1–{MAX_EMAIL_LOCAL} bytes"
        ));
    }
    // RFC 5322 §3.2.3 atext, plus RFC 6531's non-ASCII.
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    if local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c == '.' || (atext(c) && !needs_escape(c) && !c.is_whitespace()))
    {
        return bad("the part before `@` has characters an address cannot have");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return bad("the domain needs a dot, like example.com");
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return bad("the domain ends in a number, not a name");
    }
    for label in labels {
        // ASCII only: `ｅxample.com` (a fullwidth e) must not pass for example.com. An
        // international domain is written in its `xn--` form (IDNA, RFC 5891).
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if label.is_empty()
            || label.len() > MAX_DOMAIN_LABEL
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(ok_char)
        {
            return bad("the domain is not a host name (letters, digits and `-`; an international domain in its xn-- form)");
        }
    }
    Ok(())
}

/// Checks a display name: 1–100 printable characters (no control or bidirectional
/// formatting characters, which could disguise it on a page or in a terminal), not blank,
/// without leading or trailing spaces.
pub fn check_display_name(name: &str) -> Result<(), ProfileError> {
    if name.trim().is_empty()
        || name.trim() != name
        || name.chars().count() > MAX_DISPLAY_NAME
        || name.chars().any(needs_escape)
    {
        return Err(ProfileError(format!(
            "a display name is 1–{MAX_DISPLAY_NAME} printable characters, without leading \
             or trailing spaces"
        )));
    }
    Ok(())
}

/// A verified address belongs to one person: relying parties (Kubernetes with
/// `--oidc-username-claim=email`) treat it as who someone is. The other user among `users`
/// (not `username`) who already has `email` verified, compared without regard to case.
pub fn verified_email_holder<'u>(
    users: &'u [crate::store::User],
    username: &str,
    email: &str,
) -> Option<&'u crate::store::User> {
    users.iter().find(|u| {
        u.username != username
            && u.email_verified
            && u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> store::User {
        store::User {
            id: store::UserId::new(7),
            username: "alice".into(),
            password_hash: String::new(),
            disabled: false,
            created_at: 0,
            subject: "s0m3opaqu3".into(),
            display_name: Some("Alice Liddell".into()),
            email: Some("alice@example.com".into()),
            email_verified: true,
        }
    }

    /// The claim names, sorted.
    fn keys(claims: &Map<String, Value>) -> Vec<&str> {
        let mut keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn sub_is_always_there_and_is_the_subject() {
        let claims = user_claims(&user(), "read");
        assert_eq!(keys(&claims), ["sub"]);
        assert_eq!(claims["sub"], "s0m3opaqu3");
        assert_eq!(keys(&user_claims(&user(), "openid")), ["sub"]);
    }

    #[test]
    fn profile_and_email_release_their_claims() {
        let claims = user_claims(&user(), "openid profile email");
        assert_eq!(claims["name"], "Alice Liddell");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(
            keys(&user_claims(&user(), "email")),
            ["email", "email_verified", "sub"]
        );
    }

    #[test]
    fn missing_values_are_left_out() {
        let mut bare = user();
        bare.display_name = None;
        bare.email = None;
        let claims = user_claims(&bare, "openid profile email");
        assert_eq!(keys(&claims), ["preferred_username", "sub"]);
    }

    #[test]
    fn scope_values_match_whole_words_only() {
        assert_eq!(keys(&user_claims(&user(), "profiles emails")), ["sub"]);
    }

    #[test]
    fn email_shapes() {
        for good in [
            "alice@example.com",
            "a.b+tag@sub.example.org",
            "o'neil@example.ie",
            "jürgen@xn--bcher-kva.example",
        ] {
            assert_eq!(check_email(good), Ok(()), "{good}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "alice@@example.com",
            "al ice@example.com",
            ".alice@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example..com",
            "alice@exa_mple.com",
            // Look-alikes and numbers: an international domain is written xn--.
            "jürgen@bücher.example",
            "alice@\u{ff45}xample.com",
            "a@b.123",
            "al\u{1b}ice@example.com",
            "al\u{202e}ice@example.com",
            "\"alice\"@example.com",
            long_local.as_str(),
            long.as_str(),
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(check_display_name("Alice Liddell"), Ok(()));
        assert_eq!(check_display_name("Zoë Ñúñez 李"), Ok(()));
        for bad in ["", "   ", " Alice", "Alice ", "A\nB", "A\u{202e}B"] {
            assert!(check_display_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_display_name(&"x".repeat(101)).is_err());
        assert_eq!(check_display_name(&"x".repeat(100)), Ok(()));
    }
}
