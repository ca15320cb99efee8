use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use crate::addresses::AddressSlot;
use crate::common::{HTTPVersion, Header};
use crate::framing::{self, Body, Failure, Phase};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{ConnectionLimits, Request};

/// devicegate patch: after refusing a request, how long the connection's unread input is
/// drained (at most `LINGER_CLOSE_BYTES`) before it is closed, so that closing with unread
/// bytes does not reset the connection and destroy the response before the client reads it
/// (RFC 9112 §9.6).
const LINGER_CLOSE: Duration = Duration::from_millis(1000);
const LINGER_CLOSE_BYTES: usize = 256 * 1024;
/// devicegate patch: while connections wait for a thread, how long a request's head, and
/// then its body, may take to arrive (instead of `head_timeout` / `body_timeout`). A person's
/// request arrives in one or two round trips; a connection trickling bytes gives its thread
/// up this soon, so trickling from many addresses cannot hold every thread.
const SQUEEZED_REQUEST: Duration = Duration::from_secs(1);

/// devicegate patch: how long the connection's thread waits for a slow client to take a
/// response when the socket had no send timeout to go by (devicegate sets its io-timeout).
const DEFAULT_FLUSH_WITHIN: Duration = Duration::from_secs(10);

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // devicegate patch: where requests are read from. Upstream handed each request's handler
    // this reader to read the body from, and built a new one for the next request; the body
    // is now read here, so one reader serves the whole connection.
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // devicegate patch: the socket's read timeout, read once (None: none, or over TLS)
    read_timeout: Option<Duration>,

    // devicegate patch: deadlines and the body limit
    limits: ConnectionLimits,

    // devicegate patch: this connection's place in its address's count; freed on drop,
    // whichever way the connection ends.
    _slot: Option<AddressSlot>,

    // devicegate patch: whether other connections wait for a thread (see `squeeze`).
    pressure: Option<crate::util::Pressure>,
}

