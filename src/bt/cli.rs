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
pub fn run_create(_args: &CreateArgs) -> anyhow::Result<()> {
    anyhow::bail!("swarmlet create is not implemented yet")
}

/// Runs `swarmlet show`.
pub fn run_show(_args: &ShowArgs) -> anyhow::Result<()> {
    anyhow::bail!("swarmlet show is not implemented yet")
}
