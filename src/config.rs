//! The server's configuration: one struct, every default listed in `Default`.
//! The CLI (`cli/`) fills it from flags over `DEVICEGATE_*` variables over these defaults;
//! `validate()` reports every problem at once so an operator fixes them in one go.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

pub const DEFAULT_DB: &str = "devicegate.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Worker threads per CPU core (see `default_workers`), and never fewer than the minimum.
const WORKERS_PER_CORE: usize = 2;
const MIN_DEFAULT_WORKERS: usize = 4;
/// RFC 8628 §3.2 leaves `expires_in` to us; Campus uses 600 s.
pub const DEFAULT_DEVICE_CODE_TTL: u64 = 600;
/// RFC 8628 §3.2: clients fall back to 5 s when `interval` is absent; we always send it.
pub const DEFAULT_POLL_INTERVAL: u64 = 5;
pub const DEFAULT_ACCESS_TOKEN_TTL: u64 = 3600;
pub const DEFAULT_REFRESH_TOKEN_TTL: u64 = 30 * 24 * 3600;
/// RFC 9700 §4.14.2 wants strict rotation, where a second presentation of a rotated
/// refresh token revokes the grant. Independent programs on one device (shell prompts,
/// `make -j`, editor plug-ins, credential helpers) race to refresh the same token within
/// moments of each other, and strict rotation logs that device out. A few seconds of grace
/// (`protocol::refresh`: the retry gets its own pair, the pair already out stays valid, at
/// most `MAX_GRACE_RETRIES`) absorbs that race while a replay later than this is still
/// reuse.
pub const DEFAULT_REFRESH_GRACE: u64 = 5;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_SWEEP_INTERVAL: u64 = 60;
pub const DEFAULT_IO_TIMEOUT: u64 = 10;
/// RFC 9110 §15.5.9 leaves the wait to us: a phone on a poor connection sends a head of a
/// few hundred bytes well within 10 s.
pub const DEFAULT_HEAD_TIMEOUT: u64 = 10;
/// Bodies are at most 64 KiB (`http::MAX_BODY`), a form or a JSON object in practice.
pub const DEFAULT_BODY_TIMEOUT: u64 = 10;
/// A classroom behind one NAT: 30 people × (a browser's 6 connections + 2 devices), rounded
/// up. Connection threads are sized so that 64 always remain for other addresses.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Each connection an address may hold can take a connection thread; more than this many
/// threads for one address is never what an operator wants.
const MAX_CONNECTIONS_PER_IP_LIMIT: usize = 4096;
pub const DEFAULT_SHUTDOWN_GRACE: u64 = 1;
/// Device authorizations per minute (and burst) from one address or IPv6 /64: a classroom
/// of 60 behind one NAT each starting two logins within the minute.
pub const DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS: u32 = 120;
/// Device authorizations per minute (and burst) for one client across all addresses: ten
/// addresses' worth of the per-address limit; bounds the growth of the shared `guest`.
pub const DEFAULT_AUTHORIZE_LIMIT_PER_CLIENT: u32 = 1200;
/// The most either authorize limit may be set to (per minute).
pub const MAX_AUTHORIZE_LIMIT: u32 = 1_000_000;
/// Password verifications (argon2id, 19 MiB each) running at once: the CPU cores, at
/// least 2 and at most 4 (see `default_password_hash_concurrency`).
const MIN_PASSWORD_HASHES: usize = 2;
const MAX_DEFAULT_PASSWORD_HASHES: usize = 4;
pub const DEFAULT_PASSWORD_HASH_WAIT_MS: u64 = 2000;
pub const DEFAULT_LIMIT_WINDOW: u64 = 600;
pub const DEFAULT_SIGN_IN_FAILURES_PER_NAME_ADDRESS: u32 = 5;
pub const DEFAULT_SIGN_IN_FAILURES_PER_ADDRESS: u32 = 30;
pub const DEFAULT_SIGN_IN_BACKOFF_AFTER: u32 = 5;
pub const DEFAULT_SIGN_IN_BACKOFF: u64 = 5;
pub const DEFAULT_CODE_FAILURES_PER_ACCOUNT: u32 = 5;
pub const DEFAULT_CODE_FAILURES_PER_ADDRESS: u32 = 50;
pub const DEFAULT_SITE_NAME: &str = "devicegate";
/// A rotated-in signing key is published a day before it signs: verifiers that cache the
/// JWKS (up to its `max-age`, at most an hour) or refetch it daily know it by then.
pub const DEFAULT_KEY_ROTATION_DELAY: u64 = 86_400;
/// The longest `--key-rotation-delay`: 30 days.
pub const MAX_KEY_ROTATION_DELAY: u64 = 30 * 86_400;
/// The `--device-code-ttl` values allowed, in seconds, server-wide and per client.
pub const DEVICE_CODE_TTL_RANGE: RangeInclusive<u64> = 60..=86_400;
/// The `--poll-interval` values allowed, in seconds, server-wide and per client.
pub const POLL_INTERVAL_RANGE: RangeInclusive<u64> = 1..=60;
/// RS256 signatures (a few ms of CPU each) running at once; a burst of redemptions beyond
/// it waits or gets 503, so polls keep their workers.
pub const DEFAULT_SIGNING_CONCURRENCY: usize = 2;
pub const DEFAULT_SIGNING_WAIT_MS: u64 = 1000;
/// Longest `--site-name` and `--help-text`, in characters: a header line and a paragraph.
pub const MAX_SITE_NAME_CHARS: usize = 60;
pub const MAX_HELP_TEXT_CHARS: usize = 500;

