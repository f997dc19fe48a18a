//! bvtorrent-client as a real process, with our tracker and with the independent reference
//! (tests/reference/bvtorrent.py): both directions, a swarm where leechers trade, faulty
//! holders, the quirks of other clients, SIGKILL and restart, SIGINT.
mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, random_bytes, require_program};
use swarmlet::bv::codec;

/// Chunks of 64 KiB keep the files small and the chunk count real.
const CHUNK: u64 = 64 * 1024;
/// Hang guard for a whole download (they take well under a second here).
const LIMIT: Duration = Duration::from_secs(90);

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/bvtorrent.py")
}

fn python() -> PathBuf {
    require_program("python3", "python3")
}

#[derive(Clone, Copy, PartialEq)]
enum Who {
    Ours,
    Reference,
}

fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
    let child = cmd
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    Proc {
        name: name.into(),
        child,
        log,
    }
}

fn stdout_of(p: &Proc) -> String {
    std::fs::read_to_string(p.log.with_extension("out")).unwrap_or_default()
}

/// A tracker serving `file`, listening on 127.0.0.1.
fn tracker(who: Who, file: &Path) -> (Proc, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cmd = match who {
        Who::Ours => {
            let mut c = Command::new(bin("bvtorrent-tracker"));
            c.args(["--listen", &listen, "--chunk-size", &CHUNK.to_string()]);
            c.arg(file);
            c
        }
        Who::Reference => {
            let mut c = Command::new(python());
            c.arg(reference()).arg("tracker");
            c.args(["--listen", &listen, "--chunk-size", &CHUNK.to_string()]);
            c.arg(file);
            c
        }
    };
    let p = spawn(
        "tracker",
        cmd,
        file.with_extension(format!("tracker{port}.log")),
    );
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "tracker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, port)
}

