//! The listener and its worker threads. `Server::bind` opens the port and the database;
//! `run` serves until `shutdown` (or SIGINT/SIGTERM via the flag `main` registers).
//!
//! Workers are a fixed pool; each owns one SQLite connection and serves one request at a
//! time (no async runtime, no thread per request). A sweeper thread deletes expired codes.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::app::{App, Ctx};
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, Request, Response};
use crate::logging::printable;
use crate::metrics::METRICS;
use crate::protocol::authorize_limits::AuthorizeLimits;
use crate::protocol::polls::PollTracker;
use crate::protocol::Settings;
use crate::router;
use crate::store::{self, Store};

/// How often idle workers look at the shutdown flag.
const WAKE_EVERY: Duration = Duration::from_millis(100);
/// The longest a stopping server keeps answering requests that still arrive.
const MAX_DRAIN: Duration = Duration::from_secs(10);
/// Connection threads per worker (see `connection_limits`): 256 with 4 workers, so up to
/// 256 connections busy at once are read without taking turns.
const CONNECTION_THREADS_PER_WORKER: usize = 64;
/// How long a connection thread waits for a keep-alive connection's next request before
/// parking it: long enough for a browser's follow-up or a busy client, short enough that
/// a CLI polling every few seconds does not hold a thread between polls.
const CONNECTION_LINGER: Duration = Duration::from_millis(25);
/// Connection threads beyond what one address may hold (`--max-connections-per-ip`).
const OTHER_ADDRESSES_THREADS: usize = 64;

#[derive(Debug)]
pub enum Error {
    Bind(String),
    Store(store::Error),
    Config(Vec<String>),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bind(e) => write!(f, "cannot listen: {e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Config(problems) => write!(f, "invalid configuration: {}", problems.join("; ")),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

pub struct Server {
    http: Arc<tiny_http::Server>,
    app: Arc<App>,
    local_addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    /// Set when tiny_http's accept loop died; `run` then returns an error.
    listener_failed: Arc<AtomicBool>,
}

/// A handle to stop a running server (and to run the sweep on demand in tests).
#[derive(Clone)]
pub struct ServerHandle {
    shutdown: Arc<AtomicBool>,
    app: Arc<App>,
}

impl ServerHandle {
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// The flag `run` watches; `main` hands it to the signal handlers.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    pub fn sweep_now(&self) -> Result<usize, store::Error> {
        let store = Store::open(&self.app.config.db_path)?;
        self.app.sweep_expired(&store)
    }

    pub fn live_poll_states(&self) -> usize {
        self.app.polls.len()
    }
}

impl Server {
    pub fn bind(config: Config) -> Result<Server, Error> {
        Server::bind_with_clock(config, Clock::system())
    }

