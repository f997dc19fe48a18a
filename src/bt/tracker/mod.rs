//! `swarmlet tracker`: a BitTorrent tracker speaking HTTP (BEP 3, 23, 48, 7) on TCP and
//! the UDP tracker protocol (BEP 15) on the same port number.
//!
//! One [`Tracker`] holds every swarm, sharded by infohash so that HTTP connection threads
//! and UDP threads rarely wait on each other. The state lives in memory only: a restarted
//! tracker starts empty and fills again as clients re-announce (every `interval`).
//!
//! The front ends ([`http`], [`udp`]) only translate bytes to an [`announce::Announce`] or a
//! scrape and back; the swarm logic is here, once, for both.

pub mod announce;
pub mod http;
pub mod run;
pub mod udp;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use announce::{Announce, Event};

/// Shards of the swarm table. Infohashes are SHA-1 digests, so their first bytes spread
/// evenly; 64 shards make two announces for different torrents meet on one lock rarely
/// even with dozens of HTTP threads, and cost only 64 empty maps when idle.
pub const SHARDS: usize = 64;

/// Most swarms tracked at once. A swarm with one peer costs a few hundred bytes; 200,000
/// swarms stays within [`MAX_PEERS_TOTAL`]'s memory budget while leaving room for any
/// classroom or LAN (and for the 10,000-swarm benchmark). Announces for new torrents
/// beyond it fail with "tracker full".
pub const MAX_SWARMS: usize = 200_000;

/// Most peers in one swarm. A reply carries at most [`MAX_NUMWANT`] of them anyway; beyond
/// 50,000 a swarm only costs memory, and one hot torrent cannot take the whole budget.
pub const MAX_PEERS_PER_SWARM: usize = 50_000;

/// Default for `--max-peers`, the bound on all peers of all swarms: the memory bound. One
/// peer costs about 100 bytes in its map (key 20 B, address, counters, hash overhead), so
/// one million peers is about 100-150 MB.
pub const MAX_PEERS_TOTAL: usize = 1_000_000;

/// Peers returned when the client does not say `numwant` (BEP 3 suggests 50).
pub const DEFAULT_NUMWANT: usize = 50;

/// Most peers returned in one reply: 200 compact IPv4 peers are 1,200 bytes, which still
/// fits one UDP datagram on an Ethernet path; clients never need more per announce.
pub const MAX_NUMWANT: usize = 200;

/// Default re-announce interval told to clients (seconds), as opentracker's.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

pub use crate::bt::metainfo::InfoHash;
pub use crate::bt::peer_wire::PeerId;

/// One peer as the tracker remembers it.
#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    seeder: bool,
    last_seen: Instant,
}

/// One torrent's peers and its download count.
#[derive(Default)]
struct Swarm {
    peers: HashMap<PeerId, Peer>,
    seeders: usize,
    downloaded: u64,
}

impl Swarm {
    fn remove(&mut self, id: &PeerId) -> bool {
        match self.peers.remove(id) {
            Some(p) => {
                if p.seeder {
                    self.seeders -= 1;
                }
                true
            }
            None => false,
        }
    }
}

/// A peer in a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its peer id (for the non-compact reply).
    pub id: PeerId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// A swarm's counts, as scrape reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Seeders (`left` = 0).
    pub complete: u64,
    /// Leechers.
    pub incomplete: u64,
    /// `completed` events seen.
    pub downloaded: u64,
}

/// What an announce gets back.
#[derive(Debug)]
pub struct AnnounceReply {
    /// Re-announce interval.
    pub interval: Duration,
    /// The swarm's counts after this announce.
    pub counts: Counts,
    /// Other peers, at most `numwant`, never the announcer.
    pub peers: Vec<PeerEntry>,
}

/// Why an announce or scrape is refused; the text goes back as `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The query could not be parsed.
    #[error("{0}")]
    BadRequest(#[from] announce::QueryError),
    /// `--allow` is set and the infohash is not in it.
    #[error("unregistered torrent")]
    NotAllowed,
    /// A limit on swarms, peers per swarm or all peers is reached.
    #[error("tracker full")]
    Full,
}

/// Tracker-wide counters for the status page.
#[derive(Default)]
pub struct Totals {
    /// Announces served (HTTP and UDP).
    pub announces: AtomicU64,
    /// Scrapes served.
    pub scrapes: AtomicU64,
    /// Requests refused with a failure reason.
    pub failures: AtomicU64,
}

