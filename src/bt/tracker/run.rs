//! `swarmlet tracker`: arguments and the runner that binds both front ends and starts the
//! reaper and the SIGHUP reloader.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;

use super::http::HttpFrontEnd;
use super::udp::{self, Secret};
use super::{AllowList, MAX_PEERS_TOTAL, Settings, Tracker};
use crate::server::{Limits, Server};

/// How often the SIGHUP flag is looked at: a reload within a second is prompt enough for
/// an operator, and the check is one atomic load.
pub const SIGHUP_POLL: Duration = Duration::from_secs(1);

/// Most HTTP connections served at once. Announces take microseconds, so 256 threads
/// serve thousands of clients a second; beyond, connections are closed at once rather
/// than queued, and clients retry.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// How long a keep-alive HTTP connection may sit idle: clients re-announce after
/// minutes, so holding a thread longer than this for them buys nothing.
pub const HTTP_IDLE: Duration = Duration::from_secs(15);

/// How long one request head may take to arrive once it started: a real client sends it
/// in one packet; 5 s defeats a client trickling bytes (slowloris) while tolerating a
/// slow link.
pub const HTTP_REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Receive buffer asked for the UDP socket: a burst of announces queues here while the
/// threads catch up instead of being dropped by the kernel.
pub const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// `swarmlet tracker` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TrackerArgs {
    /// Address for HTTP (TCP) and UDP, same port number
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6969")]
    pub listen: SocketAddr,
    /// Re-announce interval told to clients (seconds); silent peers are forgotten after
    /// twice this
    #[arg(long, value_name = "SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub interval: u64,
    /// Only track the infohashes in FILE (40 hex digits a line); reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,
    /// Most peers tracked over all swarms (the memory bound)
    #[arg(long, value_name = "N", default_value_t = MAX_PEERS_TOTAL)]
    pub max_peers: usize,
}

static SIGHUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sighup(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do.
    SIGHUP.store(true, Ordering::SeqCst);
}

/// Runs the tracker until the process is killed.
pub fn run(args: &TrackerArgs) -> anyhow::Result<()> {
    let allow = match &args.allow {
        Some(p) => Some(AllowList::load(p)?),
        None => None,
    };
    let interval = Duration::from_secs(args.interval);
    let tracker = Arc::new(Tracker::new(
        Settings {
            interval,
            max_peers: args.max_peers,
        },
        allow,
    ));
    let limits = Limits {
        max_connections: MAX_HTTP_CONNECTIONS,
        idle_timeout: HTTP_IDLE,
        request_timeout: HTTP_REQUEST_DEADLINE,
        write_timeout: Duration::from_secs(10),
    };
    let server = Server::bind(args.listen, limits, "tracker-http")
        .with_context(|| format!("cannot listen on tcp {}", args.listen))?;
    let tcp_addr = server.local_addr()?;
    let udp_addr = SocketAddr::new(args.listen.ip(), tcp_addr.port());
    let udp_sock =
        bind_udp(udp_addr).with_context(|| format!("cannot listen on udp {udp_addr}"))?;
    log::info!(
        "tracker: http on {tcp_addr}, udp on {}, interval {} s, {}",
        udp_sock.local_addr()?,
        args.interval,
        match &args.allow {
            Some(p) => format!("whitelist {}", p.display()),
            None => "open to any infohash".to_string(),
        }
    );
    log::info!("tracker: state is in memory only; after a restart clients re-announce");

    let secret = Secret::random();
    for i in 0..udp::UDP_THREADS {
        let sock = udp_sock.try_clone()?;
        let t = tracker.clone();
        let s = secret.clone();
        thread::Builder::new()
            .name(format!("tracker-udp-{i}"))
            .spawn(move || udp::serve(sock, t, s))?;
    }

    let t = tracker.clone();
    // The reaper looks a few times per interval, so a peer is forgotten between 2 and
    // 2.25 intervals after its last announce.
    let every = (interval / 4).max(Duration::from_secs(1));
    thread::Builder::new()
        .name("tracker-reaper".into())
        .spawn(move || {
            loop {
                thread::sleep(every);
                let gone = t.reap();
                if gone > 0 {
                    log::info!(
                        "tracker: forgot {}",
                        crate::text::count(gone, "silent peer", "silent peers")
                    );
                }
            }
        })?;

    if tracker.allow_list().is_some() {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGHUP, on_sighup as *const () as libc::sighandler_t);
        }
        let t = tracker.clone();
        thread::Builder::new()
            .name("tracker-sighup".into())
            .spawn(move || {
                loop {
                    thread::sleep(SIGHUP_POLL);
                    if SIGHUP.swap(false, Ordering::SeqCst)
                        && let Some(list) = t.allow_list()
                    {
                        match list.reload() {
                            Ok(n) => log::info!(
                                "tracker: whitelist reloaded, {}",
                                crate::text::count(n, "infohash", "infohashes")
                            ),
                            Err(e) => log::warn!("tracker: whitelist kept: {e}"),
                        }
                    }
                }
            })?;
    }

    server.run(Arc::new(HttpFrontEnd { tracker }))?;
    Ok(())
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECV_BUFFER) {
        log::debug!("udp: cannot enlarge the receive buffer: {e}");
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}
