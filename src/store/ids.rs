//! Typed row ids (issue #15): a user's, a grant's and a device code's `id` column are all
//! integers, and before these types a function taking `(grant_id: i64, owner: i64)` could
//! be handed the two the wrong way round without a word from the compiler.
//!
//! Each id is an `i64` underneath and bound and read as one (`db::Param`, `db::Column`),
//! shown (`Display`), parsed (`FromStr`, the same errors as `i64`'s) and serialised
//! (a bare JSON number) exactly like the integer it wraps, so SQL, logs, throttle keys,
//! HTML form fields and JSON output are byte for byte what they were. They mark which
//! table an id belongs to; they are not secrets and not proof of anything: `new` accepts
//! any integer, and only the edges (a form field, a CLI argument) and the store call it.
//!
//! Mixing them up is a compile error (each example below fails with E0308, mismatched
//! types, and nothing else; the last one shows the same calls the right way round):
//!
//! ```compile_fail,E0308
//! # fn f(store: &mut devicegate::store::Store, user: devicegate::store::UserId) {
//! // A user id where `Store::revoke_grant` wants a grant id:
//! let _ = store.revoke_grant(user, None, 0);
//! # }
//! ```
//!
//! ```compile_fail,E0308
//! # use devicegate::store::{DeviceCodeId, Store, UserId};
//! # fn f(store: &Store, owner: UserId, code: DeviceCodeId) {
//! // The owner and the code swapped:
//! let _ = store.cancel_approved_device_code(owner, code, 0);
//! # }
//! ```
//!
//! ```compile_fail,E0308
//! # fn f(store: &devicegate::store::Store, code: devicegate::store::DeviceCodeId) {
//! // A device code's id where a user's is wanted:
//! let _ = store.find_user(code);
//! # }
//! ```
//!
//! ```
//! # use devicegate::store::{DeviceCodeId, GrantId, Result, Store, UserId};
//! # fn f(store: &mut Store, user: UserId, grant: GrantId, code: DeviceCodeId) -> Result<()> {
//! let _ = store.revoke_grant(grant, Some(user), 0)?;
//! let _ = store.cancel_approved_device_code(code, user, 0)?;
//! let _ = store.find_user(user)?;
//! # Ok(()) }
//! ```

use super::db::{Column, Param, Value};

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id with this integer value (as stored in its table's `id` column).
            pub const fn new(id: i64) -> Self {
                $name(id)
            }

            /// The integer value, as stored.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        /// The bare integer, as before the type existed.
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        /// Parses as an `i64` does, with its errors.
        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl Param for $name {
            fn value(&self) -> Value<'_> {
                Value::Int(self.0)
            }
        }

        impl Column for $name {
            fn from_value(value: Value<'_>) -> std::result::Result<Self, String> {
                i64::from_value(value).map($name)
            }
        }
    };
}

row_id!(
    /// `users.id` (also `grants.user_id`, `device_codes.user_id`, `sessions.user_id`).
    UserId
);

row_id!(
    /// `grants.id` (also `access_tokens.grant_id`, `refresh_tokens.grant_id`).
    GrantId
);

row_id!(
    /// `device_codes.id`: one device authorization request (RFC 8628 §3.1).
    DeviceCodeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_show_parse_and_serialise_as_their_integer() {
        let grant = GrantId::new(42);
        assert_eq!(grant.to_string(), "42");
        assert_eq!(format!("{:>4}", UserId::new(7)), "   7");
        assert_eq!("42".parse::<GrantId>(), Ok(grant));
        assert_eq!(
            "x".parse::<DeviceCodeId>().map_err(|e| e.to_string()),
            "x".parse::<i64>()
                .map(DeviceCodeId)
                .map_err(|e| e.to_string())
        );
        assert_eq!(serde_json::to_string(&grant).expect("serialises"), "42");
        assert_eq!(
            serde_json::json!({ "id": Some(UserId::new(-3)) }).to_string(),
            r#"{"id":-3}"#
        );
    }

    #[test]
    fn ids_bind_and_read_as_integers() {
        assert_eq!(UserId::new(5).value(), Value::Int(5));
        assert_eq!(Some(GrantId::new(6)).value(), Value::Int(6));
        assert_eq!(None::<GrantId>.value(), Value::Null);
        assert_eq!(DeviceCodeId::from_value(Value::Int(9)), Ok(DeviceCodeId(9)));
        assert_eq!(
            Option::<UserId>::from_value(Value::Null),
            Ok(None::<UserId>)
        );
        assert!(UserId::from_value(Value::Text("1")).is_err());
    }
}
