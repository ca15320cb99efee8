use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.try_clone().unwrap()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // devicegate patch: reads fail with `TimedOut` past this instant, and each read waits at
    // most `deadline - now` (and at most `idle`): a total deadline, not a per-read timeout.
    deadline: Option<std::time::Instant>,
    idle: Option<std::time::Duration>,
    // devicegate patch: while `Pressure` is on, reads fail with `TimedOut` past this
    // earlier instant instead (see `set_squeeze`).
    squeeze: Option<(crate::util::Pressure, std::time::Instant)>,
    // devicegate patch: the write half of a plain connection never waits on the client
    // (`defer_writes`): what the socket does not take at once waits here, for the
    // connection's own thread to send (`flush_pending`), within `flush_within`.
    deferred: bool,
    pending: Vec<u8>,
    dead: bool,
    flush_within: std::time::Duration,
}

/// devicegate patch: the longest any wait on a client (a read under pressure, a flush of
/// pending output, a connection waiting for its previous answer) goes before it looks
/// again at what could end it early: pressure on the pool, or the server closing.
pub(crate) const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// devicegate patch: the send timeout of a plain connection outside `flush_pending`. A
/// worker's write waits at most this long for room in the socket's buffer (only ever when
/// it is full), then leaves the rest in `pending`. Set once per connection, at accept.
const NO_WAIT: std::time::Duration = std::time::Duration::from_millis(1);
/// devicegate patch: the most output a connection may have waiting for its client; past it
/// the client is not reading, and the connection is closed.
pub(crate) const MAX_PENDING: usize = 256 * 1024;

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            deadline: None,
            idle: None,
            squeeze: None,
            deferred: false,
            pending: Vec::new(),
            dead: false,
            flush_within: std::time::Duration::ZERO,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            deadline: None,
            idle: None,
            squeeze: None,
            deferred: false,
            pending: Vec::new(),
            dead: false,
            flush_within: std::time::Duration::ZERO,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// devicegate patch: the plain connection underneath, for waiting between requests
    /// (None over TLS, whose buffered bytes a poller cannot see).
    pub(crate) fn plain(&self) -> Option<&Connection> {
        match &self.stream {
            Stream::Http(connection) => Some(connection),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }
}

impl RefinedTcpStream {
    /// devicegate patch: from now on every read ends by `deadline` (None: no deadline, the
    /// socket's own timeout applies), and waits at most `idle` for bytes to arrive; no
    /// squeeze until `set_squeeze`. Plain connections only; over TLS this does nothing.
    pub(crate) fn set_deadline(
        &mut self,
        deadline: Option<std::time::Instant>,
        idle: Option<std::time::Duration>,
    ) {
        self.deadline = deadline;
        self.idle = idle;
        self.squeeze = None;
    }

    /// devicegate patch: while `pressure` is on (connections wait for a thread), reads end
    /// by `early` rather than the deadline, and a read that blocks looks at the pressure
    /// every `RECHECK_EVERY`. None: the deadline alone applies.
    pub(crate) fn set_squeeze(
        &mut self,
        squeeze: Option<(crate::util::Pressure, std::time::Instant)>,
    ) {
        self.squeeze = squeeze;
    }

    /// devicegate patch: gives the socket a read timeout of what is left before the deadline
    /// (one `setsockopt`, only when a read is about to block: buffered bytes never get here).
    fn arm_deadline(&self) -> IoResult<()> {
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => return Ok(()),
        };
        let now = std::time::Instant::now();
        let left = deadline.saturating_duration_since(now);
        let squeezed = match &self.squeeze {
            Some((pressure, early)) if pressure.on() => Some(early.saturating_duration_since(now)),
            _ => None,
        };
        if left.is_zero() || squeezed.is_some_and(|left| left.is_zero()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "deadline passed",
            ));
        }
        let mut wait = match self.idle {
            Some(idle) if idle < left => idle,
            _ => left,
        };
        if self.squeeze.is_some() {
            wait = wait.min(RECHECK_EVERY);
        }
        match &self.stream {
            Stream::Http(connection) => connection.set_read_timeout(Some(wait)),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
    }
}

/// devicegate patch: deferred writes (patch 16).
impl RefinedTcpStream {
    /// From now on, writes never wait on the client for more than `NO_WAIT` (the socket's
    /// send timeout, set here once): output the socket does not take is kept, up to
    /// `MAX_PENDING` bytes, for `flush_pending`. The socket's previous send timeout (the
    /// server's io-timeout) becomes the time `flush_pending` may take, or `fallback` if it
    /// had none. Plain connections only; over TLS writes keep upstream's behaviour.
    pub(crate) fn defer_writes(&mut self, fallback: std::time::Duration) {
        let connection = match &self.stream {
            Stream::Http(connection) => connection,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => return,
        };
        let within = match connection.write_timeout() {
            Ok(Some(timeout)) => timeout,
            _ => fallback,
        };
        if connection.set_write_timeout(Some(NO_WAIT)).is_ok() {
            self.deferred = true;
            self.flush_within = within;
        }
    }

