// devicegate patch: vendored third-party code; its old warnings are not ours to fix here.
#![allow(warnings, clippy::all)]
//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, HeaderValue, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod addresses;
mod client;
mod common;
mod connection;
mod framing;
mod parking;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // devicegate patch: where idle connections wait; closed with the server
    connections: Arc<Connections>,
}

/// devicegate patch: how many threads read connections, how long one of them waits on a
/// quiet keep-alive connection before parking it with the poller, and what a client may
/// send and hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The most threads reading requests at once. Connections beyond that wait their turn.
    pub max_threads: usize,
    /// How long a thread waits for a connection's next request before parking it.
    pub linger: Duration,
    /// The request line and header fields must arrive within this time of the request's
    /// first byte; past it: `408 Request Timeout`, connection closed. Default: 10 s.
    pub head_timeout: Duration,
    /// The whole body must arrive within this time of the end of the head; past it: 408,
    /// connection closed. The body is read before the request is handed out. Default: 10 s.
    pub body_timeout: Duration,
    /// The largest request body in bytes (`Content-Length` or chunked); larger: `413`,
    /// connection closed, the body not read. Default: 1 MiB.
    pub max_body: usize,
    /// The most connections one client address may hold open at once (IPv6 counted by
    /// /64); a new connection past it gets `503` with `Retry-After` and is closed.
    /// `usize::MAX`: no limit. Default: no limit.
    pub max_connections_per_ip: usize,
    /// The body of the responses a connection answers by itself (400, 408, 413, 414, 417,
    /// 431, 501, 503), from the status: `(content type, body)`. None: empty bodies.
    pub error_body: Option<fn(u16) -> (&'static str, Vec<u8>)>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_threads: 128,
            linger: Duration::from_millis(25),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            max_connections_per_ip: usize::MAX,
            error_body: None,
        }
    }
}

