//! `tracker`: tells Charlie which peer has which chunk.
use std::process::ExitCode;

use clap::Parser;
use swarmlet::course::tracker::{TrackerArgs, run};

/// Answers GET_FILE_INFO from config/file.ini and config/peers.ini.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(flatten)]
    tracker: TrackerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("tracker");
    swarmlet::cli::run(|| run(&args.tracker))
}
