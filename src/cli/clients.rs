//! `devicegate client …`

use serde_json::json;

use super::admin::{audit, print_json, Failure};
use super::ClientCommand;
use crate::bootstrap::GUEST_CLIENT_ID;
use crate::clock::Clock;
use crate::config::{DEVICE_CODE_TTL_RANGE, POLL_INTERVAL_RANGE};
use crate::logging::printable;
use crate::protocol::scope::{is_scope_token, OFFLINE_ACCESS_SCOPE};
use crate::protocol::{DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};
use crate::secrets;
use crate::store::{self, Client, ClientChanges, NewClient, Store};

pub(super) fn run(store: &Store, clock: &Clock, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Add {
            name,
            id,
            json,
            confidential,
            scope,
            grant_types,
            device_code_ttl,
            poll_interval,
            tokens,
        } => {
            check_name(&name)?;
            let token_changes = token_changes(&tokens)?;
            let scopes = parse_scopes(&scope)?;
            let grants = parse_grants(&grant_types)?;
            check_lifetimes(device_code_ttl, poll_interval)?;
            let client_id = match id {
                Some(id) => {
                    check_client_id(&id)?;
                    // `Guest` beside `guest`: two clients a person cannot tell apart.
                    if let Some(other) = store
                        .list_clients()?
                        .into_iter()
                        .find(|c| c.client_id.eq_ignore_ascii_case(&id))
                    {
                        return Err(Failure::new(format!(
                            "a client `{}` already exists, differing only in case; choose \
                             another --id",
                            printable(&other.client_id)
                        )));
                    }
                    id
                }
                None => format!("{}-{}", slug(&name), secrets::random_id(8)),
            };
            let secret = confidential.then(secrets::random_token);
            let secret_hash = secret.as_deref().map(secrets::hash_secret);
            let created = store.create_client(
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
            );
            match created {
                Ok(()) => {}
                Err(store::Error::Conflict(_)) => {
                    return Err(Failure::new(format!(
                        "a client `{client_id}` already exists; choose another --id (or \
                         change it with `devicegate client edit {client_id}`)"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
            let token_fields = token_changes.given();
            if !token_fields.is_empty() {
                store.update_client(&client_id, &token_changes.changes())?;
            }
            audit(format_args!(
                "client add `{client_id}` ({}, name \"{}\", scopes \"{}\"{})",
                if confidential {
                    "confidential"
                } else {
                    "public"
                },
                printable(&name),
                scopes.join(" "),
                if token_fields.is_empty() {
                    String::new()
                } else {
                    format!(", {}", token_fields.join(", "))
                }
            ));
            warn_if_never_refreshed(
                &scopes,
                tokens.refresh_requires_offline_access == Some(true),
            );
            if json {
                print_json(&json!({"client_id": client_id, "client_secret": secret}));
                if secret.is_some() {
                    eprintln!("{SECRET_ONCE}");
                }
            } else {
                println!("client_id: {client_id}");
                if let Some(secret) = secret {
                    print_secret(&secret);
                }
            }
            Ok(())
        }
        ClientCommand::Edit {
            client_id,
            name,
            scope,
            grant_types,
            device_code_ttl,
            poll_interval,
            tokens,
        } => {
            let token_changes = token_changes(&tokens)?;
            if let Some(name) = &name {
                check_name(name)?;
            }
            let scopes = scope.as_deref().map(parse_scopes).transpose()?;
            let grants = grant_types.as_deref().map(parse_grants).transpose()?;
            let device_code_ttl = device_code_ttl
                .as_deref()
                .map(|t| lifetime("--device-code-ttl", t))
                .transpose()?;
            let poll_interval = poll_interval
                .as_deref()
                .map(|t| lifetime("--poll-interval", t))
                .transpose()?;
            check_lifetimes(device_code_ttl.flatten(), poll_interval.flatten())?;
            let changes = ClientChanges {
                name: name.as_deref(),
                scopes: scopes.as_deref(),
                grant_types: grants.as_deref(),
                device_code_ttl,
                poll_interval,
                ..token_changes.changes()
            };
            let mut changed: Vec<&str> = token_changes.given();
            for (field, given) in [
                ("name", changes.name.is_some()),
                ("scopes", changes.scopes.is_some()),
                ("grant types", changes.grant_types.is_some()),
                ("device code lifetime", changes.device_code_ttl.is_some()),
                ("poll interval", changes.poll_interval.is_some()),
            ] {
                if given {
                    changed.push(field);
                }
            }
            if changed.is_empty() {
                return Err(Failure(
                    "nothing to change: give --name, --scope, --grant-types, \
                     --device-code-ttl, --poll-interval, --access-token-format, \
                     --access-token-audience, --id-token-alg or \
                     --refresh-requires-offline-access"
                        .into(),
                    2,
                ));
            }
            if !store.update_client(&client_id, &changes)? {
                return Err(unknown(&client_id));
            }
            audit(format_args!(
                "client edit `{}`: {}",
                printable(&client_id),
                changed.join(", ")
            ));
            let client = store
                .find_client(&client_id)?
                .ok_or_else(|| unknown(&client_id))?;
            println!("{}", line(&client));
            warn_if_never_refreshed(&client.scopes, client.refresh_requires_offline_access);
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
                .ok_or_else(|| unknown(&client_id))?;
            if json {
                print_json(&as_json(&client));
            } else {
                println!("{}", line(&client));
                let setting = |value: Option<u64>| {
                    value.map_or_else(|| "the server's".to_string(), |v| format!("{v}s"))
                };
                println!(
                    "  device codes live: {}\n  poll interval:     {}",
                    setting(client.device_code_ttl),
                    setting(client.poll_interval)
                );
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
                return Err(unknown(&client_id));
            }
            audit(format_args!("client remove `{}`", printable(&client_id)));
            println!("removed client {client_id} with its grants and tokens");
            Ok(())
        }
        ClientCommand::RotateSecret { client_id, json } => {
            let client = store
                .find_client(&client_id)?
                .ok_or_else(|| unknown(&client_id))?;
            if !client.is_confidential() {
                return Err(Failure::new(format!(
                    "`{}` is a public client: it has no secret",
                    printable(&client_id)
                )));
            }
            let secret = secrets::random_token();
            if !store.set_client_secret(&client_id, &secrets::hash_secret(&secret))? {
                return Err(unknown(&client_id));
            }
            audit(format_args!(
                "client rotate-secret `{}`: the old secret stops working",
                printable(&client_id)
            ));
            if json {
                print_json(&json!({"client_id": client_id, "client_secret": secret}));
                eprintln!("{SECRET_ONCE}");
            } else {
                println!("client_id: {client_id}");
                print_secret(&secret);
            }
            Ok(())
        }
    }
}

/// The token flags of `client add` and `client edit`, checked.
struct TokenChanges {
    format: Option<&'static str>,
    audience: Option<Option<String>>,
    alg: Option<&'static str>,
    /// A refresh token only with `offline_access`.
    offline: Option<bool>,
}

impl TokenChanges {
    fn changes(&self) -> ClientChanges<'_> {
        ClientChanges {
            access_token_format: self.format,
            access_token_audience: self.audience.as_ref().map(Option::as_deref),
            id_token_signed_response_alg: self.alg,
            refresh_requires_offline_access: self.offline,
            ..ClientChanges::default()
        }
    }

    /// The audit words for the fields given.
    fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if let Some(format) = self.format {
            given.push(if format == "jwt" {
                "JWT access tokens"
            } else {
                "opaque access tokens"
            });
        }
        if self.audience.is_some() {
            given.push("access token audience");
        }
        if self.alg.is_some() {
            given.push("ID token algorithm");
        }
        match self.offline {
            Some(true) => given.push("refresh token only with offline_access"),
            Some(false) => given.push("refresh token always"),
            None => {}
        }
        given
    }
}

/// The longest `--access-token-audience`.
const MAX_AUDIENCE: usize = 200;

fn token_changes(args: &super::ClientTokenArgs) -> Result<TokenChanges, Failure> {
    let format = match args.access_token_format.as_deref() {
        None => None,
        Some("opaque") => Some("opaque"),
        Some("jwt") => Some(crate::protocol::jwt::JWT_FORMAT),
        Some(other) => {
            return Err(Failure(
                format!(
                    "--access-token-format `{}`: use opaque or jwt",
                    printable(other)
                ),
                2,
            ))
        }
    };
    let audience = match args.access_token_audience.as_deref() {
        None => None,
        Some(text) if text.eq_ignore_ascii_case("default") => Some(None),
        Some(text)
            if text.is_empty()
                || text.len() > MAX_AUDIENCE
                || text.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err(Failure(
                format!(
                    "--access-token-audience: 1–{MAX_AUDIENCE} characters without spaces \
                     (a URI or a name), or `default`"
                ),
                2,
            ))
        }
        Some(text) => Some(Some(text.to_string())),
    };
    let alg = match args.id_token_alg.as_deref() {
        None => None,
        Some(name) => Some(
            crate::keys::Alg::parse(name)
                .ok_or_else(|| {
                    Failure(
                        format!("--id-token-alg `{}`: use RS256 or EdDSA", printable(name)),
                        2,
                    )
                })?
                .as_str(),
        ),
    };
    Ok(TokenChanges {
        format,
        audience,
        alg,
        offline: args.refresh_requires_offline_access,
    })
}

const SECRET_ONCE: &str = "Store the secret now: only its hash is kept, it cannot be shown again.";

fn print_secret(secret: &str) {
    println!("client_secret: {secret}");
    eprintln!("{SECRET_ONCE}");
}

/// A client that needs `offline_access` for a refresh token but may not ask for it would
/// never get one: allowed, but almost certainly not meant, so say so on stderr.
fn warn_if_never_refreshed(scopes: &[String], requires_offline_access: bool) {
    if requires_offline_access && !scopes.iter().any(|s| s == OFFLINE_ACCESS_SCOPE) {
        eprintln!(
            "warning: this client needs offline_access for a refresh token but may not ask \
             for it, so it will never get one; add offline_access to --scope"
        );
    }
}

fn unknown(client_id: &str) -> Failure {
    Failure::new(format!(
        "no client `{}` (see `devicegate client list`)",
        printable(client_id)
    ))
}

/// The longest client_id `--id` accepts.
const MAX_CLIENT_ID: usize = 64;

/// A chosen client_id: 1–64 of RFC 3986's unreserved characters, so it goes into a form,
/// a URL and HTTP Basic authentication (RFC 6749 §2.3.1) without escaping.
fn check_client_id(id: &str) -> Result<(), Failure> {
    let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    // `.` and `..` would read as path segments in a URL.
    if id.is_empty()
        || id.len() > MAX_CLIENT_ID
        || !id.chars().all(unreserved)
        || id == "."
        || id == ".."
    {
        return Err(Failure(
            format!(
                "--id `{}`: a client_id is 1–{MAX_CLIENT_ID} of A-Z a-z 0-9 - . _ ~, not . or ..",
                printable(id)
            ),
            2,
        ));
    }
    Ok(())
}

/// The longest client name (it is shown on the consent page).
const MAX_CLIENT_NAME: usize = 100;

fn check_name(name: &str) -> Result<(), Failure> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_CLIENT_NAME
        || name.chars().any(crate::logging::needs_escape)
    {
        return Err(Failure(
            format!("a client name is 1–{MAX_CLIENT_NAME} printable characters"),
            2,
        ));
    }
    Ok(())
}

