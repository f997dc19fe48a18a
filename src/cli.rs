//! What every binary shares: the `--root` argument, logging, progress bars and the mapping
//! of errors to exit codes. Binaries stay thin: parse arguments, call the library, exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::root::Root;

/// `--root DIR`: where `config/`, `chunks/` and `files/` are found.
#[derive(Debug, Clone, clap::Args)]
pub struct RootArg {
    /// Directory holding config/, chunks/ and files/
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
}

impl RootArg {
    /// The root these arguments name.
    pub fn root(&self) -> Root {
        Root::new(self.root.clone())
    }
}

/// Starts env_logger: `info` unless `RUST_LOG` says otherwise; lines carry the program
/// name so that interleaved logs of a whole system stay readable.
pub fn init_logging(program: &str) {
    let program = program.to_string();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            use std::io::Write;
            writeln!(
                buf,
                "[{} {:5} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                program,
                record.args()
            )
        })
        .init();
}

/// Runs a program's body and maps its outcome to an exit code: 0 only on success,
/// otherwise one line `error: ...` (with its causes) on stderr and exit code 1.
pub fn run(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::debug!("{e:?}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar over `total` bytes, drawn only when stderr is a terminal (logs and
/// pipes stay clean).
pub fn byte_progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
