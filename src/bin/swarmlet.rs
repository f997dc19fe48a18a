//! `swarmlet`: the BitTorrent side of the toolkit, one subcommand per job.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use swarmlet::bt::cli;

/// Real BitTorrent (BEP 3): make and inspect .torrent files, seed and download.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

// One variant and one match arm per subcommand; the args and the work live in the library.
#[derive(Subcommand)]
enum Command {
    /// Make a .torrent from a file or a directory
    Create(cli::CreateArgs),
    /// Print what a .torrent holds
    Show(cli::ShowArgs),
    /// Serve a complete torrent's data to peers
    Seed(cli::SeedArgs),
    /// Download a torrent's data from peers
    Download(cli::DownloadArgs),
    /// Run an HTTP and UDP BitTorrent tracker
    Tracker(swarmlet::bt::tracker::run::TrackerArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("swarmlet");
    swarmlet::cli::run(|| match &args.command {
        Command::Create(a) => cli::run_create(a),
        Command::Show(a) => cli::run_show(a),
        Command::Seed(a) => cli::run_seed(a),
        Command::Download(a) => cli::run_download(a),
        Command::Tracker(a) => swarmlet::bt::tracker::run::run(a),
    })
}
