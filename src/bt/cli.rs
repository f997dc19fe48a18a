//! The `swarmlet` subcommands' arguments and runners. Each subcommand is one args struct
//! (clap `Args`) and one `run_*` function here, so that `src/bin/swarmlet.rs` stays one enum
//! variant and one match arm per subcommand.

use std::path::PathBuf;

/// `swarmlet create`'s arguments are [`create::create`](super::create::create)'s input,
/// so they live with it.
pub use super::create::CreateArgs;

/// `swarmlet show`: print what a .torrent holds.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `swarmlet create`.
pub fn run_create(args: &CreateArgs) -> anyhow::Result<()> {
    let made = super::create::create(args)?;
    println!("wrote {}", made.output.display());
    println!("{}", made.info_hash);
    Ok(())
}

/// Runs `swarmlet show`.
pub fn run_show(args: &ShowArgs) -> anyhow::Result<()> {
    use super::metainfo::Metainfo;
    let m = Metainfo::read(&args.torrent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.torrent.display()))?;
    let files: Vec<serde_json::Value> = m
        .files
        .iter()
        .map(|f| serde_json::json!({"path": f.display_path(), "length": f.length, "pad": f.pad}))
        .collect();
    // The output may be a pipe closed early (`| head`): stop quietly, never panic.
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match show_to(out, &m, files, args.json) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Writes what `show` prints. Every text from the .torrent goes through
/// [`printable`](crate::text::printable):
/// a name may hold terminal escape sequences.
fn show_to(
    mut o: impl std::io::Write,
    m: &super::metainfo::Metainfo,
    files: Vec<serde_json::Value>,
    json: bool,
) -> std::io::Result<()> {
    if json {
        // serde_json escapes every control character.
        let v = serde_json::json!({
            "name": m.name_lossy(),
            "infohash": m.info_hash.to_string(),
            "total_length": m.total_length(),
            "piece_length": m.piece_length,
            "piece_count": m.pieces.len(),
            "files": files,
            "trackers": m.trackers,
            "url_list": m.url_list,
            "private": m.private,
            "comment": m.comment,
            "created_by": m.created_by,
            "creation_date": m.creation_date,
            "hybrid": m.hybrid,
            "magnet": m.magnet(),
        });
        return writeln!(o, "{v}");
    }
    writeln!(o, "name: {}", crate::text::printable(&m.name_lossy()))?;
    writeln!(o, "infohash: {}", m.info_hash)?;
    writeln!(o, "size: {} bytes", m.total_length())?;
    writeln!(o, "piece length: {}", m.piece_length)?;
    writeln!(o, "pieces: {}", m.pieces.len())?;
    writeln!(o, "private: {}", if m.private { "yes" } else { "no" })?;
    if let Some(c) = &m.comment {
        writeln!(o, "comment: {}", crate::text::printable(c))?;
    }
    if let Some(c) = &m.created_by {
        writeln!(o, "created by: {}", crate::text::printable(c))?;
    }
    if let Some(d) = m.creation_date {
        writeln!(o, "creation date: {d}")?;
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        writeln!(
            o,
            "tier {}: {}",
            i + 1,
            crate::text::printable(&tier.join(" "))
        )?;
    }
    for u in &m.url_list {
        writeln!(o, "web seed: {}", crate::text::printable(u))?;
    }
    writeln!(o, "files:")?;
    for f in &m.files {
        let shown = if m.multi_file {
            format!("{}/{}", m.name_lossy(), f.display_path())
        } else {
            f.display_path()
        };
        writeln!(
            o,
            "  {} ({} bytes){}",
            crate::text::printable(&shown),
            f.length,
            if f.pad { " [pad]" } else { "" }
        )?;
    }
    writeln!(o, "magnet: {}", m.magnet())?;
    o.flush()
}

/// `swarmlet seed`: serve a complete torrent's data to peers that connect.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Directory holding the data (`DIR/<name>`)
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Address to accept peers on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    pub listen: std::net::SocketAddr,
    /// Upload limit in bytes per second (`500K`, `10M`), all peers together
    #[arg(long, value_name = "R")]
    pub max_upload_rate: Option<super::rate::Rate>,
    /// Most connections open at once
    #[arg(long, value_name = "N", default_value_t = super::peers::DEFAULT_MAX_PEERS)]
    pub max_peers: usize,
}

