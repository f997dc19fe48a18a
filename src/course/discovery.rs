//! Charlie's step 3: finding the tracker by UDP broadcast.
//!
//! Charlie sends DISCOVER_TRACKER to UDP port 9000 of a broadcast address (by default
//! 255.255.255.255, the only one a known tracker hears), collects every TRACKER_INFO that
//! comes back for a short window, tries again a bounded number of times if nobody (or not
//! the wanted tracker) answered, and picks one: the one named by `--tracker-name`, else
//! the first to answer.
//!
//! The datagrams that come back are hostile input: anything that is not a valid
//! TRACKER_INFO is ignored (logged at debug). One known tracker sends its reply in two
//! datagrams, the 8-byte header and then the body; [`Collector`] puts such a pair back
//! together per sender, waiting [`REASSEMBLY_WAIT`] at most for the second half.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::wire::{HEADER_LEN, Header, Message, Tolerance, TrackerInfo, VERSION};

pub use crate::course::tracker_udp::DISCOVERY_PORT;

/// The statement's broadcast address, and the only one a known tracker hears.
pub const DEFAULT_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;

/// How long one try collects answers. A tracker on a LAN answers within a millisecond;
/// 300 ms also covers a loaded host, a slow interpreted tracker and a reply in two
/// datagrams, while step 3 still starts downloading within a third of a second.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(300);

/// How many times DISCOVER_TRACKER is sent before giving up. UDP may lose the request
/// or the reply; three tries make a lossy LAN (5% each way) fail once in ~1000 runs,
/// and a LAN without a tracker fails in about a second.
pub const DEFAULT_TRIES: u32 = 3;

/// How long to wait for the body after an 8-byte header announcing a longer message.
/// The tracker that splits its reply sends the body right after the header; 200 ms
/// tolerates a busy sender, and extends a try's window by at most that much.
pub const REASSEMBLY_WAIT: Duration = Duration::from_millis(200);

/// Most senders whose header waits for its body at once. A flood of lone headers from
/// many (spoofed) senders costs at most this many 8-byte entries; more are dropped.
pub const MAX_PENDING: usize = 16;

/// Most distinct trackers remembered. A LAN has one or two; a flood of forged
/// TRACKER_INFOs cannot grow the list past this.
pub const MAX_TRACKERS: usize = 64;

/// Largest UDP payload over IPv4; the receive buffer holds any datagram whole.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Pause after an unexpected receive error, so that it cannot become a busy spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(5);

/// Where and how to look for trackers.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Where DISCOVER_TRACKER goes: the broadcast address and port 9000.
    pub target: SocketAddrV4,
    /// How long each try collects answers.
    pub window: Duration,
    /// How many tries (at least 1).
    pub tries: u32,
    /// Pick only a tracker announcing this name.
    pub name: Option<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            target: SocketAddrV4::new(DEFAULT_BROADCAST, DISCOVERY_PORT),
            window: DEFAULT_WINDOW,
            tries: DEFAULT_TRIES,
            name: None,
        }
    }
}

/// A tracker that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The name it announced.
    pub name: String,
    /// Its TCP address, as announced (or with the sender's IP if it announced 0.0.0.0).
    pub addr: SocketAddrV4,
    /// Where the reply came from.
    pub from: SocketAddrV4,
    /// Time from the start of discovery to its answer.
    pub after: Duration,
}

impl std::fmt::Display for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at {}", self.name, self.addr)
    }
}

/// The outcome of a successful discovery.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The tracker picked.
    pub chosen: Heard,
    /// Every tracker heard, in order of answer.
    pub heard: Vec<Heard>,
    /// Tries used.
    pub tries: u32,
    /// Time from the first DISCOVER_TRACKER to the pick.
    pub elapsed: Duration,
}

