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
pub mod batch;
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
/// peer costs about 70 bytes in a small swarm (44 bytes and vector slack) and about 100
/// in a big one (plus its index entry), so one million peers is 70-100 MB.
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

/// One peer as the tracker remembers it: 44 bytes. The first version kept a
/// `SocketAddr` (32 bytes) and an `Instant` (16); 500,000 peers then peaked at 77 MiB.
#[derive(Clone, Debug)]
struct Peer {
    id: PeerId,
    addr: PackedAddr,
    last_seen: Stamp,
}

/// A listening address in 18 bytes: the IP as IPv6 (IPv4 as IPv4-mapped) and the port.
/// IPv6 flow info and scope ids are not kept: a tracker hands out global addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedAddr {
    ip: [u8; 16],
    port: [u8; 2],
}

impl From<SocketAddr> for PackedAddr {
    fn from(a: SocketAddr) -> Self {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        PackedAddr {
            ip,
            port: a.port().to_be_bytes(),
        }
    }
}

impl PackedAddr {
    fn unpack(&self) -> SocketAddr {
        let ip = canonical_ip(IpAddr::V6(std::net::Ipv6Addr::from(self.ip)));
        SocketAddr::new(ip, u16::from_be_bytes(self.port))
    }
}

/// When a peer was last heard from: whole seconds since the tracker started (a `u32`
/// lasts 136 years; seconds are fine enough for a timeout of twice the interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(u32);

/// The index's value: the place in the leecher or seeder vector, the top bit telling
/// which (places are below [`MAX_PEERS_PER_SWARM`], far from 2^31).
#[derive(Clone, Copy, Debug)]
struct Place(u32);

const SEEDER_BIT: u32 = 1 << 31;

impl Place {
    fn new(seeder: bool, i: usize) -> Place {
        Place(i as u32 | if seeder { SEEDER_BIT } else { 0 })
    }
    fn seeder(self) -> bool {
        self.0 & SEEDER_BIT != 0
    }
    fn index(self) -> usize {
        (self.0 & !SEEDER_BIT) as usize
    }
}

/// Swarms of up to this many peers keep no index and find a peer by scanning their two
/// vectors (at most 64 comparisons of 20 bytes, well under a microsecond): in swarms of
/// 50 the index was about a third of the tracker's memory (a 24-byte entry in a table
/// with slack, per peer). Bigger swarms build the index; one that shrinks below half of
/// this drops it again.
const INDEX_FROM: usize = 64;

/// One torrent's peers and its download count.
///
/// Leechers and seeders in two vectors, with (in big swarms) an index from peer id to
/// place: a reply is then a run of at most `numwant` entries from a random offset
/// (O(numwant), no matter how big the swarm), seeders are skipped for a seeder without
/// looking at them, and a removal is a `swap_remove`. The first version kept one
/// `HashMap<PeerId, Peer>` and walked it from a random offset (`skip`), which cost
/// O(swarm) per announce: it was the tracker's largest user-space cost in the UDP
/// profile.
#[derive(Default)]
struct Swarm {
    leechers: Vec<Peer>,
    seeders: Vec<Peer>,
    /// Where each peer is, once the swarm has more than [`INDEX_FROM`] peers.
    index: Option<HashMap<PeerId, Place>>,
    downloaded: u64,
}

impl Swarm {
    fn len(&self) -> usize {
        self.leechers.len() + self.seeders.len()
    }

    fn list(&mut self, seeder: bool) -> &mut Vec<Peer> {
        if seeder {
            &mut self.seeders
        } else {
            &mut self.leechers
        }
    }

    /// Where peer `id` is, if it is here.
    fn find(&self, id: &PeerId) -> Option<Place> {
        if let Some(index) = &self.index {
            return index.get(id).copied();
        }
        for (seeder, list) in [(false, &self.leechers), (true, &self.seeders)] {
            if let Some(i) = list.iter().position(|p| p.id == *id) {
                return Some(Place::new(seeder, i));
            }
        }
        None
    }

    fn set_place(&mut self, id: PeerId, at: Place) {
        if let Some(index) = &mut self.index {
            index.insert(id, at);
        }
    }

    /// Builds the index when the swarm has grown past [`INDEX_FROM`], drops it when it
    /// has shrunk below half of that.
    fn reindex(&mut self, rebuild: bool) {
        let n = self.len();
        if n < INDEX_FROM / 2 {
            self.index = None;
        } else if rebuild || (self.index.is_none() && n > INDEX_FROM) {
            let mut index = HashMap::with_capacity(n);
            for (seeder, list) in [(false, &self.leechers), (true, &self.seeders)] {
                for (i, p) in list.iter().enumerate() {
                    index.insert(p.id, Place::new(seeder, i));
                }
            }
            self.index = Some(index);
        }
    }

    /// Removes the peer at `(seeder, i)`, keeping the index right for the one moved into
    /// its place.
    fn take(&mut self, seeder: bool, i: usize) -> Peer {
        let list = self.list(seeder);
        let p = list.swap_remove(i);
        if let Some(moved) = list.get(i).map(|m| m.id) {
            self.set_place(moved, Place::new(seeder, i));
        }
        p
    }

