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

/// The key `given` names: its whole id, or a prefix of exactly one id (as backup ids).
fn resolve_key(ids: &[String], given: &str) -> anyhow::Result<String> {
    if ids.iter().any(|id| id == given) {
        return Ok(given.to_string());
    }
    let matching: Vec<&String> = if given.is_empty() {
        Vec::new()
    } else {
        ids.iter().filter(|id| id.starts_with(given)).collect()
    };
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(usage(
            format!("no key matches {given:?}"),
            "list the keys with `taosbackup key list --repo URL`",
        )),
        many => Err(usage(
            format!("{given:?} matches {} keys", many.len()),
            "give more of the key id (`taosbackup key list --repo URL` shows them)",
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
            let ids: Vec<String> = repo.list_keys().await?.into_iter().map(|k| k.id).collect();
            let id = resolve_key(&ids, &a.key_id)?;
            repo.remove_key(&id).await?;
            println!("removed key {id}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_by_unique_prefix() {
        let ids = vec![
            "ab12ff".to_string(),
            "ab34ee".to_string(),
            "cd00".to_string(),
        ];
        assert_eq!(resolve_key(&ids, "cd").unwrap(), "cd00");
        assert_eq!(resolve_key(&ids, "ab34ee").unwrap(), "ab34ee");
        assert!(format!("{}", resolve_key(&ids, "ab").unwrap_err()).contains("2 keys"));
        assert!(resolve_key(&ids, "zz").is_err());
        assert!(resolve_key(&ids, "").is_err());
    }
}