/// Why no tracker was found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The UDP socket could not be opened or configured.
    #[error("cannot open a UDP broadcast socket: {0}")]
    Socket(#[source] io::Error),
    /// Every DISCOVER_TRACKER failed to leave (no route to the broadcast address...).
    #[error("cannot send DISCOVER_TRACKER to {target} ({}): {source}", crate::text::count(*tries, "try", "tries"))]
    Send {
        /// The address.
        target: SocketAddrV4,
        /// Tries made.
        tries: u32,
        /// The last send error.
        source: io::Error,
    },
    /// Nobody answered.
    #[error(
        "no tracker answered DISCOVER_TRACKER on {target} within {} of {window_ms} ms",
        crate::text::count(*tries, "try", "tries")
    )]
    NoAnswer {
        /// The address.
        target: SocketAddrV4,
        /// Tries made.
        tries: u32,
        /// Window of each try.
        window_ms: u128,
    },
    /// Trackers answered, but none with the wanted name.
    #[error(
        "no tracker named {name:?} answered DISCOVER_TRACKER on {target} within {} of {window_ms} ms (heard: {heard})",
        crate::text::count(*tries, "try", "tries")
    )]
    NameNotHeard {
        /// The wanted name.
        name: String,
        /// The address.
        target: SocketAddrV4,
        /// Tries made.
        tries: u32,
        /// Window of each try.
        window_ms: u128,
        /// The trackers heard, for the message.
        heard: String,
    },
}

/// A header waiting for its body.
#[derive(Debug, Clone, Copy)]
struct Pending {
    from: SocketAddrV4,
    header: [u8; HEADER_LEN],
    deadline: Instant,
}

/// Collects TRACKER_INFO answers from datagrams; knows no sockets, so that reassembly
/// and validation can be tested on their own.
#[derive(Debug)]
pub struct Collector {
    start: Instant,
    heard: Vec<Heard>,
    pending: Vec<Pending>,
}

impl Collector {
    /// A collector for a discovery that started at `start`.
    pub fn new(start: Instant) -> Self {
        Collector {
            start,
            heard: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The trackers heard so far, in order of answer.
    pub fn heard(&self) -> &[Heard] {
        &self.heard
    }

    /// When the earliest waiting header gives up on its body, if any waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Forgets headers whose body did not come in time.
    pub fn expire(&mut self, now: Instant) {
        self.pending.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                log::debug!(
                    "discovery: {}: 8-byte header never followed by its body; ignored",
                    p.from
                );
            }
            keep
        });
    }

    /// Takes one datagram from `from`, received at `now`.
    pub fn datagram(&mut self, from: SocketAddrV4, bytes: &[u8], now: Instant) {
        if let Some(i) = self.pending.iter().position(|p| p.from == from) {
            let p = self.pending.swap_remove(i);
            if p.deadline > now {
                // The second half of a split reply. If the pair does not make a message
                // but the datagram alone does (the sender gave up splitting), take that.
                let mut whole = Vec::with_capacity(HEADER_LEN + bytes.len());
                whole.extend_from_slice(&p.header);
                whole.extend_from_slice(bytes);
                match Message::decode(&whole, Tolerance::default()) {
                    Ok(m) => {
                        log::debug!("discovery: {from}: reply in two datagrams reassembled");
                        return self.message(from, m, now);
                    }
                    Err(e) => log::debug!(
                        "discovery: {from}: header + {}-byte datagram is not a message: {e}",
                        bytes.len()
                    ),
                }
            }
        }
        if let Some(header) = lone_header(bytes) {
            if self.pending.len() >= MAX_PENDING {
                log::debug!("discovery: {from}: too many split replies pending; header dropped");
            } else {
                self.pending.push(Pending {
                    from,
                    header,
                    deadline: now + REASSEMBLY_WAIT,
                });
            }
            return;
        }
        match Message::decode(bytes, Tolerance::default()) {
            Ok(m) => self.message(from, m, now),
            Err(e) => log::debug!(
                "discovery: ignoring a {}-byte datagram from {from}: {e}",
                bytes.len()
            ),
        }
    }

    fn message(&mut self, from: SocketAddrV4, msg: Message, now: Instant) {
        let info = match msg {
            Message::TrackerInfo(info) => info,
            other => {
                log::debug!(
                    "discovery: ignoring {} from {from}: not a TRACKER_INFO",
                    other.msg_type()
                );
                return;
            }
        };
        let Some(addr) = usable_addr(&info, from) else {
            return;
        };
        if self
            .heard
            .iter()
            .any(|h| h.addr == addr && h.name == info.name)
        {
            return; // the same tracker answering a later try again
        }
        if self.heard.len() >= MAX_TRACKERS {
            log::debug!("discovery: already {MAX_TRACKERS} trackers heard; ignoring {from}");
            return;
        }
        let heard = Heard {
            name: info.name,
            addr,
            from,
            after: now.saturating_duration_since(self.start),
        };
        log::info!(
            "heard tracker {heard} (reply from {from} after {:.1} ms)",
            heard.after.as_secs_f64() * 1000.0
        );
        self.heard.push(heard);
    }
}

