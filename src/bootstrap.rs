//! First-run set-up: the built-in public client `guest` that Campus's CLI and library use,
//! and an `admin` user with a random password when the database has no users at all.
//!
//! The password must reach the operator exactly once, whatever runs the server: on a
//! terminal it is printed; otherwise (systemd's journal, a container's log) it goes to a
//! private file beside the database and only that file's path is logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::clock::Timestamp;
use crate::protocol::scope::{EMAIL_SCOPE, OFFLINE_ACCESS_SCOPE, OPENID_SCOPE, PROFILE_SCOPE};
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets;
use crate::store::{self, NewClient, Store};

pub const GUEST_CLIENT_ID: &str = "guest";
/// What `guest` may ask for: Campus's `read write` (also its default when it names no
/// scope, see `protocol::scope::default_scope`) and the four OpenID Connect scopes, so
/// kubelogin, MSAL and other OpenID Connect clients can sign in with it.
pub const GUEST_SCOPES: &[&str] = &[
    "read",
    "write",
    OPENID_SCOPE,
    PROFILE_SCOPE,
    EMAIL_SCOPE,
    OFFLINE_ACCESS_SCOPE,
];
/// The name the consent page shows for `guest` ("… wants to sign in"): what a person
/// recognises, not what it is inside devicegate.
pub const GUEST_CLIENT_NAME: &str = "Command-line sign-in";
/// `guest`'s name before issue #13; a database still carrying it gets the new one.
const OLD_GUEST_CLIENT_NAME: &str = "Guest (built-in public client)";

/// Creates `guest` when missing; leaves an operator's changes to it alone (only the old
/// default name is replaced by the new one; the old default scope list was extended once,
/// by the schema's version-3 upgrade in `store`).
pub fn ensure_builtin_clients(store: &Store, now: Timestamp) -> Result<(), store::Error> {
    let scopes: Vec<String> = GUEST_SCOPES.iter().map(|s| s.to_string()).collect();
    let grants = vec![
        DEVICE_CODE_GRANT.to_string(),
        REFRESH_TOKEN_GRANT.to_string(),
    ];
    let created = store.create_client_if_missing(
        &NewClient {
            client_id: GUEST_CLIENT_ID,
            name: GUEST_CLIENT_NAME,
            secret_hash: None,
            scopes: &scopes,
            grant_types: &grants,
            device_code_ttl: None,
            poll_interval: None,
        },
        now.secs(),
    )?;
    if created {
        log::info!("created the built-in public client `{GUEST_CLIENT_ID}`");
    } else {
        store.rename_client_if_named(GUEST_CLIENT_ID, OLD_GUEST_CLIENT_NAME, GUEST_CLIENT_NAME)?;
    }
    Ok(())
}

pub const FIRST_ADMIN: &str = "admin";

/// How long (in 100 ms steps) a first start that finds the password file already there
/// waits for the instance that made it to create `admin`.
const FIRST_START_WAIT_STEPS: u32 = 30;