/// The `--allow` whitelist: the file and the infohashes it held when last read.
pub struct AllowList {
    path: PathBuf,
    hashes: RwLock<HashSet<InfoHash>>,
}

/// Why an allow file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not 40 hex digits.
    #[error("{path} line {line}: not a 40-hex-digit infohash")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

impl AllowList {
    /// Reads `path`: one 40-hex infohash a line; blank lines and `#` comments ignored.
    pub fn load(path: &Path) -> Result<AllowList, AllowError> {
        let hashes = Self::read(path)?;
        Ok(AllowList {
            path: path.to_path_buf(),
            hashes: RwLock::new(hashes),
        })
    }

    fn read(path: &Path) -> Result<HashSet<InfoHash>, AllowError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut set = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let ih = InfoHash::from_hex(line).ok_or_else(|| AllowError::BadLine {
                path: path.to_path_buf(),
                line: i + 1,
            })?;
            set.insert(ih);
        }
        Ok(set)
    }

    /// Reads the file again; on error the old list stays in force.
    pub fn reload(&self) -> Result<usize, AllowError> {
        let set = Self::read(&self.path)?;
        let n = set.len();
        *self.hashes.write().unwrap_or_else(|e| e.into_inner()) = set;
        Ok(n)
    }

    /// Is this infohash allowed?
    pub fn allows(&self, ih: &InfoHash) -> bool {
        self.hashes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ih)
    }
}

/// Settings of one tracker.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Re-announce interval told to clients; peers silent for twice this are forgotten.
    pub interval: Duration,
    /// Bound on all peers of all swarms.
    pub max_peers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: DEFAULT_INTERVAL,
            max_peers: MAX_PEERS_TOTAL,
        }
    }
}

/// Every swarm, shared by the HTTP and UDP front ends.
pub struct Tracker {
    shards: Vec<Mutex<HashMap<InfoHash, Swarm>>>,
    swarms: AtomicUsize,
    peers: AtomicUsize,
    settings: Settings,
    allow: Option<AllowList>,
    /// Counters for the status page.
    pub totals: Totals,
    started: Instant,
    rng: AtomicU64,
}

/// One swarm's line on the status page.
#[derive(Debug, Clone)]
pub struct SwarmStats {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its counts.
    pub counts: Counts,
}

