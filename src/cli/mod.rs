//! The command line: `serve`, and admin commands that work on the same database file
//! (safely while the server runs: SQLite's locking and our conditional updates see to it).

mod admin;
mod backup;
mod clients;
mod keys;
pub mod login;
mod users;
pub mod values;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::store::GrantId;

pub use admin::{missing_directory, run_admin};

#[derive(Debug, Parser)]
#[command(
    name = "devicegate",
    version,
    about = "Sign in on devices and CLIs with the OAuth 2.0 Device Authorization Grant (RFC 8628)"
)]
pub struct Cli {
    /// SQLite database file (`serve` creates it with mode 0600 when missing; other commands need it to exist), or a postgres:// URL (built with the `postgres` feature)
    #[arg(long, global = true, env = "DEVICEGATE_DB", default_value = config::DEFAULT_DB)]
    pub db: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server
    #[command(after_help = SETTINGS_HELP)]
    Serve(ServeArgs),
    /// Manage the people who sign in to approve devices
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients
    #[command(subcommand)]
    Client(ClientCommand),
    /// See and revoke approved device logins (grants)
    #[command(subcommand)]
    Grant(GrantCommand),
    /// See and rotate the OpenID Connect signing keys (the JWKS); private keys are never shown
    #[command(subcommand)]
    Key(KeyCommand),
    /// Approve a pending device request on behalf of a user
    Approve {
        /// The code the device shows, e.g. BCDF-GHJK (case, dashes and spaces do not matter)
        user_code: String,
        /// The user the device will act as
        #[arg(long)]
        user: String,
    },
    /// Deny a pending device request
    Deny {
        /// The code the device shows
        user_code: String,
    },
    /// List pending device requests: code, client, scopes, age, from where
    Pending {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database, safe while the server runs
    Backup {
        /// Where to write the copy
        file: PathBuf,
        /// Replace the file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Copy every row of one database into another, e.g. a SQLite file into PostgreSQL:
    /// users, clients, grants, tokens, signing keys, pending codes, sessions (stop the servers
    /// using the source first; the target is written in one transaction and verified by row counts)
    Migrate {
        /// The database to copy from: a SQLite file (or a postgres:// URL)
        #[arg(long)]
        from: PathBuf,
        /// The database to copy into: a postgres:// URL (or a SQLite file); it must hold no rows
        #[arg(long)]
        to: PathBuf,
        /// Replace the rows the target already holds
        #[arg(long)]
        force: bool,
    },
    /// Report configuration problems (all at once), whether the listen address can be bound, and the database's directory and integrity
    #[command(after_help = SETTINGS_HELP)]
    Check(CheckArgs),
    /// Sign in to a devicegate server from this device (the device side of the flow)
    Login(login::LoginArgs),
    /// Print the saved access token for a server, refreshing it first when it is about to
    /// expire (without asking the server whether it still accepts it: after a 401, use --refresh)
    Token {
        /// The server's base URL [default: the only saved server]
        #[arg(long, env = "DEVICEGATE_SERVER")]
        server: Option<String>,
        /// Refresh now, whatever the expiry says (after a resource server answered 401)
        #[arg(long)]
        refresh: bool,
    },
    /// Lift sign-in and code-entry locks for a user name or an address (IPv6: its /64)
    Unlock {
        /// A user name, or an IP address
        target: String,
    },
    /// Revoke this device's tokens at the server and forget them
    Logout {
        /// The server's base URL [default: the only saved server]
        #[arg(long, env = "DEVICEGATE_SERVER")]
        server: Option<String>,
    },
    /// Show the servers this device is signed in to: user, client, scopes, token expiry
    Status {
        /// Only this server
        #[arg(long, env = "DEVICEGATE_SERVER")]
        server: Option<String>,
        /// Print JSON: {"servers": [{"server", "client_id", "user", "scope", "access_token_expires_at", "access_token_expired", "can_refresh", "state", "checked"}]}
        #[arg(long)]
        json: bool,
        /// Do not ask the servers whether they still accept the saved login
        #[arg(long)]
        offline: bool,
    },
}

/// How values are spelled, under `serve --help` and `check --help`.
const SETTINGS_HELP: &str = "Durations take units: 90s, 15m, 1h, 30d, 1h30m (a bare number is \
seconds; milliseconds for --password-hash-wait-ms). Booleans from the environment: 1/0, \
true/false, yes/no, on/off (empty: off). Secrets can come from a file: DEVICEGATE_METRICS_TOKEN_FILE.";

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "DEVICEGATE_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: String,
    /// Public base URL used in every URL handed out [default: http://<listen>]
    #[arg(long, env = "DEVICEGATE_ISSUER")]
    pub issuer: Option<String>,
    /// Worker threads, each with its own database connection [default: twice the CPU cores, at least 4]
    #[arg(long, env = "DEVICEGATE_WORKERS", default_value_t = config::default_workers(), hide_default_value = true)]
    pub workers: usize,
    /// Seconds a device code stays valid
    #[arg(long, env = "DEVICEGATE_DEVICE_CODE_TTL", value_parser = values::SECONDS, default_value_t = config::DEFAULT_DEVICE_CODE_TTL)]
    pub device_code_ttl: u64,
    /// Seconds a device must wait between polls
    #[arg(long, env = "DEVICEGATE_POLL_INTERVAL", value_parser = values::SECONDS, default_value_t = config::DEFAULT_POLL_INTERVAL)]
    pub poll_interval: u64,
    /// Seconds an access token lives
    #[arg(long, env = "DEVICEGATE_ACCESS_TOKEN_TTL", value_parser = values::SECONDS, default_value_t = config::DEFAULT_ACCESS_TOKEN_TTL)]
    pub access_token_ttl: u64,
    /// Seconds a refresh token lives
    #[arg(long, env = "DEVICEGATE_REFRESH_TOKEN_TTL", value_parser = values::SECONDS, default_value_t = config::DEFAULT_REFRESH_TOKEN_TTL)]
    pub refresh_token_ttl: u64,
    /// Seconds after a refresh in which the old refresh token counts as a retry, not reuse
    #[arg(long, env = "DEVICEGATE_REFRESH_GRACE", value_parser = values::SECONDS, default_value_t = config::DEFAULT_REFRESH_GRACE)]
    pub refresh_grace: u64,
    /// Behind a reverse proxy: take the client IP from X-Forwarded-For and the scheme from X-Forwarded-Proto
    #[arg(long, env = "DEVICEGATE_TRUST_PROXY", value_parser = values::BOOLEAN)]
    pub trust_proxy: bool,
    /// Serve GET /metrics to callers presenting this bearer token [default: metrics off]
    #[arg(long, env = "DEVICEGATE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Read the metrics bearer token from this file (at most 4 KiB; whitespace at either end is dropped); not together with --metrics-token
    #[arg(long, env = "DEVICEGATE_METRICS_TOKEN_FILE", value_name = "PATH", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub metrics_token_file: Option<std::ffi::OsString>,
    /// Seconds a connection may stay silent (an idle keep-alive connection, or a stall within any one read or write) before it is closed
    #[arg(long, env = "DEVICEGATE_IO_TIMEOUT", value_parser = values::SECONDS, default_value_t = config::DEFAULT_IO_TIMEOUT)]
    pub io_timeout: u64,
    /// Seconds within which a request's line and headers must arrive (else 408 and close)
    #[arg(long, env = "DEVICEGATE_HEAD_TIMEOUT", value_parser = values::SECONDS, default_value_t = config::DEFAULT_HEAD_TIMEOUT)]
    pub head_timeout: u64,
    /// Seconds within which a request's body must arrive after its headers (else 408 and close)
    #[arg(long, env = "DEVICEGATE_BODY_TIMEOUT", value_parser = values::SECONDS, default_value_t = config::DEFAULT_BODY_TIMEOUT)]
    pub body_timeout: u64,
    /// The most connections one client address (IPv6: one /64) may hold open; past it, 503 and close (0: no limit; not applied with --trust-proxy)
    #[arg(long, env = "DEVICEGATE_MAX_CONNECTIONS_PER_IP", default_value_t = config::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// After SIGINT/SIGTERM, keep answering until no request has arrived for this many seconds (at most 10)
    #[arg(long, env = "DEVICEGATE_SHUTDOWN_GRACE", value_parser = values::SECONDS, default_value_t = config::DEFAULT_SHUTDOWN_GRACE)]
    pub shutdown_grace: u64,
    /// Device authorizations one address (IPv6: one /64) may start per minute, in bursts of up to as many (then 429)
    #[arg(long, env = "DEVICEGATE_AUTHORIZE_LIMIT_PER_ADDRESS", default_value_t = config::DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS)]
    pub authorize_limit_per_address: u32,
    /// Device authorizations one client may start per minute from all addresses together, in bursts of up to as many (then 429)
    #[arg(long, env = "DEVICEGATE_AUTHORIZE_LIMIT_PER_CLIENT", default_value_t = config::DEFAULT_AUTHORIZE_LIMIT_PER_CLIENT)]
    pub authorize_limit_per_client: u32,
    /// Password verifications running at once (19 MiB each) [default: CPU cores, 2 to 4]
    #[arg(long, env = "DEVICEGATE_PASSWORD_HASH_CONCURRENCY", default_value_t = config::default_password_hash_concurrency(), hide_default_value = true)]
    pub password_hash_concurrency: usize,
    /// Milliseconds a sign-in waits for a free password verification before a 503
    #[arg(long, env = "DEVICEGATE_PASSWORD_HASH_WAIT_MS", value_parser = values::MILLISECONDS, default_value_t = config::DEFAULT_PASSWORD_HASH_WAIT_MS)]
    pub password_hash_wait_ms: u64,
    /// Seconds of the window that sign-in and code-entry failures are counted in
    #[arg(long, env = "DEVICEGATE_LIMIT_WINDOW", value_parser = values::SECONDS, default_value_t = config::DEFAULT_LIMIT_WINDOW)]
    pub limit_window: u64,
    /// Failed sign-ins for one name from one address (IPv6: /64) before that pair is locked
    #[arg(long, env = "DEVICEGATE_SIGN_IN_FAILURES_PER_NAME_ADDRESS", default_value_t = config::DEFAULT_SIGN_IN_FAILURES_PER_NAME_ADDRESS)]
    pub sign_in_failures_per_name_address: u32,
    /// Failed sign-ins from one address (IPv6: /64), any names, before the address is locked
    #[arg(long, env = "DEVICEGATE_SIGN_IN_FAILURES_PER_ADDRESS", default_value_t = config::DEFAULT_SIGN_IN_FAILURES_PER_ADDRESS)]
    pub sign_in_failures_per_address: u32,
    /// Failed sign-ins for one name from all addresses before that name is slowed down (never locked)
    #[arg(long, env = "DEVICEGATE_SIGN_IN_BACKOFF_AFTER", default_value_t = config::DEFAULT_SIGN_IN_BACKOFF_AFTER)]
    pub sign_in_backoff_after: u32,
    /// Seconds between further attempts for a slowed-down name (the longest wait asked)
    #[arg(long, env = "DEVICEGATE_SIGN_IN_BACKOFF", value_parser = values::SECONDS, default_value_t = config::DEFAULT_SIGN_IN_BACKOFF)]
    pub sign_in_backoff: u64,
    /// Wrong user codes one account may submit before it is locked for the window
    #[arg(long, env = "DEVICEGATE_CODE_FAILURES_PER_ACCOUNT", default_value_t = config::DEFAULT_CODE_FAILURES_PER_ACCOUNT)]
    pub code_failures_per_account: u32,
    /// Wrong user codes submitted from one address (IPv6: /64) before it is locked for the window
    #[arg(long, env = "DEVICEGATE_CODE_FAILURES_PER_ADDRESS", default_value_t = config::DEFAULT_CODE_FAILURES_PER_ADDRESS)]
    pub code_failures_per_address: u32,
    /// Log level: off, error, warn, info, debug
    #[arg(long, env = "DEVICEGATE_LOG_LEVEL", default_value = config::DEFAULT_LOG_LEVEL)]
    pub log_level: String,
    /// Allow an http:// issuer on a non-loopback host (codes and tokens then travel in clear)
    #[arg(long, env = "DEVICEGATE_ALLOW_INSECURE_HTTP", value_parser = values::BOOLEAN)]
    pub allow_insecure_http: bool,
    /// The name in every page's header and title
    #[arg(long, env = "DEVICEGATE_SITE_NAME", default_value = config::DEFAULT_SITE_NAME)]
    pub site_name: String,
    /// Plain text under the sign-in form and on lock-out pages, e.g. who to ask for help
    #[arg(long, env = "DEVICEGATE_HELP_TEXT")]
    pub help_text: Option<String>,
    /// Seconds a key made by `key rotate` is only published in the JWKS before it signs (at most 30d)
    #[arg(long, env = "DEVICEGATE_KEY_ROTATION_DELAY", value_parser = values::SECONDS, default_value_t = config::DEFAULT_KEY_ROTATION_DELAY)]
    pub key_rotation_delay: u64,
    /// Token signatures (ID tokens, JWT access tokens) running at once
    #[arg(long, env = "DEVICEGATE_SIGNING_CONCURRENCY", default_value_t = config::DEFAULT_SIGNING_CONCURRENCY)]
    pub signing_concurrency: usize,
    /// Milliseconds a token response waits for a signing turn before a 503 (0: at once)
    #[arg(long, env = "DEVICEGATE_SIGNING_WAIT_MS", value_parser = values::MILLISECONDS, default_value_t = config::DEFAULT_SIGNING_WAIT_MS)]
    pub signing_wait_ms: u64,
}

impl ServeArgs {
    /// The configuration these flags and variables describe, with secrets read from their
    /// `_FILE`s; `Err`: every problem reading them (`Config::validate` checks the rest).
    pub fn into_config(self, db_path: PathBuf) -> Result<Config, Vec<String>> {
        let (config, problems) = self.into_config_and_problems(db_path);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// As `into_config`, but the configuration comes back also when a secret could not be
    /// read (without that secret), so `check` can report every other problem too.
    pub fn into_config_and_problems(self, db_path: PathBuf) -> (Config, Vec<String>) {
        let mut problems = Vec::new();
        // Empty, as `Environment=DEVICEGATE_METRICS_TOKEN_FILE=` leaves it: unset.
        let metrics_token_file = self
            .metrics_token_file
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let metrics_token_file = &metrics_token_file;
        let metrics_token = match (self.metrics_token, metrics_token_file) {
            (Some(_), Some(_)) => {
                problems.push(
                    "DEVICEGATE_METRICS_TOKEN_FILE (--metrics-token-file) and \
                     DEVICEGATE_METRICS_TOKEN (--metrics-token) are both set; set one"
                        .to_string(),
                );
                None
            }
            (token, None) => token,
            (None, Some(path)) => match values::read_secret_file(path) {
                Ok(token) => Some(token),
                Err(e) => {
                    problems.push(format!(
                        "DEVICEGATE_METRICS_TOKEN_FILE (--metrics-token-file): {e}"
                    ));
                    None
                }
            },
        };
        let config = Config {
            db_path,
            listen: self.listen,
            issuer: self.issuer,
            workers: self.workers,
            device_code_ttl: self.device_code_ttl,
            poll_interval: self.poll_interval,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            refresh_grace: self.refresh_grace,
            log_level: self.log_level,
            allow_insecure_http: self.allow_insecure_http,
            trust_proxy: self.trust_proxy,
            metrics_token,
            io_timeout: self.io_timeout,
            head_timeout: self.head_timeout,
            body_timeout: self.body_timeout,
            max_connections_per_ip: self.max_connections_per_ip,
            shutdown_grace: self.shutdown_grace,
            authorize_limit_per_address: self.authorize_limit_per_address,
            authorize_limit_per_client: self.authorize_limit_per_client,
            password_hash_concurrency: self.password_hash_concurrency,
            password_hash_wait_ms: self.password_hash_wait_ms,
            limit_window: self.limit_window,
            sign_in_failures_per_name_address: self.sign_in_failures_per_name_address,
            sign_in_failures_per_address: self.sign_in_failures_per_address,
            sign_in_backoff_after: self.sign_in_backoff_after,
            sign_in_backoff: self.sign_in_backoff,
            code_failures_per_account: self.code_failures_per_account,
            code_failures_per_address: self.code_failures_per_address,
            // Empty, as `Environment=DEVICEGATE_SITE_NAME=` leaves it: the default.
            site_name: Some(self.site_name)
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| config::DEFAULT_SITE_NAME.to_string()),
            help_text: self.help_text.filter(|text| !text.trim().is_empty()),
            key_rotation_delay: self.key_rotation_delay,
            signing_concurrency: self.signing_concurrency,
            signing_wait_ms: self.signing_wait_ms,
            ..Config::default()
        };
        (config, problems)
    }
}

/// Problems named by their flag (`--poll-interval: …`, as `Config::validate` words them)
/// name the environment variable instead when that is where the value came from (set, and
/// the flag not on the command line): `DEVICEGATE_POLL_INTERVAL (--poll-interval): …`.
pub fn name_origins(problems: Vec<String>) -> Vec<String> {
    let command = serve_command();
    problems
        .into_iter()
        .map(|problem| {
            let Some((flag, rest)) = problem.split_once(':') else {
                return problem;
            };
            match env_behind(&command, flag) {
                Some((env, value)) if !value.is_empty() => format!("{env} ({flag}):{rest}"),
                _ => problem,
            }
        })
        .collect()
}

/// The environment variable a clap value error is about, when the value came from it (the
/// variable is set and the flag is not on the command line).
pub fn env_of_error(error: &clap::Error) -> Option<String> {
    // Our own parsers' errors begin with the variable (`DEVICEGATE_X: …`); clap's own
    // name the flag in their context.
    let message = error.to_string();
    let named = message
        .strip_prefix("error: ")
        .and_then(|m| m.split_once(':'))
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("DEVICEGATE_") && !name.contains(' '));
    if let Some(env) = named {
        return Some(env.to_string());
    }
    let invalid = match error.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let flag = invalid.split([' ', '=']).next()?;
    env_behind(&serve_command(), flag).map(|(env, _)| env)
}

