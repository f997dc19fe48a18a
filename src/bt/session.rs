//! The tracker session of one running download or seed: an announce thread that tells the
//! torrent's trackers (BEP 12 tiers, through [`announce::announce`], which picks the
//! client by URL scheme) that we started, re-announces at the interval they ask for,
//! reports `completed` once, and `stopped` when told to stop; every peer a tracker lists
//! (but ourselves) goes to the caller, which offers it to the engine's live swarm.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bt::announce::{self, AnnounceRequest, Event, Tiers};

/// How often the announce thread wakes while waiting for the next announce: to notice
/// completion (and report it at once) and the stop request.
const WAKE: Duration = Duration::from_millis(200);

/// After a round in which every tracker failed, the next try comes after this long
/// rather than the (unknown) interval: a tracker that was restarting is back within a
/// minute, and one round a minute to a dead tracker costs nothing.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Peers asked for per announce: BEP 3's customary 50, as many as `--max-peers` uses.
const NUMWANT: u32 = 50;

/// What the announces report, updated by the download while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes fetched and verified in this run.
    pub downloaded: AtomicU64,
    /// Bytes still missing.
    pub left: AtomicU64,
}

/// A running announce thread; [`TrackerSession::stop`] announces `stopped` and ends it.
pub struct TrackerSession {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TrackerSession {
    /// Starts announcing for `info_hash` as `peer_id` listening on `listen`; `uploaded`
    /// says how many bytes we sent so far; `on_peers` gets each tracker answer's peers,
    /// ourselves left out. Returns `None` when the
    /// torrent names no tracker (peers then come from `--peer` only).
    pub fn start(
        tiers: Tiers,
        info_hash: [u8; 20],
        peer_id: [u8; 20],
        listen: SocketAddr,
        counters: Arc<Counters>,
        uploaded: impl Fn() -> u64 + Send + 'static,
        on_peers: impl Fn(Vec<SocketAddr>) + Send + 'static,
    ) -> Option<TrackerSession> {
        if tiers.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let key = announce::random_u64() as u32;
        let thread = std::thread::Builder::new()
            .name("announce".into())
            .spawn(move || {
                let mut tiers = tiers;
                let request = |event| AnnounceRequest {
                    info_hash,
                    peer_id,
                    port: listen.port(),
                    uploaded: uploaded(),
                    downloaded: counters.downloaded.load(Ordering::Relaxed),
                    left: counters.left.load(Ordering::Relaxed),
                    event,
                    numwant: (event != Event::Stopped).then_some(NUMWANT),
                    key,
                    tracker_id: None,
                };
                // `completed` only for a download that completes here, not for a seed.
                let mut completed_due = counters.left.load(Ordering::Relaxed) > 0;
                let mut event = Event::Started;
                while !stopping.load(Ordering::SeqCst) {
                    let wait = match tiers.announce(|url| announce::announce(url, &request(event)))
                    {
                        Ok((url, r)) => {
                            if let Some(w) = &r.warning {
                                log::warn!("tracker {url}: {w}");
                            }
                            log::info!("tracker {url}: {} peers", r.peers.len());
                            on_peers(
                                r.peers
                                    .iter()
                                    .copied()
                                    .filter(|p| !is_us(*p, listen))
                                    .collect(),
                            );
                            r.next_announce()
                        }
                        Err(e) => {
                            for (url, err) in &e.errors {
                                log::warn!("tracker {url}: {err}");
                            }
                            RETRY_AFTER_FAILURE
                        }
                    };
                    event = Event::None;
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                        if completed_due && counters.left.load(Ordering::Relaxed) == 0 {
                            completed_due = false;
                            event = Event::Completed;
                            break;
                        }
                        std::thread::sleep(WAKE);
                    }
                }
                if let Err(e) =
                    tiers.announce(|url| announce::announce(url, &request(Event::Stopped)))
                {
                    for (url, err) in &e.errors {
                        log::warn!("tracker {url}: stopped: {err}");
                    }
                }
            })
            .ok()?;
        Some(TrackerSession {
            stop,
            thread: Some(thread),
        })
    }

    /// Announces `stopped`, waiting for it at most `grace` (a dead tracker must not hold
    /// the process: the thread is then left to the exit).
    pub fn stop(mut self, grace: Duration) {
        self.stop_in_place(grace);
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
    }

    /// [`TrackerSession::stop`] from a shared reference, for a thread about to end the
    /// process (an interrupted download).
    pub fn stop_in_place(&self, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let until = Instant::now() + grace;
        if let Some(t) = &self.thread {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether a listed peer is our own listener: our address, or a loopback address on our
/// port when we listen on the wildcard. Other peers on our port are others (6881 is
/// everyone's default): the handshake's peer-id check catches us behind a public IP.
fn is_us(peer: SocketAddr, listen: SocketAddr) -> bool {
    peer == listen
        || (peer.port() == listen.port() && listen.ip().is_unspecified() && peer.ip().is_loopback())
}
