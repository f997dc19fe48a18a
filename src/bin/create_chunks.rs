//! create_chunks: splits `files/NAME` into chunks for the peers and writes
//! `config/file.ini`, as the course's helper script does.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use swarmlet::chunker::{self, DEFAULT_CHUNK_SIZE};
use swarmlet::cli::{self, RootArg};
use swarmlet::init;
use swarmlet::root::display_path;

/// Files at least this large get a progress bar (on a terminal); smaller ones split in
/// well under a second.
const PROGRESS_THRESHOLD: u64 = 64 * 1024 * 1024;

/// Split files/NAME into chunks/<peer>/<sha1>.bin and write config/file.ini.
///
/// Empties chunks/alice, chunks/bob, chunks/charlie and every named peer's directory
/// first (dot-files such as .gitkeep are kept). In a directory that is not a root yet,
/// first creates files/, chunks/<peer>/ and a config/peers.ini with the course defaults
/// (tracker :8000, alice :8001, bob :8002), saying so.
#[derive(Debug, Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    /// Name of the file to split, inside files/
    name: String,
    /// Chunk size in bytes (the last chunk is shorter)
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK_SIZE)]
    chunk_size: usize,
    /// Peers that receive chunks, comma-separated. Two peers follow the course's thirds
    /// rule; more peers hold each chunk twice with an even load
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "alice,bob"
    )]
    peers: Vec<String>,
    #[command(flatten)]
    root: RootArg,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging("create_chunks");
    cli::run(|| {
        let root = args.root.root();
        // Bad arguments must touch nothing, so they are refused before the root is made.
        chunker::check_peer_names(&args.peers)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(swarmlet::root::check_file_name(&args.name)?))
            .with_context(|| format!("cannot split {:?}", args.name))?;
        // A first run in an empty directory makes the root (and says so), so that the
        // tour works from anywhere.
        for made in init::init_root(&root, &args.peers)? {
            match made {
                init::Made::Dir(dir) => log::info!("created {}/", display_path(&dir)),
                init::Made::PeersIni(config) => {
                    let addrs: Vec<String> = config
                        .entries()
                        .iter()
                        .map(|(n, a)| format!("{n} {a}"))
                        .collect();
                    log::info!(
                        "created {} with the course defaults: {}",
                        display_path(&root.peers_ini()),
                        addrs.join(", ")
                    );
                }
            }
        }
        // Only for sizing the progress bar: split_file does the real checks and errors.
        let size = std::fs::metadata(root.files_dir().join(&args.name))
            .map(|m| m.len())
            .unwrap_or(0);
        let bar = if size >= PROGRESS_THRESHOLD {
            cli::byte_progress(size, "splitting")
        } else {
            indicatif::ProgressBar::hidden()
        };
        let manifest = chunker::split_file_with_progress(
            &root,
            &args.name,
            args.chunk_size,
            &args.peers,
            |done| bar.set_position(done),
        )
        .with_context(|| format!("cannot split {:?}", args.name))?;
        bar.finish_and_clear();

        let n = manifest.chunks.len();
        let last = size - (n as u64 - 1) * args.chunk_size as u64;
        log::info!(
            "split {} ({size} bytes) into {} of {} bytes (last {last} bytes)",
            display_path(&root.files_dir().join(&manifest.filename)),
            swarmlet::text::count(n, "chunk", "chunks"),
            args.chunk_size,
        );
        for peer in &args.peers {
            let count = manifest
                .chunks
                .iter()
                .filter(|c| c.peers.contains(peer))
                .count();
            log::info!(
                "  {peer}: {} in {}",
                swarmlet::text::count(count, "chunk", "chunks"),
                display_path(&root.chunks_dir(peer))
            );
        }
        log::info!("wrote {}", display_path(&root.file_ini()));
        Ok(())
    })
}