    fn remove(&mut self, id: &PeerId) -> bool {
        match self.find(id) {
            Some(at) => {
                if let Some(index) = &mut self.index {
                    index.remove(id);
                }
                self.take(at.seeder(), at.index());
                self.reindex(false);
                true
            }
            None => false,
        }
    }

    /// Inserts or updates a peer (a new one only if there is `room`).
    fn upsert(
        &mut self,
        id: PeerId,
        addr: SocketAddr,
        seeder: bool,
        now: Stamp,
        room: bool,
    ) -> Upsert {
        let addr = PackedAddr::from(addr);
        match self.find(&id).map(|p| (p.seeder(), p.index())) {
            Some((was, i)) if was == seeder => {
                let p = &mut self.list(seeder)[i];
                p.addr = addr;
                p.last_seen = now;
                Upsert::Updated
            }
            Some((was, i)) => {
                // Became a seeder (or, rarely, a leecher again): move it across.
                let mut p = self.take(was, i);
                p.addr = addr;
                p.last_seen = now;
                let list = self.list(seeder);
                list.push(p);
                let at = list.len() - 1;
                self.set_place(id, Place::new(seeder, at));
                Upsert::Updated
            }
            None if !room => Upsert::Full,
            None => {
                let list = self.list(seeder);
                list.push(Peer {
                    id,
                    addr,
                    last_seen: now,
                });
                let at = list.len() - 1;
                self.set_place(id, Place::new(seeder, at));
                self.reindex(false);
                Upsert::Added
            }
        }
    }

    /// Drops peers silent for `age` or longer; returns how many.
    fn forget_older(&mut self, now: Stamp, age: Duration) -> usize {
        let before = self.len();
        // Strictly younger: with whole seconds, an age of zero forgets everyone.
        let fresh = |p: &Peer| u64::from(now.0.saturating_sub(p.last_seen.0)) < age.as_secs();
        self.leechers.retain(fresh);
        self.seeders.retain(fresh);
        let gone = before - self.len();
        if gone > 0 {
            self.reindex(self.index.is_some());
        }
        gone
    }
}

/// What [`Swarm::upsert`] did.
#[derive(Debug, PartialEq, Eq)]
enum Upsert {
    Added,
    Updated,
    Full,
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

    /// Now, as a peer's [`Stamp`].
    fn stamp(&self) -> Stamp {
        Stamp(u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX))
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
    pub fn announce(&self, a: &Announce, from: SocketAddr) -> Result<AnnounceReply, Refusal> {
        let mut peers = Vec::new();
        let (interval, counts) = self.announce_into(a, from, &mut peers)?;
        Ok(AnnounceReply {
            interval,
            counts,
            peers,
        })
    }

