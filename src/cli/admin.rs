//! Admin commands over the same library and database the server uses, safe to run while
//! it serves. Exit codes: 0 success, 1 the operation failed, 2 bad usage (clap's, and
//! `check` finding a configuration problem). Errors go to stderr; `--json` lists to stdout.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::{backup, clients, keys, users, CheckArgs, Command, GrantCommand};
use crate::clock::{Clock, Timestamp};
use crate::logging::printable;
use crate::protocol::approval::{self, Actor, ApprovalError, CodeProblem, Decision};
use crate::protocol::limits::{self, UnlockTarget};
use crate::secrets::{self, UserCodeError};
use crate::store::{self, Store};

/// A failed admin command: a message for stderr, and the exit code.
pub(super) struct Failure(pub String, pub u8);

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into(), 1)
    }
}

impl From<store::Error> for Failure {
    fn from(e: store::Error) -> Self {
        Failure::new(e.to_string())
    }
}

pub fn run_admin(db: &Path, command: Command) -> ExitCode {
    match execute(db, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn execute(db: &Path, command: Command) -> Result<(), Failure> {
    if let Command::Check(args) = command {
        return check(db, args);
    }
    if let Command::Migrate { from, to, force } = command {
        return migrate(&from, &to, force);
    }
    // Every command but `serve` (and `check`, which only reports) works on an existing
    // database: a mistyped --db must not become a new, empty one the server never reads.
    if is_file(db) && !db.exists() {
        return Err(Failure::new(format!(
            "no database at {}; pass --db or set DEVICEGATE_DB",
            db.display()
        )));
    }
    let mut store = Store::open_existing(db)?;
    let clock = Clock::system();
    crate::bootstrap::ensure_builtin_clients(&store, clock.now())?;
    match command {
        Command::Serve(_)
        | Command::Check(_)
        | Command::Migrate { .. }
        | Command::Login(_)
        | Command::Token { .. }
        | Command::Logout { .. }
        | Command::Status { .. } => Err(Failure::new("not an admin command")),
        Command::User(command) => users::run(&store, &clock, command),
        Command::Client(command) => clients::run(&store, &clock, command),
        Command::Key(command) => keys::run(&store, &clock, command),
        Command::Grant(GrantCommand::List { user, json }) => {
            let user_id = match user {
                Some(name) => Some(
                    store
                        .find_user_by_name(&name)?
                        .ok_or_else(|| Failure::new(format!("no user named `{name}`")))?
                        .id,
                ),
                None => None,
            };
            let grants = store.list_active_grants(user_id, clock.now().secs())?;
            if json {
                let rows: Vec<_> = grants
                    .iter()
                    .map(|g| {
                        json!({
                            "id": g.id, "username": g.username, "client_id": g.client_id,
                            "client_name": g.client_name, "scope": g.scope,
                            "approved_at": g.approved_at, "approved_ip": g.approved_ip,
                            "device_ip": g.device_ip, "device_user_agent": g.device_user_agent,
                            "last_used_at": g.last_used_at,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                for g in grants {
                    println!(
                        "{}\t{}\t{}\t{}\tapproved {} from {}\tlast used {}",
                        g.id,
                        printable(&g.username),
                        printable(&g.client_id),
                        printable(&g.scope),
                        Timestamp::from_secs(g.approved_at).utc_string(),
                        printable(g.approved_ip.as_deref().unwrap_or("-")),
                        Timestamp::from_secs(g.last_used_at).utc_string()
                    );
                }
            }
            Ok(())
        }
        Command::Grant(GrantCommand::Revoke { id }) => {
            if store.revoke_grant(id, None, clock.now().secs())? {
                audit(format_args!("grant revoke {id}"));
                println!("revoked grant {id}");
                Ok(())
            } else {
                Err(Failure::new(format!("no active grant {id}")))
            }
        }
        Command::Approve { user_code, user } => {
            let account = store
                .find_user_by_name(&user)?
                .filter(|u| !u.disabled)
                .ok_or_else(|| Failure::new(format!("no active user named `{user}`")))?;
            let decision = Decision::Approve {
                user_id: account.id,
            };
            let code = approval::decide(&store, &user_code, decision, Actor::Operator, clock.now())
                .map_err(explain)?;
            // The code is spent now, but its first half is all a log ever gets.
            audit(format_args!(
                "approve {} for `{}` (client `{}`)",
                secrets::redacted_user_code(&code.user_code),
                printable(&account.username),
                printable(&code.client_id)
            ));
            println!(
                "approved {} for {} (client {})",
                secrets::display_user_code(&code.user_code),
                printable(&account.username),
                printable(&code.client_id)
            );
            Ok(())
        }
        Command::Deny { user_code } => {
            let code = approval::decide(
                &store,
                &user_code,
                Decision::Deny,
                Actor::Operator,
                clock.now(),
            )
            .map_err(explain)?;
            audit(format_args!(
                "deny {} (client `{}`)",
                secrets::redacted_user_code(&code.user_code),
                printable(&code.client_id)
            ));
            println!(
                "denied {} (client {})",
                secrets::display_user_code(&code.user_code),
                printable(&code.client_id)
            );
            Ok(())
        }
        Command::Pending { json } => {
            let now = clock.now().secs();
            let pending = store.list_pending_device_codes(now)?;
            if json {
                let rows: Vec<_> = pending
                    .iter()
                    .map(|c| {
                        json!({
                            "user_code": secrets::display_user_code(&c.user_code),
                            "client_id": c.client_id, "scope": c.scope,
                            "age_secs": now - c.created_at, "expires_in": c.expires_at - now,
                            "device_ip": c.device_ip, "device_user_agent": c.device_user_agent,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                // The user agent is whatever the device sent: escaped, so it cannot move
                // the cursor, recolour or clear the operator's terminal.
                for c in pending {
                    println!(
                        "{}\t{}\t{}\t{}s ago\tfrom {}\t{}",
                        secrets::display_user_code(&c.user_code),
                        printable(&c.client_id),
                        printable(&c.scope),
                        now - c.created_at,
                        printable(&c.device_ip),
                        printable(c.device_user_agent.as_deref().unwrap_or("-"))
                    );
                }
            }
            Ok(())
        }
        Command::Unlock { target } => unlock(&store, &target),
        Command::Backup { file, force } => {
            backup::run(&store, &file, force)?;
            println!("backed up to {}", file.display());
            Ok(())
        }
    }
}

/// `unlock NAME|IP`: lifts sign-in locks and slow-downs on a user name (and that user's
/// code-entry lock), or sign-in and code-entry locks on an address (IPv6: its /64).
fn unlock(store: &Store, target: &str) -> Result<(), Failure> {
    let (what, mut removed) = limits::unlock(store, target)?;
    let mut known_user = false;
    let shown = match &what {
        UnlockTarget::Name(name) => {
            if let Some(user) = store.find_user_by_name(target)? {
                known_user = true;
                removed += limits::unlock_code_account(store, user.id)?;
            }
            format!("user name `{}`", printable(name))
        }
        UnlockTarget::Address(address) => format!("address {address}"),
    };
    // A typo must not look like success: neither a user nor an address, nothing counted.
    if removed == 0 && matches!(what, UnlockTarget::Name(_)) && !known_user {
        return Err(Failure::new(format!(
            "nothing to unlock: {shown} is no user and has no failed sign-ins; pass a user \
             name or an IP address"
        )));
    }
    audit(format_args!(
        "unlock {shown} ({removed} counter(s) cleared)"
    ));
    println!("unlocked {shown} ({removed} counter(s) cleared)");
    Ok(())
}

/// `check`: every problem at once. Configuration (exit 2), then what the server would meet
/// at start: can it bind the listen address, can it create or open the database (its
/// directory exists and takes new files; the file passes SQLite's integrity check) (exit 1).
fn check(db: &Path, args: CheckArgs) -> Result<(), Failure> {
    let json = args.json;
    let listen = args.serve.listen.clone();
    let address = listen.parse::<std::net::SocketAddr>().ok();
    // Every problem at once: a secret that cannot be read hides none of the others.
    let (config, mut config_problems) = args.serve.into_config_and_problems(db.to_path_buf());
    config_problems.extend(config.validate().err().unwrap_or_default());
    let config_problems = super::name_origins(config_problems);
    // The warnings `serve` would log at start.
    let warnings = address.map_or_else(Vec::new, |addr| {
        config.proxy_warnings(addr, &config.issuer_for(addr))
    });
    // Only an address was tried: anything else (a host name) is a configuration problem
    // and is never said to bind.
    let listen_problem = match address {
        Some(addr) => bind_problem(addr).err(),
        None => Some(format!(
            "{}: not tried (not an IP address and port like 127.0.0.1:8080)",
            printable(&listen)
        )),
    };
    let database = check_database(db);
    if json {
        print_json(&json!({
            "ok": config_problems.is_empty() && listen_problem.is_none() && database.is_ok(),
            "configuration": {
                "ok": config_problems.is_empty(),
                "problems": config_problems,
                "warnings": warnings,
            },
            "listen": {
                "ok": listen_problem.is_none(),
                "tried": address.is_some(),
                "address": listen,
                "problem": listen_problem,
            },
            "database": {
                "ok": database.is_ok(),
                "path": crate::store::describe(db),
                "exists": !is_file(db) || db.exists(),
                "problem": database.as_ref().err(),
            },
        }));
    } else {
        for problem in &config_problems {
            eprintln!("config: {problem}");
        }
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        if config_problems.is_empty() {
            println!("configuration: ok");
        }
        match &listen_problem {
            Some(problem) => eprintln!("listen: {problem}"),
            None => println!("listen: {} can be bound", printable(&listen)),
        }
        match &database {
            Ok(state) => println!("database: {state}"),
            Err(problem) => eprintln!("database: {problem}"),
        }
    }
    if !config_problems.is_empty() {
        return Err(Failure(
            format!("{} configuration problem(s)", config_problems.len()),
            2,
        ));
    }
    if listen_problem.is_some() || database.is_err() {
        return Err(Failure::new("the server would not start"));
    }
    Ok(())
}

/// Binds `addr` for a moment, as `serve` would, and says why it cannot.
fn bind_problem(addr: std::net::SocketAddr) -> Result<(), String> {
    use std::io::ErrorKind;
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) => Err(match e.kind() {
            ErrorKind::AddrInUse => format!(
                "{addr}: address in use (another program, or devicegate already running, \
                 listens there)"
            ),
            ErrorKind::PermissionDenied => format!(
                "{addr}: permission denied (ports below 1024 need root or \
                 CAP_NET_BIND_SERVICE, e.g. AmbientCapabilities= in a systemd unit)"
            ),
            ErrorKind::AddrNotAvailable => {
                format!("{addr}: address not available (not an address of this machine)")
            }
            _ => format!("{addr}: cannot bind: {e}"),
        }),
    }
}

/// `devicegate migrate --from SOURCE --to TARGET [--force]`: prints the rows copied per
/// table. The source must exist; the target's schema is created when missing.
fn migrate(from: &Path, to: &Path, force: bool) -> Result<(), Failure> {
    let (shown_from, shown_to) = (store::describe(from), store::describe(to));
    if store::Location::of(from) == store::Location::of(to) {
        return Err(Failure::new("--from and --to name the same database"));
    }
    if is_file(from) && !from.exists() {
        return Err(Failure::new(format!("no database at {shown_from}")));
    }
    let source = Store::open_existing(from)
        .map_err(|e| Failure::new(format!("cannot open {shown_from}: {e}")))?;
    let target =
        Store::open(to).map_err(|e| Failure::new(format!("cannot open {shown_to}: {e}")))?;
    let counts = target.copy_from(&source, force).map_err(|e| match e {
        store::Error::Conflict(detail) => Failure::new(format!("{shown_to}: {detail}")),
        other => Failure::new(format!("nothing was copied: {other}")),
    })?;
    let mut report = format!(
        "copied {shown_from} ({}) into {shown_to} ({}); rows per table, verified on both sides:\n",
        source.backend(),
        target.backend()
    );
    for (table, rows) in &counts {
        let _ = writeln!(report, "  {table:<15} {rows}");
    }
    let _ = writeln!(
        report,
        "This is {shown_from} as of now: whatever a server still running on it writes from \
         here on is not in {shown_to}. Start the servers on the new database only."
    );
    print!("{report}");
    audit(format_args!("migrate from {shown_from} to {shown_to}"));
    Ok(())
}

/// `--db` names a SQLite file (not a PostgreSQL URL).
fn is_file(db: &Path) -> bool {
    matches!(
        crate::store::Location::of(db),
        crate::store::Location::File(_)
    )
}

fn database_directory(db: &Path) -> &Path {
    match db.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A database that does not exist in a directory that does not exist either: what to do,
/// in the words `check` and `serve` both use. `None` otherwise.
pub fn missing_directory(db: &Path) -> Option<String> {
    if !is_file(db) {
        return None;
    }
    let dir = database_directory(db);
    (!db.exists() && !dir.is_dir()).then(|| {
        format!(
            "the directory {} does not exist, so {} cannot be created; create it (owned by \
             the user devicegate runs as) or pass another --db",
            dir.display(),
            db.display()
        )
    })
}

/// The database as `serve` would meet it: `Ok` with what was found, or the problem.
fn check_database(db: &Path) -> Result<String, String> {
    if !is_file(db) || db.exists() {
        let store = match Store::open_existing(db) {
            Ok(store) => store,
            // Reached, but empty: as a file that does not exist yet.
            Err(store::Error::Unavailable(detail)) if detail.starts_with(store::NO_SCHEMA) => {
                return Ok(format!(
                    "{} has no devicegate tables yet (created on first start)",
                    store::describe(db)
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        let report = store.integrity_check().map_err(|e| e.to_string())?;
        return if report == ["ok"] {
            Ok("ok".into())
        } else {
            Err(format!("failed its integrity check: {}", report.join("; ")))
        };
    }
    if let Some(problem) = missing_directory(db) {
        return Err(problem);
    }
    let dir = database_directory(db);
    // Creating (and at once removing) a file is the only sure test of "may create here".
    tempfile::Builder::new()
        .prefix(".devicegate-check")
        .tempfile_in(dir)
        .map_err(|e| {
            format!(
                "cannot create files in {} ({e}), so {} cannot be created",
                dir.display(),
                db.display()
            )
        })?;
    Ok(format!(
        "{} does not exist yet (created on first start)",
        db.display()
    ))
}

/// Writes an audit line for an admin action, in the server's log format on stderr:
/// `audit: <action> by <operator>`. `what` names ids and settings, never a secret or a
/// password; client-chosen text in it is already `printable`.
pub(super) fn audit(what: std::fmt::Arguments<'_>) {
    log::info!("audit: {what} by {}", operator());
}

/// Who runs this command: the user id (from the kernel, on Linux) and the name the
/// environment claims, said as a claim (`uid 0 (SUDO_USER=alice)`): any caller can set
/// these variables, so the name is never presented as fact.
fn operator() -> String {
    let name = ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{var}={}", printable(&v)))
    });
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(str::to_string))
        });
    match (name, uid) {
        (Some(name), Some(uid)) => format!("uid {uid} ({name})"),
        (Some(name), None) => format!("an unknown uid ({name})"),
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "an unknown user".into(),
    }
}

/// Prints JSON to stdout. serde_json escapes C0 controls but passes DEL, C1 controls and
/// bidi overrides through; those are escaped here too (`\u009b`), in strings, where alone
/// they can occur: the same JSON value, and nothing a terminal would act on.
pub(super) fn print_json(value: &impl serde::Serialize) {
    let json = serde_json::to_string_pretty(value).unwrap_or_else(|_| "[]".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if crate::logging::needs_escape(c) && !c.is_ascii_whitespace() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    println!("{out}");
}

/// Prompts without echo on a terminal; otherwise reads the first line of stdin (scripts).
pub(super) fn read_password(name: &str) -> Result<String, Failure> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .map_err(|e| Failure::new(format!("cannot read password: {e}")))?;
        let again = rpassword::prompt_password("Repeat it: ")
            .map_err(|e| Failure::new(format!("cannot read password: {e}")))?;
        if first != again {
            return Err(Failure::new("the passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(format!("cannot read password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < 8 {
        return Err(Failure::new("the password must have at least 8 characters"));
    }
    Ok(password)
}

fn explain(error: ApprovalError) -> Failure {
    Failure::new(match error {
        ApprovalError::Store(e) => e.to_string(),
        ApprovalError::Locked(_) => "too many failed attempts".into(),
        ApprovalError::Code(problem) => match problem {
            CodeProblem::Malformed(UserCodeError::BadCharacters(chars)) => {
                format!("a code never contains `{chars}`")
            }
            CodeProblem::Malformed(_) => "a code has 8 characters, like BCDF-GHJK".into(),
            CodeProblem::Unknown => "no such code".into(),
            CodeProblem::Expired => "that code has expired".into(),
            CodeProblem::AlreadyUsed => "that code was already approved".into(),
            CodeProblem::Denied => "that code was denied".into(),
        },
    })
}
