//! bvtorrent-tracker: serves one file's descriptor and the swarm's masks.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use swarmlet::bv::{codec, tracker};

/// bvTorrent tracker, byte-compatible with the classic one.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:42424")]
    listen: String,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = codec::DEFAULT_CHUNK_SIZE)]
    chunk_size: u64,
    /// The file to serve.
    file: PathBuf,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    swarmlet::cli::init_logging("bvtorrent-tracker");
    swarmlet::cli::run(|| serve(&a))
}

fn serve(a: &Args) -> anyhow::Result<()> {
    let desc = codec::Descriptor::from_file(&a.file, a.chunk_size)?;
    let server = swarmlet::server::Server::bind(&a.listen, tracker::limits(), "bv-tracker")?;
    log::info!(
        "serving {} ({})",
        a.file.display(),
        swarmlet::text::count(desc.chunks.len(), "chunk", "chunks")
    );
    server.run(Arc::new(tracker::TrackerService::new(&desc)))?;
    Ok(())
}
