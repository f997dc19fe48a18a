//! `bvtorrent-client`: joins a swarm, checks what is already on disk, serves uploads from
//! the moment it registers, downloads what is missing and leaves with `DISCONNECT!`.
//!
//! The pieces, each in its own module: [`super::session`] (the tracker connection, which
//! is the membership), [`super::upload`] (the listener other clients fetch from),
//! [`super::fetch`] (one chunk from one holder) and the shared storage
//! ([`FilesStore`]: verified chunks written at their offsets as they arrive, and the
//! recheck at start). The download itself is the shared engine's ([`crate::download`]):
//! the client gives it a plan (the descriptor's SHA-224 digests and layout), a
//! [`BvConnector`] (one new connection per chunk), a live swarm fed from the client list
//! ([`feed_swarm`]), and a hook that announces each verified chunk with `UPDATE_MASK`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::codec::{CodecError, Descriptor};
use super::fetch::Fetcher;
use super::session::{SessionError, TrackerSession};
use super::upload::{UploadService, Uploader};
use crate::bitfield::Bitfield;
use crate::download::swarm::{self, SwarmSender};
use crate::download::{
    Connected, Connector, DownloadError, Extras, FetchError, Options, PeerInfo, PeerSpec,
    PieceRequest, PieceSource, Plan, Report, SwarmEvent, Verified, download_while,
};
use crate::storage::PieceStore;
use crate::storage::files::{FilesError, FilesStore};

/// How often the client list is asked for while downloading (design decision). New
/// clients and their new chunks only reach us through it; every 2 s keeps a joining
/// leecher's chunks usable within seconds, at the cost of one 12-byte command and one
/// list (clients × (chunks + ~25) bytes: 1.4 KB for 5 clients of a 256-chunk file) per
/// interval. A complete client (a seed) never asks: it downloads nothing.
pub const LIST_INTERVAL: Duration = Duration::from_secs(2);

/// A holder the engine dropped (its connection failed twice in a row, or it sent a chunk
/// with the wrong digest) is not asked for anything for this long: it may be restarting
/// or overloaded, and other holders may have the chunk. Long enough to try the others
/// first, short enough to come back to it when it is the only holder.
pub const FAILED_BACKOFF: Duration = Duration::from_secs(5);

/// Connections to other clients at once, while downloading (design decision): one per
/// holder, each opened for one chunk and closed after it (the spec's rule), so at most
/// the engine's [`MAX_PEERS`](crate::download::plan::MAX_PEERS) at once: a holder serves
/// one chunk to us at a time, and every holder is kept busy.
pub const MAX_DOWNLOADS: usize = crate::download::plan::MAX_PEERS;

/// When leaving, in-flight uploads get this long to finish after `DISCONNECT!` (which
/// stops new requesters from finding us): a 1 MiB chunk takes milliseconds on a LAN, and
/// a requester too slow for 5 s retries elsewhere.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(5);

/// How often the main thread looks at the stop flag (SIGINT/SIGTERM) while seeding: a
/// signal is acted on within this.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// Mask update policy (design decision): `UPDATE_MASK` with the full mask right after
/// every verified chunk, as the spec says (step 4), so a chunk is offered to the swarm
/// the moment it is stored; a mask is one byte per chunk (1 KiB for a 1 GiB file), cheap
/// next to the 1 MiB chunk it announces.
pub const UPDATE_EVERY_CHUNK: bool = true;

/// What the client is asked to do.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The tracker's address.
    pub tracker: SocketAddr,
    /// Where the file is (`DIR/<fileName>`).
    pub dir: PathBuf,
    /// Where other clients connect (port 0: ephemeral, advertised as bound).
    pub listen: SocketAddr,
    /// Leave as soon as the file is complete.
    pub exit_when_done: bool,
}