/// `swarmlet download`: fetch a torrent's data from its swarm, uploading to it meanwhile.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Directory to write the data into (`DIR/<name>`)
    #[arg(
        short = 'o',
        long = "dir",
        visible_alias = "output",
        value_name = "DIR",
        default_value = "."
    )]
    pub dir: PathBuf,
    /// Address to accept peers on (they download from us meanwhile)
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    pub listen: std::net::SocketAddr,
    /// A peer to download from (repeatable); trackers add more
    #[arg(long = "peer", value_name = "IP:PORT")]
    pub peers: Vec<std::net::SocketAddr>,
    /// Keep seeding once complete, until SIGINT/SIGTERM
    #[arg(long)]
    pub seed: bool,
    /// Upload limit in bytes per second (`500K`, `10M`), all peers together
    #[arg(long, value_name = "R")]
    pub max_upload_rate: Option<super::rate::Rate>,
    /// Download limit in bytes per second (`500K`, `10M`), all peers together
    #[arg(long, value_name = "R")]
    pub max_download_rate: Option<super::rate::Rate>,
    /// Most connections open at once, to peers we dialled and peers that dialled us
    #[arg(long, value_name = "N", default_value_t = super::peers::DEFAULT_MAX_PEERS)]
    pub max_peers: usize,
}

/// Our peer id: Azureus style, `-SW0001-` and 12 random characters, fresh per run.
pub fn our_peer_id() -> super::peer_wire::PeerId {
    let mut id = *b"-SW0001-000000000000";
    let r = format!(
        "{:016x}",
        super::announce::random_u64() ^ u64::from(std::process::id())
    );
    id[8..].copy_from_slice(&r.as_bytes()[..12]);
    super::peer_wire::PeerId(id)
}

/// How often the main thread of `seed` looks for SIGINT/SIGTERM: a tenth of a second is
/// prompt for a person and costs nothing.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens a torrent's data under `dir` and rechecks it.
fn open_data(
    torrent: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(
    super::metainfo::Metainfo,
    std::sync::Arc<crate::storage::files::FilesStore>,
    crate::bitfield::Bitfield,
)> {
    use crate::storage::PieceStore;
    let m = super::metainfo::Metainfo::read(torrent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", torrent.display()))?;
    let layout = m.layout()?;
    let store = crate::storage::files::FilesStore::create(dir, layout)?;
    let have = store.recheck(&m.digests())?;
    Ok((m, std::sync::Arc::new(store), have))
}

/// Runs `swarmlet seed`: recheck, refuse unless complete, serve until SIGINT/SIGTERM.
pub fn run_seed(args: &SeedArgs) -> anyhow::Result<()> {
    let (m, store, have) = open_data(&args.torrent, &args.dir)?;
    if !have.is_full() {
        anyhow::bail!(
            "not seeding: {} of {} pieces are missing or bad under {}",
            have.len() - have.count(),
            have.len(),
            args.dir.display()
        );
    }
    let layout = store.layout().clone();
    let id = our_peer_id();
    let seeder = super::seed::Seeder::new(m.info_hash, id, store, &layout)
        .with_limit(args.max_upload_rate)
        .with_max_peers(args.max_peers);
    catch_stop_signals();
    let addr = super::seed::spawn(args.listen, seeder.clone())?;
    let counters = std::sync::Arc::new(super::session::Counters::default());
    // A seed dials nobody: peers the tracker lists find us through it.
    let trackers = start_trackers(&m, id, addr, counters, seeder.clone(), |_| {});
    seed_until_stopped(&m.info_hash, addr, &seeder)?;
    if let Some(t) = trackers {
        t.stop(STOPPED_GRACE);
    }
    Ok(())
}

/// Says on stdout that we seed (for scripts and tests that connect peers directly: the
/// data is checked and the listener open, so a peer that dials now is served), serves
/// until SIGINT/SIGTERM, then says what was uploaded.
fn seed_until_stopped(
    info_hash: &super::metainfo::InfoHash,
    addr: std::net::SocketAddr,
    seeder: &super::seed::Seeder,
) -> std::io::Result<()> {
    use std::io::Write;
    println!("seeding {info_hash} on {addr}");
    std::io::stdout().flush()?;
    wait_for_stop();
    // stdout may be gone by now (a closed pipe): never panic on the way out.
    let _ = writeln!(
        std::io::stdout(),
        "seed: stopped; uploaded {} bytes",
        seeder.uploaded()
    );
    Ok(())
}

/// Makes SIGINT and SIGTERM set the stop flag instead of killing the process.
fn catch_stop_signals() {
    crate::cli::stop_on_signals();
}

/// Blocks until SIGINT or SIGTERM (see [`catch_stop_signals`]).
fn wait_for_stop() {
    while !crate::cli::stop_requested() {
        std::thread::sleep(STOP_POLL);
    }
}

/// How often the `--peer` peers are offered to the engine again: one that failed (not
/// listening yet, restarting) is dropped by the engine and taken back once its
/// `rejoin_after` has passed; an offer of a peer in use is ignored. So the client cycles
/// through every peer it knows, at one offer per peer per interval.
const REOFFER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// With peers to come and go, a download gives up when nothing was verified and nothing
/// was in flight for this long: five minutes covers a seed that restarts or a tracker
/// that answers late, and still ends a run whose swarm is gone.
const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Tells every upload connection of each verified piece (`have`), and counts it for the
/// tracker announces.
struct HaveBroadcast {
    seeder: std::sync::Arc<super::seed::Seeder>,
    counters: std::sync::Arc<super::session::Counters>,
}

impl crate::download::Verified for HaveBroadcast {
    fn verified(&self, indexes: &[usize], data: &[u8]) {
        use std::sync::atomic::Ordering;
        for &i in indexes {
            self.seeder.announce(i);
            let n = data.len() as u64;
            self.counters.downloaded.fetch_add(n, Ordering::Relaxed);
            let _ = self
                .counters
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    Some(l.saturating_sub(n))
                });
        }
    }
}

