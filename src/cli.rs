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
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `a: b: c`, skipping a cause that the message
/// before it already ends with: many error types print their source in their own message
/// *and* expose it as `source()`, which made lines like `cannot store chunk …: No space
/// left on device (os error 28): No space left on device (os error 28)`.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if line.ends_with(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line
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

/// Where a server listens and the limits it enforces (see [`crate::server::Limits`] for
/// why each default is what it is).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Listen on this IPv4 address instead of the one in peers.ini
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::Ipv4Addr>,
    /// Listen on this port instead of the one in peers.ini
    #[arg(long)]
    pub port: Option<u16>,
    /// Most connections served at once; more are closed at once
    #[arg(long, default_value_t = crate::server::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Close a connection idle this long between requests (milliseconds)
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Close a connection whose request takes longer than this to arrive (milliseconds)
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Close a connection whose client stops reading for this long (milliseconds)
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
}

impl ServerArgs {
    /// The listening address: the configured one with `--bind`/`--port` applied.
    pub fn addr(&self, configured: std::net::SocketAddrV4) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(
            self.bind.unwrap_or(*configured.ip()),
            self.port.unwrap_or(configured.port()),
        )
    }

    /// The limits these arguments set.
    pub fn limits(&self) -> crate::server::Limits {
        use std::time::Duration;
        crate::server::Limits {
            max_connections: self.max_connections,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
        }
    }
}

/// A progress bar over `total` items (chunks), drawn only when stderr is a terminal.
pub fn count_progress(total: u64, what: &str) -> ProgressBar {
    counted_progress(
        total,
        what,
        "{msg} [{bar:40}] {pos}/{len} chunks, eta {eta}",
    )
}

/// A progress bar over `total` pieces whose message the caller keeps up to date (rates,
/// peers), drawn only when stderr is a terminal.
pub fn piece_progress(total: u64) -> ProgressBar {
    counted_progress(total, "", "[{bar:30}] {percent:>3}% {msg} eta {eta}")
}

fn counted_progress(total: u64, what: &str, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do.
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag that long-running programs poll (a seed, a
/// bvTorrent client, a download), so that they leave their swarm cleanly (`stopped`,
/// `DISCONNECT!`) and exit 0 instead of dying mid-write. One flag for the process: no
/// signal crate is needed for it.
pub fn stop_on_signals() -> &'static std::sync::atomic::AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let h = on_stop_signal as *const () as libc::sighandler_t;
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
    &STOP
}

/// Whether SIGINT or SIGTERM came since [`stop_on_signals`].
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot store chunk: {source}")]
    struct Store {
        source: std::io::Error,
    }

    #[test]
    fn error_line_names_each_cause_once() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(Store { source: io }).context("download failed");
        assert_eq!(
            error_line(&e),
            "download failed: cannot store chunk: disk full"
        );
        let plain = anyhow::anyhow!("plain");
        assert_eq!(error_line(&plain.context("outer")), "outer: plain");
    }
}
