//! `alice`: the course peer named alice (same program as `peer --name alice`).
use std::process::ExitCode;

use clap::Parser;
use swarmlet::course::peer::{PeerArgs, run};

/// Serves the chunks in chunks/alice/ over the course protocol.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(flatten)]
    peer: PeerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("alice");
    swarmlet::cli::run(|| run("alice", &args.peer))
}
