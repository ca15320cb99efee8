//! A small stderr logger behind the `log` facade: one line per event, UTC time first.
//! Callers never pass secrets, device codes, full user codes or tokens.

use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {:<5} {}\n", utc_now(), record.level(), record.args());
            // One write call per line keeps lines from different workers whole.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger once; later calls only change the level.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

fn utc_now() -> String {
    crate::clock::Clock::system().now().utc_string()
}
