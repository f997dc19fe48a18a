//! check_file: compares the original `files/<filename>` with Charlie's merged copy
//! `chunks/charlie/<filename>`.

use std::process::ExitCode;

use clap::Parser;
use swarmlet::chunker;
use swarmlet::cli::{self, RootArg};
use swarmlet::config::FileManifest;
use swarmlet::root::display_path;

/// Compare files/<filename> with chunks/charlie/<filename>; exit 0 only if identical.
///
/// The filename comes from config/file.ini unless NAME is given.
#[derive(Debug, Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    /// File name to check (default: the filename in config/file.ini)
    name: Option<String>,
    #[command(flatten)]
    root: RootArg,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging("check_file");
    let mut identical = false;
    let code = cli::run(|| {
        let root = args.root.root();
        let name = match &args.name {
            Some(n) => n.clone(),
            None => FileManifest::load(&root.file_ini())?.filename,
        };
        swarmlet::root::check_file_name(&name)?;
        let (original, merged) = chunker::original_and_merged(&root, &name);
        let outcome = chunker::compare_files(&original, &merged)?;
        let (a, b) = (display_path(&original), display_path(&merged));
        if outcome.is_identical() {
            println!("{a} and {b} are {outcome}");
        } else {
            println!("{a} and {b} differ: {outcome}");
        }
        identical = outcome.is_identical();
        Ok(())
    });
    if identical { code } else { ExitCode::FAILURE }
}