fn parse_scopes(scope: &str) -> Result<Vec<String>, Failure> {
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
    if scopes.is_empty() {
        return Err(Failure(
            "--scope: a client needs at least one scope".into(),
            2,
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(Failure::new(format!(
            "`{}` is not a valid scope",
            printable(bad)
        )));
    }
    Ok(scopes)
}

/// `--device-code-ttl` / `--poll-interval` of `client edit`: a duration, or `default`
/// (`None`: the server's setting).
fn lifetime(flag: &str, text: &str) -> Result<Option<u64>, Failure> {
    if text.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    super::values::parse_duration(text, super::values::Unit::Seconds)
        .map(Some)
        .map_err(|e| Failure(format!("{flag}: {e}, or `default`"), 2))
}

fn check_lifetimes(
    device_code_ttl: Option<u64>,
    poll_interval: Option<u64>,
) -> Result<(), Failure> {
    // The same bounds as the server-wide settings (`Config::validate`).
    for (flag, value, range) in [
        ("--device-code-ttl", device_code_ttl, DEVICE_CODE_TTL_RANGE),
        ("--poll-interval", poll_interval, POLL_INTERVAL_RANGE),
    ] {
        if value.is_some_and(|v| !range.contains(&v)) {
            return Err(Failure::new(format!(
                "{flag}: between {} and {} seconds",
                range.start(),
                range.end()
            )));
        }
    }
    Ok(())
}

/// Words of `--grant-types`; at least one (`none` for a resource server, which only
/// introspects).
fn parse_grants(grant_types: &str) -> Result<Vec<String>, Failure> {
    if grant_types.split_whitespace().next().is_none() {
        return Err(Failure(
            "--grant-types: empty; give device_code, refresh_token, or none (a resource \
             server)"
                .into(),
            2,
        ));
    }
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
        "{}\t{}\t{}\tscopes: {}\tgrants: {}{}",
        printable(&c.client_id),
        kind,
        printable(&c.name),
        printable(&c.scopes.join(" ")),
        printable(&grants.join(" ")),
        if c.refresh_requires_offline_access {
            "\trefresh token: with offline_access only"
        } else {
            ""
        }
    )
}

fn as_json(c: &Client) -> serde_json::Value {
    json!({
        "client_id": c.client_id, "name": c.name, "confidential": c.is_confidential(),
        "scopes": c.scopes, "grant_types": c.grant_types,
        "device_code_ttl": c.device_code_ttl, "poll_interval": c.poll_interval,
        "refresh_requires_offline_access": c.refresh_requires_offline_access,
        "created_at": c.created_at, "access_token_format": c.access_token_format,
        "access_token_audience": c.access_token_audience,
        "id_token_signed_response_alg": c.id_token_signed_response_alg,
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