impl Tracker {
    /// An empty tracker.
    pub fn new(settings: Settings, allow: Option<AllowList>) -> Tracker {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Tracker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            swarms: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            settings,
            allow,
            totals: Totals::default(),
            started: Instant::now(),
            rng: AtomicU64::new(seed),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The whitelist, if any.
    pub fn allow_list(&self) -> Option<&AllowList> {
        self.allow.as_ref()
    }

    fn shard(&self, ih: &InfoHash) -> std::sync::MutexGuard<'_, HashMap<InfoHash, Swarm>> {
        // A panic while holding a shard cannot leave a swarm half-updated in a way that
        // matters more than losing the tracker: keep serving.
        self.shards[ih.0[0] as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn random(&self) -> u64 {
        // xorshift: only to vary which peers a big swarm hands out; not security.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Checks the whitelist.
    pub fn check_allowed(&self, ih: &InfoHash) -> Result<(), Refusal> {
        match &self.allow {
            Some(list) if !list.allows(ih) => Err(Refusal::NotAllowed),
            _ => Ok(()),
        }
    }

    /// Records an announce from `from` (the peer's listening address: the source IP and
    /// the announced port) and picks peers for it.
    // The entry API does not fit: a stopped announce and a full tracker return before
    // any swarm is inserted.
    #[allow(clippy::map_entry)]
    pub fn announce(&self, a: &Announce, from: SocketAddr) -> Result<AnnounceReply, Refusal> {
        self.check_allowed(&a.info_hash)?;
        let now = Instant::now();
        let mut shard = self.shard(&a.info_hash);
        if !shard.contains_key(&a.info_hash) {
            if a.event == Event::Stopped {
                self.totals.announces.fetch_add(1, Ordering::Relaxed);
                return Ok(AnnounceReply {
                    interval: self.settings.interval,
                    counts: Counts::default(),
                    peers: Vec::new(),
                });
            }
            if self.swarms.load(Ordering::Relaxed) >= MAX_SWARMS {
                return Err(Refusal::Full);
            }
            self.swarms.fetch_add(1, Ordering::Relaxed);
            shard.insert(a.info_hash, Swarm::default());
        }
        let swarm = shard.get_mut(&a.info_hash).expect("inserted above");
        let seeder = a.left == 0;
        if a.event == Event::Stopped {
            if swarm.remove(&a.peer_id) {
                self.peers.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            match swarm.peers.get_mut(&a.peer_id) {
                Some(p) => {
                    if p.seeder != seeder {
                        if seeder {
                            swarm.seeders += 1;
                        } else {
                            swarm.seeders -= 1;
                        }
                    }
                    p.seeder = seeder;
                    p.addr = from;
                    p.last_seen = now;
                }
                None => {
                    if swarm.peers.len() >= MAX_PEERS_PER_SWARM
                        || self.peers.load(Ordering::Relaxed) >= self.settings.max_peers
                    {
                        return Err(Refusal::Full);
                    }
                    swarm.peers.insert(
                        a.peer_id,
                        Peer {
                            addr: from,
                            seeder,
                            last_seen: now,
                        },
                    );
                    if seeder {
                        swarm.seeders += 1;
                    }
                    self.peers.fetch_add(1, Ordering::Relaxed);
                }
            }
            if a.event == Event::Completed {
                swarm.downloaded += 1;
            }
        }
        let numwant = a.numwant.min(MAX_NUMWANT);
        let peers = if a.event == Event::Stopped || numwant == 0 {
            Vec::new()
        } else {
            let start = self.random() as usize;
            pick_peers(swarm, &a.peer_id, seeder, numwant, start)
        };
        let counts = counts_of(swarm);
        self.totals.announces.fetch_add(1, Ordering::Relaxed);
        Ok(AnnounceReply {
            interval: self.settings.interval,
            counts,
            peers,
        })
    }

    /// The counts of each infohash (zero for unknown ones), in the order asked.
    pub fn scrape(&self, hashes: &[InfoHash]) -> Result<Vec<(InfoHash, Counts)>, Refusal> {
        let mut out = Vec::with_capacity(hashes.len());
        for ih in hashes {
            self.check_allowed(ih)?;
            let shard = self.shard(ih);
            out.push((*ih, shard.get(ih).map(counts_of).unwrap_or_default()));
        }
        self.totals.scrapes.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Forgets peers not heard from for twice the interval, and swarms left empty.
    /// Returns how many peers went.
    pub fn reap(&self) -> usize {
        self.reap_older_than(self.settings.interval * 2)
    }

    /// Forgets peers silent for longer than `age` (the reaper, and tests).
    pub fn reap_older_than(&self, age: Duration) -> usize {
        let now = Instant::now();
        let mut gone = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, swarm| {
                let before = swarm.peers.len();
                swarm
                    .peers
                    .retain(|_, p| now.saturating_duration_since(p.last_seen) <= age);
                swarm.seeders = swarm.peers.values().filter(|p| p.seeder).count();
                gone += before - swarm.peers.len();
                if swarm.peers.is_empty() {
                    self.swarms.fetch_sub(1, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            });
        }
        self.peers.fetch_sub(gone, Ordering::Relaxed);
        gone
    }

    /// Swarms tracked now.
    pub fn swarm_count(&self) -> usize {
        self.swarms.load(Ordering::Relaxed)
    }

    /// Peers tracked now.
    pub fn peer_count(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// How long this tracker has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Up to `limit` swarms with their counts, busiest first.
    pub fn swarm_stats(&self, limit: usize) -> Vec<SwarmStats> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.iter().map(|(ih, s)| SwarmStats {
                info_hash: *ih,
                counts: counts_of(s),
            }));
        }
        all.sort_by(|a, b| {
            let pa = a.counts.complete + a.counts.incomplete;
            let pb = b.counts.complete + b.counts.incomplete;
            pb.cmp(&pa).then(a.info_hash.cmp(&b.info_hash))
        });
        all.truncate(limit);
        all
    }
}

fn counts_of(s: &Swarm) -> Counts {
    Counts {
        complete: s.seeders as u64,
        incomplete: (s.peers.len() - s.seeders) as u64,
        downloaded: s.downloaded,
    }
}

/// Up to `numwant` peers other than `me`: a seeder gets leechers only (another seeder has
/// nothing for it) and a leecher gets anyone. Starts at a varying offset so that in a
/// swarm bigger than `numwant` different announcers learn different peers.
fn pick_peers(
    swarm: &Swarm,
    me: &PeerId,
    seeder: bool,
    numwant: usize,
    start: usize,
) -> Vec<PeerEntry> {
    let n = swarm.peers.len();
    let mut out = Vec::with_capacity(numwant.min(n));
    if n == 0 {
        return out;
    }
    let skip = start % n;
    let wanted = |p: &Peer| !seeder || !p.seeder;
    // Leechers first for everybody (they are the ones still trading pieces), then, for a
    // leecher, seeders.
    for pass in 0..2 {
        for (id, p) in swarm.peers.iter().cycle().skip(skip).take(n) {
            if out.len() >= numwant {
                return out;
            }
            let leecher_pass = pass == 0;
            if id == me || p.seeder == leecher_pass || !wanted(p) {
                continue;
            }
            out.push(PeerEntry {
                id: *id,
                addr: p.addr,
            });
        }
        if seeder {
            break;
        }
    }
    out
}

/// Is this address one a peer can be given out as? The unspecified address and port 0
/// are useless to other peers.
pub fn usable_addr(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}

/// The IPv4 form of an IPv4-mapped IPv6 address (a dual-stack socket's view of v4).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn ann(id: u8, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId([id; 20]),
            port: 6000 + id as u16,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: 50,
            compact: true,
            no_peer_id: false,
        }
    }

