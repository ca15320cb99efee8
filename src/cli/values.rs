//! How settings are spelled: booleans (`1/0`, `true/false`, `yes/no`, `on/off`, any case),
//! durations (`90s`, `15m`, `1h`, `30d`, `1h30m`, or bare seconds) and secrets read from a
//! `_FILE`. A bad value's error names where it came from: the `DEVICEGATE_*` variable when
//! it came from the environment, the flag otherwise.

use std::ffi::OsStr;
use std::path::Path;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;

/// `true` for 1/true/yes/on/y/t, `false` for 0/false/no/off/n/f and for an empty value
/// (`Environment=DEVICEGATE_TRUST_PROXY=` in a unit clears it), case-insensitive.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        _ => Err(format!(
            "`{text}` is not a boolean: use 1/0, true/false, yes/no or on/off"
        )),
    }
}

/// The unit a bare number counts in, and the smallest unit a value may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
}

/// A duration in `unit`: a bare number, or numbers each followed by `d`, `h`, `m`, `s`
/// (and `ms` for milliseconds), like `90s`, `15m`, `1h30m`, `30d`.
pub fn parse_duration(text: &str, unit: Unit) -> Result<u64, String> {
    let trimmed = text.trim();
    let bad = || {
        let example = match unit {
            Unit::Seconds => "seconds like 90, or 90s, 15m, 1h, 30d",
            Unit::Milliseconds => "milliseconds like 500, or 500ms, 2s, 1m",
        };
        format!("`{text}` is not a duration: use {example}")
    };
    if trimmed.is_empty() {
        return Err(bad());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.parse::<u64>().map_err(|_| bad());
    }
    let mut total: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis_per: u64 = match &rest[..letters] {
            "ms" if unit == Unit::Milliseconds => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[letters..];
        let millis = number.checked_mul(millis_per).ok_or_else(bad)?;
        total = total.checked_add(millis).ok_or_else(bad)?;
    }
    Ok(match unit {
        Unit::Milliseconds => total,
        Unit::Seconds => total / 1_000,
    })
}

/// A secret from a file (at most `MAX_SECRET_FILE_BYTES`): its contents without whitespace
/// at either end. `Err`: unreadable, too long, not UTF-8, or empty.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    // Bounded: `/dev/zero` or a log file named by mistake must not fill the memory.
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "{} is longer than {MAX_SECRET_FILE_BYTES} bytes; it should hold only the secret",
            path.display()
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    // Whitespace around it (an editor's newlines, a stray space) would make a secret that
    // no request can ever present.
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// The most a secret file may hold, in bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Where a value came from, for an error message: `DEVICEGATE_X` or `--x`.
fn origin(arg: Option<&clap::Arg>, source: ValueSource) -> String {
    let env = arg.and_then(clap::Arg::get_env).map(OsStr::to_string_lossy);
    let flag = arg.and_then(clap::Arg::get_long).map(|l| format!("--{l}"));
    match (source, env, flag) {
        (ValueSource::EnvVariable, Some(env), _) => env.into_owned(),
        (_, _, Some(flag)) => flag,
        _ => "value".into(),
    }
}

fn invalid(cmd: &clap::Command, what: &str, message: &str) -> clap::Error {
    cmd.clone()
        .error(ErrorKind::ValueValidation, format!("{what}: {message}"))
}

/// clap's parser for a setting spelled as this module reads it: `BOOLEAN`, `SECONDS` or
/// `MILLISECONDS`. Its error names where the value came from (see `origin`).
#[derive(Clone, Copy)]
pub struct Spelled<T>(fn(&str) -> Result<T, String>);

/// A boolean flag that may also be set through the environment (`parse_bool`).
pub const BOOLEAN: Spelled<bool> = Spelled(parse_bool);
/// A duration in seconds (`90`, `90s`, `15m`, `1h`, `30d`).
pub const SECONDS: Spelled<u64> = Spelled(|text| parse_duration(text, Unit::Seconds));
/// A duration in milliseconds (`500`, `500ms`, `2s`).
pub const MILLISECONDS: Spelled<u64> = Spelled(|text| parse_duration(text, Unit::Milliseconds));

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Spelled<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        self.parse_ref_(cmd, arg, value, ValueSource::CommandLine)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<T, clap::Error> {
        (self.0)(&value.to_string_lossy()).map_err(|e| invalid(cmd, &origin(arg, source), &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_every_usual_spelling() {
        for yes in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "False", "no", "NO", "off", "Off"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        assert_eq!(parse_bool(""), Ok(false), "set but empty: off");
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("2").is_err());
    }

    #[test]
    fn durations_take_units_or_bare_seconds() {
        let secs = |t| parse_duration(t, Unit::Seconds);
        assert_eq!(secs("600"), Ok(600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("30d"), Ok(2_592_000));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 5m "), Ok(300));
        for bad in [
            "",
            "s",
            "5x",
            "5 m",
            "-5",
            "1.5h",
            "500ms",
            "99999999999999999999d",
        ] {
            let error = secs(bad).expect_err(bad);
            assert!(error.contains("not a duration"), "{error}");
        }
        let ms = |t| parse_duration(t, Unit::Milliseconds);
        assert_eq!(ms("2000"), Ok(2000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2s"), Ok(2000));
        assert_eq!(ms("1m"), Ok(60_000));
    }

    #[test]
    fn a_secret_file_loses_whitespace_at_both_ends_and_is_bounded() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s");
        std::fs::write(&path, "abc def\n").expect("write");
        assert_eq!(read_secret_file(&path), Ok("abc def".into()));
        std::fs::write(&path, "abc\r\n").expect("write");
        assert_eq!(read_secret_file(&path), Ok("abc".into()));
        std::fs::write(&path, " abc\n\n").expect("write");
        assert_eq!(read_secret_file(&path), Ok("abc".into()));
        std::fs::write(&path, "x".repeat(4097)).expect("write");
        assert!(read_secret_file(&path)
            .expect_err("too long")
            .contains("longer than 4096 bytes"));
        std::fs::write(&path, "\n").expect("write");
        assert!(read_secret_file(&path).is_err());
        assert!(read_secret_file(&dir.path().join("missing"))
            .expect_err("missing")
            .contains("cannot read"));
    }
}