/// devicegate patch: what a connection has for us between requests.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Bytes of the next request are buffered: read it now.
    Ready,
    /// Nothing arrived within the linger time: hand the connection to the poller.
    Idle,
    /// The peer closed, the connection failed, or no further request may come.
    Closed,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        mut write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: ConnectionLimits,
        slot: Option<AddressSlot>,
    ) -> ClientConnection {
        // devicegate patch: a peer gone before we asked has no address (upstream panicked
        // on the first request).
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let read_timeout = read_socket
            .plain()
            .and_then(|connection| connection.read_timeout().ok())
            .flatten();
        // devicegate patch: workers never wait on the client (patch 16); the connection's
        // thread sends what the socket did not take, within the io-timeout.
        write_socket.defer_writes(read_timeout.unwrap_or(DEFAULT_FLUSH_WITHIN));

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        // SequentialReaderBuilder::next always yields a reader.
        let first_header = source.next().unwrap();

        ClientConnection {
            // devicegate patch: room for a whole page (headers and body) so a response
            // leaves in one send, not one for the headers and one for the body.
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(8192, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            read_timeout,
            limits,
            _slot: slot,
            pressure: None,
        }
    }

    /// devicegate patch: from now on, while `pressure` is on, this connection's request head
    /// and body must each arrive within `SQUEEZED_REQUEST` rather than their deadlines.
    pub(crate) fn set_pressure(&mut self, pressure: crate::util::Pressure) {
        self.pressure = Some(pressure);
    }

    /// devicegate patch: the early end of a request phase starting now, while threads are
    /// scarce.
    fn squeeze(&self) -> Option<(crate::util::Pressure, Instant)> {
        self.pressure
            .clone()
            .map(|pressure| (pressure, Instant::now() + SQUEEZED_REQUEST))
    }

    /// devicegate patch: the client's address, when the socket had one.
    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// devicegate patch: waits up to `linger` for the next request's first bytes, without
    /// consuming them. Upstream blocked in `read` for as long as the client kept the
    /// connection open, one thread per idle connection; `Idle` lets the caller park the
    /// connection instead.
    pub(crate) fn wait_for_input(&mut self, linger: Duration) -> Input {
        use std::io::BufRead;
        if self.no_more_requests {
            return Input::Closed;
        }
        let reader = self.next_header_source.wait_turn();
        if !reader.buffer().is_empty() {
            return Input::Ready;
        }
        if reader.get_ref().plain().is_none() {
            return Input::Ready; // TLS: block in read as upstream does
        }
        if linger.is_zero() {
            return Input::Idle;
        }
        reader
            .get_mut()
            .set_deadline(Some(Instant::now() + linger), None);
        match reader.fill_buf().map(|bytes| bytes.is_empty()) {
            Ok(false) => Input::Ready,
            Ok(true) => Input::Closed, // end of stream
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Input::Idle
            }
            Err(_) => Input::Closed,
        }
    }

    /// devicegate patch: before this connection's thread reads the next request, parks or
    /// closes the connection: waits until the previous response has been handed over
    /// (no request is read ahead of the answers before it, so at most about one response
    /// is ever pending), then sends whatever the client has not yet taken, waiting here, on
    /// the connection's own thread, up to the socket's io-timeout — never on a worker
    /// (patch 16). `closing` ends either wait early (the server is shutting down). False:
    /// the connection is finished (a client that does not read, a failed connection, a
    /// server closing); drop it. Costs no system call when the answer is already sent.
    pub(crate) fn settle(&mut self, closing: &dyn Fn() -> bool) -> bool {
        while !self
            .sink
            .wait_finished(crate::util::refined_tcp_stream::RECHECK_EVERY)
        {
            if closing() {
                self.no_more_requests = true;
                return false;
            }
        }
        // While other connections wait for a thread, a client gets `SQUEEZED_REQUEST` to take
        // its answer, as it gets to send a request (patch 17): clients that do not read,
        // from several addresses, must not hold every thread for their io-timeouts.
        let started = Instant::now();
        let pressure = self.pressure.clone();
        let give_up = || {
            closing()
                || (started.elapsed() >= SQUEEZED_REQUEST
                    && pressure.as_ref().is_some_and(|p| p.on()))
        };
        let sent = self.sink.with_writer(|writer| {
            writer
                .flush()
                .and_then(|_| writer.get_mut().flush_pending(None, &give_up))
        });
        if let Err(e) = &sent {
            self.no_more_requests = true;
            if !closing() {
                if let Some(addr) = self.remote_addr {
                    log::info!("{} answer not taken ({}): connection closed", addr.ip(), e);
                }
            }
        }
        sent.is_ok()
    }

    /// devicegate patch: the descriptor a poller watches while the connection is parked, and
    /// how long it may stay silent (its read timeout). None over TLS.
    pub(crate) fn parking_info(&mut self) -> Option<(std::os::unix::io::RawFd, Option<Duration>)> {
        use std::os::unix::io::AsRawFd;
        let reader = self.next_header_source.wait_turn();
        let connection = reader.get_ref().plain()?;
        Some((connection.as_raw_fd(), self.read_timeout))
    }

    /// devicegate patch: reads a request, head and whole body, each within its deadline
    /// (`ConnectionLimits::head_timeout`, `body_timeout`), every single read also within the
    /// socket's read timeout. Upstream read the head with a per-read timeout only (a byte
    /// every few seconds held the thread forever) and left the body to the handler.
    fn read(&mut self) -> Result<Request, Failure> {
        let limits = self.limits;
        let idle = self.read_timeout;
        let squeeze = self.squeeze();
        let reader = self.next_header_source.wait_turn();
        reader
            .get_mut()
            .set_deadline(Some(Instant::now() + limits.head_timeout), idle);
        reader.get_mut().set_squeeze(squeeze.clone());
        let head = framing::read_head(reader)?;
        let body = framing::body_framing(&head.version, &head.headers, limits.max_body)?;

        // RFC 9110 §10.1.1: only `100-continue` is defined; ignored from HTTP/1.0 clients.
        let mut send_continue = false;
        if let Some(expect) = head.headers.iter().find(|h| h.field.equiv("Expect")) {
            if !expect.value.as_str().eq_ignore_ascii_case("100-continue") {
                return Err(Failure::Refuse {
                    status: 417,
                    reason: "unsupported Expect",
                });
            }
            send_continue = head.version >= HTTPVersion(1, 1) && body != Body::None;
        }
        // A protocol upgrade would hand the handler the raw stream: refused (RFC 9110 §7.8
        // lets a server decline; we close rather than guess what the client sends next).
        if head
            .headers
            .iter()
            .filter(|h| h.field.equiv("Connection"))
            .any(|h| has_token(h.value.as_str(), "upgrade"))
        {
            return Err(Failure::Refuse {
                status: 501,
                reason: "protocol upgrade requested",
            });
        }

        // SequentialWriterBuilder::next always yields a writer.
        let mut writer = self.sink.next().unwrap();
        if send_continue {
            // Only if the body is not already on its way (it usually is, with curl's 1 s
            // wait, or not at all).
            let buffered = self.next_header_source.wait_turn().buffer().len();
            if buffered == 0 {
                let sent = writer
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .and_then(|_| writer.flush());
                if let Err(e) = sent {
                    return Err(Failure::Gone(e));
                }
            }
        }
        let squeeze = self.squeeze();
        let reader = self.next_header_source.wait_turn();
        reader
            .get_mut()
            .set_deadline(Some(Instant::now() + limits.body_timeout), idle);
        reader.get_mut().set_squeeze(squeeze);
        let data = framing::read_body(reader, body, limits.max_body)?;

        Ok(crate::request::new_request(
            self.secure,
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            data,
            writer,
        ))
    }

    /// devicegate patch: answers `status` with `Connection: close`, logs why, and closes
    /// the connection gracefully: output shut down, pending input drained for a moment (a
    /// close with unread input resets the connection, which can destroy the response).
    fn refuse(&mut self, status: u16, reason: &str) {
        let from = match self.remote_addr {
            Some(addr) => addr.ip().to_string(),
            None => "local socket".to_string(),
        };
        log::info!("{} {} {}: refused, connection closed", from, status, reason);
        // SequentialWriterBuilder::next always yields a writer; it waits for the answers to
        // earlier pipelined requests to be written.
        let mut writer = self.sink.next().unwrap();
        let written = writer
            .write_all(&crate::refusal(status, &self.limits))
            .and_then(|_| writer.flush());
        drop(writer);
        self.no_more_requests = true;
        // devicegate patch: what the socket did not take at once (patch 16).
        let written = written.and_then(|_| {
            self.sink.with_writer(|writer| {
                writer.flush().and_then(|_| {
                    writer
                        .get_mut()
                        .flush_pending(Some(LINGER_CLOSE), &|| false)
                })
            })
        });
        if written.is_err() {
            return;
        }
        let reader = self.next_header_source.wait_turn();
        let connection = match reader.get_ref().plain() {
            Some(connection) => connection,
            None => return,
        };
        let _ = connection.shutdown(Shutdown::Write);
        reader
            .get_mut()
            .set_deadline(Some(Instant::now() + LINGER_CLOSE), None);
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_CLOSE_BYTES {
            match reader.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// devicegate patch: does a comma-separated header value contain `token` (any case)?
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        let rq = match self.read() {
            // devicegate patch: every refusal is answered, logged and closes the
            // connection: we no longer know where a next request would start.
            Err(Failure::Refuse { status, reason }) => {
                self.refuse(status, reason);
                return None;
            }
            Err(Failure::Gone(_)) => return None,
            Ok(rq) => rq,
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}
