//! Brute-force limits (RFC 8628 §5.1, RFC 6749 §2.3.1 / §10.10).
//!
//! User codes carry ~38.5 bits; RFC 8628 §5.1's worked example allows about 5 guesses per
//! code lifetime. Failed code entries are limited per account and per IP, failed sign-ins
//! per user name and per IP, each in a fixed 10-minute window. A success never resets a
//! per-IP counter (an attacker with a valid account must not be able to "launder" their
//! failures); a successful sign-in resets only that user name's counter.

use crate::clock::Timestamp;
use crate::store::{self, Store};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: u32,
    pub window_secs: i64,
}

const TEN_MINUTES: i64 = 600;

pub const CODE_PER_ACCOUNT: Limit = Limit {
    max_failures: 5,
    window_secs: TEN_MINUTES,
};
pub const CODE_PER_IP: Limit = Limit {
    max_failures: 5,
    window_secs: TEN_MINUTES,
};
pub const LOGIN_PER_USERNAME: Limit = Limit {
    max_failures: 5,
    window_secs: TEN_MINUTES,
};
/// Higher than per name: a classroom behind one NAT address signs in together.
pub const LOGIN_PER_IP: Limit = Limit {
    max_failures: 20,
    window_secs: TEN_MINUTES,
};

/// A counter's key and the limit it is held to.
pub struct Counter {
    pub key: String,
    pub limit: Limit,
}

impl Counter {
    pub fn code_account(user_id: i64) -> Counter {
        Counter {
            key: format!("code-user:{user_id}"),
            limit: CODE_PER_ACCOUNT,
        }
    }
    pub fn code_ip(ip: &str) -> Counter {
        Counter {
            key: format!("code-ip:{ip}"),
            limit: CODE_PER_IP,
        }
    }
    pub fn login_username(username: &str) -> Counter {
        // Case-folded so `Alice` and `alice` share a counter; bounded in size.
        let name: String = username.to_lowercase().chars().take(64).collect();
        Counter {
            key: format!("login-user:{name}"),
            limit: LOGIN_PER_USERNAME,
        }
    }
    pub fn login_ip(ip: &str) -> Counter {
        Counter {
            key: format!("login-ip:{ip}"),
            limit: LOGIN_PER_IP,
        }
    }
}

/// Seconds until every counter is below its limit again; `None` when none is locked.
pub fn locked_for(
    store: &Store,
    counters: &[Counter],
    now: Timestamp,
) -> Result<Option<i64>, store::Error> {
    let mut wait = None;
    for counter in counters {
        let window = counter.limit.window_secs;
        if let Some((start, failures)) = store.throttle_window(&counter.key, now.secs(), window)? {
            if failures >= counter.limit.max_failures {
                let remaining = (start + window - now.secs()).max(1);
                wait = Some(wait.map_or(remaining, |w: i64| w.max(remaining)));
            }
        }
    }
    if wait.is_some() {
        crate::metrics::Metrics::count(&crate::metrics::METRICS.lockouts);
    }
    Ok(wait)
}

/// Counts one failure against each counter.
pub fn record_failure(
    store: &Store,
    counters: &[Counter],
    now: Timestamp,
) -> Result<(), store::Error> {
    for counter in counters {
        store.record_throttle_failure(&counter.key, now.secs(), counter.limit.window_secs)?;
    }
    Ok(())
}

/// "N minutes", rounded up, for the lockout page.
pub fn minutes_text(secs: i64) -> String {
    let minutes = (secs + 59) / 60;
    if minutes <= 1 {
        "1 minute".into()
    } else {
        format!("{minutes} minutes")
    }
}
