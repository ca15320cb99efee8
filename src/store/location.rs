//! What `--db` names (issue #15): a SQLite file, or a PostgreSQL database as a
//! `postgres://` URL or a libpq keyword/value string; and how it may be shown, with any
//! password masked. No connection is made here.

use std::path::{Path, PathBuf};

/// Where the data lives: a SQLite file (the default), or a PostgreSQL database given as a
/// `postgres://` / `postgresql://` URL (libpq syntax; needs the `postgres` feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Postgres(String),
}

impl Location {
    /// `--db`'s value: a URL with a PostgreSQL scheme, else a file path.
    pub fn of(db: &Path) -> Location {
        match db.to_str() {
            Some(url) if is_postgres_url(url) => Location::Postgres(url.to_string()),
            _ => Location::File(db.to_path_buf()),
        }
    }
}

/// `--db` as it may be shown (logs, messages, `check --json`): a file path as it is; a
/// PostgreSQL URL or keyword/value string with its password, if any, replaced by `***`
/// (whatever characters the password holds).
pub fn describe(db: &Path) -> String {
    let shown = db.display().to_string();
    if is_conninfo(&shown) {
        return mask_conninfo_password(&shown);
    }
    if !is_postgres_url(&shown) {
        return shown;
    }
    let (scheme, rest) = shown.split_once("://").unwrap_or(("", &shown));
    // The user info ends at the last `@` (an unencoded `/`, `?` or `#` in a password
    // must not end it early and leave the rest of the password in view).
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, after) = rest.split_at(at);
            let userinfo = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => userinfo.to_string(),
            };
            (userinfo, after.to_string())
        }
        None => (String::new(), rest.to_string()),
    };
    // `?password=…` is libpq's other way to give it.
    let tail = tail
        .split_inclusive(['?', '&'])
        .map(|part| {
            // The parameter's name as libpq reads it (`pass%77ord` is `password`).
            let name = part.split('=').next().unwrap_or("");
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            if name.eq_ignore_ascii_case("password") && part.contains('=') {
                if part.ends_with('&') {
                    "password=***&"
                } else {
                    "password=***"
                }
            } else {
                part
            }
        })
        .collect::<String>();
    format!("{scheme}://{authority}{tail}")
}

/// libpq's keywords that may start a keyword/value connection string.
const CONNINFO_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "keepalives",
    "service",
];

/// A libpq keyword/value string (`host=db dbname=devicegate user=dg`): its first word is
/// one of libpq's keywords followed by `=`.
fn is_conninfo(s: &str) -> bool {
    let s = s.trim_start();
    let key_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (key, rest) = s.split_at(key_len);
    CONNINFO_KEYWORDS.contains(&key) && rest.trim_start().starts_with('=')
}

/// The `password` value of a keyword/value string replaced by `***` (quoted or not).
fn mask_conninfo_password(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        let word_start = before.is_empty() || before.ends_with(char::is_whitespace);
        if !(word_start && trimmed.starts_with('=')) {
            out.push_str("password");
            rest = after_key;
            continue;
        }
        out.push_str("password=***");
        let value = trimmed[1..].trim_start();
        // The value ends at unquoted whitespace, or at its closing quote.
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            // Unquoted: up to whitespace that no backslash escapes.
            let mut escaped = false;
            value
                .char_indices()
                .find(|&(_, c)| {
                    let end = c.is_whitespace() && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map_or(value.len(), |(i, _)| i)
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// The database a PostgreSQL `--db` names (for file names): the URL's path, or the
/// `dbname` keyword; `devicegate` when it names none.
pub fn postgres_database_name(db: &str) -> String {
    if is_conninfo(db) {
        return db
            .split_whitespace()
            .find_map(|word| word.strip_prefix("dbname="))
            .map(|name| name.trim_matches('\'').to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "devicegate".into());
    }
    let rest = db.split_once("://").map_or(db, |(_, rest)| rest);
    let host_and_path = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let name = host_and_path
        .split_once('/')
        .map_or("", |(_, path)| path.split(['?', '#']).next().unwrap_or(""));
    if name.is_empty() {
        "devicegate".into()
    } else {
        name.to_string()
    }
}

/// `postgres://…` or `postgresql://…` (in any case), or a libpq keyword/value string.
pub fn is_postgres_url(s: &str) -> bool {
    let scheme = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    scheme.starts_with("postgres://") || scheme.starts_with("postgresql://") || is_conninfo(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_postgres_urls_are_urls() {
        assert!(super::is_postgres_url("postgres://u@h/db"));
        assert!(super::is_postgres_url("PostgreSQL://u@h/db"));
        assert!(!super::is_postgres_url("/var/lib/devicegate/devicegate.db"));
        assert!(!super::is_postgres_url("postgres.db"));
        // libpq's keyword/value strings are PostgreSQL too (found in review: one became a
        // SQLite file named after it).
        assert!(super::is_postgres_url("host=db dbname=dg"));
        assert!(super::is_postgres_url("  dbname = dg"));
        assert!(!super::is_postgres_url("/srv/host=db/devicegate.db"));
        assert!(!super::is_postgres_url("hostname=x"));
    }

    #[test]
    fn the_database_name_ignores_whatever_the_password_holds() {
        for (db, name) in [
            ("postgres://dg:a/b@db/logins?x=1", "logins"),
            ("postgres://db", "devicegate"),
            ("host=db dbname=logins user=dg", "logins"),
            ("host=db user=dg", "devicegate"),
        ] {
            assert_eq!(super::postgres_database_name(db), name, "{db}");
        }
    }

    #[test]
    fn a_described_url_never_shows_its_password() {
        use std::path::Path;
        for (url, shown) in [
            (
                "postgres://dg:s3cret@db:5432/dg",
                "postgres://dg:***@db:5432/dg",
            ),
            ("postgres://dg@db/dg", "postgres://dg@db/dg"),
            (
                "postgresql://db/dg?user=dg&password=s3cret&sslmode=disable",
                "postgresql://db/dg?user=dg&password=***&sslmode=disable",
            ),
            (
                "postgres://dg:p%40ss@db/dg?password=x",
                "postgres://dg:***@db/dg?password=***",
            ),
            (
                "/var/lib/devicegate/devicegate.db",
                "/var/lib/devicegate/devicegate.db",
            ),
            // Found in review: unencoded `/`, `?`, `#` in a password.
            (
                "postgres://dg:a/b?c#d@db:5432/dg",
                "postgres://dg:***@db:5432/dg",
            ),
            (
                "host=db dbname=dg user=dg password=s3/cr?t sslmode=require",
                "host=db dbname=dg user=dg password=*** sslmode=require",
            ),
            (
                "host=db password = 'two words' dbname=dg",
                "host=db password=*** dbname=dg",
            ),
            // Found in the second review.
            (
                "postgres://db/dg?pass%77ord=s3cret",
                "postgres://db/dg?password=***",
            ),
            (
                "host=db password=Sec\\ ret2 dbname=dg",
                "host=db password=*** dbname=dg",
            ),
        ] {
            assert_eq!(super::describe(Path::new(url)), shown, "{url}");
        }
    }
}
