use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<Todo>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,

    // devicegate patch: threads started and not yet ended, and the most there may be
    threads: AtomicUsize,
    max_threads: usize,

    // devicegate patch: tasks waiting for a thread (the length of `todo`)
    queued: AtomicUsize,
}

impl Sharing {
    fn has_backlog(&self) -> bool {
        self.threads.load(Ordering::Acquire) >= self.max_threads
            && self.queued.load(Ordering::Acquire) > self.waiting_tasks.load(Ordering::Acquire)
    }
}

/// devicegate patch: whether connections are waiting for a thread right now. While they
/// are, a request that is slow to arrive gives its thread up early (see
/// `RefinedTcpStream::set_squeeze`), so connections trickling heads or bodies from many
/// addresses cannot hold every thread for their whole deadlines.
#[derive(Clone)]
pub(crate) struct Pressure(Arc<Sharing>);

impl Pressure {
    pub(crate) fn on(&self) -> bool {
        self.0.has_backlog()
    }
}

type Task = Box<dyn FnMut() + Send>;

/// devicegate patch: waiting tasks, each with the client address (group) it serves, and how
/// many threads each address holds now. A free thread takes the waiting task whose address
/// holds the fewest threads (the oldest among equals), so connections from a few busy
/// addresses cannot keep everyone else waiting behind them; first come, first served
/// among equals.
#[derive(Default)]
struct Todo {
    queue: VecDeque<(Option<IpAddr>, Task)>,
    running: HashMap<IpAddr, usize>,
}

impl Todo {
    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The fairest waiting task, now counted as running for its address.
    fn take(&mut self) -> Option<(Option<IpAddr>, Task)> {
        let held = |key: &Option<IpAddr>| key.and_then(|ip| self.running.get(&ip).copied());
        let index = match self.queue.len() {
            0 => return None,
            1 => 0,
            _ => (0..self.queue.len())
                .min_by_key(|&i| (held(&self.queue[i].0).unwrap_or(0), i))
                .unwrap_or(0),
        };
        let (key, task) = self.queue.remove(index)?;
        if let Some(ip) = key {
            *self.running.entry(ip).or_insert(0) += 1;
        }
        Some((key, task))
    }

    fn done(&mut self, key: Option<IpAddr>) {
        if let Some(ip) = key {
            if let Some(count) = self.running.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.running.remove(&ip);
                }
            }
        }
    }
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    /// devicegate patch: at most `max_threads` threads; beyond that, tasks wait in a queue.
    pub fn with_max_threads(max_threads: usize) -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(Todo::default()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
                threads: AtomicUsize::new(0),
                max_threads: max_threads.max(MIN_THREADS),
                queued: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            pool.add_thread();
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) {
        self.spawn_for(None, code)
    }

    /// devicegate patch: `spawn`, for a task serving the client address (group) `key`: see
    /// `Todo` for how waiting tasks take turns.
    pub(crate) fn spawn_for(&self, key: Option<IpAddr>, code: Box<dyn FnMut() + Send>) {
        let mut queue = self.sharing.todo.lock().unwrap();

        // devicegate patch: an idle thread already woken for an earlier task still counts as
        // waiting until it takes the lock, so only `waiting > queued` means a free thread.
        // (Upstream compared with 0 and could queue a connection behind threads busy with
        // other connections for as long as those stayed open.)
        let free = self.sharing.waiting_tasks.load(Ordering::Acquire) > queue.len();
        let room = self.sharing.threads.load(Ordering::Acquire) < self.sharing.max_threads;
        queue.queue.push_back((key, code));
        self.sharing.queued.store(queue.len(), Ordering::Release);
        if free {
            self.sharing.condvar.notify_one();
        } else if room {
            // The new thread takes the task from the queue (once we release the lock).
            self.add_thread();
        }
    }

    /// devicegate patch: true while tasks wait for a thread that no idle thread is about to
    /// take and none may be started for. Connection tasks then stop lingering on their
    /// connection, so that every connection gets its turn. (Merely `queued > 0` is true for
    /// a moment at every hand-over, which made lingering threads park in a feedback loop.)
    pub fn has_backlog(&self) -> bool {
        self.sharing.has_backlog()
    }

    /// devicegate patch: a handle a connection's reads can ask "are others waiting for a
    /// thread?" (see `Pressure`).
    pub(crate) fn pressure(&self) -> Pressure {
        Pressure(self.sharing.clone())
    }

    /// devicegate patch: a thread that cannot be started (a process limit) is logged, not a
    /// panic in the accept loop; its task stays queued for the threads there are.
    fn add_thread(&self) {
        let sharing = self.sharing.clone();
        sharing.threads.fetch_add(1, Ordering::AcqRel);

        // devicegate patch: named, rather than inheriting the name of whichever thread
        // (accept or poller) happened to start it.
        let spawned = thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let sharing = sharing;
                let _thread_guard = Registration {
                    nb: &sharing.threads,
                };
                let _active_guard = Registration::new(&sharing.active_tasks);

                loop {
                    let (key, mut task) = {
                        let mut todo = sharing.todo.lock().unwrap();

                        let task;
                        loop {
                            if let Some(poped_task) = todo.take() {
                                sharing.queued.store(todo.len(), Ordering::Release);
                                task = poped_task;
                                break;
                            }
                            let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                            let received =
                                if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                    todo = sharing.condvar.wait(todo).unwrap();
                                    true
                                } else {
                                    let (new_lock, waitres) = sharing
                                        .condvar
                                        .wait_timeout(todo, Duration::from_millis(5000))
                                        .unwrap();
                                    todo = new_lock;
                                    !waitres.timed_out()
                                };

                            if !received && todo.is_empty() {
                                return;
                            }
                        }

                        task
                    };

                    task();
                    sharing.todo.lock().unwrap().done(key);
                }
            });
        if let Err(e) = spawned {
            self.sharing.threads.fetch_sub(1, Ordering::AcqRel);
            log::error!("cannot start a connection thread: {}", e);
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