/// The TCP address to use for a TRACKER_INFO, or `None` if it cannot be used.
fn usable_addr(info: &TrackerInfo, from: SocketAddrV4) -> Option<SocketAddrV4> {
    if info.addr.port() == 0 {
        log::debug!("discovery: {from}: TRACKER_INFO announces port 0; ignored");
        return None;
    }
    if !info.addr.ip().is_unspecified() {
        return Some(info.addr);
    }
    // A tracker bound to 0.0.0.0 that announces it as is: the sender's address is the
    // best guess of where it listens (be lenient in what we accept).
    if from.ip().is_unspecified() {
        log::debug!("discovery: {from}: TRACKER_INFO announces 0.0.0.0; ignored");
        return None;
    }
    log::warn!(
        "tracker {:?} at {from} announces 0.0.0.0:{}; using {}",
        info.name,
        info.addr.port(),
        from.ip()
    );
    Some(SocketAddrV4::new(*from.ip(), info.addr.port()))
}

/// An 8-byte datagram that is only the header of a longer message (a split reply's
/// first half); `None` for anything else, including a whole 8-byte message.
fn lone_header(bytes: &[u8]) -> Option<[u8; HEADER_LEN]> {
    let b: [u8; HEADER_LEN] = bytes.try_into().ok()?;
    let h = Header::parse(&b);
    let fits = h.message_len() <= (RECV_BUF_LEN + HEADER_LEN) as u64;
    (h.version == VERSION && h.length_words > 2 && fits).then_some(b)
}

/// The tracker to use among those heard: the one named `name` if given, else the first
/// to answer.
pub fn pick<'a>(heard: &'a [Heard], name: Option<&str>) -> Option<&'a Heard> {
    match name {
        Some(n) => heard.iter().find(|h| h.name == n),
        None => heard.first(),
    }
}

/// A UDP socket on an ephemeral port that may send to broadcast addresses.
fn broadcast_socket() -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_broadcast(true)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    Ok(s.into())
}

