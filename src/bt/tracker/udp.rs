//! The UDP front end (BEP 15): connect, announce, scrape and error, on the same port
//! number as HTTP. [`handle_datagram`] is the whole protocol as bytes in, bytes out;
//! [`serve`] is the receive loop.
//!
//! Anti-spoofing: a connection id is the first 8 bytes of SHA-1(secret, time bucket,
//! client IP address). Only someone who received our connect reply at that address knows
//! it, so an announce or scrape with a forged source address gets no reply: the tracker
//! cannot be used to reflect traffic at a victim.
//!
//! The id binds the IP, not the port, as opentracker's and aquatic's do: libtorrent keeps
//! one connection-id cache per process keyed by tracker address, so a second session (or
//! a second listen socket) of the same program announces from another source port with
//! the id the first one obtained. Binding the port dropped those announces silently and
//! libtorrent's leecher timed out. A spoofer still has to receive at the victim's IP.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use super::announce::{Announce, Event};
use super::batch::Batch;
use super::{InfoHash, MAX_NUMWANT, PeerId, Tracker, canonical_ip, usable_addr};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// Length of a BEP 15 announce request.
pub const ANNOUNCE_LEN: usize = 98;

/// Most infohashes in one UDP scrape (BEP 15: about 74 fit a datagram); more are ignored,
/// which bounds the work one datagram costs.
pub const MAX_UDP_SCRAPE: usize = 74;

/// Width of a connection id's time bucket. An id is accepted in its own bucket and the
/// next, so it lives 60 to 120 s: BEP 15 says clients may use one for 2 minutes.
pub const ID_BUCKET: Duration = Duration::from_secs(60);

/// Largest datagram read. Requests are at most 16 + 74 × 20 = 1,496 bytes; a bigger
/// datagram is truncated by the kernel into this buffer and parsed as what fits.
pub const MAX_DATAGRAM: usize = 2048;

/// Peers in one UDP reply over IPv6, where each costs 18 bytes: 74 keep the reply under
/// 1,400 bytes, one unfragmented datagram.
pub const MAX_NUMWANT_V6: usize = 74;

/// Threads receiving datagrams on the one socket. Each datagram is microseconds of work,
/// but on a busy machine the scheduler shares the CPU per thread: with two, 16 clients
/// got ours 1.04 times opentracker's rate (which runs four UDP workers), with four 1.39
/// (same run conditions, docs/BENCHMARKS.md). More would only add wake-ups.
pub const UDP_THREADS: usize = 4;

thread_local! {
    /// Each UDP thread's peer list, reused for every announce: no allocation per datagram.
    static PEERS: std::cell::RefCell<Vec<super::PeerEntry>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_NUMWANT));
}

/// The secret connection ids are derived from, drawn once at start.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    /// 32 bytes from the kernel's random source (or, failing that, from the clock and
    /// pid, which is still unknown to a remote spoofer).
    pub fn random() -> Secret {
        use std::io::Read;
        let mut s = [0u8; 32];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut s))
            .is_ok();
        if !ok {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let mut h = Sha1::new();
            h.update(t.to_le_bytes());
            h.update(std::process::id().to_le_bytes());
            s[..20].copy_from_slice(&h.finalize());
        }
        Secret(s)
    }
}

fn bucket(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / ID_BUCKET.as_secs())
        .unwrap_or(0)
}

