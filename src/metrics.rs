//! Prometheus metrics: a process-wide registry of counters (like the `prometheus` crate's
//! default registry), rendered in the text exposition format by `GET /metrics`.
//! Counting is a few atomic adds per request, no lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::paths::ROUTE_LABELS;

/// Statuses 100–599 each get a counter per route.
const STATUS_MIN: u16 = 100;
const STATUSES: usize = 500;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

pub struct Metrics {
    requests: [[AtomicU64; STATUSES]; ROUTE_LABELS.len()],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub slow_down: AtomicU64,
    pub lockouts: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    requests: [const { [const { AtomicU64::new(0) }; STATUSES] }; ROUTE_LABELS.len()],
    latency_buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
    latency_count: AtomicU64::new(0),
    latency_sum_micros: AtomicU64::new(0),
    tokens_issued: AtomicU64::new(0),
    slow_down: AtomicU64::new(0),
    lockouts: AtomicU64::new(0),
};

impl Metrics {
    /// `route` is an index into `ROUTE_LABELS` (see `router::route_index`).
    pub fn record_request(&self, route: usize, status: u16, elapsed: Duration) {
        let slot = usize::from(status.saturating_sub(STATUS_MIN)).min(STATUSES - 1);
        if let Some(counters) = self.requests.get(route) {
            counters[slot].fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the device codes by state read from the store.
    pub fn render(&self, device_codes: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP devicegate_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE devicegate_http_requests_total counter\n");
        for (route, counters) in ROUTE_LABELS.iter().zip(&self.requests) {
            for (slot, counter) in counters.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let status = usize::from(STATUS_MIN) + slot;
                    let _ = writeln!(
                        out,
                        "devicegate_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP devicegate_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE devicegate_http_request_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "devicegate_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "devicegate_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "devicegate_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "devicegate_http_request_duration_seconds_count {count}"
        );
        out.push_str("# HELP devicegate_device_codes Device codes in the database by state.\n");
        out.push_str("# TYPE devicegate_device_codes gauge\n");
        for (state, n) in device_codes {
            let _ = writeln!(out, "devicegate_device_codes{{state=\"{state}\"}} {n}");
        }
        for (name, help, counter) in [
            (
                "devicegate_tokens_issued_total",
                "Token pairs issued (device and refresh grants).",
                &self.tokens_issued,
            ),
            (
                "devicegate_slow_down_total",
                "Polls answered with slow_down.",
                &self.slow_down,
            ),
            (
                "devicegate_lockouts_total",
                "Requests refused by a brute-force limit.",
                &self.lockouts,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}
