//! `bench`: the measuring tools `scripts/bench.sh` calls. Each subcommand prints one line
//! of `key=value` fields on stdout (first field: the subcommand) so that the script can
//! collect them; the logic is in `swarmlet::bench`.
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use swarmlet::bench::{self, Discovery, LoadReport};
use swarmlet::store::ChunkStore;

/// Measuring tools for scripts/bench.sh (loopback only; every load is bounded).
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a pseudo-random file of SIZE bytes (no repeated chunk)
    MakeFile {
        /// Output file
        out: PathBuf,
        /// Size in bytes
        #[arg(long)]
        size: u64,
        /// Seed of the generator
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The ceiling: SRC over one loopback TCP connection into DEST, large buffers
    Sink {
        /// File to send
        src: PathBuf,
        /// File to write (removed afterwards)
        dest: PathBuf,
    },
    /// The tmpfs half of the ceiling: one plain copy of SRC into DEST (removed afterwards)
    Copy {
        /// File to copy
        src: PathBuf,
        /// Copy to write
        dest: PathBuf,
    },
    /// The loopback half of the ceiling: iperf3 server and client on 127.0.0.1
    Iperf3 {
        /// Seconds the client sends
        #[arg(long, default_value_t = 3)]
        secs: u32,
        /// The iperf3 program
        #[arg(long, default_value = "iperf3")]
        program: String,
    },
    /// Median, min-max of the charlie/ceiling pair ratios of one chunk size so far
    Spread {
        /// The results file
        results: PathBuf,
        /// Chunk size (bytes)
        #[arg(long)]
        chunk: u64,
    },
    /// SHA-1 rate of one core over FILE (hashing time only)
    Sha1 {
        /// File to hash
        file: PathBuf,
    },
    /// Write a file.ini of N synthetic chunks (thirds rule over alice and bob)
    Manifest {
        /// Output file.ini
        out: PathBuf,
        /// Chunk count
        #[arg(long, default_value_t = 65_535)]
        chunks: usize,
    },
    /// N clients asking a tracker GET_FILE_INFO, stop-and-wait, replies per second
    TrackerLoad {
        /// Tracker address
        addr: SocketAddrV4,
        /// Concurrent clients
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Requests per client
        #[arg(long, default_value_t = 20)]
        requests: u64,
        /// Chunks the FILE_INFO must describe
        #[arg(long)]
        expect_chunks: Option<usize>,
        /// Stop after this many seconds whatever is left
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
        /// Process to watch for peak threads and RSS (the tracker)
        #[arg(long)]
        watch: Option<u32>,
    },
    /// N downloaders against one peer, aggregate MB/s
    PeerLoad {
        /// Peer address
        addr: SocketAddrV4,
        /// The peer's chunk directory (what to ask for)
        #[arg(long)]
        chunks_dir: PathBuf,
        /// Concurrent downloaders
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Chunks each downloader fetches
        #[arg(long, default_value_t = 64)]
        per_client: u64,
        /// Stop after this many seconds whatever is left
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
        /// Process to watch for peak threads and RSS (the peer)
        #[arg(long)]
        watch: Option<u32>,
    },
    /// Step-3 discovery latency: DISCOVER_TRACKER over UDP, time to TRACKER_INFO
    Discover {
        /// Where to send DISCOVER_TRACKER
        #[arg(long, default_value = "127.0.0.1:9000")]
        target: SocketAddrV4,
        /// The TCP address our tracker must announce (others are ignored)
        #[arg(long)]
        expect: Option<SocketAddrV4>,
        /// How long to wait for an answer (milliseconds)
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// Run a command; print its wall, CPU and peak RSS (wait4) after its own output
    Exec {
        /// The command and its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<String>,
    },
    /// Markdown tables (medians, min–max, ratios) from the script's result lines
    Report {
        /// The results file
        results: PathBuf,
    },
    /// CPU seconds, peak RSS and threads of a running process
    Proc {
        /// Its pid
        pid: u32,
        /// Then reset its peak RSS to its current RSS
        #[arg(long)]
        reset_peak: bool,
    },
}

fn print_load(what: &str, r: &LoadReport) {
    let (threads, hwm) = r.watched.map_or((0, 0), |p| (p.threads, p.hwm_kib));
    println!(
        "{what} replies={} bytes={} secs={:.4} per_s={:.1} mbps={:.1} peak_threads={threads} \
         hwm_kib={hwm} errors={}",
        r.replies,
        r.bytes,
        r.secs,
        r.per_s(),
        r.mb_per_s(),
        r.errors.len()
    );
    for e in r.errors.iter().take(5) {
        eprintln!("{what}: {e}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    swarmlet::cli::init_logging("bench");
    swarmlet::cli::run(|| {
        match args.cmd {
            Cmd::MakeFile { out, size, seed } => {
                bench::make_file(&out, size, seed)?;
                println!("make-file bytes={size}");
            }
            Cmd::Sink { src, dest } => {
                let r = bench::sink(&src, &dest);
                let _ = std::fs::remove_file(&dest);
                let r = r?;
                println!(
                    "sink bytes={} secs={:.4} mbps={:.1}",
                    r.bytes,
                    r.secs,
                    r.mb_per_s()
                );
            }
            Cmd::Copy { src, dest } => {
                let r = bench::copy_rate(&src, &dest);
                let _ = std::fs::remove_file(&dest);
                let r = r?;
                println!(
                    "copy bytes={} secs={:.4} mbps={:.1}",
                    r.bytes,
                    r.secs,
                    r.mb_per_s()
                );
            }
            Cmd::Iperf3 { secs, program } => {
                let r = bench::iperf3_rate(&program, secs)?;
                println!(
                    "iperf3 bytes={} secs={:.4} mbps={:.1}",
                    r.bytes,
                    r.secs,
                    r.mb_per_s()
                );
            }
            Cmd::Spread { results, chunk } => {
                let ratios = bench::pair_ratios(&std::fs::read_to_string(results)?, chunk);
                let s = bench::Spread::of(&ratios)
                    .ok_or_else(|| anyhow::anyhow!("no pair of {chunk}-byte chunks yet"))?;
                println!(
                    "spread n={} median={:.3} min={:.3} max={:.3} range={:.3} wide={}",
                    s.n,
                    s.median,
                    s.min,
                    s.max,
                    s.relative_range(),
                    u8::from(s.is_wide())
                );
            }
            Cmd::Sha1 { file } => {
                let (r, h) = bench::sha1_rate(&file)?;
                println!(
                    "sha1 bytes={} secs={:.4} mbps={:.1} digest={h}",
                    r.bytes,
                    r.secs,
                    r.mb_per_s()
                );
            }
            Cmd::Manifest { out, chunks } => {
                bench::synthetic_manifest(&out, chunks)?;
                println!("manifest chunks={chunks}");
            }
            Cmd::TrackerLoad {
                addr,
                clients,
                requests,
                expect_chunks,
                max_secs,
                watch,
            } => {
                let r = bench::tracker_load(
                    SocketAddr::V4(addr),
                    clients,
                    requests,
                    Duration::from_secs(max_secs),
                    expect_chunks,
                    watch,
                );
                print_load("tracker-load", &r);
                anyhow::ensure!(r.errors.is_empty(), "{} clients failed", r.errors.len());
            }
            Cmd::PeerLoad {
                addr,
                chunks_dir,
                clients,
                per_client,
                max_secs,
                watch,
            } => {
                let hashes = ChunkStore::new(chunks_dir).list()?;
                let r = bench::peer_load(
                    SocketAddr::V4(addr),
                    &hashes,
                    clients,
                    per_client,
                    Duration::from_secs(max_secs),
                    watch,
                );
                print_load("peer-load", &r);
                anyhow::ensure!(r.errors.is_empty(), "{} clients failed", r.errors.len());
            }
            Cmd::Discover {
                target,
                expect,
                wait_ms,
            } => match bench::discover(target, expect, Duration::from_millis(wait_ms))? {
                Discovery::Answered { latency, info } => println!(
                    "discover available=1 ms={:.3} tracker={} name={}",
                    latency.as_secs_f64() * 1e3,
                    info.addr,
                    info.name
                ),
                Discovery::NotAvailable(why) => {
                    println!("discover available=0 why={why:?}")
                }
            },
            Cmd::Exec { argv } => {
                let u = bench::exec(&argv)?;
                println!(
                    "exec code={} wall={:.4} user={:.3} sys={:.3} maxrss_kib={}",
                    u.code, u.wall, u.user, u.sys, u.maxrss_kib
                );
            }
            Cmd::Report { results } => {
                print!("{}", bench::report(&std::fs::read_to_string(results)?));
            }
            Cmd::Proc { pid, reset_peak } => {
                let s = bench::proc_status(pid)?;
                println!(
                    "proc pid={pid} cpu={:.2} hwm_kib={} rss_kib={} threads={}",
                    s.cpu, s.hwm_kib, s.rss_kib, s.threads
                );
                if reset_peak {
                    bench::reset_peak(pid)?;
                }
            }
        }
        Ok(())
    })
}
