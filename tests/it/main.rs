//! One integration-test binary: every test starts the real server on 127.0.0.1:0 with a
//! temporary SQLite file (`TestApp`) and talks HTTP to it. With `DEVICEGATE_TEST_DATABASE`
//! (and `--features postgres`) each server gets a fresh PostgreSQL database instead.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod admin;
mod browser;
mod cli;
mod device_authorization;
mod device_cli;
mod durability;
mod fuzz;
mod hostile_http;
mod http_details;
mod lifecycle;
mod metadata;
mod oauth2_client;
mod oidc_claims;
mod oidc_tokens;
mod operations;
mod operator_cli;
mod operator_hygiene;
mod pages;
mod pages_ux;
mod postgres_setup;
mod proxy_headers;
mod refresh_grace;
mod resilience;
mod response_headers;
mod scale_out;
mod schema_upgrades;
mod secrets_at_rest;
mod sign_in_limits;
mod store_conformance;
mod support;
mod token_polling;
mod typed_ids;
mod unauthenticated_writes;