fn connection_id_at(secret: &Secret, client: SocketAddr, bucket: u64) -> u64 {
    let mut h = Sha1::new();
    h.update(secret.0);
    h.update(bucket.to_be_bytes());
    match client.ip() {
        IpAddr::V4(ip) => h.update(ip.octets()),
        IpAddr::V6(ip) => h.update(ip.octets()),
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 of 20 bytes"))
}

/// The connection id handed to `client` now.
pub fn connection_id(secret: &Secret, client: SocketAddr, now: SystemTime) -> u64 {
    connection_id_at(secret, client, bucket(now))
}

/// Is `id` one we handed to `client`'s IP within the last one or two buckets?
pub fn valid_id(secret: &Secret, client: SocketAddr, id: u64, now: SystemTime) -> bool {
    let b = bucket(now);
    id == connection_id_at(secret, client, b)
        || id == connection_id_at(secret, client, b.wrapping_sub(1))
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(d[i..i + 4].try_into().expect("caller checked the length"))
}

fn u64_at(d: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(d[i..i + 8].try_into().expect("caller checked the length"))
}

fn twenty(d: &[u8], i: usize) -> [u8; 20] {
    d[i..i + 20].try_into().expect("caller checked the length")
}

fn error_reply(out: &mut Vec<u8>, tx: u32, msg: &str) {
    out.clear();
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&tx.to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
}

/// The reply to one datagram from `client`, or `None` to drop it (too short, not a
/// connect and without a valid connection id).
pub fn handle_datagram(
    tracker: &Tracker,
    secret: &Secret,
    d: &[u8],
    client: SocketAddr,
    now: SystemTime,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    reply_into(tracker, secret, d, client, now, &mut out).then_some(out)
}

/// [`handle_datagram`] into a buffer the caller reuses (cleared here): true when `out`
/// holds a reply to send, false to drop the datagram.
pub fn reply_into(
    tracker: &Tracker,
    secret: &Secret,
    d: &[u8],
    client: SocketAddr,
    now: SystemTime,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if d.len() < 16 {
        return false;
    }
    let action = u32_at(d, 8);
    let tx = u32_at(d, 12);
    if action == ACTION_CONNECT {
        if u64_at(d, 0) != PROTOCOL_ID {
            return false;
        }
        out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
        out.extend_from_slice(&tx.to_be_bytes());
        out.extend_from_slice(&connection_id(secret, client, now).to_be_bytes());
        return true;
    }
    if !valid_id(secret, client, u64_at(d, 0), now) {
        log::debug!("udp tracker: {client}: action {action} with an unknown connection id");
        return false;
    }
    match action {
        ACTION_ANNOUNCE => announce(tracker, d, tx, client, out),
        ACTION_SCRAPE => scrape(tracker, d, tx, out),
        _ => error_reply(out, tx, "unknown action"),
    };
    if out.starts_with(&ACTION_ERROR.to_be_bytes()) {
        tracker.totals.failures.fetch_add(1, Ordering::Relaxed);
    }
    true
}

fn announce(tracker: &Tracker, d: &[u8], tx: u32, client: SocketAddr, out: &mut Vec<u8>) {
    if d.len() < ANNOUNCE_LEN {
        return error_reply(out, tx, "truncated announce");
    }
    let event = match u32_at(d, 80) {
        0 => Event::None,
        1 => Event::Completed,
        2 => Event::Started,
        3 => Event::Stopped,
        _ => return error_reply(out, tx, "bad event"),
    };
    let port = u16::from_be_bytes([d[96], d[97]]);
    if port == 0 {
        return error_reply(out, tx, "bad port");
    }
    let v6 = matches!(canonical_ip(client.ip()), IpAddr::V6(_));
    let cap = if v6 { MAX_NUMWANT_V6 } else { MAX_NUMWANT };
    let numwant = match u32_at(d, 92) as i32 {
        n if n < 0 => super::DEFAULT_NUMWANT,
        n => n as usize,
    }
    .min(cap);
    let a = Announce {
        info_hash: InfoHash(twenty(d, 16)),
        peer_id: PeerId(twenty(d, 36)),
        downloaded: u64_at(d, 56),
        left: u64_at(d, 64),
        uploaded: u64_at(d, 72),
        event,
        port,
        numwant,
        compact: true,
        no_peer_id: true,
    };
    // The `ip` field (offset 84) is ignored: a peer's address is where its datagram
    // came from, or anyone could point a swarm at a victim.
    let from = SocketAddr::new(canonical_ip(client.ip()), port);
    PEERS.with_borrow_mut(|peers| {
        let (interval, counts) = match tracker.announce_into(&a, from, peers) {
            Ok(r) => r,
            Err(e) => return error_reply(out, tx, &e.to_string()),
        };
        out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        out.extend_from_slice(&tx.to_be_bytes());
        out.extend_from_slice(&(interval.as_secs().min(u32::MAX as u64) as u32).to_be_bytes());
        out.extend_from_slice(&(counts.incomplete.min(u32::MAX as u64) as u32).to_be_bytes());
        out.extend_from_slice(&(counts.complete.min(u32::MAX as u64) as u32).to_be_bytes());
        compact_peers(out, peers, v6);
    })
}

/// BEP 15: the peer list's address family is the request's.
fn compact_peers(out: &mut Vec<u8>, peers: &[super::PeerEntry], v6: bool) {
    for p in peers.iter().filter(|p| usable_addr(&p.addr)) {
        match (p.addr, v6) {
            (SocketAddr::V4(s), false) => {
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
            }
            (SocketAddr::V6(s), true) => {
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
            }
            _ => {}
        }
    }
}

fn scrape(tracker: &Tracker, d: &[u8], tx: u32, out: &mut Vec<u8>) {
    let hashes: Vec<InfoHash> = d[16..]
        .chunks_exact(20)
        .take(MAX_UDP_SCRAPE)
        .map(|c| InfoHash(c.try_into().expect("chunks of 20")))
        .collect();
    if hashes.is_empty() {
        return error_reply(out, tx, "no info_hash");
    }
    let counts = match tracker.scrape(&hashes) {
        Ok(c) => c,
        Err(e) => return error_reply(out, tx, &e.to_string()),
    };
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&tx.to_be_bytes());
    for (_, c) in counts {
        for n in [c.complete, c.downloaded, c.incomplete] {
            out.extend_from_slice(&(n.min(u32::MAX as u64) as u32).to_be_bytes());
        }
    }
}