    /// [`announce`](Tracker::announce) into a peer list the caller reuses (cleared
    /// here), so that the UDP threads allocate nothing per datagram. Returns the interval
    /// and the swarm's counts.
    pub fn announce_into(
        &self,
        a: &Announce,
        from: SocketAddr,
        peers: &mut Vec<PeerEntry>,
    ) -> Result<(Duration, Counts), Refusal> {
        peers.clear();
        self.check_allowed(&a.info_hash)?;
        let now = self.stamp();
        let interval = self.settings.interval;
        let mut shard = self.shard(&a.info_hash);
        let swarm = match shard.get_mut(&a.info_hash) {
            Some(s) => s,
            None => {
                if a.event == Event::Stopped {
                    self.totals.announces.fetch_add(1, Ordering::Relaxed);
                    return Ok((interval, Counts::default()));
                }
                if self.swarms.load(Ordering::Relaxed) >= MAX_SWARMS {
                    return Err(Refusal::Full);
                }
                self.swarms.fetch_add(1, Ordering::Relaxed);
                shard.entry(a.info_hash).or_default()
            }
        };
        let seeder = a.left == 0;
        if a.event == Event::Stopped {
            if swarm.remove(&a.peer_id) {
                self.peers.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            let room = swarm.len() < MAX_PEERS_PER_SWARM
                && self.peers.load(Ordering::Relaxed) < self.settings.max_peers;
            match swarm.upsert(a.peer_id, from, seeder, now, room) {
                Upsert::Full => return Err(Refusal::Full),
                Upsert::Added => {
                    self.peers.fetch_add(1, Ordering::Relaxed);
                }
                Upsert::Updated => {}
            }
            if a.event == Event::Completed {
                swarm.downloaded += 1;
            }
        }
        let numwant = a.numwant.min(MAX_NUMWANT);
        if a.event != Event::Stopped && numwant > 0 {
            let start = self.random() as usize;
            pick_peers(swarm, &a.peer_id, seeder, numwant, start, peers);
        }
        let counts = counts_of(swarm);
        self.totals.announces.fetch_add(1, Ordering::Relaxed);
        Ok((interval, counts))
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
        let now = self.stamp();
        let mut gone = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, swarm| {
                gone += swarm.forget_older(now, age);
                if swarm.len() == 0 {
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
        complete: s.seeders.len() as u64,
        incomplete: s.leechers.len() as u64,
        downloaded: s.downloaded,
    }
}

/// Up to `numwant` peers other than `me` into `out`: leechers first for everybody (they
/// are the ones still trading pieces), then, for a leecher only, seeders (another seeder
/// has nothing for a seeder). Each list is read as a ring from an offset that varies per
/// announce, so that in a swarm bigger than `numwant` different announcers learn
/// different peers.
fn pick_peers(
    swarm: &Swarm,
    me: &PeerId,
    seeder: bool,
    numwant: usize,
    start: usize,
    out: &mut Vec<PeerEntry>,
) {
    let lists: &[&Vec<Peer>] = if seeder {
        &[&swarm.leechers]
    } else {
        &[&swarm.leechers, &swarm.seeders]
    };
    for list in lists {
        let n = list.len();
        if n == 0 {
            continue;
        }
        let skip = start % n;
        let (tail, head) = list.split_at(skip);
        for p in head.iter().chain(tail) {
            if out.len() >= numwant {
                return;
            }
            if p.id != *me {
                out.push(PeerEntry {
                    id: p.id,
                    addr: p.addr.unpack(),
                });
            }
        }
    }
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
    fn removals_and_role_changes_keep_the_index_right() {
        let t = Tracker::new(Settings::default(), None);
        for i in 1..=6 {
            t.announce(&ann(i, 5, Event::Started), addr(i)).unwrap();
        }
        // Remove from the middle (a swap_remove moves the last one into its place),
        // then make two leechers seeders.
        t.announce(&ann(2, 5, Event::Stopped), addr(2)).unwrap();
        t.announce(&ann(6, 0, Event::Completed), addr(6)).unwrap();
        t.announce(&ann(1, 0, Event::Completed), addr(1)).unwrap();
        t.announce(&ann(6, 0, Event::Stopped), addr(6)).unwrap();
        let mut a = ann(9, 5, Event::Started);
        a.numwant = 50;
        let r = t.announce(&a, addr(9)).unwrap();
        let mut ports: Vec<u16> = r.peers.iter().map(|p| p.addr.port()).collect();
        ports.sort();
        assert_eq!(ports, [6001, 6003, 6004, 6005]);
        assert_eq!(
            r.counts,
            Counts {
                complete: 1,
                incomplete: 4,
                downloaded: 2
            }
        );
        // Every peer still updates in place, found through the index.
        for i in [1, 3, 4, 5, 9] {
            t.announce(&ann(i, 5, Event::None), addr(i)).unwrap();
        }
        assert_eq!(t.peer_count(), 5);
        assert_eq!(t.scrape(&[InfoHash([7; 20])]).unwrap()[0].1.incomplete, 5);
    }

    #[test]
    fn a_swarm_past_the_index_threshold_finds_every_peer() {
        let t = Tracker::new(Settings::default(), None);
        let ann_n = |n: u16, left: u64, event: Event| Announce {
            peer_id: PeerId({
                let mut id = [0u8; 20];
                id[..2].copy_from_slice(&n.to_be_bytes());
                id
            }),
            port: 7000 + n,
            ..ann(0, left, event)
        };
        let at = |n: u16| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000 + n));
        let total = (INDEX_FROM * 2) as u16;
        for n in 0..total {
            t.announce(&ann_n(n, 5, Event::Started), at(n)).unwrap();
        }
        // Half of them complete, a quarter stop: moves and swap_removes in the index.
        for n in (0..total).step_by(2) {
            t.announce(&ann_n(n, 0, Event::Completed), at(n)).unwrap();
        }
        for n in (0..total).step_by(4) {
            t.announce(&ann_n(n, 0, Event::Stopped), at(n)).unwrap();
        }
        let left = total as u64 - total as u64 / 4;
        assert_eq!(t.peer_count() as u64, left);
        // Re-announcing every remaining peer updates it in place: no new peer appears.
        for n in (0..total).filter(|n| n % 4 != 0) {
            let seeder = n % 2 == 0;
            let r = t
                .announce(&ann_n(n, if seeder { 0 } else { 5 }, Event::None), at(n))
                .unwrap();
            assert_eq!(r.counts.complete + r.counts.incomplete, left);
            assert!(r.peers.iter().all(|p| p.addr != at(n)), "got itself back");
        }
        let c = t.scrape(&[InfoHash([7; 20])]).unwrap()[0].1;
        assert_eq!((c.complete, c.incomplete), (left / 3, left - left / 3));
        // Shrinking below the threshold drops the index; peers are still found.
        for n in (0..total).filter(|n| n % 4 != 0).skip(8) {
            t.announce(&ann_n(n, 0, Event::Stopped), at(n)).unwrap();
        }
        assert_eq!(t.peer_count(), 8);
        for n in (0..total).filter(|n| n % 4 != 0).take(8) {
            let r = t.announce(&ann_n(n, 5, Event::None), at(n)).unwrap();
            assert_eq!(r.counts.complete + r.counts.incomplete, 8);
        }
        assert_eq!(t.reap_older_than(Duration::ZERO), 8);
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
