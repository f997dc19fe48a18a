//! `charlie --step 1|2|3`: downloads the file from alice and bob.
use std::process::ExitCode;

use clap::Parser;
use swarmlet::course::charlie::{CharlieArgs, run};

/// Downloads the shared file into chunks/charlie/, verifying every chunk.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(flatten)]
    charlie: CharlieArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("charlie");
    swarmlet::cli::run(|| run(&args.charlie))
}