    /// As `bind`, with a chosen clock (tests move a manual one).
    pub fn bind_with_clock(config: Config, clock: Clock) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        // Bind first: a busy port must fail before anything is created (issue #13: the
        // first start's admin password was lost when the port was taken).
        let http = listen(&config)?;
        // Open once up front: creates the file, applies the schema, fails early.
        let store = Store::open(&config.db_path)?;
        crate::bootstrap::ensure_builtin_clients(&store, clock.now())?;
        // A first start makes the signing keys (an RSA key takes a moment); admin commands
        // never do.
        for kid in
            crate::keys::ensure_first_keys(&store, clock.now().secs()).map_err(|e| match e {
                crate::keys::KeyError::Store(e) => Error::Store(e),
                crate::keys::KeyError::Broken(detail) => {
                    Error::Store(store::Error::Internal(detail))
                }
            })?
        {
            log::info!("first start: made signing key {kid}");
        }
        let local_addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Bind("not an IP listener".into()))?;
        let issuer = config.issuer_for(local_addr);
        for warning in config.proxy_warnings(local_addr, &issuer) {
            log::warn!("{warning}");
        }
        // Waiting sign-ins hold workers too: leave at least one worker free of password
        // work, so health checks, polls and pages keep moving during a sign-in flood.
        let concurrency = config.effective_password_hash_concurrency();
        if concurrency < config.password_hash_concurrency {
            log::warn!(
                "--password-hash-concurrency {} lowered to {concurrency}: with {} workers, one \
                 must stay free of password work",
                config.password_hash_concurrency,
                config.workers
            );
        }
        let max_waiting = config.workers.saturating_sub(concurrency + 1);
        let passwords = crate::passwords::PasswordPool::new(
            concurrency,
            Duration::from_millis(config.password_hash_wait_ms),
            max_waiting,
        );
        // Signing turns wait like password turns, leaving a worker free for polls and pages.
        let signing_waiting = config
            .workers
            .saturating_sub(config.signing_concurrency.min(config.workers) + 1);
        let keys = crate::keys::KeyRing::new(
            config.key_rotation_delay,
            config.signing_concurrency,
            Duration::from_millis(config.signing_wait_ms),
            signing_waiting,
        );
        let app = App {
            keys,
            limits: crate::protocol::limits::Limits::from(&config),
            passwords,
            settings: Settings::from(&config),
            mounts: crate::paths::Mounts::from_issuer(&issuer),
            issuer,
            authorize_limits: AuthorizeLimits::new(
                config.authorize_limit_per_address,
                config.authorize_limit_per_client,
            ),
            config,
            clock,
            polls: PollTracker::default(),
        };
        Ok(Server {
            http: Arc::new(http),
            app: Arc::new(app),
            local_addr,
            shutdown: Arc::new(AtomicBool::new(false)),
            listener_failed: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn issuer(&self) -> &str {
        &self.app.issuer
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shutdown: Arc::clone(&self.shutdown),
            app: Arc::clone(&self.app),
        }
    }

    /// Serves until shutdown: in-flight requests finish, then the workers exit.
    pub fn run(self) -> Result<(), Error> {
        // One write turn and decision count for all of this server's connections.
        let shared = Arc::new(crate::store::Shared::default());
        let mut threads = Vec::new();
        for n in 0..self.app.config.workers {
            let store = Store::open_shared(&self.app.config.db_path, Arc::clone(&shared))?;
            let (http, app, shutdown, failed) = (
                Arc::clone(&self.http),
                Arc::clone(&self.app),
                Arc::clone(&self.shutdown),
                Arc::clone(&self.listener_failed),
            );
            let worker = thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || work(&http, &app, store, &shutdown, &failed))
                .map_err(|e| Error::Bind(format!("cannot start worker: {e}")))?;
            threads.push(worker);
        }
        let sweeper = {
            let store = Store::open_shared(&self.app.config.db_path, Arc::clone(&shared))?;
            let (app, shutdown) = (Arc::clone(&self.app), Arc::clone(&self.shutdown));
            thread::Builder::new()
                .name("sweeper".into())
                .spawn(move || sweep(&app, &store, &shutdown))
                .map_err(|e| Error::Bind(format!("cannot start sweeper: {e}")))?
        };
        threads.push(sweeper);
        // Joined as they finish. After a stop signal the drain takes at most `MAX_DRAIN`;
        // a thread still busy past that waits for a database that does not answer (a
        // stopped PostgreSQL process holds a query forever): the process exits without it
        // rather than outlive its stop timeout.
        let mut stopping_since: Option<Instant> = None;
        while !threads.is_empty() {
            let (done, busy): (Vec<_>, Vec<_>) = threads.into_iter().partition(|t| t.is_finished());
            for t in done {
                if t.join().is_err() {
                    log::error!("a server thread panicked");
                }
            }
            threads = busy;
            if self.shutdown.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if !threads.is_empty() && since.elapsed() > MAX_DRAIN + STOP_MARGIN {
                    log::error!(
                        "stopping with {} request(s) still waiting for the database",
                        threads.len()
                    );
                    break;
                }
            }
            if !threads.is_empty() {
                thread::sleep(WAKE_EVERY);
            }
        }
        if self.listener_failed.load(Ordering::SeqCst) {
            return Err(Error::Bind(
                "the listener stopped serving connections; restart the server".into(),
            ));
        }
        log::info!("stopped");
        Ok(())
    }
}

/// The HTTP side of a server: the listening socket and tiny_http with its connection
/// limits. Public so the benchmark's ceiling runs on exactly this.
pub fn listen(config: &Config) -> Result<tiny_http::Server, Error> {
    let timeout = Duration::from_secs(config.io_timeout);
    let listener = bind_listener(&config.listen, timeout).map_err(|e| {
        Error::Bind(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{}: address in use (another program, or devicegate already running, listens \
                 there); stop it or pass another --listen",
                config.listen
            ),
            _ => format!("{}: {e}", config.listen),
        })
    })?;
    tiny_http::Server::from_listener_with_limits(listener, None, connection_limits(config))
        .map_err(|e| Error::Bind(e.to_string()))
}

/// Threads that read requests off connections: enough that every worker always has requests
/// queued, bounded so that many clients cannot make the server start a thread each, and at
/// least `OTHER_ADDRESSES_THREADS` more than one address may hold connections, so that one
/// address never has them all. A quiet keep-alive connection waits in tiny_http's poller.
/// Each request, head and body, is read whole on those threads within its deadlines before
/// a worker sees it: a worker never waits on a client. See vendor/tiny_http/PATCHES.md.
fn connection_limits(config: &Config) -> tiny_http::ConnectionLimits {
    // Behind a proxy every connection comes from the proxy: the proxy limits per client.
    let per_ip = match config.max_connections_per_ip {
        0 => None,
        _ if config.trust_proxy => None,
        n => Some(n),
    };
    let per_worker = (config.workers * CONNECTION_THREADS_PER_WORKER).max(64);
    tiny_http::ConnectionLimits {
        max_threads: per_ip.map_or(per_worker, |n| per_worker.max(n + OTHER_ADDRESSES_THREADS)),
        linger: CONNECTION_LINGER,
        head_timeout: Duration::from_secs(config.head_timeout),
        body_timeout: Duration::from_secs(config.body_timeout),
        max_body: http::MAX_BODY,
        max_connections_per_ip: per_ip.unwrap_or(usize::MAX),
        error_body: Some(http::connection_error_body),
    }
}

