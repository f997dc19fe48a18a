//! The `swarmlet` subcommands' arguments and runners. Each subcommand is one args struct
//! (clap `Args`) and one `run_*` function here, so that `src/bin/swarmlet.rs` stays one enum
//! variant and one match arm per subcommand.

use std::path::PathBuf;

/// `swarmlet create`'s arguments are [`create::create`](super::create::create)'s input,
/// so they live with it.
pub use super::create::CreateArgs;

/// `swarmlet show`: print what a .torrent holds.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `swarmlet create`.
pub fn run_create(args: &CreateArgs) -> anyhow::Result<()> {
    let made = super::create::create(args)?;
    println!("wrote {}", made.output.display());
    println!("{}", made.info_hash);
    Ok(())
}

/// Runs `swarmlet show`.
pub fn run_show(args: &ShowArgs) -> anyhow::Result<()> {
    use super::metainfo::Metainfo;
    let m = Metainfo::read(&args.torrent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.torrent.display()))?;
    let files: Vec<serde_json::Value> = m
        .files
        .iter()
        .map(|f| serde_json::json!({"path": f.display_path(), "length": f.length, "pad": f.pad}))
        .collect();
    if args.json {
        let v = serde_json::json!({
            "name": m.name_lossy(),
            "infohash": m.info_hash.to_string(),
            "total_length": m.total_length(),
            "piece_length": m.piece_length,
            "piece_count": m.pieces.len(),
            "files": files,
            "trackers": m.trackers,
            "url_list": m.url_list,
            "private": m.private,
            "comment": m.comment,
            "created_by": m.created_by,
            "creation_date": m.creation_date,
            "hybrid": m.hybrid,
            "magnet": m.magnet(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("name: {}", m.name_lossy());
    println!("infohash: {}", m.info_hash);
    println!("size: {} bytes", m.total_length());
    println!("piece length: {}", m.piece_length);
    println!("pieces: {}", m.pieces.len());
    println!("private: {}", if m.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        println!("comment: {c}");
    }
    if let Some(c) = &m.created_by {
        println!("created by: {c}");
    }
    if let Some(d) = m.creation_date {
        println!("creation date: {d}");
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        println!("tier {}: {}", i + 1, tier.join(" "));
    }
    for u in &m.url_list {
        println!("web seed: {u}");
    }
    println!("files:");
    for f in &m.files {
        let shown = if m.multi_file {
            format!("{}/{}", m.name_lossy(), f.display_path())
        } else {
            f.display_path()
        };
        println!(
            "  {shown} ({} bytes){}",
            f.length,
            if f.pad { " [pad]" } else { "" }
        );
    }
    println!("magnet: {}", m.magnet());
    Ok(())
}
