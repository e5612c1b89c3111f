//! `taosbackup init`.

use crate::args::InitArgs;
use crate::context::Context;
use crate::error::Exit;

/// Creates the repository.
pub async fn run(ctx: &Context, args: &InitArgs) -> anyhow::Result<Exit> {
    let url = ctx.repo_url(&args.repo.repo)?;
    let mut choice = ctx.init_choice(
        args.no_encryption,
        args.bucket_width,
        args.compression_level,
    )?;
    choice.force = args.force;
    let repo = ctx.init_repo(&url, choice).await?;
    let c = repo.config();
    println!(
        "created repository {} at {url}\n  encryption {}, bucket width {}, zstd level {}",
        c.id,
        if choice.encryption {
            "AES-256-GCM"
        } else {
            "none"
        },
        humantime::format_duration(std::time::Duration::from_secs(c.bucket_width.seconds())),
        c.compression_level
    );
    if choice.encryption {
        println!("  keep the password safe: without it the backups cannot be read");
    }
    Ok(Exit::Ok)
}
