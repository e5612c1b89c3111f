//! `taosbackup feed list|drop`: the change-feed topics taosbackup owns on a TDengine server
//! (issue 16, item 6). A topic keeps its database's WAL and blocks `DROP DATABASE`
//! ("Topic must be dropped first"); one left by a deleted repository or a failed first
//! backup is found and dropped here.

use std::collections::BTreeMap;

use serde_json::json;
use taosbackup_source::{FeedTopic, default_names};

use crate::args::{FeedAction, FeedArgs, FeedDropArgs, FeedListArgs};
use crate::commands::backup::close_source;
use crate::context::{Context, default_state_dir};
use crate::error::{Exit, usage};
use crate::output::{print_json, table};

/// Runs a feed action.
pub async fn run(ctx: &Context, args: &FeedArgs) -> anyhow::Result<Exit> {
    match &args.action {
        FeedAction::List(a) => list(ctx, a).await,
        FeedAction::Drop(a) => drop_topics(ctx, a).await,
    }
}

/// The repositories a topic may belong to: the one given with `--repo`, and every
/// repository whose tracker state lives in this machine's state directory
/// (`<persistence_path>/<repository id>/`). Repository id → how it is known.
async fn known_repositories(
    ctx: &Context,
    args: &FeedListArgs,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut known = BTreeMap::new();
    let state = match &ctx.config.bitmap_engine.persistence_path {
        Some(p) => Some(p.clone()),
        None => default_state_dir().ok(),
    };
    if let Some(dir) = state {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let shown = format!("{id} (tracker state in {})", e.path().display());
                    known.insert(id, shown);
                }
            }
        }
    }
    if let Some(url) = args.repo.repo.clone().or(ctx.config.repository.url.clone()) {
        let repo = ctx.open_repo(&url).await?;
        known.insert(repo.config().id.clone(), url);
    }
    Ok(known)
}

/// The repository `t` belongs to, among `known` (its name is derived from the repository id
/// and the database: `taosbackup_source::default_names`).
fn owner(t: &FeedTopic, known: &BTreeMap<String, String>) -> Option<String> {
    known
        .iter()
        .find(|(id, _)| default_names(id, &t.database).0 == t.topic)
        .map(|(_, shown)| shown.clone())
}

async fn list(ctx: &Context, args: &FeedListArgs) -> anyhow::Result<Exit> {
    let connect = ctx.source_options(&args.source, 1)?;
    let source = ctx.connect(connect)?;
    let result = source.feed_topics(!args.no_lag).await;
    close_source(&source).await;
    let topics = result?;
    let known = known_repositories(ctx, args).await?;
    if args.json {
        let v: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "topic": t.topic,
                    "database": t.database,
                    "created_ms": t.created_ms,
                    "repository": owner(t, &known),
                    "groups": t.groups.iter().map(|g| json!({
                        "group": g.group,
                        "consumers": g.consumers,
                        "lag": g.lag(),
                        "vgroups": g.vgroups.iter().map(|(vg, p)| json!({
                            "vgroup": vg, "committed": p.committed, "end": p.end,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&v)?;
        return Ok(Exit::Ok);
    }
    if topics.is_empty() {
        println!("no taosbackup change-feed topics on {}", source.endpoint());
        return Ok(Exit::Ok);
    }
    let mut rows = Vec::new();
    for t in &topics {
        let repo = owner(t, &known).unwrap_or_else(|| {
            "unknown (none known here; pass --repo URL to check one)".to_string()
        });
        let groups: Vec<_> = if t.groups.is_empty() {
            vec![None]
        } else {
            t.groups.iter().map(Some).collect()
        };
        for g in groups {
            rows.push(vec![
                t.topic.clone(),
                t.database.clone(),
                g.map_or_else(|| "-".into(), |g| g.group.clone()),
                g.map_or_else(
                    || "-".into(),
                    |g| match g.consumers.len() {
                        0 => "none".into(),
                        _ => g.consumers.join(","),
                    },
                ),
                g.and_then(|g| g.lag())
                    .map_or_else(|| "?".into(), |l| l.to_string()),
                repo.clone(),
            ]);
        }
    }
    print!(
        "{}",
        table(
            &[
                "TOPIC",
                "DATABASE",
                "GROUP",
                "CONSUMERS",
                ">LAG (WAL)",
                "REPOSITORY"
            ],
            &rows
        )
    );
    Ok(Exit::Ok)
}

async fn drop_topics(ctx: &Context, args: &FeedDropArgs) -> anyhow::Result<Exit> {
    let connect = ctx.source_options(&args.source, 1)?;
    let source = ctx.connect(connect)?;
    let result = async {
        let existing = source.feed_topics(false).await?;
        for topic in &args.topics {
            if !existing.iter().any(|t| &t.topic == topic) {
                return Err(usage(
                    format!(
                        "no taosbackup change-feed topic {topic:?} on {}",
                        source.endpoint()
                    ),
                    "`taosbackup feed list --source DSN` shows them",
                ));
            }
        }
        for topic in &args.topics {
            source.drop_feed_topic(topic).await?;
            println!("dropped {topic}");
        }
        anyhow::Ok(())
    }
    .await;
    close_source(&source).await;
    result?;
    println!(
        "a repository that used a dropped topic takes a full backup next (its feed starts fresh)"
    );
    Ok(Exit::Ok)
}