/// `serve`'s flags, to look one up by name.
fn serve_command() -> clap::Command {
    <ServeArgs as Args>::augment_args(clap::Command::new("serve"))
}

/// Where `flag` (`--poll-interval`) of `command` got its value when not from the command
/// line: its environment variable and that variable's value, when the variable is set and
/// the flag is not on the command line.
fn env_behind(command: &clap::Command, flag: &str) -> Option<(String, std::ffi::OsString)> {
    let long = flag.strip_prefix("--")?;
    let env = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    let value = std::env::var_os(&env)?;
    let on_command_line = std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    (!on_command_line).then_some((env, value))
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is prompted for (or read from stdin's first line)
    Add {
        /// Login name
        name: String,
        /// Email address (OpenID Connect `email`, released with the `email` scope)
        #[arg(long)]
        email: Option<String>,
        /// Whether you vouch for the address (OpenID Connect `email_verified`): true|false [default: false]
        #[arg(long, value_parser = values::BOOLEAN, requires = "email")]
        email_verified: Option<bool>,
        /// Full name as shown to people (OpenID Connect `name`, released with the `profile` scope)
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Change a user's email address or display name; only what is given changes
    Edit {
        /// Login name
        name: String,
        /// A new email address (unverified unless --email-verified true comes with it)
        #[arg(long, conflicts_with = "no_email")]
        email: Option<String>,
        /// Remove the email address
        #[arg(long)]
        no_email: bool,
        /// Whether you vouch for the address (OpenID Connect `email_verified`): true|false
        #[arg(long, value_parser = values::BOOLEAN, conflicts_with = "no_email")]
        email_verified: Option<bool>,
        /// A new display name (OpenID Connect `name`)
        #[arg(long, conflicts_with = "no_display_name")]
        display_name: Option<String>,
        /// Remove the display name
        #[arg(long)]
        no_display_name: bool,
    },
    /// List users
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a user with all their grants and tokens
    Remove { name: String },
    /// Set a new password (prompted for, or stdin's first line); ends their browser sessions
    Passwd { name: String },
    /// Disable a user: they cannot sign in, and their tokens stop working
    Disable { name: String },
    /// Enable a disabled user again
    Enable { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its client_id (and secret, once, if confidential)
    Add {
        /// A human-readable name, shown on the consent page
        name: String,
        /// Choose the client_id (1–64 of A-Z a-z 0-9 - . _ ~) [default: from the name, plus a random suffix]
        #[arg(long)]
        id: Option<String>,
        /// Print client_id and client_secret as JSON
        #[arg(long)]
        json: bool,
        /// Give the client a secret (it must then authenticate)
        #[arg(long)]
        confidential: bool,
        /// Space-separated scopes the client may ask for
        #[arg(long, default_value = "read write")]
        scope: String,
        /// Space-separated grant types: device_code, refresh_token (none: a resource server)
        #[arg(long, default_value = "device_code refresh_token")]
        grant_types: String,
        /// Seconds this client's device codes live (or 10m, 1h) [default: the server's]
        #[arg(long, value_parser = values::SECONDS)]
        device_code_ttl: Option<u64>,
        /// Seconds this client's devices wait between polls (or 5s) [default: the server's]
        #[arg(long, value_parser = values::SECONDS)]
        poll_interval: Option<u64>,
        #[command(flatten)]
        tokens: ClientTokenArgs,
    },
    /// Change a client; only the settings given change
    Edit {
        client_id: String,
        /// A human-readable name, shown on the consent page
        #[arg(long)]
        name: Option<String>,
        /// Space-separated scopes the client may ask for
        #[arg(long)]
        scope: Option<String>,
        /// Space-separated grant types: device_code, refresh_token (none: a resource server)
        #[arg(long)]
        grant_types: Option<String>,
        /// Seconds this client's device codes live (or 10m, 1h; `default`: the server's)
        #[arg(long)]
        device_code_ttl: Option<String>,
        /// Seconds this client's devices wait between polls (or 5s; `default`: the server's)
        #[arg(long)]
        poll_interval: Option<String>,
        #[command(flatten)]
        tokens: ClientTokenArgs,
    },
    /// List clients
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show one client
    Show {
        client_id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a client with its pending requests, grants and tokens
    Remove { client_id: String },
    /// Give a confidential client a new secret (printed once); the old one stops working
    RotateSecret {
        client_id: String,
        /// Print client_id and client_secret as JSON
        #[arg(long)]
        json: bool,
    },
}

/// How a client's tokens look (OpenID Connect, RFC 9068); unset flags change nothing.
#[derive(Debug, Args)]
pub struct ClientTokenArgs {
    /// Access tokens as random strings (`opaque`) or signed RFC 9068 JWTs (`jwt`) [default: opaque]
    #[arg(long, value_name = "opaque|jwt")]
    pub access_token_format: Option<String>,
    /// A JWT access token's `aud` (`default`: the client_id) [default: the client_id]
    #[arg(long, value_name = "AUD")]
    pub access_token_audience: Option<String>,
    /// The algorithm that signs this client's ID tokens [default: RS256]
    #[arg(long, value_name = "RS256|EdDSA")]
    pub id_token_alg: Option<String>,
    /// Issue a refresh token only when the granted scope includes offline_access (new logins): true|false [default: false, always one]
    #[arg(long, value_parser = values::BOOLEAN)]
    pub refresh_requires_offline_access: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the signing keys: kid, algorithm, created, state (signing, next, superseded)
    List {
        /// Print JSON: [{"kid", "alg", "created_at", "state", "signs_from", "retire_after"}]
        #[arg(long)]
        json: bool,
        /// The server's --key-rotation-delay, to tell which key signs
        #[arg(long, env = "DEVICEGATE_KEY_ROTATION_DELAY", value_parser = values::SECONDS, default_value_t = config::DEFAULT_KEY_ROTATION_DELAY)]
        key_rotation_delay: u64,
    },
    /// Make a new key for each algorithm (or only --alg): in the JWKS at once, signing after the server's --key-rotation-delay
    Rotate {
        /// Only this algorithm: RS256 or EdDSA
        #[arg(long)]
        alg: Option<String>,
    },
    /// Retire a key now: it leaves the JWKS, and tokens it signed stop verifying (superseded keys are retired automatically once their tokens have expired)
    Retire {
        /// The key's kid, from `key list` (a kid may start with `-`: base64url)
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Retire it although tokens it signed may still be live, or it still signs (a compromised key)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List active grants (approved device logins)
    List {
        /// Only this user's grants
        #[arg(long)]
        user: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: its access and refresh tokens stop working at once
    Revoke {
        /// The grant's id, from `grant list`
        id: GrantId,
    },
}
