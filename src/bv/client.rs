//! `bvtorrent-client`: joins a swarm, checks what is already on disk, serves uploads from
//! the moment it registers, downloads what is missing and leaves with `DISCONNECT!`.
//!
//! The pieces, each in its own module: [`super::session`] (the tracker connection, which
//! is the membership), [`super::upload`] (the listener other clients fetch from),
//! [`super::fetch`] (one chunk from one holder) and the shared storage
//! ([`FilesStore`]: verified chunks written at their offsets as they arrive, and the
//! recheck at start). The download loop, [`download_missing`], is a deliberately simple
//! placeholder (one holder at a time) until the shared engine drives bvTorrent; it keeps
//! the session, fetch and store calls apart so that the engine can take it over whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::codec::{self, CodecError, Descriptor};
use super::fetch::Fetcher;
use super::session::{Holder, SessionError, TrackerSession};
use super::upload::{UploadService, Uploader};
use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::download::FetchError;
use crate::storage::PieceStore;
use crate::storage::files::{FilesError, FilesStore};

/// How often the client list is asked for while downloading (design decision). New
/// clients and their new chunks only reach us through it; every 2 s keeps a joining
/// leecher's chunks usable within seconds, at the cost of one 12-byte command and one
/// list (clients × (chunks + ~25) bytes: 1.4 KB for 5 clients of a 256-chunk file) per
/// interval. When no listed holder is usable the list is asked again after
/// [`NO_HOLDER_WAIT`] instead. A complete client (a seed) never asks: it downloads nothing.
pub const LIST_INTERVAL: Duration = Duration::from_secs(2);

/// Wait before asking the list again when no holder of any missing chunk is usable (all
/// avoided, or nobody has what we miss yet): short enough to pick up a new holder at
/// once, long enough not to hammer the tracker.
pub const NO_HOLDER_WAIT: Duration = Duration::from_millis(500);

/// A holder whose fetch failed (refused, closed early, timed out) is not asked for
/// anything for this long: it may be restarting or overloaded, and other holders may have
/// the chunk. Long enough to try the others first, short enough to come back to it when it
/// is the only holder.
pub const FAILED_BACKOFF: Duration = Duration::from_secs(5);

/// A holder that sent a chunk with the wrong digest is not asked for anything for this
/// long: one wrong chunk may be a corrupt disk, but its other chunks are suspect too. It
/// is forgiven after a minute in case it is the only holder left.
pub const LIAR_BACKOFF: Duration = Duration::from_secs(60);

/// Connections to other clients at once, while downloading (design decision): one, in
/// this placeholder loop, which fetches one chunk from one holder at a time. The shared
/// engine replaces it with one stop-and-wait worker per holder (each with one connection
/// open at a time, the spec's new connection per chunk).
pub const MAX_DOWNLOADS: usize = 1;

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
    /// A verified chunk cannot be written.
    #[error("cannot write chunk {chunk} to {path}: {source}")]
    Write {
        /// The chunk.
        chunk: usize,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
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
            self.name,
            self.total_bytes,
            self.chunks,
            self.resumed,
            self.downloaded,
            self.rejected,
            self.uploaded
        )
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do.
    STOP.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag the client polls (every [`STOP_POLL`] while
/// seeding, between chunks while downloading), so that it leaves with `DISCONNECT!` and
/// exits 0. The same handler as the BitTorrent tracker's SIGHUP: no signal crate needed
/// for one flag.
pub fn stop_on_signals() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_stop_signal as *const () as libc::sighandler_t,
        );
    }
    &STOP
}

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

    let mut stats = LoopStats::default();
    if !have.is_full() {
        let progress = crate::cli::byte_progress(desc.total_len(), &name);
        progress.set_position(have.ones().map(|i| desc.chunks[i].size).sum());
        let res = download_missing(
            &session,
            &Fetcher::default(),
            store.as_ref(),
            &path,
            &desc,
            &mut have,
            stop,
            &progress,
            &mut stats,
        );
        progress.finish_and_clear();
        if let Err(e) = res {
            let _ = session.disconnect();
            return Err(e);
        }
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
        downloaded: stats.chunks,
        downloaded_bytes: stats.bytes,
        rejected: stats.rejected,
        uploaded: uploader.service().chunks_uploaded(),
        complete: have.is_full(),
        port,
    })
}

/// What [`download_missing`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopStats {
    /// Chunks verified and stored.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Chunks that came with a wrong digest.
    pub rejected: usize,
}

/// Which holders not to ask, until when.
#[derive(Default)]
struct Avoid(HashMap<SocketAddr, Instant>);

impl Avoid {
    fn until(&mut self, addr: SocketAddr, d: Duration) {
        self.0.insert(addr, Instant::now() + d);
    }
    fn ok(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.0.get(addr).is_none_or(|&t| t <= now)
    }
}

