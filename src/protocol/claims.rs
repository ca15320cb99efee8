//! The claims about a user that a scope releases (OpenID Connect Core §5.4).
//!
//! A minimal stand-in for the `claims` branch's version (issue #14), with the same
//! signature: `sub` always, `preferred_username` with `profile`.

use serde_json::{Map, Value};

use crate::store;

/// `sub` (the user's opaque subject), and with `profile` in `scope` (space-separated)
/// `preferred_username`.
pub fn user_claims(user: &store::User, scope: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.subject.clone()));
    if scope.split(' ').any(|s| s == "profile") {
        claims.insert(
            "preferred_username".into(),
            Value::String(user.username.clone()),
        );
    }
    claims
}
