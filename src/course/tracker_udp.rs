//! The tracker's UDP service: answers DISCOVER_TRACKER on port 9000 with TRACKER_INFO
//! (the tracker's TCP address and name), so that Charlie's step 3 can find it by
//! broadcast.
//!
//! One thread runs [`UdpResponder::run`]: `recv_from` into one fixed 64 KiB buffer,
//! decide, reply with bytes encoded once at start, repeat. Nothing a datagram contains
//! can stop it: every datagram is either answered at once or dropped, a failed send is
//! logged and forgotten, and no state survives from one datagram to the next.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::wire::{EncodeError, ErrorCode, Message, Tolerance, TrackerInfo};

/// The UDP port the course statement fixes for discovery.
pub const DISCOVERY_PORT: u16 = 9000;

/// The name a tracker announces unless configured otherwise: another group's Charlie
/// only accepts this one.
pub const DEFAULT_TRACKER_NAME: &str = "tracker";

/// Receive buffer: the largest UDP payload over IPv4 is 65,507 bytes, so nothing is ever
/// truncated, and the buffer is allocated once, not per datagram.
const RECV_BUF_LEN: usize = 64 * 1024;

/// How long one reply may wait for room in the socket's send buffer. Replies are 12 to
/// a few dozen bytes and go out at once; a send that blocks longer means the host is
/// drowning, and the next asker matters more than this one.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// Pause after a failing `recv_from` (not a datagram: an error of the socket itself),
/// so that a persistent error cannot turn the loop into a busy spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Offset of the IPv4 address inside an encoded TRACKER_INFO (right after the header).
const INFO_IP_OFFSET: usize = crate::wire::HEADER_LEN;

/// Why the UDP service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UdpServiceError {
    /// The socket could not be created, configured or bound.
    #[error("cannot listen for DISCOVER_TRACKER on UDP {addr}: {source} (--no-udp runs without)")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// The socket error.
        source: io::Error,
    },
    /// The tracker's name does not fit a TRACKER_INFO.
    #[error("tracker name cannot be sent in TRACKER_INFO: {0}")]
    Encode(#[from] EncodeError),
}

/// What to send back for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// TRACKER_INFO, with the address the asker should use.
    TrackerInfo(Ipv4Addr),
    /// ERROR with this code.
    Error(ErrorCode),
    /// Nothing: the datagram was itself an ERROR. Answering it could start an endless
    /// exchange of ERRORs with another program that also answers everything.
    Silence,
}

/// Decides the reply to one datagram; pure, so it can be tested without sockets.
///
/// Malformed → ERROR 0; well formed but not DISCOVER_TRACKER → ERROR 1 (except an ERROR,
/// which gets no answer); DISCOVER_TRACKER → TRACKER_INFO. `local_ip` is called only for
/// a DISCOVER_TRACKER, to find the address to announce.
///
/// Decoding may allocate transiently for the few types that carry data (a CHUNK's
/// content, a FILE_INFO's table), bounded by the datagram's size and freed at once.
pub fn decide(datagram: &[u8], local_ip: impl FnOnce() -> Ipv4Addr) -> Reply {
    match Message::decode(datagram, Tolerance::default()) {
        Ok(Message::DiscoverTracker) => Reply::TrackerInfo(local_ip()),
        Ok(Message::Error(_)) => Reply::Silence,
        Ok(_) => Reply::Error(ErrorCode::InvalidRequest),
        Err(e) => Reply::Error(e.error_code()),
    }
}

/// The address a host reaches us at when we listen on 0.0.0.0: the source address the
/// kernel would pick to send to `asker`, found by connecting a throwaway UDP socket
/// (connecting a UDP socket sends nothing; it only routes).
pub fn local_ip_towards(asker: SocketAddrV4) -> io::Result<Ipv4Addr> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // An asker at 0.0.0.0 (a broadcast sent before its host had an address, e.g. on a
    // loopback-only host) is this host: reply from loopback.
    let target = if asker.ip().is_unspecified() {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, asker.port().max(1))
    } else {
        SocketAddrV4::new(*asker.ip(), asker.port().max(1))
    };
    probe.connect(target)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(io::Error::other("IPv4 socket has an IPv6 address")),
    }
}

