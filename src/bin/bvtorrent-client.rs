//! bvtorrent-client: downloads the tracker's file into DIR while serving its chunks.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use swarmlet::bv::client;

/// bvTorrent client: checks DIR/<fileName>, registers, downloads what is missing and
/// uploads to other clients; leaves with DISCONNECT! on SIGINT/SIGTERM (exit 0).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of the file.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Address other clients connect to (port 0: an ephemeral port).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Exit as soon as every chunk is verified.
    #[arg(long)]
    exit_when_done: bool,
    /// The tracker, IP:PORT.
    tracker: SocketAddr,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    swarmlet::cli::init_logging("bvtorrent-client");
    let stop = client::stop_on_signals();
    let cfg = client::ClientConfig {
        tracker: a.tracker,
        dir: a.dir,
        listen: a.listen,
        exit_when_done: a.exit_when_done,
    };
    swarmlet::cli::run(|| {
        let summary = client::run(&cfg, stop)?;
        println!("{}", summary.line());
        Ok(())
    })
}
