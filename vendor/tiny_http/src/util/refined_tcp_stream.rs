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
}

/// devicegate patch: while threads are scarce, the longest a read waits before looking at
/// the pressure again.
const SQUEEZE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

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
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            deadline: None,
            idle: None,
            squeeze: None,
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
    /// every `SQUEEZE_CHECK`. None: the deadline alone applies.
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
            Some((pressure, early)) if pressure.on() => {
                Some(early.saturating_duration_since(now))
            }
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
            wait = wait.min(SQUEEZE_CHECK);
        }
        match &self.stream {
            Stream::Http(connection) => connection.set_read_timeout(Some(wait)),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
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
            // wait is cut into `SQUEEZE_CHECK` steps: a step that ends before the deadline
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
                Err(e)
                    if self.deadline.is_some() && e.kind() == std::io::ErrorKind::WouldBlock =>
                {
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
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
