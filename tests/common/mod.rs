//! Test harness: a whole course system (peers, tracker, charlie) as real processes in a
//! temporary root, on free loopback ports. Every process started here is killed by its
//! pid when its handle drops, so a failing test leaves nothing running.
#![allow(dead_code)]

pub mod bt;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use swarmlet::config::{FileManifest, PeersConfig};
use swarmlet::hash::ChunkHash;

/// Path of one of the crate's binaries.
pub fn bin(name: &str) -> PathBuf {
    // CARGO_BIN_EXE_<name> is set for integration tests of a package with binaries.
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_charlie"));
    dir.with_file_name(name)
}

/// A free TCP port on 127.0.0.1 that no other test in this process is given.
///
/// Why not bind port 0: the kernel hands out ports from the ephemeral range, and tests
/// run in parallel threads, so a port picked here and handed to a server a moment later
/// could meanwhile be given to another test's server (a "tracker that is down" test then
/// found another test's peer on its port). Ports here come from below the ephemeral
/// range, which the kernel never picks by itself, each one at most once per process,
/// starting at an offset taken from the pid so concurrent test processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low_eph| low_eph > LOW + 1000 && low_eph <= 65_536)
        .unwrap_or(30_000);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}

/// Deterministic pseudo-random bytes (xorshift), so failures can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A running process, killed (SIGKILL, by pid) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` as `name`: stderr into `log`, stdout beside it (`log` with the
    /// extension `out`), no stdin.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let child = cmd
            .stdout(fs::File::create(log.with_extension("out")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Waits up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary root with config/, chunks/ and files/, and the processes serving it.
pub struct System {
    pub dir: tempfile::TempDir,
    pub peers: PeersConfig,
    pub procs: Vec<Proc>,
}

impl System {
    /// A root with a random file of `size` bytes split by `create_chunks` into chunks of
    /// `chunk_size`, and a peers.ini on free loopback ports for tracker, alice and bob.
    pub fn new(size: usize, chunk_size: usize) -> System {
        Self::with_peers(size, chunk_size, &["alice", "bob"])
    }

    /// Like [`System::new`] with any peer names.
    pub fn with_peers(size: usize, chunk_size: usize, names: &[&str]) -> System {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["config", "files", "chunks/charlie"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut entries = vec![(
            "tracker".to_string(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        )];
        for n in names {
            entries.push((
                n.to_string(),
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
            ));
        }
        let peers = PeersConfig::from_entries(entries);
        peers.save(&root.join("config/peers.ini")).unwrap();
        fs::write(root.join("files/test.bin"), random_bytes(size, size as u64)).unwrap();
        let out = Command::new(bin("create_chunks"))
            .arg("test.bin")
            .arg("--root")
            .arg(root)
            .arg("--chunk-size")
            .arg(chunk_size.to_string())
            .arg("--peers")
            .arg(names.join(","))
            .output()
            .unwrap();
        assert!(out.status.success(), "create_chunks: {out:?}");
        System {
            dir,
            peers,
            procs: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn manifest(&self) -> FileManifest {
        FileManifest::load(&self.root().join("config/file.ini")).unwrap()
    }

    pub fn chunk_dir(&self, name: &str) -> PathBuf {
        self.root().join("chunks").join(name)
    }

    pub fn addr(&self, name: &str) -> SocketAddrV4 {
        self.peers.get(name).unwrap()
    }

    /// Starts a program (`alice`, `bob`, `tracker`, `peer --name x`) on this root, with
    /// debug logs in `<root>/<label>.log`, and waits until it accepts connections.
    pub fn start(&mut self, label: &str, program: &str, extra: &[&str]) -> usize {
        let addr = self.addr(label);
        self.start_at(label, program, extra, addr)
    }

    /// Like [`System::start`], waiting for connections at `addr` (for a program whose
    /// label is not a section of peers.ini, such as a second tracker).
    pub fn start_at(
        &mut self,
        label: &str,
        program: &str,
        extra: &[&str],
        addr: SocketAddrV4,
    ) -> usize {
        self.start_logged(label, program, extra, addr, "debug")
    }

    /// Like [`System::start_at`] with the given `RUST_LOG` (a flood test keeps the
    /// tracker at `info`, or it would write a debug line per hostile datagram).
    pub fn start_logged(
        &mut self,
        label: &str,
        program: &str,
        extra: &[&str],
        addr: SocketAddrV4,
        rust_log: &str,
    ) -> usize {
        let proc = self.spawn_with_log(label, program, extra, rust_log);
        self.procs.push(proc);
        wait_listening(addr);
        self.procs.len() - 1
    }

    /// Starts alice, bob (or every peer in peers.ini) and the tracker (which answers
    /// DISCOVER_TRACKER only inside a private network namespace: see
    /// [`System::spawn_with_log`]).
    pub fn start_all(&mut self) {
        self.start_peers();
        self.start("tracker", "tracker", &[]);
    }

    /// Starts alice, bob (or every peer in peers.ini), not the tracker.
    pub fn start_peers(&mut self) {
        let names: Vec<String> = self.peers.peers().map(|(n, _)| n.clone()).collect();
        for n in names {
            if n == "alice" || n == "bob" {
                self.start(&n, &n, &[]);
            } else {
                self.start(&n, "peer", &["--name", &n]);
            }
        }
    }

    pub fn proc(&mut self, label: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == label).unwrap()
    }

    /// Runs charlie to completion on this root.
    pub fn charlie(&self, args: &[&str]) -> Output {
        charlie_in(self.root(), args)
    }

    /// Starts charlie without waiting.
    pub fn spawn_charlie(&self, args: &[&str]) -> Proc {
        self.spawn_logged("charlie", "charlie", args)
    }

    /// Starts `program --root <root> args...` with debug logs in `<root>/<label>.log`.
    pub fn spawn_logged(&self, label: &str, program: &str, args: &[&str]) -> Proc {
        self.spawn_with_log(label, program, args, "debug")
    }

    /// Like [`System::spawn_logged`] with the given `RUST_LOG`.
    ///
    /// A tracker started outside a private network namespace gets `--no-udp`: in the
    /// host's namespace it would listen on UDP 0.0.0.0:9000, on the real interfaces
    /// too. Inside [`in_private_netns`] it answers DISCOVER_TRACKER as usual.
    pub fn spawn_with_log(
        &self,
        label: &str,
        program: &str,
        args: &[&str],
        rust_log: &str,
    ) -> Proc {
        let log = self.root().join(format!("{label}.log"));
        let mut args = args.to_vec();
        if program == "tracker" && !is_private_netns() && !args.contains(&"--no-udp") {
            args.push("--no-udp");
        }
        let child = Command::new(bin(program))
            .arg("--root")
            .arg(self.root())
            .args(&args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc {
            name: label.to_string(),
            child,
            log,
        }
    }

    /// Whether chunks/charlie/test.bin equals files/test.bin, as check_file says.
    pub fn check_file(&self) -> bool {
        let out = Command::new(bin("check_file"))
            .arg("--root")
            .arg(self.root())
            .output()
            .unwrap();
        out.status.success()
    }

    /// Hashes of the chunks `label` logged as sent (peers log each at debug level).
    pub fn served(&mut self, label: &str) -> Vec<ChunkHash> {
        served_in(&self.proc(label).log_text())
    }
}

/// Runs charlie in `root` with a 2-minute safety limit.
pub fn charlie_in(root: &Path, args: &[&str]) -> Output {
    charlie_with_env(root, args, &[])
}

/// Runs charlie in `root` with extra environment variables (e.g. `RUST_LOG=debug`),
/// capturing its output; killed and failed if it runs for more than 2 minutes.
pub fn charlie_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(bin("charlie"))
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("charlie did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Chunk hashes in "sent chunk <hex>" log lines.
pub fn served_in(log: &str) -> Vec<ChunkHash> {
    log.lines()
        .filter_map(|l| l.split("sent chunk ").nth(1))
        .filter_map(|rest| rest.get(..40))
        .filter_map(|hex| ChunkHash::from_hex(hex).ok())
        .collect()
}

/// Waits (up to 10 s) until something accepts TCP connections at `addr`.
pub fn wait_listening(addr: SocketAddrV4) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr.into(), Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < end, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends raw bytes on a new connection and reads one reply of the given length.
pub fn exchange(addr: SocketAddrV4, request: &[u8], reply_len: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; reply_len];
    s.read_exact(&mut buf).unwrap();
    buf
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Bytes from hex digits; whitespace is skipped, anything else is a typo in the test.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).unwrap_or_else(|| panic!("{c:?} in {s:?}")) as u8)
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits in {s:?}");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// A numeric field of `/proc/<pid>/status` (`Threads`, or `VmRSS`/`VmHWM` in KiB); `None`
/// once the process is gone.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Threads of a running process.
pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads").expect("process is running")
}

/// Waits up to `limit` until process `pid` has exactly `want` threads (a server's
/// connection threads have ended); returns the last count seen.
pub fn wait_threads(pid: u32, want: u64, limit: Duration) -> u64 {
    let end = Instant::now() + limit;
    loop {
        let n = threads(pid);
        if n == want || Instant::now() > end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Raises this process's soft open-file limit to at least `want` (up to the hard limit;
/// children such as servers inherit it). Panics if the hard limit is too low.
pub fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= want {
            return;
        }
        assert!(
            lim.rlim_max >= want,
            "hard open-file limit {} is below the {want} this test needs",
            lim.rlim_max
        );
        lim.rlim_cur = want;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Fails the test with a clear message unless it runs as root (network namespaces need
/// it; CI runs as root). A test that needs root must not pass without it.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test creates network namespaces and needs root (CI runs as root); euid is {euid}"
    );
}

/// Whether the calling thread is in another network namespace than the process's main
/// thread (which the test harness never moves): true only inside [`in_private_netns`].
pub fn is_private_netns() -> bool {
    let here = fs::read_link("/proc/thread-self/ns/net").expect("read /proc/thread-self/ns/net");
    let main = fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net");
    here != main
}

/// Runs `f` on a new thread in a fresh, private network namespace (what `unshare -n`
/// makes) with lo up and a default route via lo, so that 255.255.255.255 is delivered
/// on lo and nowhere else. Programs `f` starts inherit the namespace; it disappears
/// when `f` is done and they are killed. Panics in `f` propagate.
///
/// This is how step-3 tests may broadcast: never from the host's namespace.
pub fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    require_root();
    let thread = std::thread::spawn(move || {
        // Network namespaces are per thread: only this thread (and what it spawns)
        // moves; the rest of the test process stays in the host's namespace.
        // SAFETY: unshare takes flags only; CLONE_NEWNET is allowed in a threaded process.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed: {} (needs root)",
            std::io::Error::last_os_error()
        );
        assert!(is_private_netns(), "unshare did not give a new namespace");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["route", "add", "default", "dev", "lo"][..],
        ] {
            let out = Command::new(require_program("ip", "iproute2"))
                .args(args)
                .output()
                .expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

// ---- Outside programs -------------------------------------------------------------

/// The path of `program` on PATH (or in /usr/sbin, /sbin, which a non-login root shell
/// may lack), or a panic naming the program and the Debian package that provides it:
/// a test that needs an outside program fails with that, never with an unrelated
/// symptom. `scripts/test.sh` installs every such package.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if let Ok(meta) = fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return candidate;
        }
    }
    panic!("needs {program} (Debian package {package}): run scripts/test.sh, which installs it");
}

/// `swarmlet tracker` on 127.0.0.1:`port`, logging into a temporary directory (kept
/// alive by the returned guard), once it listens.
pub fn start_swarmlet_tracker(port: u16) -> (Proc, tempfile::TempDir) {
    start_swarmlet_tracker_at(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// `swarmlet tracker` on `addr` (HTTP and UDP), as [`start_swarmlet_tracker`].
pub fn start_swarmlet_tracker_at(addr: SocketAddrV4) -> (Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tracker.log");
    let child = Command::new(bin("swarmlet"))
        .args(["tracker", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc {
        name: "tracker".into(),
        child,
        log,
    };
    wait_listening(addr);
    (p, dir)
}

/// One HTTP/1.1 GET to `addr`; panics unless it answers 200, returns the body.
pub fn http_get(addr: SocketAddrV4, target: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let at = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    reply[at + 4..].to_vec()
}

/// Every byte percent-encoded, as BitTorrent clients send an infohash or a peer id.
pub fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// The chunks of `hashes` (file order, `chunk` bytes each but the last) that charlie holds
/// verified in `dir` now: chunk files whose bytes match their names, and the ranges of
/// its partial file `<name>.part-<S>` (or of the finished `<name>`) that hash right. A
/// chunk file whose bytes do not match its name panics: charlie never writes one.
pub fn charlie_verified(
    dir: &Path,
    name: &str,
    hashes: &[ChunkHash],
    chunk: u64,
) -> std::collections::HashSet<ChunkHash> {
    use std::os::unix::fs::FileExt;
    let mut verified = std::collections::HashSet::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return verified;
    };
    for e in entries {
        let fname = e.unwrap().file_name().into_string().unwrap();
        if let Some(h) = ChunkHash::from_file_name(&fname) {
            let data = fs::read(dir.join(&fname)).unwrap();
            assert_eq!(ChunkHash::of(&data), h, "{fname} holds unverified bytes");
            verified.insert(h);
            continue;
        }
        let in_place = fname == name
            || fname
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(".part-"))
                .is_some_and(|s| s == chunk.to_string());
        if !in_place {
            continue;
        }
        let Ok(f) = fs::File::open(dir.join(&fname)) else {
            continue; // renamed meanwhile
        };
        let len = f.metadata().unwrap().len();
        let mut buf = vec![0u8; chunk as usize];
        for (i, h) in hashes.iter().enumerate() {
            let start = i as u64 * chunk;
            if start >= len {
                break;
            }
            let n = (len - start).min(chunk) as usize;
            if f.read_exact_at(&mut buf[..n], start).is_ok() && ChunkHash::of(&buf[..n]) == *h {
                verified.insert(*h);
            }
        }
    }
    verified
}

/// About how many chunks of `chunk` bytes charlie has written into its partial file in
/// `dir` (its allocated blocks: holes take none), plus its chunk files; cheap enough to
/// poll while it runs.
pub fn charlie_written(dir: &Path, chunk: u64) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().into_string().unwrap_or_default();
            if ChunkHash::from_file_name(&name).is_some() {
                1
            } else if name.contains(".part-") {
                e.metadata()
                    .map(|m| (m.blocks() * 512 / chunk) as usize)
                    .unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}

/// A deterministic xorshift generator: the same kill moments on every run.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
