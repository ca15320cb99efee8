//! `devicegate client …`

use serde_json::json;

use super::admin::{print_json, Failure};
use super::ClientCommand;
use crate::bootstrap::GUEST_CLIENT_ID;
use crate::clock::Clock;
use crate::logging::printable;
use crate::protocol::scope::is_scope_token;
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets;
use crate::store::{Client, NewClient, Store};

pub(super) fn run(store: &Store, clock: &Clock, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Add {
            name,
            confidential,
            scope,
            grant_types,
            device_code_ttl,
            poll_interval,
        } => {
            let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
            if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
                return Err(Failure::new(format!("`{bad}` is not a valid scope")));
            }
            let grants = parse_grants(&grant_types)?;
            if device_code_ttl.is_some_and(|t| !(60..=86_400).contains(&t)) {
                return Err(Failure::new(
                    "--device-code-ttl: between 60 and 86400 seconds",
                ));
            }
            if poll_interval.is_some_and(|i| !(1..=60).contains(&i)) {
                return Err(Failure::new("--poll-interval: between 1 and 60 seconds"));
            }
            let client_id = format!("{}-{}", slug(&name), secrets::random_id(8));
            let secret = confidential.then(secrets::random_token);
            let secret_hash = secret.as_deref().map(secrets::hash_secret);
            store.create_client(
                &NewClient {
                    client_id: &client_id,
                    name: &name,
                    secret_hash: secret_hash.as_deref(),
                    scopes: &scopes,
                    grant_types: &grants,
                    device_code_ttl,
                    poll_interval,
                },
                clock.now().secs(),
            )?;
            println!("client_id: {client_id}");
            if let Some(secret) = secret {
                print_secret(&secret);
            }
            Ok(())
        }
        ClientCommand::List { json } => {
            let clients = store.list_clients()?;
            if json {
                print_json(&clients.iter().map(as_json).collect::<Vec<_>>());
            } else {
                for c in clients {
                    println!("{}", line(&c));
                }
            }
            Ok(())
        }
        ClientCommand::Show { client_id, json } => {
            let client = store
                .find_client(&client_id)?
                .ok_or_else(|| Failure::new(format!("no client `{client_id}`")))?;
            if json {
                print_json(&as_json(&client));
            } else {
                println!("{}", line(&client));
            }
            Ok(())
        }
        ClientCommand::Remove { client_id } => {
            if client_id == GUEST_CLIENT_ID {
                return Err(Failure::new(
                    "the built-in client `guest` cannot be removed (it is recreated at start)",
                ));
            }
            if !store.delete_client(&client_id)? {
                return Err(Failure::new(format!("no client `{client_id}`")));
            }
            println!("removed client {client_id} with its grants and tokens");
            Ok(())
        }
        ClientCommand::RotateSecret { client_id } => {
            let client = store
                .find_client(&client_id)?
                .ok_or_else(|| Failure::new(format!("no client `{client_id}`")))?;
            if !client.is_confidential() {
                return Err(Failure::new(format!(
                    "`{client_id}` is a public client: it has no secret"
                )));
            }
            let secret = secrets::random_token();
            store.set_client_secret(&client_id, &secrets::hash_secret(&secret))?;
            println!("client_id: {client_id}");
            print_secret(&secret);
            Ok(())
        }
    }
}

fn print_secret(secret: &str) {
    println!("client_secret: {secret}");
    eprintln!("Store the secret now: only its hash is kept, it cannot be shown again.");
}

fn parse_grants(grant_types: &str) -> Result<Vec<String>, Failure> {
    grant_types
        .split_whitespace()
        .filter(|g| *g != "none")
        .map(|g| match g {
            "device_code" | DEVICE_CODE_GRANT => Ok(DEVICE_CODE_GRANT.to_string()),
            REFRESH_TOKEN_GRANT => Ok(REFRESH_TOKEN_GRANT.to_string()),
            other => Err(Failure::new(format!(
                "unknown grant type `{other}` (use device_code, refresh_token or none)"
            ))),
        })
        .collect()
}

fn short_grant(grant: &str) -> &str {
    if grant == DEVICE_CODE_GRANT {
        "device_code"
    } else {
        grant
    }
}

fn line(c: &Client) -> String {
    let kind = if c.is_confidential() {
        "confidential"
    } else {
        "public"
    };
    let grants: Vec<&str> = c.grant_types.iter().map(|g| short_grant(g)).collect();
    format!(
        "{}\t{}\t{}\tscopes: {}\tgrants: {}",
        printable(&c.client_id),
        kind,
        printable(&c.name),
        printable(&c.scopes.join(" ")),
        printable(&grants.join(" "))
    )
}

fn as_json(c: &Client) -> serde_json::Value {
    json!({
        "client_id": c.client_id, "name": c.name, "confidential": c.is_confidential(),
        "scopes": c.scopes, "grant_types": c.grant_types,
        "device_code_ttl": c.device_code_ttl, "poll_interval": c.poll_interval,
        "created_at": c.created_at,
    })
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