/// How often the progress bar's rates are measured: a second smooths the bursts of one
/// piece without lagging behind a change of peers.
const RATE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The progress bar's message: download and upload rates over the last [`RATE_EVERY`],
/// and the peers connected.
struct RateMeter {
    at: std::time::Instant,
    down: u64,
    up: u64,
}

impl RateMeter {
    fn new(s: &super::peers::Swarm) -> Self {
        RateMeter {
            at: std::time::Instant::now(),
            down: s.downloaded(),
            up: s.uploaded(),
        }
    }

    /// The new message, once per [`RATE_EVERY`].
    fn tick(&mut self, s: &super::peers::Swarm) -> Option<String> {
        let secs = self.at.elapsed().as_secs_f64();
        if secs < RATE_EVERY.as_secs_f64() {
            return None;
        }
        let (down, up) = (s.downloaded(), s.uploaded());
        let mb = |d: u64| d as f64 / secs / 1e6;
        let msg = format!(
            "down {:.1} MB/s, up {:.1} MB/s, {}",
            mb(down - self.down),
            mb(up.saturating_sub(self.up)),
            crate::text::count(s.connections().len(), "peer", "peers"),
        );
        *self = RateMeter {
            at: std::time::Instant::now(),
            down,
            up,
        };
        Some(msg)
    }
}

/// The exit status of a download interrupted by SIGINT/SIGTERM: 128 + SIGINT, as a
/// shell reports a process a Ctrl-C ended.
const INTERRUPTED_EXIT: i32 = 130;

/// How long exiting waits for the `stopped` announce: a live tracker answers within
/// milliseconds, a dead one must not hold the exit.
const STOPPED_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts the tracker session of `m` (none when it names no tracker); every peer a
/// tracker lists goes to `on_peer`.
fn start_trackers(
    m: &super::metainfo::Metainfo,
    id: super::peer_wire::PeerId,
    listen: std::net::SocketAddr,
    counters: std::sync::Arc<super::session::Counters>,
    seeder: std::sync::Arc<super::seed::Seeder>,
    on_peer: impl Fn(std::net::SocketAddr) + Send + 'static,
) -> Option<super::session::TrackerSession> {
    let tiers = super::announce::Tiers::new(None, Some(&m.trackers));
    super::session::TrackerSession::start(
        tiers,
        m.info_hash.0,
        id.0,
        listen,
        counters,
        move || seeder.uploaded(),
        move |peers| peers.into_iter().for_each(&on_peer),
    )
}