/// The placeholder download loop (to be replaced by the shared engine): until `have` is
/// full or `stop` is set, pick the rarest missing chunk among the listed masks (random
/// among equals) and a random usable holder of it, fetch it, verify it, store it, and
/// announce it. Exactly three kinds of calls, kept apart for the engine to take over:
/// the **session** (`client_list` on a schedule and when out of holders, `update_mask`
/// after each chunk), the **fetch** (one chunk from one holder), and the **store**
/// (`write_piece` of a verified chunk at its offset).
#[allow(clippy::too_many_arguments)]
pub fn download_missing(
    session: &TrackerSession,
    fetcher: &Fetcher,
    store: &dyn PieceStore,
    path: &str,
    desc: &Descriptor,
    have: &mut Bitfield,
    stop: &AtomicBool,
    progress: &ProgressBar,
    stats: &mut LoopStats,
) -> Result<(), ClientError> {
    let mut holders: Vec<Holder> = Vec::new();
    let mut next_list = Instant::now();
    let mut avoid = Avoid::default();
    let mut buf = Vec::new();
    while !have.is_full() && !stop.load(Ordering::SeqCst) {
        // Session: the list, on a schedule.
        if Instant::now() >= next_list {
            holders = session.client_list()?;
            next_list = Instant::now() + LIST_INTERVAL;
            log::debug!("{} holders listed", holders.len());
        }
        let Some((i, addr)) = pick(&holders, have, &avoid) else {
            // Out of holders: ask again soon.
            thread::sleep(NO_HOLDER_WAIT);
            next_list = Instant::now();
            continue;
        };
        // Fetch: one chunk from one holder, then verify.
        let chunk = desc.chunks[i];
        match fetcher.fetch_chunk(addr, i, chunk.size, &mut buf) {
            Ok(()) if Digest::of(codec::ALGO, &buf) == chunk.digest => {}
            Ok(()) => {
                log::warn!("chunk {i} from {addr}: wrong digest; avoiding that holder");
                stats.rejected += 1;
                avoid.until(addr, LIAR_BACKOFF);
                continue;
            }
            Err(e) => {
                log_fetch_failure(i, addr, &e);
                avoid.until(addr, FAILED_BACKOFF);
                continue;
            }
        }
        // Store: the verified chunk at its offset, at once.
        store
            .write_piece(i, &buf)
            .map_err(|source| ClientError::Write {
                chunk: i,
                path: path.to_string(),
                source,
            })?;
        have.set(i);
        stats.chunks += 1;
        stats.bytes += chunk.size;
        progress.inc(chunk.size);
        log::debug!("chunk {i} from {addr} ({}/{})", have.count(), have.len());
        // Session: announce it (see UPDATE_EVERY_CHUNK).
        if UPDATE_EVERY_CHUNK {
            session.update_mask(have)?;
        }
    }
    Ok(())
}

fn log_fetch_failure(i: usize, addr: SocketAddr, e: &FetchError) {
    log::info!("chunk {i} from {addr}: {e}; trying others");
}

/// The rarest missing chunk that some usable holder has (random among equals), and a
/// random usable holder of it. Rarity counts every listed holder, usable or not: that
/// is what the swarm has.
fn pick(holders: &[Holder], have: &Bitfield, avoid: &Avoid) -> Option<(usize, SocketAddr)> {
    let now = Instant::now();
    let mut best: Vec<usize> = Vec::new();
    let mut best_n = usize::MAX;
    for i in (0..have.len()).filter(|&i| !have.has(i)) {
        let n = holders.iter().filter(|h| h.has.has(i)).count();
        if n == 0 || n > best_n {
            continue;
        }
        if !holders
            .iter()
            .any(|h| h.has.has(i) && avoid.ok(&h.addr, now))
        {
            continue;
        }
        if n < best_n {
            best.clear();
            best_n = n;
        }
        best.push(i);
    }
    let i = *choose(&best)?;
    let usable: Vec<SocketAddr> = holders
        .iter()
        .filter(|h| h.has.has(i) && avoid.ok(&h.addr, now))
        .map(|h| h.addr)
        .collect();
    choose(&usable).map(|&a| (i, a))
}

fn choose<T>(v: &[T]) -> Option<&T> {
    if v.is_empty() {
        return None;
    }
    v.get((crate::bt::announce::random_u64() % v.len() as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(port: u16, mask: &str) -> Holder {
        Holder {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            has: Bitfield::from_bools(mask.bytes().map(|b| b == b'1')),
        }
    }

    #[test]
    fn picks_the_rarest_missing_chunk_from_a_usable_holder() {
        let holders = [h(1, "1110"), h(2, "1100"), h(3, "0101")];
        let mut have = Bitfield::new(4);
        let mut avoid = Avoid::default();
        // Chunk 2 and 3 are held once each; 0 and 1 more often.
        for _ in 0..50 {
            let (i, a) = pick(&holders, &have, &avoid).unwrap();
            assert!(
                (i == 2 && a.port() == 1) || (i == 3 && a.port() == 3),
                "{i} {a}"
            );
        }
        // Holder 3 avoided: chunk 3 has no usable holder, chunk 2 it is.
        avoid.until(holders[2].addr, Duration::from_secs(60));
        assert_eq!(pick(&holders, &have, &avoid).unwrap().0, 2);
        have.set(2);
        // Chunk 0 has two holders, chunk 1 three: 0, from holder 1 or 2.
        let (i, a) = pick(&holders, &have, &avoid).unwrap();
        assert!(i == 0 && a.port() != 3);
        for i in 0..3 {
            have.set(i);
        }
        assert_eq!(
            pick(&holders, &have, &avoid),
            None,
            "3 only from an avoided one"
        );
    }
}
