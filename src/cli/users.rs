//! `devicegate user …`

use serde_json::json;

use super::admin::{audit, print_json, read_password, Failure};
use super::UserCommand;
use crate::clock::Clock;
use crate::logging::printable;
use crate::secrets;
use crate::store::{self, Store};

pub(super) fn run(store: &Store, clock: &Clock, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add { name } => {
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
            let hash = hash(&read_password(&name)?)?;
            match store.create_user(&name, &hash, clock.now().secs()) {
                Ok(_) => {
                    audit(format_args!("user add `{}`", printable(&name)));
                    println!("added user {name}");
                    Ok(())
                }
                Err(store::Error::Conflict(_)) => {
                    Err(Failure::new(format!("user `{name}` already exists")))
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::List { json } => {
            let users = store.list_users()?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| json!({"username": u.username, "disabled": u.disabled, "created_at": u.created_at}))
                    .collect();
                print_json(&rows);
            } else {
                for u in users {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!("{}\t{}", printable(&u.username), state);
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