    fn addr(id: u8) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6000 + id as u16))
    }

    #[test]
    fn counts_follow_events_and_nobody_gets_itself() {
        let t = Tracker::new(Settings::default(), None);
        let r = t.announce(&ann(1, 0, Event::Started), addr(1)).unwrap();
        assert!(r.peers.is_empty());
        let r = t.announce(&ann(2, 10, Event::Started), addr(2)).unwrap();
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.peers[0].addr, addr(1));
        assert_eq!(
            r.counts,
            Counts {
                complete: 1,
                incomplete: 1,
                downloaded: 0
            }
        );
        let r = t.announce(&ann(2, 0, Event::Completed), addr(2)).unwrap();
        assert_eq!(
            r.counts,
            Counts {
                complete: 2,
                incomplete: 0,
                downloaded: 1
            }
        );
        // seeders get no seeders
        assert!(r.peers.is_empty());
        t.announce(&ann(1, 0, Event::Stopped), addr(1)).unwrap();
        let s = t.scrape(&[InfoHash([7; 20])]).unwrap();
        assert_eq!(
            s[0].1,
            Counts {
                complete: 1,
                incomplete: 0,
                downloaded: 1
            }
        );
        assert_eq!(t.peer_count(), 1);
        assert_eq!(t.reap_older_than(Duration::ZERO), 1);
        assert_eq!(t.swarm_count(), 0);
    }

    #[test]
    fn seeders_get_leechers_first_and_numwant_caps() {
        let t = Tracker::new(Settings::default(), None);
        for i in 1..=20 {
            t.announce(&ann(i, if i <= 10 { 0 } else { 5 }, Event::None), addr(i))
                .unwrap();
        }
        let mut a = ann(1, 0, Event::None);
        a.numwant = 5;
        let r = t.announce(&a, addr(1)).unwrap();
        assert_eq!(r.peers.len(), 5);
        assert!(r.peers.iter().all(|p| p.addr.port() > 6010));
        let mut a = ann(15, 5, Event::None);
        a.numwant = 500;
        let r = t.announce(&a, addr(15)).unwrap();
        assert_eq!(r.peers.len(), 19);
        // leechers before seeders
        assert!(r.peers[..9].iter().all(|p| p.addr.port() > 6010));
    }

    #[test]
    fn limits_refuse() {
        let t = Tracker::new(
            Settings {
                max_peers: 2,
                ..Settings::default()
            },
            None,
        );
        t.announce(&ann(1, 0, Event::None), addr(1)).unwrap();
        t.announce(&ann(2, 0, Event::None), addr(2)).unwrap();
        assert_eq!(
            t.announce(&ann(3, 0, Event::None), addr(3)).unwrap_err(),
            Refusal::Full
        );
    }
}