/// Opens a UDP socket on `addr` with SO_REUSEADDR, so that another program on the same
/// host (a second tracker, a test) can listen on the same port: every one of them gets
/// a copy of each broadcast.
pub fn bind_reuse(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

/// The tracker's UDP responder.
pub struct UdpResponder {
    socket: UdpSocket,
    /// TRACKER_INFO encoded once; when the TCP address is 0.0.0.0 its 4 address bytes
    /// are overwritten for each asker (no allocation per datagram).
    info: Vec<u8>,
    /// The announced TCP address (its IP may be 0.0.0.0: then found per asker).
    tcp: SocketAddrV4,
    name: String,
    error0: Vec<u8>,
    error1: Vec<u8>,
}

impl UdpResponder {
    /// Binds `udp` (normally 0.0.0.0:9000: a socket bound to one address never sees
    /// broadcasts) with SO_REUSEADDR. Done before the TCP listener exists, so that
    /// anyone who can connect to the tracker can also discover it.
    pub fn bind_socket(udp: SocketAddrV4) -> Result<UdpSocket, UdpServiceError> {
        let bind_err = |source| UdpServiceError::Bind { addr: udp, source };
        let socket = bind_reuse(udp).map_err(bind_err)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(bind_err)?;
        Ok(socket)
    }

    /// A responder on `socket` (from [`UdpResponder::bind_socket`]) for a tracker
    /// listening at `tcp` as `name`; the replies are encoded here, once.
    pub fn new(socket: UdpSocket, tcp: SocketAddrV4, name: &str) -> Result<Self, UdpServiceError> {
        let info = Message::TrackerInfo(TrackerInfo {
            addr: tcp,
            name: name.to_string(),
        })
        .encode()?;
        let enc = |c| Message::Error(c).encode().expect("ERROR always encodes");
        Ok(UdpResponder {
            socket,
            info,
            tcp,
            name: name.to_string(),
            error0: enc(ErrorCode::InvalidMessageFormat),
            error1: enc(ErrorCode::InvalidRequest),
        })
    }

    /// The bound UDP address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers datagrams for ever.
    pub fn run(mut self) -> ! {
        log::info!(
            "tracker: answering DISCOVER_TRACKER on UDP {} as {:?} with {}",
            self.socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            self.name,
            self.tcp
        );
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("tracker: UDP receive failed: {e}");
                    std::thread::sleep(RECV_ERROR_PAUSE);
                    continue;
                }
            };
            self.answer(&buf[..n], from);
        }
    }

    /// Decides and sends the reply to one datagram from `from`.
    fn answer(&mut self, datagram: &[u8], from: SocketAddr) {
        let SocketAddr::V4(from) = from else {
            return; // an IPv4 socket only hears IPv4 senders
        };
        let tcp = self.tcp;
        let reply = decide(datagram, || {
            if !tcp.ip().is_unspecified() {
                return *tcp.ip();
            }
            local_ip_towards(from).unwrap_or_else(|e| {
                log::warn!("tracker: no local address towards {from}: {e}; announcing 127.0.0.1");
                Ipv4Addr::LOCALHOST
            })
        });
        let bytes: &[u8] = match reply {
            Reply::TrackerInfo(ip) => {
                self.info[INFO_IP_OFFSET..INFO_IP_OFFSET + 4].copy_from_slice(&ip.octets());
                log::info!(
                    "tracker: DISCOVER_TRACKER from {from}: sending TRACKER_INFO {ip}:{} {:?}",
                    tcp.port(),
                    self.name
                );
                &self.info
            }
            Reply::Error(code) => {
                log::debug!(
                    "tracker: {}-byte UDP datagram from {from} is not DISCOVER_TRACKER: sending {code}",
                    datagram.len()
                );
                match code {
                    ErrorCode::InvalidRequest => &self.error1,
                    _ => &self.error0,
                }
            }
            Reply::Silence => {
                log::debug!("tracker: UDP ERROR from {from}: not answered");
                return;
            }
        };
        if let Err(e) = self.socket.send_to(bytes, from) {
            log::debug!("tracker: cannot answer {from} over UDP: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ChunkHash;

    fn lo() -> Ipv4Addr {
        Ipv4Addr::LOCALHOST
    }

    #[test]
    fn discover_gets_tracker_info() {
        let d = Message::DiscoverTracker.encode().unwrap();
        assert_eq!(decide(&d, lo), Reply::TrackerInfo(lo()));
    }

    #[test]
    fn garbage_gets_error_0() {
        for g in [
            &b""[..],
            &b"x"[..],
            &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 2][..],
            &[1, 0, 0, 0, 0, 0, 0, 3][..], // length says 12, 8 present
            &[1, 0, 0, 0, 0, 0, 0, 2, 0][..],
            &[1, 9, 0, 0, 0, 0, 0, 2][..],
        ] {
            assert_eq!(
                decide(g, || panic!("must not look up an address")),
                Reply::Error(ErrorCode::InvalidMessageFormat),
                "{g:?}"
            );
        }
    }

    #[test]
    fn other_requests_get_error_1_and_errors_get_nothing() {
        for m in [
            Message::GetFileInfo,
            Message::GetChunk(ChunkHash::of(b"x")),
            Message::TrackerInfo(TrackerInfo {
                addr: "1.2.3.4:5".parse().unwrap(),
                name: "t".into(),
            }),
        ] {
            assert_eq!(
                decide(&m.encode().unwrap(), lo),
                Reply::Error(ErrorCode::InvalidRequest)
            );
        }
        let e = Message::Error(ErrorCode::InvalidRequest).encode().unwrap();
        assert_eq!(decide(&e, lo), Reply::Silence);
    }

    #[test]
    fn unspecified_asker_is_this_host() {
        let ip = local_ip_towards("0.0.0.0:1234".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
        let ip = local_ip_towards("127.0.0.1:1234".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }
}