/// Runs `swarmlet download`: recheck (resume), listen for peers that download from us,
/// fetch every missing piece through the shared engine from the `--peer` peers, print a
/// summary; with `--seed`, keep serving until SIGINT/SIGTERM.
pub fn run_download(args: &DownloadArgs) -> anyhow::Result<()> {
    use crate::download::{self, Extras, Options, PeerInfo, PeerSpec, Plan, SwarmEvent};
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let (m, store, have) = open_data(&args.torrent, &args.dir)?;
    let layout = store.layout().clone();
    let id = our_peer_id();
    let seeder = super::seed::Seeder::new(m.info_hash, id, store.clone(), &layout)
        .with_limit(args.max_upload_rate)
        .with_download_limit(args.max_download_rate)
        .with_max_peers(args.max_peers);
    // The listener runs from the start: whoever dials us gets what we have, and the
    // `have`s of what we verify (the engine's on_verified hook below); while the
    // download runs, its connections are download sources too.
    let (tx, rx) = download::swarm::channel();
    if !have.is_full() {
        // Before the listener opens: a peer that dials at once is a download source too.
        seeder.download_started(tx.clone());
    }
    let listen = super::seed::spawn(args.listen, seeder.clone())?;
    println!("listening on {listen}");
    std::io::stdout().flush()?;
    let name = m.name_lossy();
    let have_bytes: u64 = (0..layout.piece_count())
        .filter(|&i| have.has(i))
        .map(|i| layout.piece_len(i))
        .sum();
    let counters = std::sync::Arc::new(super::session::Counters {
        left: (layout.total_len() - have_bytes).into(),
        ..Default::default()
    });
    let tracker_tx = tx.clone();
    let trackers = start_trackers(
        &m,
        id,
        listen,
        counters.clone(),
        seeder.clone(),
        move |addr| {
            let info = PeerInfo {
                addr,
                label: addr.to_string(),
            };
            // After the download the engine is gone: peers then only dial us.
            let _ = tracker_tx.send(SwarmEvent::Join(PeerSpec { info, has: None }));
        },
    );
    // SIGINT/SIGTERM before completion: announce `stopped` and exit non-zero; what was
    // verified is on disk and the next run's recheck keeps it.
    catch_stop_signals();
    let report = if have.is_full() {
        None
    } else {
        let plan = Plan::new(name.clone(), m.digests(), Some(layout.clone()))?;
        let connector =
            super::source::BtConnector::new(seeder.clone(), super::fetch::Timeouts::default())
                .skip(listen);
        // Trackers (the announce thread above: UDP now, HTTP as soon as
        // `announce::announce` speaks it) send `SwarmEvent::Join` for each peer they list
        // on this channel; `--peer` peers go the same way.
        let opts = Options {
            tie_seed: Options::random_seed(),
            stall_timeout: Some(STALL_TIMEOUT),
            ban_liars: true,
            max_live_peers: args.max_peers,
            ..Options::default()
        };
        let progress = crate::cli::piece_progress(plan.len() as u64);
        let progress_ref = &progress;
        let hook = HaveBroadcast {
            seeder: seeder.clone(),
            counters: counters.clone(),
        };
        let peers = &args.peers;
        let trackers_ref = &trackers;
        let counters_ref = &counters;
        let seeder_ref = &*seeder;
        let offer = &tx;
        let extras = Extras {
            on_verified: Some(&hook),
            swarm: Some(rx),
        };
        // Beside the download, one thread watches for SIGINT/SIGTERM and offers the
        // `--peer` peers again every REOFFER_INTERVAL (one that was down may be up now).
        let result = download::download_while(
            &plan,
            &*store,
            &connector,
            &opts,
            &progress,
            extras,
            |done| {
                let mut next_offer = std::time::Instant::now();
                let mut offering = true;
                let mut rates = RateMeter::new(seeder_ref);
                while !done.load(Ordering::SeqCst) {
                    if let Some(msg) = rates.tick(seeder_ref) {
                        progress_ref.set_message(msg);
                    }
                    if crate::cli::stop_requested() {
                        if let Some(t) = trackers_ref {
                            t.stop_in_place(STOPPED_GRACE);
                        }
                        let left = counters_ref.left.load(Ordering::Relaxed);
                        println!("interrupted: {left} bytes still missing; the next run resumes");
                        let _ = std::io::stdout().flush();
                        std::process::exit(INTERRUPTED_EXIT);
                    }
                    if offering && std::time::Instant::now() >= next_offer {
                        for &addr in peers {
                            let info = PeerInfo {
                                addr,
                                label: addr.to_string(),
                            };
                            let join = SwarmEvent::Join(PeerSpec { info, has: None });
                            // The engine is gone: nothing more to offer.
                            offering &= offer.send(join).is_ok();
                        }
                        next_offer = std::time::Instant::now() + REOFFER_INTERVAL;
                    }
                    std::thread::sleep(STOP_POLL);
                }
            },
        );
        progress.finish_and_clear();
        seeder.download_over();
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                if let Some(t) = trackers {
                    t.stop(STOPPED_GRACE);
                }
                return Err(e.into());
            }
        }
    };
    drop(tx);
    let (bytes, secs, peers_used, refetched, resumed) = match &report {
        Some(r) => (
            r.bytes,
            r.elapsed.as_secs_f64(),
            r.peers.iter().filter(|p| p.chunks > 0).count(),
            r.retries,
            r.resumed,
        ),
        None => (0, 0.0, 0, 0, have.count()),
    };
    println!(
        "{}: downloaded {bytes} bytes in {secs:.2} s ({:.1} MB/s) from {peers_used} peers; \
         uploaded {} bytes; {resumed} pieces resumed, {refetched} re-fetched",
        crate::text::printable(&name),
        bytes as f64 / secs.max(1e-9) / 1e6,
        seeder.uploaded(),
    );
    let c = seeder.counts();
    println!(
        "connections: {} in, {} out, {} duplicates closed",
        c.incoming, c.outgoing, c.duplicates
    );
    std::io::stdout().flush()?;
    if args.seed {
        seed_until_stopped(&m.info_hash, listen, &seeder)?;
    }
    if let Some(t) = trackers {
        t.stop(STOPPED_GRACE);
    }
    Ok(())
}
