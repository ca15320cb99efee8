//! What every worker shares (`App`), and what one request's handler gets (`Ctx`).

use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::keys::{KeyError, KeyRing};
use crate::passwords::PasswordPool;
use crate::paths::Mounts;
use crate::protocol::authorize_limits::AuthorizeLimits;
use crate::protocol::limits::Limits;
use crate::protocol::polls::PollTracker;
use crate::protocol::Settings;
use crate::session;
use crate::store::Store;

/// Read-mostly state shared by all workers.
pub struct App {
    pub config: Config,
    /// The resolved issuer (configured, or derived from the bound address).
    pub issuer: String,
    /// Where routes are served and how handed-out URLs are built, from `issuer`.
    pub mounts: Mounts,
    pub settings: Settings,
    pub clock: Clock,
    pub polls: PollTracker,
    /// Rate limits on device authorization, per address and per client.
    pub authorize_limits: AuthorizeLimits,
    /// Sign-in and code-entry limits.
    pub limits: Limits,
    /// The bounded password verifications every worker shares.
    pub passwords: PasswordPool,
    /// Signing keys (cached) and the bounded signatures every worker shares.
    pub keys: KeyRing,
}

/// Seconds an expired device code is kept, so a late poll still hears `expired_token`
/// rather than `invalid_grant` (which would look like a bug to the client).
pub const EXPIRED_CODE_RETENTION: i64 = 600;
/// Rows deleted per sweep batch: short write transactions keep requests flowing.
pub const SWEEP_BATCH: u32 = 500;

impl App {
    /// Deletes expired device codes (returning how many), sessions and closed brute-force
    /// windows, in bounded batches, and drops expired poll state; records when superseded
    /// signing keys may go, and retires those whose tokens have all expired.
    pub fn sweep_expired(&self, store: &Store) -> Result<usize, crate::store::Error> {
        let cutoff = self.clock.now().secs() - EXPIRED_CODE_RETENTION;
        let mut total = 0;
        loop {
            let deleted = store.delete_expired_device_codes(cutoff, SWEEP_BATCH)?;
            total += deleted;
            if deleted < SWEEP_BATCH as usize {
                break;
            }
        }
        self.polls.prune(cutoff);
        let now = self.clock.now().secs();
        while store.delete_expired_sessions(
            now - session::IDLE_TIMEOUT,
            now - session::ABSOLUTE_TIMEOUT,
            SWEEP_BATCH,
        )? == SWEEP_BATCH as usize
        {}
        // A window that opened a whole window ago is closed.
        let closed = now - self.limits.window;
        while store.delete_old_throttles(closed, SWEEP_BATCH)? == SWEEP_BATCH as usize {}
        while store.delete_expired_tokens(now, SWEEP_BATCH)? >= SWEEP_BATCH as usize {}
        // ID tokens and JWT access tokens live as long as access tokens.
        self.keys
            .housekeeping(store, self.settings.access_token_ttl, now)
            .map_err(|e| match e {
                KeyError::Store(e) => e,
                KeyError::Broken(detail) => crate::store::Error::Internal(detail),
            })?;
        Ok(total)
    }
}

/// One request's context: the worker's own store connection, the shared app, and "now".
pub struct Ctx<'a> {
    pub store: &'a mut Store,
    pub app: &'a App,
    pub now: Timestamp,
}
