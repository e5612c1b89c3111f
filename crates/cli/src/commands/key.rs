//! `taosbackup key add|remove|passwd|list`.

use std::time::Duration;

use serde_json::json;
use taosbackup_sink::{KdfParams, Password};

use crate::args::{KeyAction, KeyArgs, KeyNewArgs};
use crate::context::Context;
use crate::error::{Exit, usage};
use crate::output::{print_json, rfc3339, table};

/// The environment variable holding the new password of `key add` / `key passwd`.
pub const NEW_PASSWORD_ENV: &str = "TAOSBACKUP_NEW_PASSWORD";

fn new_password(args: &KeyNewArgs) -> anyhow::Result<Password> {
    if let Some(path) = &args.new_password_file {
        return Ok(Password::from_file(path)?);
    }
    match std::env::var(NEW_PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(Password::new(p)?),
        _ => Err(usage(
            "no new password given",
            format!("pass --new-password-file FILE or set {NEW_PASSWORD_ENV}"),
        )),
    }
}

/// Runs a key action.
pub async fn run(ctx: &Context, args: &KeyArgs) -> anyhow::Result<Exit> {
    match &args.action {
        KeyAction::Add(a) => {
            let pw = new_password(a)?;
            let repo = ctx.open_repo(&ctx.repo_url(&a.repo.repo)?).await?;
            let id = repo
                .add_key(&pw, KdfParams::calibrate(Duration::from_millis(500))?)
                .await?;
            println!("added key {id}");
        }
        KeyAction::Passwd(a) => {
            let pw = new_password(a)?;
            let repo = ctx.open_repo(&ctx.repo_url(&a.repo.repo)?).await?;
            let id = repo
                .change_password(&pw, KdfParams::calibrate(Duration::from_millis(500))?)
                .await?;
            println!("password changed: the key in use is now {id}");
        }
        KeyAction::Remove(a) => {
            let repo = ctx.open_repo(&ctx.repo_url(&a.repo.repo)?).await?;
            repo.remove_key(&a.key_id).await?;
            println!("removed key {}", a.key_id);
        }
        KeyAction::List(a) => {
            let repo = ctx.open_repo(&ctx.repo_url(&a.repo.repo)?).await?;
            let keys = repo.list_keys().await?;
            if a.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"id": k.id, "current": k.current, "hostname": k.hostname,
                               "created": rfc3339(&k.created)})
                    })
                    .collect();
                print_json(&v)?;
            } else if keys.is_empty() {
                println!("the repository is not encrypted: it has no keys");
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            if k.current { "*" } else { "" }.to_string(),
                            k.id.clone(),
                            k.hostname.clone(),
                            rfc3339(&k.created),
                        ]
                    })
                    .collect();
                print!("{}", table(&["", "ID", "HOST", "CREATED"], &rows));
            }
        }
    }
    Ok(Exit::Ok)
}
