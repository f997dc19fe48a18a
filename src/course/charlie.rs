//! Charlie, the downloader of the course: makes a plan (step 1 from the INI files, step 2
//! from the tracker, step 3 after discovering the tracker), runs the download engine over
//! course connections, merges the file and prints one summary line.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context;

use super::client::chunk_hashes;
use super::in_place::{Assembly, InPlaceStore};
use crate::chunker::merge_verified_chunks;
use crate::cli::RootArg;
use crate::config::{FileManifest, PeersConfig};
use crate::course::client::{
    ClientLimits, CourseConnector, get_file_info, plan_from_file_info, plan_from_manifest,
};
use crate::course::discovery::{
    DEFAULT_BROADCAST, DEFAULT_TRIES, DEFAULT_WINDOW, DISCOVERY_PORT, DiscoveryConfig, discover,
};
use crate::download::{self, Options, Plan};
use crate::root::{Root, display_path};
use crate::storage::hash_dir::HashDirStore;
use crate::store::ChunkStore;

/// The name of Charlie's chunk directory.
pub const CHARLIE: &str = "charlie";

/// Arguments of the `charlie` program.
#[derive(Debug, Clone, clap::Args)]
pub struct CharlieArgs {
    /// 1: plan from the INI files; 2: ask the tracker in peers.ini; 3: find the tracker
    /// by UDP broadcast first
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub step: u8,
    /// The root directory.
    #[command(flatten)]
    pub root: RootArg,
    /// Leave the verified chunks in chunks/charlie/ without merging them into the file
    #[arg(long)]
    pub no_merge: bool,
    /// Empty chunks/charlie/ first, so that everything is downloaded again (without it,
    /// chunks already there and verified are kept: "resumed N")
    #[arg(long)]
    pub fresh: bool,
    /// Give up on a peer or tracker that is silent this long (milliseconds)
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Largest chunk accepted from a peer (bytes)
    #[arg(long, value_name = "BYTES", default_value_t = ClientLimits::default().max_chunk_len)]
    pub max_chunk_bytes: usize,
    /// Step 3: where DISCOVER_TRACKER is broadcast
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_BROADCAST)]
    pub broadcast: Ipv4Addr,
    /// Step 3: the UDP port trackers answer on
    #[arg(long, value_name = "PORT", default_value_t = DISCOVERY_PORT)]
    pub discover_port: u16,
    /// Step 3: how long each try collects answers (milliseconds)
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_WINDOW.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub discover_ms: u64,
    /// Step 3: how many times DISCOVER_TRACKER is sent before giving up
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_TRIES,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub discover_tries: u32,
    /// Step 3: use the tracker announcing this name (default: the first to answer)
    #[arg(long, value_name = "NAME")]
    pub tracker_name: Option<String>,
}

impl CharlieArgs {
    /// Step 3's discovery settings.
    pub fn discovery(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            target: SocketAddrV4::new(self.broadcast, self.discover_port),
            window: Duration::from_millis(self.discover_ms),
            tries: self.discover_tries,
            name: self.tracker_name.clone(),
        }
    }

    fn limits(&self) -> ClientLimits {
        ClientLimits {
            io_timeout: Duration::from_millis(self.timeout_ms),
            max_chunk_len: self.max_chunk_bytes,
            ..ClientLimits::default()
        }
    }
}

/// Makes the plan for the requested step.
pub fn plan(args: &CharlieArgs, root: &Root) -> anyhow::Result<Plan> {
    match args.step {
        1 => {
            let peers = PeersConfig::load(&root.peers_ini())?;
            let manifest = FileManifest::load(&root.file_ini())?;
            Ok(plan_from_manifest(&manifest, &peers)?)
        }
        2 => {
            let peers = PeersConfig::load(&root.peers_ini())?;
            let tracker = peers.tracker(&root.peers_ini())?;
            log::info!("asking tracker {tracker} for FILE_INFO");
            let info = get_file_info(tracker, &args.limits())?;
            Ok(plan_from_file_info(info)?)
        }
        _ => {
            // Step 3 reads no file at all: the tracker is found by broadcast.
            let found = discover(&args.discovery())?;
            log::info!(
                "using tracker {} (heard {} in {} tr{} of {} ms; picked after {:.1} ms)",
                found.chosen,
                found.heard.len(),
                found.tries,
                if found.tries == 1 { "y" } else { "ies" },
                args.discover_ms,
                found.elapsed.as_secs_f64() * 1000.0
            );
            log::info!("asking tracker {} for FILE_INFO", found.chosen.addr);
            let info = get_file_info(found.chosen.addr, &args.limits())?;
            Ok(plan_from_file_info(info)?)
        }
    }
}

/// Runs Charlie: plan, download (resuming what is already verified), merge, summary.
pub fn run(args: &CharlieArgs) -> anyhow::Result<()> {
    let root = args.root.root();
    let plan = plan(args, &root)?;
    log::info!(
        "downloading {}: {} from {}",
        plan.name,
        crate::text::count(plan.len(), "chunk", "chunks"),
        crate::text::count(plan.peers.len(), "peer", "peers")
    );
    for p in &plan.peers {
        log::info!("peer {}", p.info);
    }
    if args.fresh {
        let dir = root.chunks_dir(CHARLIE);
        ChunkStore::new(&dir)
            .clear()
            .with_context(|| format!("cannot empty {}", display_path(&dir)))?;
        log::info!("--fresh: emptied {}", display_path(&dir));
    }
    let store = ChunkStore::create(root.chunks_dir(CHARLIE))
        .with_context(|| format!("cannot create {}", display_path(&root.chunks_dir(CHARLIE))))?;
    let connector = CourseConnector {
        limits: args.limits(),
    };
    let progress = crate::cli::count_progress(plan.len() as u64, "charlie");
    let opts = Options::default();
    if args.no_merge {
        let pieces = HashDirStore::new(store, &plan.digests)?;
        let result = download::download(&plan, &pieces, &connector, &opts, &progress);
        progress.finish_and_clear();
        println!("{}", result?.summary(&plan.name));
        return Ok(());
    }
    // Merging: each verified chunk is written once, at its place in the file.
    let pieces = InPlaceStore::new(store, &plan.name, &plan.digests)?;
    let result = download::download(&plan, &pieces, &connector, &opts, &progress);
    progress.finish_and_clear();
    let report = result?;
    let dest = pieces.dest();
    let start = std::time::Instant::now();
    let cannot = || format!("cannot merge into {}", display_path(&dest));
    let chunks = pieces.chunk_store().clone();
    let n = match pieces.finish().with_context(cannot)? {
        Assembly::Done(n) => n,
        Assembly::Spilled(why) => {
            log::info!("merging the chunk files: the file could not be written in place: {why}");
            // Every chunk of the plan was verified by this run (fetched ones in memory
            // before being written, resumed ones re-read from disk at the start): no
            // second hashing.
            merge_verified_chunks(&chunks, &chunk_hashes(&plan), &dest).with_context(cannot)?
        }
    };
    log::info!(
        "{} holds {n} bytes ({:.3} s after the download)",
        display_path(&dest),
        start.elapsed().as_secs_f64()
    );
    println!("{}", report.summary(&plan.name));
    Ok(())
}
