//! `devicegate user …`

use serde_json::json;

use super::admin::{audit, print_json, read_password, Failure};
use super::UserCommand;
use crate::clock::Clock;
use crate::logging::printable;
use crate::protocol::claims::{check_display_name, check_email};
use crate::secrets;
use crate::store::{self, ProfileChanges, Store, UserProfile};

pub(super) fn run(store: &Store, clock: &Clock, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add {
            name,
            email,
            email_verified,
            display_name,
        } => {
            if name.is_empty()
                || name.len() > 64
                || name
                    .chars()
                    .any(|c| crate::logging::needs_escape(c) || c.is_whitespace())
            {
                return Err(Failure(
                    "a user name is 1–64 characters without spaces or invisible characters".into(),
                    2,
                ));
            }
            // Checked before the password prompt, so a typo costs no typing.
            check_profile(email.as_deref(), display_name.as_deref())?;
            let profile = UserProfile {
                display_name: display_name.as_deref(),
                email: email.as_deref(),
                email_verified: email_verified.unwrap_or(false),
            };
            if let (Some(email), true) = (profile.email, profile.email_verified) {
                refuse_shared_verified_email(store, &name, email)?;
            }
            let hash = hash(&read_password(&name)?)?;
            match store.create_user_with_profile(&name, &hash, &profile, clock.now().secs()) {
                Ok(_) => {
                    let mut with = Vec::new();
                    if profile.email.is_some() {
                        with.push(if profile.email_verified {
                            "email (verified)"
                        } else {
                            "email (unverified)"
                        });
                    }
                    if profile.display_name.is_some() {
                        with.push("display name");
                    }
                    let with = if with.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", with.join(", "))
                    };
                    audit(format_args!("user add `{}`{with}", printable(&name)));
                    println!("added user {name}");
                    Ok(())
                }
                Err(store::Error::Conflict(_)) => {
                    Err(Failure::new(format!("user `{name}` already exists")))
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::Edit {
            name,
            email,
            no_email,
            email_verified,
            display_name,
            no_display_name,
        } => edit(
            store,
            &name,
            Edit {
                email: if no_email {
                    Some(None)
                } else {
                    email.as_deref().map(Some)
                },
                email_verified,
                display_name: if no_display_name {
                    Some(None)
                } else {
                    display_name.as_deref().map(Some)
                },
            },
        ),
        UserCommand::List { json } => {
            let users = store.list_users()?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({
                            "username": u.username, "disabled": u.disabled,
                            "created_at": u.created_at, "subject": u.subject,
                            "display_name": u.display_name, "email": u.email,
                            "email_verified": u.email_verified,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                for u in users {
                    let state = if u.disabled { "disabled" } else { "active" };
                    let email = match &u.email {
                        Some(email) if u.email_verified => {
                            format!("{} (verified)", printable(email))
                        }
                        Some(email) => format!("{} (unverified)", printable(email)),
                        None => "-".into(),
                    };
                    println!(
                        "{}\t{}\tsub: {}\tname: {}\temail: {}",
                        printable(&u.username),
                        state,
                        printable(&u.subject),
                        printable(u.display_name.as_deref().unwrap_or("-")),
                        email
                    );
                }
            }
            Ok(())
        }
        UserCommand::Remove { name } => {
            found(store.delete_user(&name)?, &name)?;
            audit(format_args!("user remove `{}`", printable(&name)));
            println!("removed user {name} and their grants");
            Ok(())
        }
        UserCommand::Passwd { name } => {
            let user = store
                .find_user_by_name(&name)?
                .ok_or_else(|| Failure::new(format!("no user named `{name}`")))?;
            let hash = hash(&read_password(&name)?)?;
            store.set_user_password(&name, &hash)?;
            store.delete_user_sessions(user.id)?;
            audit(format_args!("user passwd `{}`", printable(&name)));
            println!("password changed for {name}; their browser sessions ended");
            Ok(())
        }
        UserCommand::Disable { name } => {
            found(store.set_user_disabled(&name, true)?, &name)?;
            audit(format_args!("user disable `{}`", printable(&name)));
            println!("disabled {name}: no sign-in, and their tokens stop working");
            Ok(())
        }
        UserCommand::Enable { name } => {
            found(store.set_user_disabled(&name, false)?, &name)?;
            audit(format_args!("user enable `{}`", printable(&name)));
            println!("enabled {name}");
            Ok(())
        }
    }
}

/// A verified address may belong to one user only (`claims::verified_email_holder`).
fn refuse_shared_verified_email(store: &Store, name: &str, email: &str) -> Result<(), Failure> {
    let users = store.list_users()?;
    match crate::protocol::claims::verified_email_holder(&users, name, email) {
        Some(holder) => Err(Failure(
            format!(
                "`{}` is already the verified address of `{}`; a verified address names one \
                 person (remove it there first, or leave this one unverified)",
                printable(email),
                printable(&holder.username)
            ),
            2,
        )),
        None => Ok(()),
    }
}

/// What `user edit` was asked to change: `None` leaves a field, `Some(None)` removes it.
struct Edit<'a> {
    email: Option<Option<&'a str>>,
    email_verified: Option<bool>,
    display_name: Option<Option<&'a str>>,
}

/// `user edit`. A new address is unverified unless `--email-verified true` comes with it
/// (devicegate sends no mail, so only the operator can vouch for an address); setting the
/// same address again keeps its state. `--email-verified` alone needs an address on record.
fn edit(store: &Store, name: &str, asked: Edit<'_>) -> Result<(), Failure> {
    check_profile(asked.email.flatten(), asked.display_name.flatten())?;
    let user = store
        .find_user_by_name(name)?
        .ok_or_else(|| Failure::new(format!("no user named `{}`", printable(name))))?;
    let email_verified = match (asked.email, asked.email_verified) {
        (Some(None), _) => Some(false),
        (_, Some(verified)) => Some(verified),
        (Some(Some(new)), None) if user.email.as_deref() != Some(new) => Some(false),
        _ => None,
    };
    let has_email = match asked.email {
        Some(email) => email.is_some(),
        None => user.email.is_some(),
    };
    if asked.email_verified.is_some() && !has_email {
        return Err(Failure::new(format!(
            "`{}` has no email address: give one with --email",
            printable(name)
        )));
    }
    let final_email = match asked.email {
        Some(email) => email,
        None => user.email.as_deref(),
    };
    let final_verified = email_verified.unwrap_or(user.email_verified);
    if let (Some(email), true) = (final_email, final_verified) {
        refuse_shared_verified_email(store, name, email)?;
    }
    let changes = ProfileChanges {
        display_name: asked.display_name,
        email: asked.email,
        email_verified,
    };
    if changes.is_empty() {
        return Err(Failure(
            "nothing to change: give --email, --no-email, --email-verified, --display-name \
             or --no-display-name"
                .into(),
            2,
        ));
    }
    if !store.update_user_profile(name, &changes)? {
        return Err(Failure::new(format!("no user named `{}`", printable(name))));
    }
    let mut changed: Vec<String> = Vec::new();
    match asked.email {
        Some(Some(_)) => changed.push("email".into()),
        Some(None) => changed.push("email removed".into()),
        None => {}
    }
    if let Some(verified) = changes.email_verified {
        changed.push(format!("email_verified {verified}"));
    }
    match asked.display_name {
        Some(Some(_)) => changed.push("display name".into()),
        Some(None) => changed.push("display name removed".into()),
        None => {}
    }
    audit(format_args!(
        "user edit `{}`: {}",
        printable(name),
        changed.join(", ")
    ));
    println!("changed {}: {}", printable(name), changed.join(", "));
    Ok(())
}

/// The email address's shape and the display name's characters (`protocol::claims`).
fn check_profile(email: Option<&str>, display_name: Option<&str>) -> Result<(), Failure> {
    if let Some(email) = email {
        check_email(email).map_err(|e| Failure(format!("--email: {e}"), 2))?;
    }
    if let Some(name) = display_name {
        check_display_name(name).map_err(|e| Failure(format!("--display-name: {e}"), 2))?;
    }
    Ok(())
}

fn hash(password: &str) -> Result<String, Failure> {
    secrets::hash_password(password).map_err(|e| Failure::new(e.to_string()))
}

fn found(changed: bool, name: &str) -> Result<(), Failure> {
    if changed {
        Ok(())
    } else {
        Err(Failure::new(format!("no user named `{name}`")))
    }
}