    /// Sends the output kept by `write`, waiting for the client on this (the connection's)
    /// thread up to `within` (None: the socket's io-timeout), and giving up early when
    /// `closing` says so. On failure the connection is dead and shut down. Costs nothing
    /// when nothing is pending.
    pub(crate) fn flush_pending(
        &mut self,
        within: Option<std::time::Duration>,
        closing: &dyn Fn() -> bool,
    ) -> IoResult<()> {
        use std::io::{Error, ErrorKind};
        if self.dead {
            return Err(Error::new(ErrorKind::BrokenPipe, "client does not read"));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + within.unwrap_or(self.flush_within);
        let mut sent = 0;
        let result = loop {
            if sent == self.pending.len() {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(Error::new(ErrorKind::TimedOut, "client does not read"));
            }
            if closing() {
                break Err(Error::new(ErrorKind::Interrupted, "given up"));
            }
            if let Err(e) = self.set_send_timeout(left.min(RECHECK_EVERY)) {
                break Err(e);
            }
            match self.stream.write(&self.pending[sent..]) {
                Ok(0) => break Err(Error::new(ErrorKind::WriteZero, "connection closed")),
                Ok(n) => sent += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = self.set_send_timeout(NO_WAIT);
        match result {
            Ok(()) => {
                self.pending.clear();
                self.pending.shrink_to(8192);
                Ok(())
            }
            Err(e) => {
                log::debug!(
                    "closing a connection whose client does not read its responses: {}",
                    e
                );
                self.die();
                Err(e)
            }
        }
    }

    fn set_send_timeout(&self, timeout: std::time::Duration) -> IoResult<()> {
        match &self.stream {
            Stream::Http(connection) => connection.set_write_timeout(Some(timeout)),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
    }

    /// Drops the pending output and shuts the connection down (its thread then sees the end
    /// of the stream, a parked one its poller too); later writes fail with `BrokenPipe`.
    fn die(&mut self) {
        self.dead = true;
        self.pending = Vec::new();
        self.stream.shutdown(Shutdown::Both).ok();
    }

    /// Keeps `rest` for `flush_pending`, unless that would exceed `MAX_PENDING`.
    fn keep(&mut self, rest: &[u8]) -> IoResult<()> {
        if self.pending.len() + rest.len() > MAX_PENDING {
            log::debug!(
                "closing a connection whose client does not read its responses: over {} bytes pending",
                MAX_PENDING
            );
            self.die();
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client does not read",
            ));
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            self.arm_deadline()?;
            // devicegate patch: a socket timeout reads as `WouldBlock` on Unix; past a
            // deadline it is a timeout, whatever the platform calls it. Under a squeeze the
            // wait is cut into `RECHECK_EVERY` steps: a step that ends before the deadline
            // (and the early one, if pressure came on) waits again.
            match self.stream.read(buf) {
                Err(e)
                    if self.squeeze.is_some()
                        && self.deadline.is_some()
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    continue
                }
                Err(e) if self.deadline.is_some() && e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "read timed out",
                    ))
                }
                other => return other,
            }
        }
    }
}

impl Write for RefinedTcpStream {
    /// devicegate patch: with `defer_writes`, never waits on the client (beyond `NO_WAIT`
    /// when its buffers are full): what the socket does not take is kept for the
    /// connection's thread, and the write reports success. Upstream blocked the worker for
    /// as long as a client that does not read liked (up to the send timeout per write).
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        use std::io::ErrorKind;
        if !self.deferred {
            return self.stream.write(buf);
        }
        if self.dead {
            return Err(std::io::Error::new(
                ErrorKind::BrokenPipe,
                "client does not read",
            ));
        }
        if !self.pending.is_empty() {
            // Behind earlier output: in order, after it.
            self.keep(buf)?;
            return Ok(buf.len());
        }
        match self.stream.write(buf) {
            Ok(n) => {
                if n < buf.len() {
                    self.keep(&buf[n..])?;
                }
                Ok(buf.len())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                self.keep(buf)?;
                Ok(buf.len())
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        if self.dead {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client does not read",
            ));
        }
        self.stream.flush()
    }
}
