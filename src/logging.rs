//! A small stderr logger behind the `log` facade: one line per event, UTC time first.
//! Callers never pass secrets, device codes, full user codes or tokens, and pass client-sent
//! text through `printable` (also used for the CLI's tables).

use std::fmt::Write as _;
use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
            && (metadata.level() <= log::Level::Warn || is_ours(metadata.target()))
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

/// Whether a record comes from devicegate itself or our fork of tiny_http (vendor/, whose
/// refusal lines follow our rules). Other crates log only warnings and errors, whatever the
/// level: their `info` and `debug` lines are not written with our rules in mind
/// (tokio-postgres logs every statement's parameters at `debug`: password hashes, token
/// hashes, private keys).
fn is_ours(target: &str) -> bool {
    ["devicegate", "tiny_http"].iter().any(|ours| {
        target == *ours
            || target
                .strip_prefix(ours)
                .is_some_and(|t| t.starts_with("::"))
    })
}

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

/// Client-sent text made safe for a terminal or a log line: C0 controls (`\0`–`\x1f`,
/// including CR, LF and TAB), DEL and C1 controls (U+0080–U+009F) become `\x1b`-style
/// escapes, and the Unicode characters that reorder, hide or break a line (every format
/// character, e.g. bidi overrides U+202A–U+202E, zero-width U+200B–U+200D, tag characters
/// U+E0020–U+E007F, the byte-order mark U+FEFF; line and paragraph separators U+2028,
/// U+2029; Hangul fillers; see `needs_escape`) become `\u{202e}`-style escapes. Everything
/// else passes unchanged, and
/// text with nothing to escape is borrowed, not copied. Use it on every piece of text a
/// device, a browser or a client sent (paths, methods, user agents, names, ids) before it
/// reaches `log::` or a CLI table, so no escape sequence or forged line gets through.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !needs_escape(c) => out.push(c),
            // One byte's worth: the `\x1b` form a terminal user recognises.
            c if u32::from(c) <= 0x7f => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out.into()
}

/// The characters `printable` escapes, and that names shown to people may not hold:
/// controls (Unicode Cc), every format character (Unicode Cf: bidi embeddings, overrides,
/// isolates and marks, zero-width characters, invisible operators, the byte-order mark,
/// interlinear annotations, tag characters, …), line and paragraph separators, and the
/// Hangul fillers that render as blank space.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061c}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{115f}'..='\u{1160}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn other_crates_log_only_warnings_and_errors_even_at_debug() {
        use log::Log;
        super::init(log::LevelFilter::Debug);
        let at = |level, target| {
            super::LOGGER.enabled(&log::Metadata::builder().level(level).target(target).build())
        };
        assert!(at(log::Level::Debug, "devicegate::server"));
        assert!(at(log::Level::Info, "devicegate"));
        // tokio-postgres writes each statement's parameters (secrets' hashes, private
        // keys) at debug.
        assert!(!at(log::Level::Debug, "tokio_postgres::query"));
        assert!(!at(log::Level::Info, "tokio_postgres::connection"));
        assert!(!at(log::Level::Debug, "devicegateway"));
        assert!(at(log::Level::Info, "tiny_http::client"));
        assert!(at(log::Level::Warn, "tokio_postgres::connection"));
        assert!(at(log::Level::Error, "ureq"));
    }

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(
            printable("curl/8.5 café ✓"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(printable("x\r\ny\tz\0\x7f"), "x\\x0d\\x0ay\\x09z\\x00\\x7f");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("a\u{2028}b"), "a\\u{2028}b");
        // Invisible: a byte-order mark, a zero-width space, a right-to-left mark.
        assert_eq!(
            printable("\u{feff}ad\u{200b}min\u{200f}"),
            "\\u{feff}ad\\u{200b}min\\u{200f}"
        );
    }
}
