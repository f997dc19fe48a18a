//! merge_chunks: concatenates Charlie's chunks, in the order config/file.ini gives, into
//! `chunks/charlie/<filename>`.

use std::process::ExitCode;

use clap::Parser;
use swarmlet::chunker::{self, DOWNLOADER};
use swarmlet::cli::{self, RootArg};
use swarmlet::config::FileManifest;
use swarmlet::hash::ChunkHash;
use swarmlet::root::display_path;
use swarmlet::store::ChunkStore;

/// Merge chunks/charlie/*.bin into chunks/charlie/<filename>, in the order of
/// config/file.ini; fails naming every missing chunk.
#[derive(Debug, Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(flatten)]
    root: RootArg,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging("merge_chunks");
    cli::run(|| {
        let root = args.root.root();
        let manifest = FileManifest::load(&root.file_ini())?;
        // file.ini may come from elsewhere: its name must not lead outside chunks/charlie.
        swarmlet::root::check_file_name(&manifest.filename)?;
        let hashes: Vec<ChunkHash> = manifest.chunks.iter().map(|c| c.hash).collect();
        let store = ChunkStore::new(root.chunks_dir(DOWNLOADER));
        let (_, dest) = chunker::original_and_merged(&root, &manifest.filename);
        let bytes = chunker::merge_chunks(&store, &hashes, &dest)?;
        log::info!(
            "merged {} ({bytes} bytes) into {}",
            swarmlet::text::count(hashes.len(), "chunk", "chunks"),
            display_path(&dest)
        );
        Ok(())
    })
}