/// A client in `dir` joining the tracker at `port`.
fn client(who: Who, dir: &Path, port: u16, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let tracker = format!("127.0.0.1:{port}");
    let cmd = match who {
        Who::Ours => {
            let mut c = Command::new(bin("bvtorrent-client"));
            c.args(["--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
            c.args(extra).arg(&tracker);
            c
        }
        Who::Reference => {
            let mut c = Command::new(python());
            c.arg(reference()).arg("client");
            c.args(["--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
            c.args(extra).arg(&tracker);
            c
        }
    };
    let log = dir.with_extension("log");
    spawn(dir.file_name().unwrap().to_str().unwrap(), cmd, log)
}

/// Waits for `p` to exit 0 and returns its stdout.
fn finish(p: &mut Proc) -> String {
    let status = p
        .wait_timeout(LIMIT)
        .unwrap_or_else(|| panic!("{} did not finish:\n{}", p.name, p.log_text()));
    assert!(status.success(), "{}: {status}\n{}", p.name, p.log_text());
    stdout_of(p)
}

/// `<uploaded>` of our client's summary line (`..., N uploaded`).
fn uploaded(summary: &str) -> u64 {
    let line = summary.lines().last().unwrap_or_default();
    line.rsplit(", ")
        .next()
        .and_then(|s| s.strip_suffix(" uploaded"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no upload count in {summary:?}"))
}

/// A file of `len` random bytes named `name` in a fresh seed directory.
fn seed_file(root: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let dir = root.join("seed");
    std::fs::create_dir_all(&dir).unwrap();
    let data = random_bytes(len, seed);
    std::fs::write(dir.join(name), &data).unwrap();
    (dir.join(name), data)
}

fn assert_file(dir: &Path, name: &str, data: &[u8]) {
    let got = std::fs::read(dir.join(name)).unwrap_or_default();
    assert!(
        got == data,
        "{}/{name}: {} bytes, differs",
        dir.display(),
        got.len()
    );
}

#[test]
fn ours_downloads_from_a_reference_seed_and_seeds_to_a_reference_client_with_either_tracker() {
    for t in [Who::Ours, Who::Reference] {
        let d = tempfile::tempdir().unwrap();
        let (file, data) = seed_file(d.path(), "a file.bin", 20 * CHUNK as usize + 1234, 1);
        let (_tr, port) = tracker(t, &file);
        // Reference seed -> our client.
        let _seed = client(Who::Reference, &d.path().join("seed"), port, &[]);
        let mut ours = client(
            Who::Ours,
            &d.path().join("ours"),
            port,
            &["--exit-when-done"],
        );
        let out = finish(&mut ours);
        assert!(out.starts_with("done a file.bin"), "{out}");
        assert_file(&d.path().join("ours"), "a file.bin", &data);
        // Our client, now complete, seeds to a reference client (the reference seed
        // leaves first, so ours is the only holder).
        drop(_seed);
        let _ours_seed = client(Who::Ours, &d.path().join("ours"), port, &[]);
        let mut theirs = client(
            Who::Reference,
            &d.path().join("theirs"),
            port,
            &["--exit-when-done"],
        );
        let out = finish(&mut theirs);
        assert!(out.starts_with("done"), "{out}");
        assert_file(&d.path().join("theirs"), "a file.bin", &data);
    }
}

#[test]
fn a_swarm_of_three_of_ours_and_one_reference_client_trade_chunks_from_a_slow_seed() {
    let d = tempfile::tempdir().unwrap();
    let (file, data) = seed_file(d.path(), "swarm.bin", 48 * CHUNK as usize, 2);
    let (_tr, port) = tracker(Who::Ours, &file);
    // The seed uploads at 1 MB/s: 3 MiB to each of 4 leechers would take 12 s from it
    // alone, so the leechers must fetch most chunks from one another.
    let _seed = client(
        Who::Reference,
        &d.path().join("seed"),
        port,
        &["--slow-upload", "1000000"],
    );
    let mut ours: Vec<Proc> = (0..3)
        .map(|i| {
            client(
                Who::Ours,
                &d.path().join(format!("o{i}")),
                port,
                &["--exit-when-done"],
            )
        })
        .collect();
    let mut theirs = client(
        Who::Reference,
        &d.path().join("ref"),
        port,
        &["--exit-when-done"],
    );
    let mut traded = 0;
    for (i, p) in ours.iter_mut().enumerate() {
        let out = finish(p);
        traded += uploaded(&out);
        assert_file(&d.path().join(format!("o{i}")), "swarm.bin", &data);
    }
    finish(&mut theirs);
    assert_file(&d.path().join("ref"), "swarm.bin", &data);
    assert!(traded > 0, "our leechers uploaded nothing to the others");
    eprintln!("our three leechers uploaded {traded} chunks to the swarm");
}

#[test]
fn faulty_holders_are_survived_from_an_honest_one() {
    for fault in ["wrong", "short", "noclose"] {
        let d = tempfile::tempdir().unwrap();
        let (file, data) = seed_file(d.path(), "f.bin", 12 * CHUNK as usize + 7, 3);
        let (_tr, port) = tracker(Who::Ours, &file);
        // The faulty holder is fast, the honest one slow: most first tries go to the liar.
        let bad_dir = d.path().join("bad");
        std::fs::create_dir_all(&bad_dir).unwrap();
        std::fs::copy(&file, bad_dir.join("f.bin")).unwrap();
        let _bad = client(Who::Reference, &bad_dir, port, &["--fault", fault]);
        let _good = client(
            Who::Reference,
            &d.path().join("seed"),
            port,
            &["--slow-upload", "4000000"],
        );
        let mut ours = client(
            Who::Ours,
            &d.path().join("ours"),
            port,
            &["--exit-when-done"],
        );
        let out = finish(&mut ours);
        assert!(out.starts_with("done"), "{fault}: {out}");
        assert_file(&d.path().join("ours"), "f.bin", &data);
        // Every holder gets a worker at once, so the liar is always asked, caught, and
        // its chunk fetched again; a short chunk is a failed fetch; a holder that does
        // not close is read to the chunk's size and is no fault at all.
        let log = ours.log_text();
        match fault {
            "wrong" => assert!(!out.contains(" 0 rejected"), "{out}"),
            "short" => assert!(log.contains("short read"), "{log}"),
            _ => {}
        }
    }
}

/// Registers a fake client directly with the tracker (port and mask), holding the
/// membership while the returned connection lives.
fn fake_member(port: u16, listen_port: u16, mask: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    codec::Descriptor::read(&mut r).unwrap();
    r.get_mut()
        .write_all(format!("{listen_port},{mask}\n").as_bytes())
        .unwrap();
    r
}

#[test]
fn port_zero_entries_and_dead_holders_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let (file, data) = seed_file(d.path(), "q.bin", 6 * CHUNK as usize, 4);
    let (_tr, port) = tracker(Who::Ours, &file);
    let all = "1".repeat(6);
    // A client that registered before it listened, and one whose port nobody listens on.
    let _zero = fake_member(port, 0, &all);
    let _dead = fake_member(port, free_port(), &all);
    let _seed = client(Who::Reference, &d.path().join("seed"), port, &[]);
    let mut ours = client(
        Who::Ours,
        &d.path().join("ours"),
        port,
        &["--exit-when-done"],
    );
    finish(&mut ours);
    assert_file(&d.path().join("ours"), "q.bin", &data);
}

/// Our client's mask as the tracker lists it (the entry with `port`), if listed.
fn listed_mask(r: &mut BufReader<TcpStream>, n: usize, port: u16) -> Option<String> {
    r.get_mut().write_all(b"CLIENT_LIST\n").unwrap();
    codec::read_client_list(r, n)
        .unwrap()
        .into_iter()
        .find(|e| e.port == port)
        .map(|e| String::from_utf8(e.mask).unwrap())
}

/// The port our client registered (from its log).
fn registered_port(p: &Proc) -> Option<u16> {
    let log = p.log_text();
    let at = log.find("registered port ")?;
    log[at + "registered port ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn sigkill_mid_download_then_restart_refetches_no_verified_chunk_and_sigint_leaves_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let n = 40;
    let (file, data) = seed_file(d.path(), "k.bin", n * CHUNK as usize, 5);
    let (_tr, port) = tracker(Who::Ours, &file);
    let _seed = client(
        Who::Reference,
        &d.path().join("seed"),
        port,
        &["--slow-upload", "2000000"],
    );
    // A member that only watches the list (port 0: nobody asks it for anything).
    let mut watch = fake_member(port, 0, &"0".repeat(n));
    let dir = d.path().join("ours");
    let mut ours = client(Who::Ours, &dir, port, &["--exit-when-done"]);
    // Kill it once the tracker lists some of its chunks (each is on disk before its mask
    // update is sent) and before it has all of them.
    let end = Instant::now() + LIMIT;
    let announced = loop {
        assert!(Instant::now() < end, "no progress:\n{}", ours.log_text());
        if let Some(p) = registered_port(&ours)
            && let Some(m) = listed_mask(&mut watch, n, p)
        {
            let k = m.bytes().filter(|&b| b == b'1').count();
            if k >= 5 {
                break k;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ours.kill();
    assert!(announced < n, "finished before the kill");
    let mut again = client(Who::Ours, &dir, port, &["--exit-when-done"]);
    let out = finish(&mut again);
    assert_file(&dir, "k.bin", &data);
    // "(R already on disk, D downloaded, ...)": every announced chunk was kept.
    let resumed: usize = out
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        resumed >= announced,
        "resumed {resumed} < announced {announced}: {out}"
    );

    // A seeding client leaves on SIGINT: exit 0, and the tracker no longer lists it.
    let mut seeding = client(Who::Ours, &dir, port, &[]);
    let end = Instant::now() + LIMIT;
    let p = loop {
        assert!(
            Instant::now() < end,
            "never registered:\n{}",
            seeding.log_text()
        );
        if let Some(p) = registered_port(&seeding)
            && listed_mask(&mut watch, n, p).is_some()
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: sending a signal to our own child by pid.
    unsafe { libc::kill(seeding.pid() as i32, libc::SIGINT) };
    finish(&mut seeding);
    let end = Instant::now() + LIMIT;
    while listed_mask(&mut watch, n, p).is_some() {
        assert!(Instant::now() < end, "still listed after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}
