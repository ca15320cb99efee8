//! Signing a person in with a user name and password: the decision, without HTTP.
//!
//! Order matters: the attempt is reserved against the limits first (one transaction, see
//! `limits`), then a password verification is taken from the bounded pool, then the
//! password is checked (against a dummy hash for unknown names, so time does not reveal
//! who exists). A right password refunds the reservation; a pool that stays busy refunds
//! it too (no password was checked).

use std::net::IpAddr;

use super::limits::{self, Limits, Refusal};
use crate::clock::Timestamp;
use crate::passwords::{Busy, PasswordPool};
use crate::store::{self, Store, User};

/// How a sign-in attempt ended. Pages render each one; none of them says whether the
/// name exists.
#[derive(Debug)]
pub enum SignIn {
    SignedIn(User),
    /// Wrong password, unknown name, or a disabled account.
    WrongCredentials,
    /// This address already failed for this name, and the name is failing from elsewhere
    /// too: try again in this many seconds (small, at most `Limits::sign_in_backoff`).
    SlowDown(i64),
    /// This name from this address, or this address, failed too often: try again in this
    /// many seconds (when the window closes).
    Locked(i64),
    /// Every password verification was taken for the whole configured wait: try again in
    /// a second or two.
    Busy,
}

/// Decides one sign-in attempt by `username` with `password` from `ip` at `now`.
/// Logs a lockout (name with control characters stripped, and address) when this
/// attempt's failure starts one.
pub fn sign_in(
    store: &Store,
    pool: &PasswordPool,
    limits: &Limits,
    username: &str,
    password: &str,
    ip: IpAddr,
    now: Timestamp,
) -> Result<SignIn, store::Error> {
    let reservation = match limits::reserve_sign_in(store, limits, username, ip, now)? {
        Ok(reservation) => reservation,
        Err(refusal) => {
            crate::metrics::Metrics::count(&crate::metrics::METRICS.lockouts);
            return Ok(match refusal {
                Refusal::Locked(wait) => SignIn::Locked(wait),
                Refusal::SlowDown(wait) => SignIn::SlowDown(wait),
            });
        }
    };
    let user = match store.find_user_by_name(username) {
        Ok(user) => user,
        Err(e) => {
            reservation.refund(store)?;
            return Err(e);
        }
    };
    let password_ok = match pool.verify(password, user.as_ref().map(|u| u.password_hash.as_str())) {
        Ok(ok) => ok,
        Err(Busy) => {
            reservation.refund(store)?;
            return Ok(SignIn::Busy);
        }
    };
    match user.filter(|u| password_ok && !u.disabled) {
        Some(user) => {
            limits::signed_in(store, &reservation)?;
            Ok(SignIn::SignedIn(user))
        }
        None => {
            // The name only with a lockout: a failed sign-in's "name" is sometimes a
            // password typed into the wrong field.
            log::warn!("failed sign-in from {ip}");
            if let Some(secs) = limits::sign_in_lock_started(limits, &reservation) {
                let name = limits::counted_name(username);
                log::warn!(
                    "sign-in locked for `{}` from {ip} for {secs} s",
                    crate::logging::printable(&name)
                );
            }
            Ok(SignIn::WrongCredentials)
        }
    }
}
