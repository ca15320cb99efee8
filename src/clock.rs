//! The clock, passed in so protocol decisions and tests agree on "now" (STYLE §4):
//! tests reach `slow_down` and `expired_token` by moving a manual clock, not by sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A moment as Unix milliseconds. The store keeps whole seconds; polling keeps millis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `YYYY-MM-DD HH:MM:SS UTC` style, as `2026-11-28T08:40:00Z` (civil-from-days,
    /// proleptic Gregorian; no time-zone database needed).
    pub fn utc_string(self) -> String {
        let secs = self.secs();
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_strings() {
        assert_eq!(Timestamp::from_secs(0).utc_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_secs(1_800_000_000).utc_string(),
            "2027-01-15T08:00:00Z"
        );
        assert_eq!(
            Timestamp::from_secs(951_782_400).utc_string(),
            "2000-02-29T00:00:00Z"
        );
    }
}

/// The system clock, or a manual one that only moves when told (tests).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock frozen at `start` until `advance` moves it.
    pub fn manual(start: Timestamp) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start.millis()))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(ms) => Timestamp(ms.load(Ordering::SeqCst)),
            None => {
                let since_epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
            }
        }
    }

    /// Moves a manual clock forward; the system clock ignores this.
    pub fn advance_millis(&self, ms: i64) {
        if let Some(clock) = &self.manual {
            clock.fetch_add(ms, Ordering::SeqCst);
        }
    }
}
