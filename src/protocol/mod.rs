//! OAuth decisions, kept apart from HTTP and SQL (STYLE §1, after oxide-auth and Dex).
//!
//! A protocol function takes plain values, the store and `now`, and returns a value or an
//! `Error`; only `api.rs` and `pages/` turn those into responses.

pub mod account;
pub mod approval;
pub mod authorize_limits;
pub mod claims;
pub mod client_auth;
pub mod device;
mod errors;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod network;
pub mod polls;
pub mod refresh;
pub mod resource;
pub mod scope;
pub mod sign_in;
pub mod token;
pub mod user_agent;

pub use errors::{oauth, Error, ErrorCode, OAuthError};

/// RFC 8628 §3.4: the device grant's `grant_type` URN.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 6749 §6.
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";

/// Lifetimes and intervals the protocol needs, derived from `Config`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub device_code_ttl: u64,
    pub poll_interval: u64,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    /// Seconds after a rotation in which the old refresh token is taken as a retry.
    pub refresh_grace: i64,
}

impl From<&crate::Config> for Settings {
    fn from(config: &crate::Config) -> Self {
        Settings {
            device_code_ttl: config.device_code_ttl,
            poll_interval: config.poll_interval,
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
            refresh_grace: i64::try_from(config.refresh_grace).unwrap_or(i64::MAX),
        }
    }
}