#[derive(Clone)]
pub struct Config {
    /// The SQLite file. Default: `./devicegate.db`.
    pub db_path: PathBuf,
    /// Address to listen on. Default: `127.0.0.1:8080`.
    pub listen: String,
    /// Public base URL put in every URL we hand out, exactly as given.
    /// Default: `http://` + the bound listen address.
    pub issuer: Option<String>,
    /// Worker threads, each with its own database connection. Default: `default_workers()`,
    /// twice the CPU cores, at least 4.
    pub workers: usize,
    /// Seconds a device code stays valid. Default: 600.
    pub device_code_ttl: u64,
    /// Seconds a device must wait between polls. Default: 5.
    pub poll_interval: u64,
    /// Seconds an access token lives. Default: 3600.
    pub access_token_ttl: u64,
    /// Seconds a refresh token lives. Default: 2592000 (30 days).
    pub refresh_token_ttl: u64,
    /// Seconds after a refresh in which presenting the old refresh token again counts as a
    /// retry (new tokens) instead of reuse (grant revoked); 0 is strict RFC 9700 §4.14.2
    /// rotation. At most 300. Default: 5.
    pub refresh_grace: u64,
    /// `error`, `warn`, `info`, `debug` or `off`. Default: `info`.
    pub log_level: String,
    /// Allow an `http://` issuer on a non-loopback host (RFC 8628 §3.1 wants TLS). Default: false.
    pub allow_insecure_http: bool,
    /// Take the client IP from `X-Forwarded-For` and the scheme from `X-Forwarded-Proto`
    /// (only behind a reverse proxy that sets them). Default: false.
    pub trust_proxy: bool,
    /// Bearer token that `GET /metrics` requires; `None` turns metrics off. Default: off.
    pub metrics_token: Option<String>,
    /// Seconds a connection may stay silent: an idle keep-alive connection is closed after
    /// it, and it bounds every single read and write (a request stalled that long mid-way
    /// gets 408). Default: 10.
    pub io_timeout: u64,
    /// Seconds within which a request's line and header fields must arrive, counted from
    /// its first byte; past it: 408, connection closed. Default: 10.
    pub head_timeout: u64,
    /// Seconds within which a request's whole body (at most 64 KiB) must arrive, counted
    /// from the end of its head; past it: 408, connection closed. Default: 10.
    pub body_timeout: u64,
    /// The most connections one client address (IPv6: one /64) may hold open; a new one
    /// past it gets 503 with `Retry-After` and is closed. 0: no limit. Not applied with
    /// `trust_proxy` (every connection then comes from the proxy). Default: 256.
    pub max_connections_per_ip: usize,
    /// After SIGINT/SIGTERM, keep answering until no request has arrived for this many
    /// seconds (at most 10 s in all). Default: 1.
    pub shutdown_grace: u64,
    /// Seconds between sweeps of expired device codes. Default: 60.
    pub sweep_interval: u64,
    /// Device authorizations (RFC 8628 §3.1) one address (IPv6: one /64) may start per
    /// minute, in bursts of up to as many; past it: 429 `slow_down` with `Retry-After`.
    /// Default: 120.
    pub authorize_limit_per_address: u32,
    /// Device authorizations one client may start per minute across all addresses, in
    /// bursts of up to as many; past it: 429 `temporarily_unavailable` with `Retry-After`.
    /// Default: 1200.
    pub authorize_limit_per_client: u32,
    /// Password verifications that may run at once (each holds a reused 19 MiB buffer).
    /// Default: `default_password_hash_concurrency()`, the CPU cores, between 2 and 4.
    pub password_hash_concurrency: usize,
    /// Milliseconds a sign-in waits for a free password verification before it is answered
    /// 503 with `Retry-After`. Default: 2000.
    pub password_hash_wait_ms: u64,
    /// Seconds of the fixed window every brute-force counter counts failures in.
    /// Default: 600.
    pub limit_window: u64,
    /// Failed sign-ins for one user name from one address (IPv6: its /64) before that
    /// name is locked for that address (only) until the window closes. Default: 5.
    pub sign_in_failures_per_name_address: u32,
    /// Failed sign-ins from one address (IPv6: its /64), any names, before the address is
    /// locked until the window closes. Default: 30.
    pub sign_in_failures_per_address: u32,
    /// Failed sign-ins for one user name from all addresses before that name is slowed
    /// down (never locked): past it, an address that already failed for the name waits
    /// `sign_in_backoff` seconds per further attempt. Default: 5.
    pub sign_in_backoff_after: u32,
    /// Seconds between further sign-in attempts for a slowed-down name (see
    /// `sign_in_backoff_after`); also the longest wait it ever asks for. Default: 5.
    pub sign_in_backoff: u64,
    /// Wrong user codes one signed-in account may submit before it is locked until the
    /// window closes (RFC 8628 §5.1). Default: 5.
    pub code_failures_per_account: u32,
    /// Wrong user codes submitted from one address (IPv6: its /64), all accounts, before
    /// the address is locked until the window closes; sized for a classroom behind one NAT.
    /// Default: 50.
    pub code_failures_per_address: u32,
    /// The name in every page's header and title. Default: `devicegate`.
    pub site_name: String,
    /// Plain text shown under the sign-in form and on lock-out pages, e.g. who to ask for
    /// help (at most 500 characters; escaped, never HTML). Default: none.
    pub help_text: Option<String>,
    /// Seconds a signing key made by `devicegate key rotate` is only published (in the
    /// JWKS) before it signs; the JWKS's `Cache-Control: max-age` never exceeds it. At
    /// most 30 days. Default: 86400 (1 day).
    pub key_rotation_delay: u64,
    /// Token signatures (ID tokens, JWT access tokens) that may run at once; one token
    /// response holds one turn. Default: 2.
    pub signing_concurrency: usize,
    /// Milliseconds a token response waits for a signing turn before it is answered 503
    /// with `Retry-After` (0: at once). Default: 1000.
    pub signing_wait_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db_path: PathBuf::from(DEFAULT_DB),
            listen: DEFAULT_LISTEN.to_string(),
            issuer: None,
            workers: default_workers(),
            device_code_ttl: DEFAULT_DEVICE_CODE_TTL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            refresh_grace: DEFAULT_REFRESH_GRACE,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            allow_insecure_http: false,
            trust_proxy: false,
            metrics_token: None,
            io_timeout: DEFAULT_IO_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            authorize_limit_per_address: DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS,
            authorize_limit_per_client: DEFAULT_AUTHORIZE_LIMIT_PER_CLIENT,
            password_hash_concurrency: default_password_hash_concurrency(),
            password_hash_wait_ms: DEFAULT_PASSWORD_HASH_WAIT_MS,
            limit_window: DEFAULT_LIMIT_WINDOW,
            sign_in_failures_per_name_address: DEFAULT_SIGN_IN_FAILURES_PER_NAME_ADDRESS,
            sign_in_failures_per_address: DEFAULT_SIGN_IN_FAILURES_PER_ADDRESS,
            sign_in_backoff_after: DEFAULT_SIGN_IN_BACKOFF_AFTER,
            sign_in_backoff: DEFAULT_SIGN_IN_BACKOFF,
            code_failures_per_account: DEFAULT_CODE_FAILURES_PER_ACCOUNT,
            code_failures_per_address: DEFAULT_CODE_FAILURES_PER_ADDRESS,
            site_name: DEFAULT_SITE_NAME.to_string(),
            help_text: None,
            key_rotation_delay: DEFAULT_KEY_ROTATION_DELAY,
            signing_concurrency: DEFAULT_SIGNING_CONCURRENCY,
            signing_wait_ms: DEFAULT_SIGNING_WAIT_MS,
        }
    }
}

