//! `taosbackup pin ID…` / `unpin ID…`: retention never forgets a pinned backup (`forget`
//! refuses it until it is unpinned).

use crate::args::PinArgs;
use crate::commands::forget::resolve;
use crate::context::Context;
use crate::error::Exit;

/// Runs `pin` (`pin = true`) or `unpin`.
pub async fn run(ctx: &Context, args: &PinArgs, pin: bool) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let repo = ctx.open_repo(&url).await?;
    for id in resolve(&repo, &args.ids).await? {
        if pin {
            repo.pin(&id).await?;
            println!("pinned {id}");
        } else {
            repo.unpin(&id).await?;
            println!("unpinned {id}");
        }
    }
    Ok(Exit::Ok)
}
