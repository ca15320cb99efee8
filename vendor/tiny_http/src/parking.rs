//! devicegate patch: idle keep-alive connections wait here, all watched by one poller
//! thread, instead of each holding a thread blocked in `read` (upstream kept one thread per
//! open connection, so 1,000 idle clients meant ~1,000 threads).
//!
//! A connection is parked when no request has arrived within the linger time. When its
//! socket becomes readable (a request, or the peer closing) it is handed back to the
//! connection pool; when it stays silent past its read timeout it is closed.

use std::collections::HashMap;
use std::io::{ErrorKind, Result as IoResult};
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::client::ClientConnection;

/// How often parked connections are checked against their read timeout.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
const WAKER: Token = Token(usize::MAX);

pub(crate) struct Parking {
    registry: Registry,
    waker: Waker,
    parked: Mutex<HashMap<usize, Parked>>,
    next_token: AtomicUsize,
    closed: AtomicBool,
}

struct Parked {
    client: ClientConnection,
    fd: RawFd,
    close_at: Option<Instant>,
}

impl Parking {
    /// The parking, and the `Poll` that `run` needs on its own thread.
    pub(crate) fn new() -> IoResult<(Parking, Poll)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let parking = Parking {
            registry,
            waker,
            parked: Mutex::new(HashMap::new()),
            next_token: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        };
        Ok((parking, poll))
    }

    /// Parks a connection until it becomes readable. One that cannot be watched is closed.
    pub(crate) fn park(&self, mut client: ClientConnection) {
        let (fd, idle_timeout) = match client.parking_info() {
            Some(info) => info,
            None => return,
        };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed) % WAKER.0;
        let close_at = idle_timeout.map(|timeout| Instant::now() + timeout);
        let mut parked = self.parked.lock().unwrap();
        // Registered under the lock: the poller cannot see the event before the entry.
        if let Err(e) = self
            .registry
            .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        {
            log::warn!("cannot watch an idle connection, closing it: {}", e);
            return;
        }
        parked.insert(
            token,
            Parked {
                client,
                fd,
                close_at,
            },
        );
    }

    /// Waits for parked connections to become readable and hands each to `resume`, until
    /// `close`. Closes connections silent past their read timeout (RFC 9112 §9.5 lets a
    /// server close an idle connection at any time). An error means no parked or new
    /// connection will be served again: the caller must report it.
    pub(crate) fn run(&self, mut poll: Poll, resume: impl Fn(ClientConnection)) -> IoResult<()> {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut failure = Ok(());
        while !self.closed.load(Ordering::Acquire) {
            if let Err(e) = poll.poll(&mut events, Some(SWEEP_EVERY)) {
                if e.kind() != ErrorKind::Interrupted {
                    self.closed.store(true, Ordering::Release);
                    failure = Err(e);
                    break;
                }
            }
            let mut ready = Vec::new();
            {
                let mut parked = self.parked.lock().unwrap();
                for event in events.iter() {
                    if let Some(entry) = parked.remove(&event.token().0) {
                        self.forget(&entry);
                        ready.push(entry.client);
                    }
                }
                let now = Instant::now();
                if now >= next_sweep {
                    next_sweep = now + SWEEP_EVERY;
                    parked.retain(|_, entry| {
                        let keep = entry.close_at.map_or(true, |at| at > now);
                        if !keep {
                            self.forget(entry);
                        }
                        keep
                    });
                }
            }
            for client in ready {
                resume(client);
            }
        }
        let mut parked = self.parked.lock().unwrap();
        for (_, entry) in parked.drain() {
            self.forget(&entry);
        }
        failure
    }

    /// Stops `run` and closes every parked connection.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }

    /// Whether `close` was called (the server is going away).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn forget(&self, entry: &Parked) {
        let _ = self.registry.deregister(&mut SourceFd(&entry.fd));
    }
}
