//! `devicegate key …`: the OpenID Connect signing keys. Nothing here prints a private key.

use serde_json::json;

use super::admin::{audit, print_json, Failure};
use super::KeyCommand;
use crate::clock::{Clock, Timestamp};
use crate::keys::{self, facts_of, Alg};
use crate::logging::printable;
use crate::protocol::keys::{self as rules, KeyFacts, RetireRefusal};
use crate::store::Store;

pub(super) fn run(store: &Store, clock: &Clock, command: KeyCommand) -> Result<(), Failure> {
    let now = clock.now().secs();
    match command {
        KeyCommand::List {
            json,
            key_rotation_delay,
        } => {
            let delay = i64::try_from(key_rotation_delay).unwrap_or(i64::MAX);
            let facts: Vec<KeyFacts> = store.list_signing_keys()?.iter().map(facts_of).collect();
            if facts.is_empty() {
                eprintln!("no signing keys yet: `devicegate serve` makes them at its first start");
            }
            let rows: Vec<_> = facts
                .iter()
                .map(|key| {
                    let state = state(&facts, key, delay, now);
                    (key, state, key.created_at.saturating_add(delay))
                })
                .collect();
            if json {
                print_json(
                    &rows
                        .iter()
                        .map(|(key, state, signs_from)| {
                            json!({
                                "kid": key.kid, "alg": key.alg, "created_at": key.created_at,
                                "state": state, "signs_from": signs_from,
                                "retire_after": key.retire_after,
                            })
                        })
                        .collect::<Vec<_>>(),
                );
            } else {
                for (key, state, signs_from) in rows {
                    let detail = match (state, key.retire_after) {
                        ("next", _) => format!(
                            "\tsigns from {}",
                            Timestamp::from_secs(signs_from).utc_string()
                        ),
                        (_, Some(at)) => {
                            format!("\tretired after {}", Timestamp::from_secs(at).utc_string())
                        }
                        _ => String::new(),
                    };
                    println!(
                        "{}\t{}\tcreated {}\t{state}{detail}",
                        key.kid,
                        key.alg,
                        Timestamp::from_secs(key.created_at).utc_string()
                    );
                }
            }
            Ok(())
        }
        KeyCommand::Rotate { alg } => {
            let algs = match alg.as_deref() {
                None => Alg::ALL.to_vec(),
                Some(name) => vec![Alg::parse(name).ok_or_else(|| {
                    Failure(
                        format!("--alg `{}`: use RS256 or EdDSA", printable(name)),
                        2,
                    )
                })?],
            };
            for alg in algs {
                let key = keys::generate(alg).map_err(|e| Failure::new(e.to_string()))?;
                store.create_signing_key(&key.as_new(), now)?;
                audit(format_args!(
                    "key rotate: new {} key {} (in the JWKS now, signing after the server's \
                     --key-rotation-delay)",
                    alg.as_str(),
                    key.kid
                ));
                println!("{}\t{}", key.kid, alg.as_str());
            }
            Ok(())
        }
        KeyCommand::Retire { kid, force } => {
            let facts: Vec<KeyFacts> = store.list_signing_keys()?.iter().map(facts_of).collect();
            let shown = printable(&kid);
            match rules::may_retire(&facts, &kid, force, now) {
                Ok(()) => {}
                Err(RetireRefusal::Unknown) => {
                    return Err(Failure::new(format!(
                        "no signing key `{shown}` (see `devicegate key list`)"
                    )))
                }
                Err(RetireRefusal::LastOfItsAlg) => {
                    return Err(Failure::new(format!(
                        "`{shown}` is the only key of its algorithm: run `devicegate key rotate` \
                         first"
                    )))
                }
                Err(RetireRefusal::StillSigning) => {
                    return Err(Failure::new(format!(
                        "`{shown}` still signs (or its successor took over too recently for the \
                         server to have noted when its tokens expire); tokens it signed would \
                         stop verifying. Pass --force to retire it anyway"
                    )))
                }
                Err(RetireRefusal::TokensLive(until)) => {
                    return Err(Failure::new(format!(
                        "tokens signed by `{shown}` may be live until {} (it is retired \
                         automatically then). Pass --force to retire it now",
                        Timestamp::from_secs(until).utc_string()
                    )))
                }
            }
            if !store.delete_signing_key(&kid)? {
                return Err(Failure::new(format!("no signing key `{shown}`")));
            }
            audit(format_args!(
                "key retire {kid}{}",
                if force { " (forced)" } else { "" }
            ));
            println!("retired {kid}: it is no longer in the JWKS");
            Ok(())
        }
    }
}

/// `signing`, `next` (published, not signing yet) or `superseded` (verifies only, until
/// it is retired).
fn state(keys: &[KeyFacts], key: &KeyFacts, delay: i64, now: i64) -> &'static str {
    let signing = rules::signing_key(keys, &key.alg, delay, now);
    if signing.is_some_and(|s| s.kid == key.kid) {
        "signing"
    } else if rules::superseded_at(keys, key, delay, now).is_some() {
        "superseded"
    } else {
        "next"
    }
}