/// The listening socket, with options that accepted connections inherit on Linux:
/// read/write timeouts (a silent keep-alive connection is closed after that time, and no
/// single read or write waits longer; the total for a request's head and body is bounded
/// by `--head-timeout` and `--body-timeout`) and `TCP_NODELAY` (a response over tiny_http's 8 KiB buffer leaves in
/// several writes; Nagle's algorithm would hold the last back ~40 ms on keep-alive
/// connections).
fn bind_listener(addr: &str, io_timeout: Duration) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_read_timeout(Some(io_timeout))?;
    socket.set_write_timeout(Some(io_timeout))?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn work(
    http: &tiny_http::Server,
    app: &App,
    mut store: Store,
    shutdown: &AtomicBool,
    listener_failed: &AtomicBool,
) {
    while !shutdown.load(Ordering::SeqCst) {
        match http.recv_timeout(WAKE_EVERY) {
            Ok(Some(rq)) => serve_one(rq, app, &mut store),
            Ok(None) => {}
            Err(e) => {
                // tiny_http's accept loop or its idle-connection poller has ended: no new
                // request will ever arrive.
                // Stop (exit status 1) so a supervisor restarts us, rather than linger deaf.
                log::error!("the listener failed ({e}); shutting down");
                listener_failed.store(true, Ordering::SeqCst);
                shutdown.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
    drain(http, app, &mut store);
}

/// After a stop signal: answer everything already queued, then whatever still arrives
/// (a request whose body was on its way when the signal came) until `shutdown_grace`
/// passes without one, and never longer than `MAX_DRAIN`.
fn drain(http: &tiny_http::Server, app: &App, store: &mut Store) {
    while let Ok(Some(rq)) = http.try_recv() {
        serve_one(rq, app, store);
    }
    let grace = Duration::from_secs(app.config.shutdown_grace);
    let deadline = Instant::now() + MAX_DRAIN;
    let mut last = Instant::now();
    while last.elapsed() < grace && Instant::now() < deadline {
        match http.recv_timeout(WAKE_EVERY) {
            Ok(Some(rq)) => {
                serve_one(rq, app, store);
                last = Instant::now();
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

fn serve_one(mut rq: tiny_http::Request, app: &App, store: &mut Store) {
    let started = Instant::now();
    let mut request = Request::read(&mut rq);
    if app.config.trust_proxy {
        request.apply_forwarded_headers();
    }
    let mut ctx = Ctx {
        store,
        app,
        now: app.clock.now(),
    };
    // Once per request: the answer and the metrics label come from the same resolution.
    let resolved = router::resolve_path(&app.mounts, &request.path);
    // A bug must cost one 500, never a worker thread.
    let response = catch_unwind(AssertUnwindSafe(|| {
        if request.host_missing_or_repeated {
            return http::missing_host();
        }
        router::route(&mut ctx, &request, &resolved)
    }))
    .unwrap_or_else(|_| {
        log::error!("handler panicked on {}", http::loggable_path(&request.path));
        Response::server_error()
    });
    let elapsed = started.elapsed();
    METRICS.record_request(resolved.label(), response.status, elapsed);
    // tiny_http admits only a token as the method and visible ASCII as the path (patch 9);
    // escaped all the same, as every piece of client text in a log line is.
    log::info!(
        "{} {} {} {}ms",
        printable(rq.method().as_str()),
        http::loggable_path(&request.path),
        response.status,
        elapsed.as_millis()
    );
    http::send(rq, response);
}

/// How much longer than the drain a stopping server waits for a busy thread.
const STOP_MARGIN: Duration = Duration::from_secs(2);

fn sweep(app: &App, store: &Store, shutdown: &AtomicBool) {
    let every = Duration::from_secs(app.config.sweep_interval);
    let mut last = Instant::now();
    while !shutdown.load(Ordering::SeqCst) {
        thread::sleep(WAKE_EVERY);
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        match app.sweep_expired(store) {
            Ok(0) => {}
            Ok(n) => log::debug!("swept {n} expired device codes"),
            Err(e) => log::warn!("sweep failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_timeouts_and_nodelay() {
        let timeout = Duration::from_secs(7);
        let listener = bind_listener("127.0.0.1:0", timeout).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert_eq!(accepted.read_timeout().expect("timeout"), Some(timeout));
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