/// Receives and answers datagrams for ever on `sock` (one of [`UDP_THREADS`]), a batch
/// at a time ([`Batch`]).
pub fn serve(sock: UdpSocket, tracker: Arc<Tracker>, secret: Secret) {
    let mut batch = Batch::new();
    loop {
        let n = match batch.receive(&sock) {
            Ok(n) => n,
            Err(e) => {
                // ICMP errors surface here on Linux (ECONNREFUSED from an earlier
                // reply): not our problem; keep serving.
                log::debug!("udp tracker: receive failed: {e}");
                continue;
            }
        };
        if n == 0 {
            continue;
        }
        let now = SystemTime::now();
        batch.answer(|d, from, out| reply_into(&tracker, &secret, d, from, now, out));
        batch.send(&sock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bt::tracker::Settings;

    fn client() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn ids_expire_and_bind_to_the_address() {
        let s = Secret::random();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let id = connection_id(&s, client(), t0);
        assert!(valid_id(&s, client(), id, t0 + Duration::from_secs(60)));
        assert!(!valid_id(&s, client(), id, t0 + Duration::from_secs(200)));
        assert!(!valid_id(&s, "127.0.0.2:5000".parse().unwrap(), id, t0));
        // Another source port of the same host: libtorrent's sessions share one id.
        assert!(valid_id(&s, "127.0.0.1:5001".parse().unwrap(), id, t0));
    }

    #[test]
    fn connect_then_announce() {
        let t = Tracker::new(Settings::default(), None);
        let s = Secret::random();
        let now = SystemTime::now();
        let mut c = PROTOCOL_ID.to_be_bytes().to_vec();
        c.extend_from_slice(&0u32.to_be_bytes());
        c.extend_from_slice(&7u32.to_be_bytes());
        let r = handle_datagram(&t, &s, &c, client(), now).unwrap();
        assert_eq!(&r[4..8], &7u32.to_be_bytes());
        let id = &r[8..16];
        let mut a = id.to_vec();
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&9u32.to_be_bytes());
        a.extend_from_slice(&[1; 20]);
        a.extend_from_slice(&[2; 20]);
        a.extend_from_slice(&[0; 24]);
        a.extend_from_slice(&2u32.to_be_bytes());
        a.extend_from_slice(&[0; 8]);
        a.extend_from_slice(&(-1i32).to_be_bytes());
        a.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(a.len(), ANNOUNCE_LEN);
        let r = handle_datagram(&t, &s, &a, client(), now).unwrap();
        assert_eq!(&r[..4], &1u32.to_be_bytes());
        assert_eq!(&r[16..20], &1u32.to_be_bytes()); // one seeder: us
        // a wrong id: dropped
        a[0] ^= 1;
        assert!(handle_datagram(&t, &s, &a, client(), now).is_none());
    }
}
