//! `bob`: the course peer named bob (same program as `peer --name bob`).
use std::process::ExitCode;

use clap::Parser;
use swarmlet::course::peer::{PeerArgs, run};

/// Serves the chunks in chunks/bob/ over the course protocol.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(flatten)]
    peer: PeerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("bob");
    swarmlet::cli::run(|| run("bob", &args.peer))
}
