//! Admin commands over the same library and database the server uses.
//! Exit codes: 0 success, 1 the operation failed, 2 bad usage (clap).

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use super::{ClientCommand, Command, GrantCommand, UserCommand};
use crate::clock::Clock;
use crate::protocol::approval::{self, Actor, ApprovalError, CodeProblem, Decision};
use crate::protocol::scope::is_scope_token;
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets::{self, UserCodeError};
use crate::store::{self, NewClient, Store};

/// A failed admin command: a message for stderr.
struct Failure(String);

impl From<store::Error> for Failure {
    fn from(e: store::Error) -> Self {
        Failure(e.to_string())
    }
}

pub fn run_admin(db: &Path, command: Command) -> ExitCode {
    match execute(db, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(db: &Path, command: Command) -> Result<(), Failure> {
    let store = Store::open(db)?;
    let clock = Clock::system();
    crate::bootstrap::ensure_builtin_clients(&store, clock.now())?;
    match command {
        Command::Serve(_) => Err(Failure("serve is not an admin command".into())),
        Command::Client(ClientCommand::Add {
            name,
            confidential,
            scope,
            grant_types,
        }) => add_client(&store, &clock, &name, confidential, &scope, &grant_types),
        Command::Client(ClientCommand::List) => {
            for c in store.list_clients()? {
                let kind = if c.is_confidential() {
                    "confidential"
                } else {
                    "public"
                };
                println!(
                    "{}\t{}\t{}\tscopes: {}\tgrants: {}",
                    c.client_id,
                    kind,
                    c.name,
                    c.scopes.join(" "),
                    c.grant_types
                        .iter()
                        .map(|g| short_grant(g))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Add { name }) => add_user(&store, &clock, &name),
        Command::User(UserCommand::List) => {
            for u in store.list_users()? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}\t{}", u.username, state);
            }
            Ok(())
        }
        Command::Grant(GrantCommand::List { user }) => {
            let user_id = match user {
                Some(name) => Some(
                    store
                        .find_user_by_name(&name)?
                        .ok_or_else(|| Failure(format!("no user named `{name}`")))?
                        .id,
                ),
                None => None,
            };
            for g in store.list_active_grants(user_id, clock.now().secs())? {
                println!(
                    "{}\t{}\t{}\t{}\tapproved {} from {}\tlast used {}",
                    g.id,
                    g.username,
                    g.client_id,
                    g.scope,
                    crate::clock::Timestamp::from_secs(g.approved_at).utc_string(),
                    g.approved_ip.as_deref().unwrap_or("-"),
                    crate::clock::Timestamp::from_secs(g.last_used_at).utc_string()
                );
            }
            Ok(())
        }
        Command::Grant(GrantCommand::Revoke { id }) => {
            let mut store = store;
            if store.revoke_grant(id, None, clock.now().secs())? {
                println!("revoked grant {id}");
                Ok(())
            } else {
                Err(Failure(format!("no active grant {id}")))
            }
        }
        Command::Approve { user_code, user } => {
            let account = store
                .find_user_by_name(&user)?
                .filter(|u| !u.disabled)
                .ok_or_else(|| Failure(format!("no active user named `{user}`")))?;
            let code = approval::decide(
                &store,
                &user_code,
                Decision::Approve {
                    user_id: account.id,
                },
                Actor::Operator,
                clock.now(),
            )
            .map_err(explain)?;
            println!(
                "approved {} for {} (client {})",
                secrets::display_user_code(&code.user_code),
                account.username,
                code.client_id
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
            println!(
                "denied {} (client {})",
                secrets::display_user_code(&code.user_code),
                code.client_id
            );
            Ok(())
        }
    }
}

fn add_client(
    store: &Store,
    clock: &Clock,
    name: &str,
    confidential: bool,
    scope: &str,
    grant_types: &str,
) -> Result<(), Failure> {
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(Failure(format!("`{bad}` is not a valid scope")));
    }
    let grants = grant_types
        .split_whitespace()
        .map(|g| match g {
            "device_code" | DEVICE_CODE_GRANT => Ok(DEVICE_CODE_GRANT.to_string()),
            REFRESH_TOKEN_GRANT => Ok(REFRESH_TOKEN_GRANT.to_string()),
            other => Err(Failure(format!(
                "unknown grant type `{other}` (use device_code, refresh_token)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client_id = format!("{}-{}", slug(name), secrets::random_id(8));
    let secret = confidential.then(secrets::random_token);
    let secret_hash = secret.as_deref().map(secrets::hash_secret);
    store.create_client(
        &NewClient {
            client_id: &client_id,
            name,
            secret_hash: secret_hash.as_deref(),
            scopes: &scopes,
            grant_types: &grants,
            device_code_ttl: None,
            poll_interval: None,
        },
        clock.now().secs(),
    )?;
    println!("client_id: {client_id}");
    if let Some(secret) = secret {
        println!("client_secret: {secret}");
        eprintln!("Store the secret now: only its hash is kept, it cannot be shown again.");
    }
    Ok(())
}

fn add_user(store: &Store, clock: &Clock, name: &str) -> Result<(), Failure> {
    if name.is_empty()
        || name.len() > 64
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Failure(
            "a user name is 1–64 characters without spaces".into(),
        ));
    }
    let password = read_password(name)?;
    if password.chars().count() < 8 {
        return Err(Failure(
            "the password must have at least 8 characters".into(),
        ));
    }
    let hash = secrets::hash_password(&password).map_err(|e| Failure(e.to_string()))?;
    match store.create_user(name, &hash, clock.now().secs()) {
        Ok(_) => {
            println!("added user {name}");
            Ok(())
        }
        Err(store::Error::Conflict(_)) => Err(Failure(format!("user `{name}` already exists"))),
        Err(e) => Err(e.into()),
    }
}

/// Prompts without echo on a terminal; otherwise reads the first line of stdin (scripts).
fn read_password(name: &str) -> Result<String, Failure> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .map_err(|e| Failure(format!("cannot read password: {e}")))?;
        let again = rpassword::prompt_password("Repeat it: ")
            .map_err(|e| Failure(format!("cannot read password: {e}")))?;
        if first != again {
            return Err(Failure("the passwords differ".into()));
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure(format!("cannot read password from stdin: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

fn explain(error: ApprovalError) -> Failure {
    Failure(match error {
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

fn short_grant(grant: &str) -> &str {
    if grant == DEVICE_CODE_GRANT {
        "device_code"
    } else {
        grant
    }
}

fn slug(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(24).collect();
    if slug.is_empty() {
        "client".into()
    } else {
        slug
    }
}
