//! devicegate: an OAuth 2.0 Device Authorization Grant (RFC 8628) server on one SQLite file.
//!
//! A request flows: tiny_http → `server` → `http` → `router` → `api` (JSON) | `pages` (HTML)
//! → `protocol` (decisions) → `store` (all SQL) → SQLite (`schema.sql`).

pub mod api;
pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device_client;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod pages;
pub mod passwords;
pub mod paths;
pub mod pool;
pub mod protocol;
pub mod router;
pub mod secrets;
pub mod server;
pub mod session;
pub mod store;

pub use clock::{Clock, Timestamp};
pub use config::Config;
pub use server::{Server, ServerHandle};
