//! `taosbackup plan`: what a backup would do now. Writes nothing to the repository (the
//! bitmap engine's change feed is read, not committed).

use taosbackup_engine::{EngineKind, Plan};
use taosbackup_sink::{Backend, InitOptions, Repo};

use crate::args::PlanArgs;
use crate::commands::backup::{open_tracking, request};
use crate::context::Context;
use crate::error::Exit;
use crate::output::{kind, print_json, table};
use crate::progress::{bytes, count};

/// Runs `plan`.
pub async fn run(ctx: &Context, args: &PlanArgs) -> anyhow::Result<Exit> {
    let select = &args.select;
    let url = ctx.repo_url(&select.repo.repo)?;
    let database = ctx.database(&select.database)?;
    let engine = ctx.engine(select.engine)?;
    let parallel = ctx.backup_parallel(None)?;
    let connect = ctx.source_options(&select.source, parallel)?;
    let source = ctx.connect(connect.clone())?;
    let mut exists = true;
    let repo = match Repo::open_with(
        ctx.backend(&url)?,
        ctx.password()?.as_ref(),
        ctx.open_options(),
    )
    .await
    {
        Ok(r) => r,
        Err(taosbackup_sink::Error::NotARepository { .. }) => {
            exists = false;
            tracing::info!("no repository at {url} yet: planning against an empty one");
            let options = InitOptions {
                encryption: false,
                ..InitOptions::default()
            };
            Repo::init(Backend::memory(), options, None).await?
        }
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!("cannot open the repository {url}")));
        }
    };
    let mut req = request(ctx, database, engine, select.full, parallel, &source);
    req.bucket_width = repo.config().bucket_width;
    let session = repo.session("plan").await?;
    let result = async {
        let mut tracking = None;
        // Without a repository (or with --full) the plan is a full backup whatever the feed
        // says; opening it would create a topic for a repository that does not exist.
        if engine == EngineKind::Bitmap && exists && !select.full {
            tracking = Some(open_tracking(ctx, &repo, &connect, &req.database).await?);
        }
        let plan = taosbackup_engine::plan(&source, &session, tracking.as_mut(), &req).await?;
        anyhow::Ok(plan)
    }
    .await;
    crate::commands::backup::close_source(&source).await;
    let released = session.finish().await;
    let plan = result?;
    released?;
    if args.json {
        print_json(&plan)?;
    } else {
        print!("{}", describe(&plan));
    }
    Ok(Exit::Ok)
}

/// The plan as text.
pub fn describe(p: &Plan) -> String {
    let mut out = format!(
        "a backup of {} now would be {} (engine {}){}\n",
        p.database,
        kind(p.kind),
        p.engine,
        p.parent
            .map(|id| format!(", on top of {id}"))
            .unwrap_or_default()
    );
    if let Some(r) = &p.full_reason {
        out.push_str(&format!("  full because: {r}\n"));
    }
    out.push_str(&format!(
        "  {} tables with work: {} whole tables, {} blocks, {} possible tombstones, {} dropped tables\n",
        count(p.tables.len() as u64),
        count(p.whole_tables),
        count(p.blocks),
        count(p.tombstones),
        count(p.dropped_tables)
    ));
    out.push_str(&format!(
        "  estimate (from the last backup): at least {} rows, {}\n",
        count(p.estimated_rows),
        bytes(p.estimated_bytes)
    ));
    const SHOWN: usize = 50;
    if !p.tables.is_empty() {
        let rows: Vec<Vec<String>> = p
            .tables
            .iter()
            .take(SHOWN)
            .map(|t| {
                vec![
                    t.table.clone(),
                    if t.dropped {
                        "dropped".into()
                    } else if t.whole_table {
                        "whole table".into()
                    } else {
                        format!("{} blocks", t.blocks)
                    },
                    t.tombstones.len().to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["TABLE", "EXPORT", ">TOMBSTONES"], &rows));
        if p.tables.len() > SHOWN {
            out.push_str(&format!(
                "… and {} more tables (all of them with --json)\n",
                p.tables.len() - SHOWN
            ));
        }
    }
    out
}