impl std::fmt::Debug for Config {
    // Written by hand so that a secret field added later is not printed by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db_path", &crate::store::describe(&self.db_path))
            .field("listen", &self.listen)
            .field("issuer", &self.issuer)
            .field("workers", &self.workers)
            .field("device_code_ttl", &self.device_code_ttl)
            .field("poll_interval", &self.poll_interval)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .field("log_level", &self.log_level)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("trust_proxy", &self.trust_proxy)
            .field("io_timeout", &self.io_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("password_hash_concurrency", &self.password_hash_concurrency)
            .field("password_hash_wait_ms", &self.password_hash_wait_ms)
            .field("limit_window", &self.limit_window)
            .field(
                "sign_in_failures_per_name_address",
                &self.sign_in_failures_per_name_address,
            )
            .field(
                "sign_in_failures_per_address",
                &self.sign_in_failures_per_address,
            )
            .field("sign_in_backoff_after", &self.sign_in_backoff_after)
            .field("sign_in_backoff", &self.sign_in_backoff)
            .field("code_failures_per_account", &self.code_failures_per_account)
            .field("code_failures_per_address", &self.code_failures_per_address)
            .field(
                "authorize_limit_per_address",
                &self.authorize_limit_per_address,
            )
            .field(
                "authorize_limit_per_client",
                &self.authorize_limit_per_client,
            )
            .field("site_name", &self.site_name)
            .field("help_text", &self.help_text)
            .field("key_rotation_delay", &self.key_rotation_delay)
            .field("signing_concurrency", &self.signing_concurrency)
            .field("signing_wait_ms", &self.signing_wait_ms)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl Config {
    /// Every problem with this configuration, or `Ok` when there is none.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "--listen: `{}` is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        match (&self.issuer, self.listen.parse::<SocketAddr>()) {
            (Some(issuer), _) => {
                if let Err(problem) = check_issuer(issuer, self.allow_insecure_http) {
                    problems.push(format!("--issuer: {problem}"));
                }
            }
            // The derived issuer (http://<listen>) only makes sense on loopback: a phone
            // cannot open http://0.0.0.0:8080, and plain http elsewhere needs a decision.
            (None, Ok(addr)) if !addr.ip().is_loopback() => problems.push(format!(
                "--issuer: required when listening on {addr}; give the public URL people and \
                 devices use, e.g. https://auth.example.com"
            )),
            (None, _) => {}
        }
        let usize = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let mut within = |flag: &str, value: u64, range: RangeInclusive<u64>, unit: &str| {
            if !range.contains(&value) {
                problems.push(format!(
                    "{flag}: must be between {} and {}{unit}",
                    range.start(),
                    range.end()
                ));
            }
        };
        within("--workers", usize(self.workers), 1..=256, "");
        within(
            "--poll-interval",
            self.poll_interval,
            POLL_INTERVAL_RANGE,
            " seconds",
        );
        within(
            "--device-code-ttl",
            self.device_code_ttl,
            DEVICE_CODE_TTL_RANGE,
            " seconds",
        );
        within(
            "--access-token-ttl",
            self.access_token_ttl,
            60..=86_400,
            " seconds",
        );
        within(
            "--refresh-token-ttl",
            self.refresh_token_ttl,
            60..=366 * 86_400,
            " seconds",
        );
        within("--io-timeout", self.io_timeout, 1..=300, " seconds");
        within("--head-timeout", self.head_timeout, 1..=300, " seconds");
        within("--body-timeout", self.body_timeout, 1..=300, " seconds");
        let per_minute = 1..=u64::from(MAX_AUTHORIZE_LIMIT);
        for (flag, value) in [
            (
                "--authorize-limit-per-address",
                self.authorize_limit_per_address,
            ),
            (
                "--authorize-limit-per-client",
                self.authorize_limit_per_client,
            ),
        ] {
            within(flag, u64::from(value), per_minute.clone(), " a minute");
        }
        within(
            "--password-hash-concurrency",
            usize(self.password_hash_concurrency),
            1..=64,
            "",
        );
        within(
            "--password-hash-wait-ms",
            self.password_hash_wait_ms,
            1..=30_000,
            "",
        );
        within("--limit-window", self.limit_window, 10..=86_400, " seconds");
        within(
            "--key-rotation-delay",
            self.key_rotation_delay,
            0..=MAX_KEY_ROTATION_DELAY,
            " seconds",
        );
        within(
            "--signing-concurrency",
            usize(self.signing_concurrency),
            1..=64,
            "",
        );
        within("--signing-wait-ms", self.signing_wait_ms, 0..=30_000, "");
        for (flag, value) in [
            (
                "--sign-in-failures-per-name-address",
                self.sign_in_failures_per_name_address,
            ),
            (
                "--sign-in-failures-per-address",
                self.sign_in_failures_per_address,
            ),
            ("--sign-in-backoff-after", self.sign_in_backoff_after),
            (
                "--code-failures-per-account",
                self.code_failures_per_account,
            ),
            (
                "--code-failures-per-address",
                self.code_failures_per_address,
            ),
        ] {
            within(flag, u64::from(value), 1..=100_000, "");
        }
        within(
            "--sign-in-backoff",
            self.sign_in_backoff,
            1..=60,
            " seconds",
        );
        if self.refresh_grace > 300 {
            problems.push("--refresh-grace: at most 300 seconds".into());
        }
        if log_level_filter(&self.log_level).is_none() {
            problems.push(format!(
                "--log-level: `{}` is not one of off, error, warn, info, debug",
                self.log_level
            ));
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            problems.push("--metrics-token: use at least 16 characters".into());
        }
        if self.max_connections_per_ip > MAX_CONNECTIONS_PER_IP_LIMIT {
            problems.push(format!(
                "--max-connections-per-ip: at most {MAX_CONNECTIONS_PER_IP_LIMIT} (0: no limit)"
            ));
        }
        if self.shutdown_grace > 10 {
            problems.push("--shutdown-grace: at most 10 seconds".into());
        }
        for (flag, text, max) in [
            (
                "--site-name",
                Some(self.site_name.as_str()),
                MAX_SITE_NAME_CHARS,
            ),
            (
                "--help-text",
                self.help_text.as_deref(),
                MAX_HELP_TEXT_CHARS,
            ),
        ] {
            let Some(text) = text else { continue };
            if text.chars().count() > max || text.chars().any(crate::logging::needs_escape) {
                problems.push(format!(
                    "{flag}: plain text on one line, at most {max} characters"
                ));
            }
        }
        if self.site_name.trim().is_empty() {
            problems.push("--site-name: must not be empty".into());
        }
        if self.sweep_interval == 0 {
            problems.push("sweep interval must be at least 1 second".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Deployment mistakes around a reverse proxy that are legal but probably wrong, as
    /// sentences for warn-level log lines at start (empty when none):
    /// - an https issuer while listening on loopback without `trust_proxy`: a TLS proxy
    ///   in front, so every request seems to come from the proxy's address and the
    ///   per-address limits would count everyone as one;
    /// - `trust_proxy` while listening beyond loopback: whoever reaches the port directly
    ///   chooses their own `X-Forwarded-For`.
    pub fn proxy_warnings(&self, bound: SocketAddr, issuer: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        let loopback = bound.ip().is_loopback();
        if issuer_is_https(issuer) && loopback && !self.trust_proxy {
            warnings.push(format!(
                "the issuer is https but devicegate listens on {bound} without --trust-proxy: \
                 every person would share one address (the proxy's), so per-address limits \
                 would lump everyone together; pass --trust-proxy behind a reverse proxy"
            ));
        }
        if self.trust_proxy && !loopback {
            warnings.push(format!(
                "--trust-proxy while listening on {bound}: anyone who can reach {bound} can \
                 forge X-Forwarded-For (their address, per-address limits, the consent \
                 page's network check); listen on loopback behind the proxy, or let only the \
                 proxy reach this port"
            ));
        }
        warnings
    }

    /// The issuer: as configured, or `http://<bound address>` (so port 0 works in tests).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        match &self.issuer {
            Some(issuer) => issuer.clone(),
            None => format!("http://{bound}"),
        }
    }
}

pub fn log_level_filter(level: &str) -> Option<log::LevelFilter> {
    match level.to_ascii_lowercase().as_str() {
        "off" => Some(log::LevelFilter::Off),
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        _ => None,
    }
}

/// An issuer is an absolute http(s) URL without query or fragment (RFC 8414 §2).
/// Plain http is allowed only on loopback unless explicitly allowed (RFC 8628 §3.1).
fn check_issuer(issuer: &str, allow_insecure_http: bool) -> Result<(), String> {
    let (scheme, rest) = issuer
        .split_once("://")
        .ok_or_else(|| format!("`{issuer}` is not an absolute URL"))?;
    if issuer.contains(['?', '#']) || issuer.chars().any(char::is_whitespace) {
        return Err("must not contain a query, a fragment or spaces".into());
    }
    let host = url_host(rest);
    if host.is_empty() {
        return Err(format!("`{issuer}` has no host"));
    }
    if let Some(i) = rest.find('/') {
        check_issuer_path(&rest[i..])?;
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback_host(host) || allow_insecure_http => Ok(()),
        "http" => Err(format!(
            "plain http on `{host}` sends codes and tokens in the clear; use https, \
             or pass --allow-insecure-http for a trusted network"
        )),
        _ => Err(format!("scheme `{scheme}` is not http or https")),
    }
}

/// The issuer's path is where every route is served (`/sso` → `/sso/oauth/token`), so it
/// must reach us as written: non-empty segments of letters, digits and
/// `- . _ ~ ! $ & ' ( ) * + = : @`, no `.` or `..` (clients remove them, RFC 3986
/// §5.2.4), no percent-encoding (clients may write it differently). One trailing `/` is
/// allowed and ignored when building URLs (RFC 8414 §3.1 removes it too); the metadata's
/// `issuer` stays exactly as configured. A path that is itself a route (`/account`) is
/// refused: behind a proxy that strips it, `/account` would be both the route and the mount.
/// No `;` or `,` either: the path is also the session cookie's `Path`, where browsers cut
/// at `;` (RFC 6265 §4.1.1), so a cookie for `/a;b` would never come back to `/a;b/…`.
fn check_issuer_path(path: &str) -> Result<(), String> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+=:@".contains(c);
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() {
            return Err(format!("the path `{path}` has an empty segment (`//`)"));
        }
        if segment == "." || segment == ".." {
            return Err(format!("the path `{path}` has a `.` or `..` segment"));
        }
        if !segment.chars().all(allowed) {
            return Err(format!(
                "the path `{path}` may only hold letters, digits and - . _ ~ ! $ & ' ( ) * + \
                 = : @ between slashes (no percent-encoding; no `;` or `,`, which cookies \
                 cannot carry)"
            ));
        }
    }
    if crate::paths::is_route(trimmed) {
        return Err(format!(
            "the path `{path}` is one of devicegate's own routes; serve it under another path"
        ));
    }
    Ok(())
}