/// Why the client stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The tracker session failed.
    #[error(transparent)]
    Tracker(#[from] SessionError),
    /// The descriptor cannot be laid out as a file.
    #[error("tracker's descriptor: {0}")]
    Descriptor(#[from] CodecError),
    /// The file cannot be created.
    #[error(transparent)]
    Store(#[from] FilesError),
    /// Checking the existing file failed.
    #[error("cannot check {path}: {source}")]
    Recheck {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upload listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The download failed (a chunk cannot be written, the tracker went away).
    #[error(transparent)]
    Download(#[from] DownloadError),
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The file's name as the tracker gave it.
    pub name: String,
    /// Its length.
    pub total_bytes: u64,
    /// Its chunks.
    pub chunks: usize,
    /// Chunks already valid on disk at start.
    pub resumed: usize,
    /// Chunks downloaded and verified by this run.
    pub downloaded: usize,
    /// Bytes of those chunks.
    pub downloaded_bytes: u64,
    /// Chunks that failed verification (wrong digest) and were fetched again.
    pub rejected: usize,
    /// Chunks uploaded whole to other clients.
    pub uploaded: u64,
    /// Whether every chunk is verified.
    pub complete: bool,
    /// The port registered with the tracker.
    pub port: u16,
}

impl Summary {
    /// The one line printed at the end.
    pub fn line(&self) -> String {
        format!(
            "{} {}: {} bytes, {} chunks ({} already on disk, {} downloaded, {} rejected), {} uploaded",
            if self.complete { "done" } else { "stopped" },
            crate::text::printable(&self.name),
            self.total_bytes,
            self.chunks,
            self.resumed,
            self.downloaded,
            self.rejected,
            self.uploaded
        )
    }
}

/// SIGINT and SIGTERM as a flag the client polls (every [`STOP_POLL`] while seeding,
/// through the engine's swarm feeder while downloading), so that it leaves with
/// `DISCONNECT!` and exits 0.
pub use crate::cli::stop_on_signals;

/// Runs the client: join, recheck, serve, download what is missing, then leave when the
/// file is complete (with `exit_when_done`) or when `stop` is set.
pub fn run(cfg: &ClientConfig, stop: &AtomicBool) -> Result<Summary, ClientError> {
    let (session, desc) = TrackerSession::connect(cfg.tracker)?;
    let session = Arc::new(session);
    let name = String::from_utf8_lossy(&desc.name).into_owned();
    let layout = desc.layout()?;
    let store = Arc::new(FilesStore::create(&cfg.dir, layout.clone())?);
    let path = crate::root::display_path(store.path(0));
    let mut have = store
        .recheck(&desc.digests())
        .map_err(|source| ClientError::Recheck {
            path: path.clone(),
            source,
        })?;
    let resumed = have.count();
    log::info!(
        "{path}: {resumed}/{} chunks already valid",
        desc.chunks.len()
    );

    // Listen before registering, and advertise the port really bound: a list entry
    // with port 0 or a port nobody listens on is useless to the swarm.
    let service = Arc::new(UploadService::new(store.clone(), layout));
    let uploader = Uploader::start(cfg.listen, service).map_err(|source| ClientError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let port = uploader.local_addr().port();
    session.register(port, &have)?;
    log::info!(
        "registered port {port} with {} for {name} ({} bytes, {} chunks)",
        cfg.tracker,
        desc.total_len(),
        desc.chunks.len()
    );

    let mut downloaded = (0, 0u64);
    let mut rejected = 0;
    if !have.is_full() {
        match download_missing(&session, &store, &desc, &have, stop) {
            Ok(report) => {
                downloaded = (report.peers.iter().map(|p| p.chunks).sum(), report.bytes);
                rejected = report.rejected;
                log::info!("{}", report.summary(&name));
            }
            Err(DownloadError::Incomplete { report, .. }) if stop.load(Ordering::SeqCst) => {
                downloaded = (report.peers.iter().map(|p| p.chunks).sum(), report.bytes);
                rejected = report.rejected;
            }
            Err(e) => {
                let _ = session.disconnect();
                return Err(ClientError::Download(e));
            }
        }
        have = Bitfield::from_bools((0..desc.chunks.len()).map(|i| store.has(i)));
    }
    if have.is_full() {
        log::info!("{name} complete");
    }
    if !(have.is_full() && cfg.exit_when_done) {
        while !stop.load(Ordering::SeqCst) {
            thread::sleep(STOP_POLL);
        }
    }
    session.disconnect()?;
    if !uploader.wait_idle(UPLOAD_GRACE) {
        log::info!("leaving with {} uploads unfinished", uploader.active());
    }
    Ok(Summary {
        name,
        total_bytes: desc.total_len(),
        chunks: desc.chunks.len(),
        resumed,
        downloaded: downloaded.0,
        downloaded_bytes: downloaded.1,
        rejected,
        uploaded: uploader.service().chunks_uploaded(),
        complete: have.is_full(),
        port,
    })
}

/// Opens bvTorrent "connections": a holder is asked over a new TCP connection per chunk
/// (the spec's rule), so connecting does nothing and each fetch dials.
pub struct BvConnector {
    /// The deadlines of every fetch.
    pub fetcher: Fetcher,
}

struct BvSource {
    addr: SocketAddr,
    fetcher: Fetcher,
}

impl Connector for BvConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError> {
        Ok(Connected::new(Box::new(BvSource {
            addr: peer.addr,
            fetcher: self.fetcher,
        })))
    }
}

impl PieceSource for BvSource {
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        // A bvTorrent plan always has its layout (the descriptor gives every size).
        let len = req.len.ok_or(FetchError::NotFound)?;
        self.fetcher.fetch_chunk(self.addr, req.index, len, buf)
    }
}

/// Announces every verified chunk to the tracker (see [`UPDATE_EVERY_CHUNK`]).
struct Announce<'a> {
    session: &'a TrackerSession,
    have: Mutex<Bitfield>,
}

impl Verified for Announce<'_> {
    fn verified(&self, indexes: &[usize], _data: &[u8]) {
        let mut have = self.have.lock().unwrap_or_else(|e| e.into_inner());
        for &i in indexes {
            have.set(i);
        }
        if UPDATE_EVERY_CHUNK && let Err(e) = self.session.update_mask(&have) {
            log::warn!("cannot update our mask with the tracker: {e}");
        }
    }
}

/// Feeds the engine's live swarm from the client list, every [`LIST_INTERVAL`], until
/// `done` or `stop` is set: every listed holder joins (the engine ignores those it
/// knows, and lets dropped ones back after a while), a changed mask replaces the known
/// one, and a holder no longer listed leaves. On `stop` every holder leaves, so the
/// download ends at once with what it has.
fn feed_swarm(session: &TrackerSession, swarm: SwarmSender, done: &AtomicBool, stop: &AtomicBool) {
    let mut known: HashMap<SocketAddr, Bitfield> = HashMap::new();
    let mut next = Instant::now();
    while !done.load(Ordering::SeqCst) {
        if stop.load(Ordering::SeqCst) {
            for addr in known.keys() {
                let _ = swarm.send(SwarmEvent::Leave(*addr));
            }
            return;
        }
        if Instant::now() < next {
            thread::sleep(STOP_POLL);
            continue;
        }
        next = Instant::now() + LIST_INTERVAL;
        let holders = match session.client_list() {
            Ok(h) => h,
            Err(e) => {
                log::warn!("cannot get the client list: {e}; leaving with what we have");
                return; // dropping `swarm` ends the download
            }
        };
        log::debug!("{} holders listed", holders.len());
        let listed: std::collections::HashSet<SocketAddr> =
            holders.iter().map(|h| h.addr).collect();
        for addr in known.keys().filter(|a| !listed.contains(a)) {
            let _ = swarm.send(SwarmEvent::Leave(*addr));
        }
        known.retain(|a, _| listed.contains(a));
        for h in holders {
            let changed = known.get(&h.addr).is_some_and(|m| *m != h.has);
            let info = PeerInfo {
                addr: h.addr,
                label: h.addr.to_string(),
            };
            let _ = swarm.send(SwarmEvent::Join(PeerSpec {
                info,
                has: Some(h.has.clone()),
            }));
            if changed {
                let _ = swarm.send(SwarmEvent::Has {
                    addr: h.addr,
                    has: h.has.clone(),
                });
            }
            known.insert(h.addr, h.has);
        }
    }
}

/// Engine tuning for bvTorrent (design decisions): ties shuffled so that leechers of one
/// swarm want different chunks and trade; a holder that sent one wrong chunk is dropped
/// (the liar avoided), and any dropped holder (a liar, one that refused or died) may come
/// back from the client list after [`FAILED_BACKOFF`], in case it is the only holder.
fn engine_options() -> Options {
    Options {
        tie_seed: Options::random_seed(),
        max_bad_chunks: 1,
        rejoin_after: FAILED_BACKOFF,
        ..Options::default()
    }
}

/// Downloads what `have` lacks with the shared engine, the swarm fed from `session`'s
/// client list. Returns the engine's report, or its error when `stop` cut it short or the
/// tracker went away.
fn download_missing(
    session: &TrackerSession,
    store: &FilesStore,
    desc: &Descriptor,
    have: &Bitfield,
    stop: &AtomicBool,
) -> Result<Report, DownloadError> {
    let name = String::from_utf8_lossy(&desc.name).into_owned();
    let plan = Plan::new(name.clone(), desc.digests(), Some(store.layout().clone()))?;
    let progress = crate::cli::count_progress(plan.len() as u64, &name);
    let hook = Announce {
        session,
        have: Mutex::new(have.clone()),
    };
    let (tx, rx) = swarm::channel();
    let connector = BvConnector {
        fetcher: Fetcher::default(),
    };
    let extras = Extras {
        on_verified: Some(&hook),
        swarm: Some(rx),
    };
    let opts = engine_options();
    let result = download_while(&plan, store, &connector, &opts, &progress, extras, |done| {
        feed_swarm(session, tx, done, stop)
    });
    progress.finish_and_clear();
    result
}
