//! Prometheus metrics: a process-wide registry of counters (like the `prometheus` crate's
//! default registry), rendered in the text exposition format by `GET /metrics`.
//! Counting is a few atomic adds per request, no lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
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
    /// `route` is an index into `ROUTE_LABELS` (see `router::Resolved::label`).
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
        // Every state, 0 included: a series that appears only once non-zero breaks
        // `rate()` and alerts on absence (Prometheus's instrumentation practices).
        for state in DEVICE_CODE_STATES {
            let n: i64 = device_codes
                .iter()
                .filter(|(s, _)| s == state)
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(out, "devicegate_device_codes{{state=\"{state}\"}} {n}");
        }
        for (state, n) in device_codes {
            if !DEVICE_CODE_STATES.contains(&state.as_str()) {
                let _ = writeln!(out, "devicegate_device_codes{{state=\"{state}\"}} {n}");
            }
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
        let _ = writeln!(
            out,
            "# HELP devicegate_build_info The running version.\n\
             # TYPE devicegate_build_info gauge\n\
             devicegate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        process_metrics(&mut out);
        out
    }
}

/// Every state `devicegate_device_codes` reports, even at 0: the stored statuses, and
/// `expired` (pending past its lifetime, not yet swept).
pub const DEVICE_CODE_STATES: [&str; 5] = ["pending", "approved", "denied", "redeemed", "expired"];

static STARTED: OnceLock<f64> = OnceLock::new();

/// Notes the process's start time for `process_start_time_seconds`; `main` calls it first
/// thing (otherwise the first `/metrics` request counts as the start).
pub fn record_start() {
    STARTED.get_or_init(unix_now);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The standard process metrics (the names Prometheus's client libraries use), from
/// `/proc/self` on Linux; elsewhere only the start time.
fn process_metrics(out: &mut String) {
    let started = *STARTED.get_or_init(unix_now);
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\n\
         process_start_time_seconds {}",
        started.floor()
    );
    #[cfg(target_os = "linux")]
    {
        // "VmRSS:    12345 kB"
        let resident = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    line.strip_prefix("VmRSS:")?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            });
        if let Some(kib) = resident {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                 # TYPE process_resident_memory_bytes gauge\n\
                 process_resident_memory_bytes {}",
                kib * 1024
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let _ = writeln!(
                out,
                "# HELP process_open_fds Number of open file descriptors.\n\
                 # TYPE process_open_fds gauge\n\
                 process_open_fds {}",
                fds.count()
            );
        }
    }
}