/// Twice the CPU cores, at least 4. Workers are busy on the CPU (SQLite reads are served
/// from the page cache; writes take turns), so more than that only adds contention: on 2
/// cores, 8 workers instead of 4 cost polls and pages 15–20% more CPU per request in the
/// benchmark (SQLite's shared-memory lock, context switches, one page cache per worker).
/// Twice rather than once, so a worker hashing a password (argon2, tens of ms) leaves
/// others to answer polls.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * WORKERS_PER_CORE).max(MIN_DEFAULT_WORKERS)
}

/// The CPU cores, at least 2 and at most 4: argon2 is CPU-bound, so more at once only
/// adds memory (19 MiB each) without answering sooner, and 2 keep one slow sign-in from
/// holding up everyone else's.
pub fn default_password_hash_concurrency() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.clamp(MIN_PASSWORD_HASHES, MAX_DEFAULT_PASSWORD_HASHES)
}

impl Config {
    /// The JWKS's `Cache-Control: max-age` (seconds): at most an hour, and never longer
    /// than `key_rotation_delay`, so a verifier's cached copy has every key that signs.
    pub fn jwks_max_age(&self) -> u64 {
        self.key_rotation_delay.min(3600)
    }

    /// Password verifications that really run at once: as configured, but always leaving
    /// at least one worker free of password work (with 1 worker: 1). A warning at start
    /// says when it was lowered.
    pub fn effective_password_hash_concurrency(&self) -> usize {
        self.password_hash_concurrency
            .min(self.workers.saturating_sub(1).max(1))
    }
}

