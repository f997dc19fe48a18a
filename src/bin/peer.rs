//! `peer --name NAME`: any course peer named in peers.ini.
use std::process::ExitCode;

use clap::Parser;
use swarmlet::course::peer::{PeerArgs, run};

/// Serves the chunks in chunks/NAME/ over the course protocol.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    /// The peer's name: its section in peers.ini and its directory in chunks/
    #[arg(long)]
    name: String,
    #[command(flatten)]
    peer: PeerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging(&args.name);
    swarmlet::cli::run(|| run(&args.name, &args.peer))
}
