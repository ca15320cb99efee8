//! A small stderr logger behind the `log` facade: one line per event, UTC time first.
//! Callers never pass secrets, device codes, full user codes or tokens.

use std::fmt::Write as _;
use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A line per request: each thread reuses its buffer and its last second's time
        // stamp (formatting both afresh was 5% of a poll's CPU).
        LINE.with_borrow_mut(|line| {
            let now = crate::clock::Clock::system().now();
            if line.stamp_secs != now.secs() {
                line.stamp_secs = now.secs();
                line.stamp = now.utc_string();
            }
            line.text.clear();
            let _ = writeln!(
                line.text,
                "{} {:<5} {}",
                line.stamp,
                record.level(),
                record.args()
            );
            // One write call per line keeps lines from different workers whole.
            let _ = std::io::stderr().lock().write_all(line.text.as_bytes());
        });
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger once; later calls only change the level.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// One thread's log line under construction, and the time stamp of its last line.
#[derive(Default)]
struct Line {
    stamp_secs: i64,
    stamp: String,
    text: String,
}

thread_local! {
    static LINE: std::cell::RefCell<Line> = std::cell::RefCell::default();
}
