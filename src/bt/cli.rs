//! The `swarmlet` subcommands' arguments and runners. Each subcommand is one args struct
//! (clap `Args`) and one `run_*` function here, so that `src/bin/swarmlet.rs` stays one enum
//! variant and one match arm per subcommand.

use std::path::PathBuf;

/// `swarmlet create`: make a .torrent from a file or a directory.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// The file or directory to share
    pub path: PathBuf,
    /// Where to write the .torrent (default: ./<name>.torrent)
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Tracker announce URL; repeat for more tiers (the first is also `announce`)
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Piece length in bytes (a power of two, at least 16 KiB); default from the size
    #[arg(long, value_name = "BYTES")]
    pub piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27: no DHT, PEX or LSD)
    #[arg(long)]
    pub private: bool,
    /// A free-text comment
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Leave out the creation date (and so make the file reproducible)
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite OUT if it exists
    #[arg(long)]
    pub force: bool,
}

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