/// devicegate patch: the whole answer to a request refused before it reached a handler
/// (`status`, the body from `ConnectionLimits::error_body`, `Connection: close`; a 503 also
/// `Retry-After`, RFC 9110 §10.2.3). Written here rather than with `Response`, which
/// leaves out `Connection`.
pub(crate) fn refusal(status: u16, limits: &ConnectionLimits) -> Vec<u8> {
    let (content_type, body) = match limits.error_body {
        Some(error_body) => error_body(status),
        None => ("text/plain", Vec::new()),
    };
    let retry_after = if status == 503 {
        "Retry-After: 5\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {} {}\r\n{}Connection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        status,
        StatusCode(status).default_reason_phrase(),
        retry_after,
        content_type,
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// devicegate patch: what a new connection from an address over its limit is told (RFC 9110
/// §15.6.4) before it is closed.
fn refuse_crowded(connection: Connection, group: std::net::IpAddr, limits: &ConnectionLimits) {
    log::info!(
        "{} 503 over {} open connections from one address: refused, connection closed",
        group,
        limits.max_connections_per_ip
    );
    if let Connection::Tcp(mut stream) = connection {
        use std::io::{Read, Write};
        // Never wait on this client: what fits in the socket buffer is sent, what it has
        // already sent is read and dropped (a close with unread input resets the
        // connection, destroying the answer), then the connection is closed.
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(&refusal(503, limits));
        let _ = stream.shutdown(Shutdown::Write);
        let mut scratch = [0u8; 4096];
        for _ in 0..4 {
            match stream.read(&mut scratch) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// devicegate patch: connections are read by a bounded pool of threads; between requests a
/// quiet connection waits in `parking`, not on a thread.
struct Connections {
    pool: util::TaskPool,
    parking: parking::Parking,
    messages: Arc<MessagesQueue<Message>>,
    linger: Duration,
}

impl Connections {
    fn serve(self: &Arc<Self>, client: ClientConnection) {
        let connections = self.clone();
        let key = client
            .remote_addr()
            .map(|a| addresses::address_group(a.ip()));
        let mut client = Some(client);
        self.pool.spawn_for(
            key,
            Box::new(move || {
                if let Some(client) = client.take() {
                    connections.read_requests(client);
                }
            }),
        );
    }

    fn read_requests(&self, mut client: ClientConnection) {
        // Synchronization is needed for HTTPS requests to avoid a deadlock
        if client.secure() {
            let (sender, receiver) = mpsc::channel();
            for rq in client {
                self.messages
                    .push(rq.with_notify_sender(sender.clone()).into());
                receiver.recv().unwrap();
            }
            return;
        }
        loop {
            // With connections waiting for a thread, park at once: every connection gets
            // its turn.
            let linger = if self.pool.has_backlog() {
                Duration::ZERO
            } else {
                self.linger
            };
            let input = client.wait_for_input(linger);
            // devicegate patch (16): the previous answer handed over and sent, on this
            // thread, before the next request is read, the connection parked or closed.
            // A client that does not read its answers holds this thread (whose number per
            // address patch 13 bounds) until the io-timeout, never a worker; a parked
            // connection has nothing left to send.
            if !client.settle(&|| self.parking.is_closed()) {
                return;
            }
            match input {
                client::Input::Ready => match client.next() {
                    Some(rq) => self.messages.push(rq.into()),
                    None => return,
                },
                client::Input::Idle => return self.parking.park(client),
                client::Input::Closed => return,
            }
        }
    }
}

/// devicegate patch: accept errors that pass (the listener's own read timeout, a peer that
/// gave up, running out of descriptors for a moment) no longer end the accept loop for good.
fn accept_error_passes(e: &IoError) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    match e.kind() {
        IoErrorKind::WouldBlock
        | IoErrorKind::TimedOut
        | IoErrorKind::Interrupted
        | IoErrorKind::ConnectionAborted
        | IoErrorKind::ConnectionReset => true,
        _ => match e.raw_os_error() {
            Some(ENOMEM) | Some(ENFILE) | Some(EMFILE) | Some(ENOBUFS) => {
                log::error!("Error accepting new client, retrying: {}", e);
                thread::sleep(Duration::from_millis(100));
                true
            }
            _ => false,
        },
    }
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, ConnectionLimits::default())
    }

    /// devicegate patch: `from_listener`, with the connection threads bounded by `limits`.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: ConnectionLimits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let (parking, poll) = parking::Parking::new()?;
        let connections = Arc::new(Connections {
            pool: util::TaskPool::with_max_threads(limits.max_threads),
            parking,
            messages: messages.clone(),
            linger: limits.linger,
        });
        {
            let connections = connections.clone();
            thread::Builder::new()
                .name("idle-connections".into())
                .spawn(move || {
                    let served = connections
                        .parking
                        .run(poll, |client| connections.serve(client));
                    // Like a dead accept loop: tell `recv`, so the server can stop.
                    if let Err(e) = served {
                        log::error!("Error waiting for idle connections: {}", e);
                        connections.messages.push(e.into());
                    }
                })?;
        }

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        let addresses = addresses::Addresses::new(limits.max_connections_per_ip);
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                log::debug!("Running accept thread");
                while !inside_close_trigger.load(Relaxed) {
                    let new_client = match server.accept() {
                        Ok((sock, peer)) => {
                            use util::RefinedTcpStream;
                            // devicegate patch: one address holds at most so many.
                            let slot = match peer.map(|peer| addresses.admit(peer.ip())) {
                                Some(Ok(slot)) => slot,
                                Some(Err(group)) => {
                                    refuse_crowded(sock, group, &limits);
                                    continue;
                                }
                                None => None,
                            };
                            let (read_closable, write_closable) = match ssl {
                                None => RefinedTcpStream::new(sock),
                                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                                Some(ref ssl) => {
                                    // trying to apply SSL over the connection
                                    // if an error occurs, we just close the socket and resume listening
                                    let sock = match ssl.accept(sock) {
                                        Ok(s) => s,
                                        Err(_) => continue,
                                    };

                                    RefinedTcpStream::new(sock)
                                }
                                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                                Some(ref _ssl) => unreachable!(),
                            };

                            let mut client =
                                ClientConnection::new(write_closable, read_closable, limits, slot);
                            // devicegate patch: slow requests yield while threads are scarce.
                            client.set_pressure(inside_connections.pool.pressure());
                            Ok(client)
                        }
                        Err(e) => Err(e),
                    };

                    match new_client {
                        // A new connection gets a thread once its first bytes arrive, so a
                        // burst of silent connections costs none.
                        Ok(client) if !client.secure() => inside_connections.parking.park(client),
                        Ok(client) => inside_connections.serve(client),
                        Err(ref e) if accept_error_passes(e) => continue,
                        Err(e) => {
                            log::error!("Error accepting new client: {}", e);
                            inside_messages.push(e.into());
                            break;
                        }
                    }
                }
                log::debug!("Terminating accept thread");
            })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        self.connections.parking.close();
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
