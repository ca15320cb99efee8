//! A bounded pool of reusable things (argon2 buffers, signing turns): a fixed number on
//! loan at once, a short bounded wait for one, and a bounded number of waiters, so an
//! expensive step a stranger can trigger (a password check, an RS256 signature) never
//! queues without limit or takes every worker. Past the wait, or with too many waiting
//! already, the caller is told `Busy` and can answer 503 (or `slow_down`) at once.
//!
//! Nothing here knows HTTP, SQL or what the things are for.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Nothing came free within the wait (or too many were waiting): try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// `T`s lent out one caller at a time, each given back when its `Loan` drops.
pub struct Pool<T: Default> {
    state: Mutex<State<T>>,
    returned: Condvar,
    wait: Duration,
    max_waiting: usize,
}

struct State<T> {
    free: Vec<T>,
    /// Callers waiting for a `T` now.
    waiting: usize,
}

impl<T: Default> Pool<T> {
    /// A pool of `items`; a caller waits at most `wait` for one, and at most `max_waiting`
    /// callers wait at once (others are `Busy` at once).
    pub fn new(items: Vec<T>, wait: Duration, max_waiting: usize) -> Pool<T> {
        Pool {
            state: Mutex::new(State {
                free: items,
                waiting: 0,
            }),
            returned: Condvar::new(),
            wait,
            max_waiting,
        }
    }

    /// A `T` on loan, or `Busy` when none came free in time.
    pub fn take(&self) -> Result<Loan<'_, T>, Busy> {
        let mut state = self.lock();
        if let Some(item) = state.free.pop() {
            return Ok(self.lend(item));
        }
        if state.waiting >= self.max_waiting || self.wait.is_zero() {
            return Err(Busy);
        }
        state.waiting += 1;
        let deadline = Instant::now() + self.wait;
        let taken = loop {
            if let Some(item) = state.free.pop() {
                break Ok(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(Busy);
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        };
        state.waiting -= 1;
        taken.map(|item| self.lend(item))
    }

    fn lend(&self, item: T) -> Loan<'_, T> {
        Loan { pool: self, item }
    }

    /// A panic while holding the lock leaves whole items in the list: still usable.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A `T` on loan; given back (not dropped) when the loan drops, also on a panic.
pub struct Loan<'p, T: Default> {
    pool: &'p Pool<T>,
    item: T,
}

impl<T: Default> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: Default> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

impl<T: Default> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        let item = std::mem::take(&mut self.item);
        self.pool.lock().free.push(item);
        self.pool.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of one, as `passwords` and `keys` build them.
    fn one(wait: Duration, max_waiting: usize) -> Pool<Vec<u8>> {
        Pool::new(vec![Vec::new()], wait, max_waiting)
    }

    #[test]
    fn no_free_item_within_the_wait_is_busy() {
        let pool = one(Duration::from_millis(10), 1);
        let held = pool.take().expect("first permit");
        assert!(matches!(pool.take(), Err(Busy)));
        drop(held);
        assert!(pool.take().is_ok());
    }

    #[test]
    fn a_returned_item_goes_to_a_waiter_and_extra_waiters_are_busy_at_once() {
        let pool = one(Duration::from_secs(30), 1);
        let held = pool.take().expect("first permit");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.take().map(|_| ()));
            while pool.lock().waiting == 0 {
                std::thread::yield_now();
            }
            // The one place in the queue is taken: no wait for this one.
            let started = Instant::now();
            assert!(matches!(pool.take(), Err(Busy)));
            assert!(started.elapsed() < Duration::from_secs(5));
            drop(held);
            assert_eq!(waiter.join().expect("waiter"), Ok(()));
        });
    }

    #[test]
    fn turns_are_bounded_and_given_back() {
        let turns = Pool::new(vec![()], Duration::ZERO, 0);
        let turn = turns.take().map(|_| ());
        assert_eq!(turn, Ok(()));
        let held = turns.take().expect("one turn");
        assert_eq!(turns.take().map(|_| ()), Err(Busy));
        drop(held);
        assert_eq!(turns.take().map(|_| ()), Ok(()));
    }
}
