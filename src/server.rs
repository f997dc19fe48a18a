//! The server loop every protocol shares: a blocking `std::net` listener that spawns one
//! thread per connection, with a cap on simultaneous connections and timeouts that stop a
//! slow or silent client from holding a thread for ever.
//!
//! It knows sockets, not messages: a [`Handler`] (the course peer, the course tracker, a
//! future BitTorrent peer) gets each accepted connection on its own thread.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Resource limits of one server. Each default is a design decision; see its comment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections served at once. Excess connections are accepted and closed at
    /// once (not queued), so a flood costs a file descriptor for microseconds, never a
    /// thread. 128 covers a classroom of downloaders (the benchmark runs 50 at once) while
    /// bounding threads and memory: 128 threads × [`STACK_SIZE`] is 32 MiB of address
    /// space, of which only touched pages count towards RSS.
    pub max_connections: usize,
    /// How long a connection may sit idle between requests. Charlie keeps one connection
    /// per peer for a whole download and asks again within microseconds, so a minute of
    /// silence means a client that went away without closing.
    pub idle_timeout: Duration,
    /// How long one request may take to arrive once its first byte has. A GET_CHUNK is 28
    /// bytes; 10 s defeats a client trickling one byte a second while tolerating a very
    /// slow link.
    pub request_timeout: Duration,
    /// How long one blocked write may wait for the client to read. A client that stops
    /// reading its replies is cut off after this.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 128,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Stack size of a connection thread. Handlers stream chunks with `io::copy` and keep no
/// large buffers on the stack; 256 KiB leaves ample room while keeping a flood of threads
/// cheap.
pub const STACK_SIZE: usize = 256 * 1024;

/// Connections the kernel queues before `accept`. std's listener uses 128: a burst of
/// 1,000 connections then loses most SYNs, and each client waits for its kernel to retry
/// (1 s, then 3 s, 7 s…) before even being refused. With room for the burst, the accept
/// loop serves or refuses each one within milliseconds. The kernel caps this at
/// `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: i32 = 1024;

/// What a protocol does with one accepted connection, on that connection's own thread.
pub trait Handler: Send + Sync + 'static {
    /// Serves the connection until the client leaves or misbehaves; errors are logged by
    /// the server loop, never propagated (one client cannot harm the others).
    fn handle(&self, conn: Connection) -> io::Result<()>;
}

/// An accepted connection with the server's limits applied.
pub struct Connection {
    /// The socket (timeouts already set).
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The limits the handler must respect.
    pub limits: Limits,
}

impl Connection {
    /// A reader that enforces the idle and per-request timeouts; see [`TimedReader`].
    pub fn reader(&self) -> io::Result<TimedReader> {
        Ok(TimedReader {
            stream: self.stream.try_clone()?,
            deadline: None,
        })
    }
}

/// Reads from a socket with a deadline for the whole current request, not just for
/// each `read` call: a per-read timeout alone never fires on a client sending one byte a
/// second.
pub struct TimedReader {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl TimedReader {
    /// From now on, reads fail with `TimedOut` once `timeout` has passed.
    pub fn set_deadline(&mut self, timeout: Duration) {
        self.deadline = Some(Instant::now() + timeout);
    }
}

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request deadline passed",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

/// A bound listener with its limits.
pub struct Server {
    listener: TcpListener,
    limits: Limits,
    active: Arc<AtomicUsize>,
    name: String,
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds a TCP listener (the first address `addr` resolves to). `name` labels log
    /// lines.
    pub fn bind(addr: impl ToSocketAddrs, limits: Limits, name: &str) -> io::Result<Self> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
        })?;
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        // As std does: a restarted server can listen again at once.
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(LISTEN_BACKLOG)?;
        Ok(Server {
            listener: sock.into(),
            limits,
            active: Arc::new(AtomicUsize::new(0)),
            name: name.to_string(),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How many connections are being served now.
    pub fn active(&self) -> Arc<AtomicUsize> {
        self.active.clone()
    }

    /// Accepts connections for ever, one thread each.
    pub fn run<H: Handler>(self, handler: Arc<H>) -> io::Result<()> {
        log::info!("{} listening on {}", self.name, self.listener.local_addr()?);
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    log::warn!("{}: accept failed: {e}", self.name);
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.dispatch(stream, peer, &handler);
        }
    }

    fn dispatch<H: Handler>(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<H>) {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        let slot = Slot(self.active.clone());
        if now > self.limits.max_connections {
            log::warn!(
                "{}: refusing {peer}: {} already (limit {})",
                self.name,
                crate::text::count(now - 1, "connection", "connections"),
                self.limits.max_connections
            );
            return; // dropping `stream` closes it; dropping `slot` frees the count
        }
        if let Err(e) = self.configure(&stream) {
            log::warn!("{}: {peer}: cannot configure socket: {e}", self.name);
            return;
        }
        let conn = Connection {
            stream,
            peer,
            limits: self.limits,
        };
        let handler = handler.clone();
        let name = self.name.clone();
        let spawned = thread::Builder::new()
            .name(format!("{name}-conn"))
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                log::info!("{name}: connection from {peer} opened");
                match handler.handle(conn) {
                    Ok(()) => log::info!("{name}: connection from {peer} closed"),
                    Err(e) => log::info!("{name}: connection from {peer} closed: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::warn!("{}: cannot spawn a thread for {peer}: {e}", self.name);
        }
    }

    fn configure(&self, s: &TcpStream) -> io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.limits.idle_timeout))?;
        s.set_write_timeout(Some(self.limits.write_timeout))
    }
}