/// The host of a URL with its scheme already removed (`host:port/path` or `[v6]:port/…`).
fn url_host(without_scheme: &str) -> &str {
    let authority = without_scheme.split('/').next().unwrap_or_default();
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// Is this a plain `http://` URL to a non-loopback host? RFC 8628 §3.1 wants TLS there;
/// the server's issuer check and the device-side client both ask this.
pub fn is_insecure_remote_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .is_some_and(|rest| !is_loopback_host(url_host(rest)))
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether session cookies get `Secure`: only when the issuer is https.
pub fn issuer_is_https(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = Config {
            listen: "nope".into(),
            workers: 0,
            poll_interval: 0,
            log_level: "loud".into(),
            ..Config::default()
        };
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn password_work_always_leaves_a_worker_free() {
        let config = |workers, password_hash_concurrency| Config {
            workers,
            password_hash_concurrency,
            ..Config::default()
        };
        assert_eq!(config(4, 2).effective_password_hash_concurrency(), 2);
        assert_eq!(config(2, 4).effective_password_hash_concurrency(), 1);
        assert_eq!(config(1, 2).effective_password_hash_concurrency(), 1);
        assert_eq!(config(8, 4).effective_password_hash_concurrency(), 4);
    }

    #[test]
    fn limits_and_the_password_pool_are_validated() {
        let config = Config {
            password_hash_concurrency: 0,
            password_hash_wait_ms: 0,
            limit_window: 5,
            sign_in_failures_per_name_address: 0,
            sign_in_backoff: 0,
            code_failures_per_address: 0,
            ..Config::default()
        };
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!((2..=4).contains(&default_password_hash_concurrency()));
    }

    #[test]
    fn signing_settings_are_bounded_and_the_jwks_cache_follows_the_rotation_delay() {
        let config = Config {
            key_rotation_delay: MAX_KEY_ROTATION_DELAY + 1,
            signing_concurrency: 0,
            signing_wait_ms: 30_001,
            ..Config::default()
        };
        assert_eq!(config.validate().expect_err("invalid").len(), 3);
        let quick = Config {
            key_rotation_delay: 0,
            signing_wait_ms: 0,
            ..Config::default()
        };
        assert!(quick.validate().is_ok());
        assert_eq!(quick.jwks_max_age(), 0);
        assert_eq!(Config::default().jwks_max_age(), 3600);
    }

    #[test]
    fn deadlines_and_the_connection_cap_are_bounded() {
        let config = Config {
            head_timeout: 0,
            body_timeout: 301,
            max_connections_per_ip: 5000,
            ..Config::default()
        };
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 3, "{problems:?}");
        let off = Config {
            max_connections_per_ip: 0,
            ..Config::default()
        };
        assert!(off.validate().is_ok(), "0 turns the cap off");
    }

    #[test]
    fn site_name_and_help_text_are_bounded_plain_text() {
        let config = Config {
            site_name: " ".into(),
            help_text: Some("x".repeat(MAX_HELP_TEXT_CHARS + 1)),
            ..Config::default()
        };
        let problems = config.validate().expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let config = Config {
            site_name: "x".repeat(MAX_SITE_NAME_CHARS + 1),
            help_text: Some("line\nbreak".into()),
            ..Config::default()
        };
        assert_eq!(config.validate().expect_err("invalid").len(), 2);
        let fine = Config {
            site_name: "Lincoln High".into(),
            help_text: Some("Ask Ms. Rivera in room 12 <she helps>".into()),
            ..Config::default()
        };
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn listening_beyond_loopback_needs_an_issuer() {
        let open = Config {
            listen: "0.0.0.0:8080".into(),
            ..Config::default()
        };
        assert!(open.validate().is_err());
        let named = Config {
            issuer: Some("https://auth.example.com".into()),
            ..open
        };
        assert!(named.validate().is_ok());
    }

    #[test]
    fn proxy_mistakes_are_warned_about() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let open: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let https = "https://auth.example.com";
        let plain = Config::default();
        let proxied = Config {
            trust_proxy: true,
            ..Config::default()
        };
        let warned = plain.proxy_warnings(loopback, https);
        assert_eq!(warned.len(), 1);
        assert!(warned[0].contains("pass --trust-proxy"), "{warned:?}");
        assert!(plain
            .proxy_warnings(loopback, "http://127.0.0.1:8080")
            .is_empty());
        assert!(plain.proxy_warnings(open, https).is_empty());
        assert!(proxied.proxy_warnings(loopback, https).is_empty());
        let warned = proxied.proxy_warnings(open, https);
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("anyone who can reach 0.0.0.0:8080 can forge X-Forwarded-For"),
            "{warned:?}"
        );
    }

    #[test]
    fn issuer_rules() {
        assert!(check_issuer("https://auth.example.com", false).is_ok());
        assert!(check_issuer("http://127.0.0.1:8080", false).is_ok());
        assert!(check_issuer("http://localhost:8080/base", false).is_ok());
        assert!(check_issuer("http://[::1]:8080", false).is_ok());
        assert!(check_issuer("http://192.168.1.5:8080", false).is_err());
        assert!(check_issuer("http://192.168.1.5:8080", true).is_ok());
        assert!(check_issuer("ftp://x", false).is_err());
        assert!(check_issuer("https://x/?a=b", false).is_err());
        assert!(check_issuer("https://x/#top", false).is_err());
        // Paths: served as written, a trailing slash ignored.
        assert!(check_issuer("https://x/auth/v1", false).is_ok());
        assert!(check_issuer("https://x/sso/", false).is_ok());
        assert!(check_issuer("https://x/", false).is_ok());
        for bad in [
            "https://x//sso",
            "https://x/sso//",
            "https://x/a/../b",
            "https://x/./a",
            "https://x/caf%C3%A9",
            "https://x/café",
            "https://x/oauth/device",
            "https://x/account/",
            "https://x/a;b",
            "https://x/a,b",
        ] {
            assert!(check_issuer(bad, false).is_err(), "{bad}");
        }
        assert!(check_issuer("example.com", false).is_err());
        assert!(is_insecure_remote_url("http://192.0.2.1:8080/x"));
        assert!(!is_insecure_remote_url("http://[::1]:8080"));
        assert!(!is_insecure_remote_url("https://auth.example.com"));
    }
}