/// Broadcasts DISCOVER_TRACKER and picks a tracker, trying up to `cfg.tries` times.
///
/// Every loop here is bounded: at most `tries` datagrams are sent, and the whole call
/// takes at most `tries × (window + REASSEMBLY_WAIT)`.
pub fn discover(cfg: &DiscoveryConfig) -> Result<Discovery, DiscoveryError> {
    let tries = cfg.tries.max(1);
    let socket = broadcast_socket().map_err(DiscoveryError::Socket)?;
    let request = Message::DiscoverTracker
        .encode()
        .expect("DISCOVER_TRACKER encodes");
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let start = Instant::now();
    let mut collector = Collector::new(start);
    let mut sent = 0;
    let mut last_send_error = None;
    for t in 1..=tries {
        match socket.send_to(&request, cfg.target) {
            Ok(_) => {
                sent += 1;
                log::debug!(
                    "discovery: DISCOVER_TRACKER sent to {} (try {t})",
                    cfg.target
                );
            }
            Err(e) => {
                log::warn!("cannot send DISCOVER_TRACKER to {}: {e}", cfg.target);
                last_send_error = Some(e);
            }
        }
        collect(
            &socket,
            &mut buf,
            &mut collector,
            Instant::now() + cfg.window,
        )
        .map_err(DiscoveryError::Socket)?;
        if let Some(chosen) = pick(collector.heard(), cfg.name.as_deref()) {
            return Ok(Discovery {
                chosen: chosen.clone(),
                heard: collector.heard().to_vec(),
                tries: t,
                elapsed: start.elapsed(),
            });
        }
        if t < tries {
            log::info!(
                "no {} after try {t} of {tries}; asking again",
                match &cfg.name {
                    Some(n) => format!("tracker named {n:?}"),
                    None => "tracker".to_string(),
                }
            );
        }
    }
    let window_ms = cfg.window.as_millis();
    if sent == 0 {
        return Err(DiscoveryError::Send {
            target: cfg.target,
            tries,
            source: last_send_error.unwrap_or_else(|| io::Error::other("not sent")),
        });
    }
    match (&cfg.name, collector.heard().is_empty()) {
        (Some(name), false) => Err(DiscoveryError::NameNotHeard {
            name: name.clone(),
            target: cfg.target,
            tries,
            window_ms,
            heard: collector
                .heard()
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Err(DiscoveryError::NoAnswer {
            target: cfg.target,
            tries,
            window_ms,
        }),
    }
}

/// Receives datagrams until `end`, then for as long as a split reply still waits for
/// its body (at most [`REASSEMBLY_WAIT`] more).
fn collect(
    socket: &UdpSocket,
    buf: &mut [u8],
    collector: &mut Collector,
    end: Instant,
) -> io::Result<()> {
    loop {
        let now = Instant::now();
        collector.expire(now);
        let until = if now < end {
            end
        } else {
            match collector.next_deadline() {
                Some(d) if d > now => d,
                _ => return Ok(()),
            }
        };
        // A zero timeout is refused by set_read_timeout: wait at least 1 ms.
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(buf) {
            Ok((n, SocketAddr::V4(from))) => collector.datagram(from, &buf[..n], Instant::now()),
            Ok((_, SocketAddr::V6(_))) => {}
            Err(e) if no_datagram_yet(&e) => {}
            Err(e) => {
                log::debug!("discovery: receive failed: {e}");
                std::thread::sleep(RECV_ERROR_PAUSE);
            }
        }
    }
}

/// A `recv_from` with a read timeout that ended without a datagram and may simply be
/// tried again: the timeout passed (WouldBlock or TimedOut, by platform) or a signal
/// interrupted the wait (EINTR, seen under load in the bench's probe).
pub(crate) fn no_datagram_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ip: [u8; 4], port: u16, name: &str) -> Vec<u8> {
        Message::TrackerInfo(TrackerInfo {
            addr: SocketAddrV4::new(ip.into(), port),
            name: name.into(),
        })
        .encode()
        .unwrap()
    }

    fn from(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port)
    }

    #[test]
    fn whole_reply_is_heard_once() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        let d = info([10, 0, 0, 1], 8000, "tracker");
        c.datagram(from(9000), &d, t0);
        c.datagram(from(9000), &d, t0); // a later try's answer
        assert_eq!(c.heard().len(), 1);
        assert_eq!(c.heard()[0].addr, "10.0.0.1:8000".parse().unwrap());
        assert_eq!(c.heard()[0].name, "tracker");
    }

    #[test]
    fn split_reply_is_reassembled_per_sender() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        let a = info([10, 0, 0, 1], 8000, "a");
        let b = info([10, 0, 0, 2], 8000, "bee");
        // Two senders interleave their halves.
        c.datagram(from(1), &a[..8], t0);
        c.datagram(from(2), &b[..8], t0);
        assert_eq!(c.next_deadline(), Some(t0 + REASSEMBLY_WAIT));
        c.datagram(from(2), &b[8..], t0 + Duration::from_millis(5));
        c.datagram(from(1), &a[8..], t0 + Duration::from_millis(6));
        let names: Vec<&str> = c.heard().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["bee", "a"]);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn late_body_is_not_joined_to_an_expired_header() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        let a = info([10, 0, 0, 1], 8000, "a");
        c.datagram(from(1), &a[..8], t0);
        c.expire(t0 + REASSEMBLY_WAIT);
        c.datagram(from(1), &a[8..], t0 + REASSEMBLY_WAIT);
        assert!(c.heard().is_empty());
        // Without expire(): the deadline alone forbids the join.
        c.datagram(from(1), &a[..8], t0);
        c.datagram(from(1), &a[8..], t0 + REASSEMBLY_WAIT * 2);
        assert!(c.heard().is_empty());
    }

    #[test]
    fn whole_reply_after_a_lone_header_is_taken() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        let a = info([10, 0, 0, 1], 8000, "a");
        c.datagram(from(1), &a[..8], t0);
        c.datagram(from(1), &a, t0);
        assert_eq!(c.heard().len(), 1);
    }

    #[test]
    fn junk_is_ignored_and_bounded() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        let err = Message::Error(crate::wire::ErrorCode::InvalidRequest)
            .encode()
            .unwrap();
        let discover = Message::DiscoverTracker.encode().unwrap();
        for (i, d) in [
            &b""[..],
            &b"garbage"[..],
            &err,
            &discover,
            &[1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff][..], // header announcing 16 GiB
            &info([0, 0, 0, 0], 0, "port zero"),
        ]
        .iter()
        .enumerate()
        {
            c.datagram(from(i as u16 + 1), d, t0);
        }
        assert!(c.heard().is_empty());
        assert_eq!(c.next_deadline(), None);
        // Lone headers from many senders: at most MAX_PENDING wait.
        let h = info([10, 0, 0, 1], 8000, "x");
        for p in 0..1000 {
            c.datagram(from(p), &h[..8], t0);
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        // Forged answers from many senders: at most MAX_TRACKERS remembered.
        let mut c = Collector::new(t0);
        for p in 1..1000u16 {
            c.datagram(from(p), &info([10, 0, 0, 1], p, "x"), t0);
        }
        assert_eq!(c.heard().len(), MAX_TRACKERS);
    }

    #[test]
    fn unspecified_address_takes_the_senders_ip() {
        let t0 = Instant::now();
        let mut c = Collector::new(t0);
        c.datagram(from(9000), &info([0, 0, 0, 0], 8000, "t"), t0);
        assert_eq!(c.heard()[0].addr, "10.0.0.1:8000".parse().unwrap());
    }

    #[test]
    fn pick_by_name_or_first() {
        let h = |name: &str| Heard {
            name: name.into(),
            addr: "10.0.0.1:1".parse().unwrap(),
            from: from(1),
            after: Duration::ZERO,
        };
        let heard = [h("one"), h("two")];
        assert_eq!(pick(&heard, None).unwrap().name, "one");
        assert_eq!(pick(&heard, Some("two")).unwrap().name, "two");
        assert!(pick(&heard, Some("three")).is_none());
        assert!(pick(&[], None).is_none());
    }

    #[test]
    fn no_answer_message_names_address_tries_and_window() {
        let e = DiscoveryError::NoAnswer {
            target: SocketAddrV4::new(DEFAULT_BROADCAST, DISCOVERY_PORT),
            tries: 3,
            window_ms: 300,
        };
        assert_eq!(
            e.to_string(),
            "no tracker answered DISCOVER_TRACKER on 255.255.255.255:9000 within 3 tries of 300 ms"
        );
    }
}