/// On a database without users, creates `admin` with a random password and returns it, so
/// the caller can show it once on the terminal (never in the log). Later starts: `None`.
pub fn ensure_first_admin(store: &Store, now: Timestamp) -> Result<Option<String>, store::Error> {
    if store.count_users()? > 0 {
        return Ok(None);
    }
    // 20 characters from a 33-letter alphabet: ~100 bits, and easy to type.
    let password = secrets::random_id(20);
    let hash =
        secrets::hash_password(&password).map_err(|e| store::Error::Internal(e.to_string()))?;
    match store.create_user(FIRST_ADMIN, &hash, now.secs()) {
        Ok(_) => Ok(Some(password)),
        // Another process created it at the same moment: theirs stands.
        Err(store::Error::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the first start leaves `admin`'s password when stdout is not a terminal:
/// `<db>.admin-password`, beside the database (the same directory, the same owner). On
/// PostgreSQL, `devicegate-<database name>.admin-password` in `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`), else in the working directory; the name keeps servers of several
/// databases started from one directory apart.
pub fn admin_password_path(db: &Path) -> PathBuf {
    if let store::Location::Postgres(url) = store::Location::of(db) {
        // systemd's StateDirectory= (the first, if several), else the working directory.
        let here = std::env::var_os("STATE_DIRECTORY")
            .and_then(|dirs| std::env::split_paths(&dirs).next())
            .filter(|dir| !dir.as_os_str().is_empty())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        return here.join(format!("devicegate-{}.admin-password", database_name(&url)));
    }
    let mut name = db.as_os_str().to_owned();
    name.push(".admin-password");
    PathBuf::from(name)
}

/// A PostgreSQL database's name as a file name may carry it (letters, digits, `_`, `-`;
/// anything else becomes `_`).
fn database_name(db: &str) -> String {
    store::postgres_database_name(db)
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What the first start did about `admin`.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstAdmin {
    /// There were users already. `reminder`: the password file of an earlier first start is
    /// still there (the caller reminds the operator to sign in and delete it).
    Existing { reminder: Option<PathBuf> },
    /// Created `admin`; the caller shows this password on the terminal, once.
    Show(String),
    /// Created `admin`; its password is in this 0600 file (the caller logs the path only).
    InFile(PathBuf),
}

/// Why the first start could not create `admin`. Nothing was created.
#[derive(Debug)]
pub enum FirstAdminError {
    Store(store::Error),
    /// The password file could not be created (it exists, is a symlink, the directory is
    /// not writable): the path and the reason.
    File(PathBuf, std::io::Error),
}

impl std::fmt::Display for FirstAdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FirstAdminError::Store(e) => write!(f, "{e}"),
            FirstAdminError::File(path, e) => write!(
                f,
                "cannot create {} for the first start's `{FIRST_ADMIN}` password ({e}); \
                 no user was created. Remove or fix it and start again, or create a user \
                 with `devicegate user add NAME`",
                path.display()
            ),
        }
    }
}

impl From<store::Error> for FirstAdminError {
    fn from(e: store::Error) -> Self {
        FirstAdminError::Store(e)
    }
}

/// The first start's `admin`: created on a database without users, its password either
/// returned for the terminal (`to_file == false`) or written to `admin_password_path(db)`
/// (created exclusively, mode 0600, never through a symlink) before the user exists, so
/// a failure leaves no user whose password nobody saw.
pub fn first_start(
    store: &Store,
    db: &Path,
    to_file: bool,
    now: Timestamp,
) -> Result<FirstAdmin, FirstAdminError> {
    let path = admin_password_path(db);
    if store.count_users()? > 0 {
        let reminder = std::fs::symlink_metadata(&path).is_ok().then_some(path);
        return Ok(FirstAdmin::Existing { reminder });
    }
    if !to_file {
        return Ok(match ensure_first_admin(store, now)? {
            Some(password) => FirstAdmin::Show(password),
            None => FirstAdmin::Existing { reminder: None },
        });
    }
    let mut file = match create_private(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another instance starting at this moment on the same database (several
            // instances, one PostgreSQL) made the file and is creating `admin`: theirs
            // stands. A file left by a first start that died before `admin` existed stays
            // an error, as before.
            for _ in 0..FIRST_START_WAIT_STEPS {
                if store.count_users()? > 0 {
                    return Ok(FirstAdmin::Existing {
                        reminder: Some(path),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            return Err(FirstAdminError::File(path, e));
        }
        Err(e) => return Err(FirstAdminError::File(path, e)),
    };
    let created = ensure_first_admin(store, now);
    let written = match &created {
        Ok(Some(password)) => file
            .write_all(format!("{password}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| FirstAdminError::File(path.clone(), e)),
        _ => Ok(()),
    };
    match (created, written) {
        (Ok(Some(_)), Ok(())) => Ok(FirstAdmin::InFile(path)),
        (Ok(Some(_)), Err(e)) => {
            // Unwritten: take the user back so the next start tries again.
            let _ = std::fs::remove_file(&path);
            let _ = store.delete_user(FIRST_ADMIN);
            Err(e)
        }
        (Ok(None), _) => {
            let _ = std::fs::remove_file(&path);
            Ok(FirstAdmin::Existing { reminder: None })
        }
        (Err(e), _) => {
            let _ = std::fs::remove_file(&path);
            Err(e.into())
        }
    }
}

/// A new file: 0600, `O_EXCL` (never over an existing file or a dangling symlink),
/// `O_NOFOLLOW`.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_postgresql_the_password_file_is_named_after_the_database() {
        let here = std::env::current_dir().expect("cwd");
        for (url, name) in [
            (
                "postgres://dg:pw@db/logins",
                "devicegate-logins.admin-password",
            ),
            (
                "postgresql://db/a.b?sslmode=disable",
                "devicegate-a_b.admin-password",
            ),
            ("postgres://db", "devicegate-devicegate.admin-password"),
            (
                "postgres://db/../../etc",
                "devicegate-______etc.admin-password",
            ),
        ] {
            assert_eq!(
                admin_password_path(Path::new(url)),
                here.join(name),
                "{url}"
            );
        }
    }

    #[test]
    fn the_password_file_sits_beside_the_database() {
        assert_eq!(
            admin_password_path(Path::new("/var/lib/devicegate/devicegate.db")),
            Path::new("/var/lib/devicegate/devicegate.db.admin-password")
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_password_file_stops_the_first_start_without_creating_admin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("d.db");
        let store = Store::open(&db).expect("store");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), admin_password_path(&db))
            .expect("symlink");
        let result = first_start(&store, &db, true, Timestamp::from_secs(0));
        assert!(
            matches!(result, Err(FirstAdminError::File(..))),
            "{result:?}"
        );
        assert_eq!(store.count_users().expect("count"), 0);
        assert!(
            !dir.path().join("elsewhere").exists(),
            "no file through the link"
        );
    }

    #[test]
    fn a_second_instance_starting_at_once_leaves_the_first_start_to_the_other() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("d.db");
        let store = Store::open(&db).expect("store");
        // The other instance has made the file and is about to create `admin`.
        std::fs::write(admin_password_path(&db), "theirs\n").expect("file");
        let other = {
            let db = db.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let store = Store::open(&db).expect("store");
                store.create_user(FIRST_ADMIN, "hash", 0).expect("admin");
            })
        };
        let result = first_start(&store, &db, true, Timestamp::from_secs(0));
        other.join().expect("other instance");
        assert_eq!(
            result.expect("no error"),
            FirstAdmin::Existing {
                reminder: Some(admin_password_path(&db))
            }
        );
        let theirs = std::fs::read_to_string(admin_password_path(&db)).expect("read");
        assert_eq!(theirs, "theirs\n");
    }

    #[test]
    fn on_a_terminal_the_password_is_returned_and_no_file_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("d.db");
        let store = Store::open(&db).expect("store");
        let password = match first_start(&store, &db, false, Timestamp::from_secs(0)) {
            Ok(FirstAdmin::Show(password)) => password,
            other => panic!("{other:?}"),
        };
        assert_eq!(password.len(), 20);
        assert!(!admin_password_path(&db).exists());
        assert_eq!(store.count_users().expect("count"), 1);
    }

    #[test]
    fn later_starts_remind_while_the_file_is_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("d.db");
        let store = Store::open(&db).expect("store");
        let path = match first_start(&store, &db, true, Timestamp::from_secs(0)) {
            Ok(FirstAdmin::InFile(path)) => path,
            other => panic!("{other:?}"),
        };
        let again = first_start(&store, &db, true, Timestamp::from_secs(1)).expect("start");
        assert_eq!(
            again,
            FirstAdmin::Existing {
                reminder: Some(path.clone())
            }
        );
        std::fs::remove_file(&path).expect("remove");
        let again = first_start(&store, &db, false, Timestamp::from_secs(2)).expect("start");
        assert_eq!(again, FirstAdmin::Existing { reminder: None });
    }
}
