//! Interoperability with an independent implementation of the course protocol:
//! tests/reference/course.py, written from the spec alone with Python's standard library
//! (peer, tracker with the spec's quirks, charlie). Real processes on real sockets, in
//! both directions: our charlie against Python servers, the Python charlie against ours,
//! and mixed swarms. Everything runs on 127.0.0.1, or, for step 3 (which broadcasts),
//! inside a private network namespace (`common::in_private_netns`).
//!
//! The Python programs run with `--pedantic`: they also check what the spec asks of
//! senders only (zero reserved and padding bytes; no request sent on a connection before
//! the previous reply was read) and log a "VIOLATION" line for any breach, which the
//! tests look for. python3 (3.8 or newer) is required: without it these tests fail, they
//! never pass silently.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

const COURSE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/course.py");
const CREATE_CHUNKS_PY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/reference/create_chunks.py"
);

/// Fails the test with a clear message unless python3 (3.8 or newer) runs.
fn require_python() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let out = Command::new(require_program("python3", "python3"))
            .args(["-c", "import sys; print(sys.version_info >= (3, 8))"])
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if out.status.success() && stdout(&out).trim() == "True" {
            Ok(())
        } else {
            Err(format!("python3 is older than 3.8 or broken: {out:?}"))
        }
    });
    if let Err(e) = checked {
        panic!(
            "the interop tests need python3 3.8+ (CI installs it; apt-get install python3): {e}"
        );
    }
}

/// Starts `course.py --pedantic ARGS --root ROOT` with its stderr in `ROOT/<label>.log`
/// (stdout in `<label>.out`); killed by its pid when the handle drops.
fn spawn_py(root: &Path, label: &str, args: &[&str]) -> Proc {
    require_python();
    let log = root.join(format!("{label}.log"));
    let child = Command::new("python3")
        .arg("-u")
        .arg(COURSE_PY)
        .arg("--pedantic")
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(fs::File::create(root.join(format!("{label}.out"))).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("start python3 tests/reference/course.py");
    Proc {
        name: label.to_string(),
        child,
        log,
    }
}

/// Starts a Python server (`peer alice`, `tracker ...`) for the section `label` of
/// peers.ini and waits until it accepts connections. A Python tracker outside a private
/// network namespace gets `--no-udp`, as ours does: in the host's namespace it would
/// listen on UDP 0.0.0.0:9000.
fn start_py(sys: &mut System, label: &str, args: &[&str]) {
    let mut args = args.to_vec();
    if args[0] == "tracker" && !is_private_netns() && !args.contains(&"--no-udp") {
        args.push("--no-udp");
    }
    let mut proc = spawn_py(sys.root(), label, &args);
    let addr = sys.addr(label);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr.into(), Duration::from_millis(100)).is_err() {
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("Python {label} exited ({status}):\n{}", proc.log_text());
        }
        assert!(
            Instant::now() < end,
            "Python {label} not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sys.procs.push(proc);
}

/// A finished run of the Python charlie.
struct PyRun {
    status: ExitStatus,
    stdout: String,
    log: String,
}

/// Runs the Python charlie in `root` (2-minute limit, killed by pid if exceeded).
fn py_charlie(root: &Path, args: &[&str]) -> PyRun {
    let mut all = vec!["charlie"];
    all.extend_from_slice(args);
    let mut proc = spawn_py(root, "pycharlie", &all);
    let status = proc
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("Python charlie {args:?} did not finish within 2 minutes"));
    PyRun {
        status,
        stdout: fs::read_to_string(root.join("pycharlie.out")).unwrap_or_default(),
        log: proc.log_text(),
    }
}

/// Renames the shared file (files/ and file.ini; the chunks stay as they are), so that
/// FILE_INFO carries a name whose length in bytes is not a multiple of 4, or is not its
/// length in characters.
fn rename_shared_file(sys: &System, name: &str) {
    let mut m = sys.manifest();
    let files = sys.root().join("files");
    fs::rename(files.join(&m.filename), files.join(name)).unwrap();
    m.filename = name.to_string();
    m.save(&sys.root().join("config/file.ini")).unwrap();
}

/// Asserts that `got_root/chunks/charlie/<filename>` equals `files/<filename>` of `sys`,
/// byte for byte, naming the first difference.
fn assert_same_file(sys: &System, got_root: &Path, what: &str) {
    let name = sys.manifest().filename;
    let want = fs::read(sys.root().join("files").join(&name)).unwrap();
    let got = fs::read(got_root.join("chunks/charlie").join(&name))
        .unwrap_or_else(|e| panic!("{what}: no downloaded file: {e}"));
    if want != got {
        let at = want.iter().zip(&got).position(|(a, b)| a != b);
        panic!(
            "{what}: downloaded file differs ({} bytes, want {}; first difference at {at:?})",
            got.len(),
            want.len()
        );
    }
}

/// Our charlie, steps 1 and 2, in the system's own root.
fn our_charlie_steps_1_and_2(sys: &System) {
    for step in ["1", "2"] {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let out = sys.charlie(&["--step", step]);
        assert!(
            out.status.success(),
            "our charlie step {step}: {}",
            stderr(&out)
        );
        assert!(sys.check_file(), "our charlie step {step}: check_file");
        assert_same_file(sys, sys.root(), &format!("our charlie step {step}"));
    }
}

/// The Python charlie, steps 1 and 2, in the system's own root; returns its logs.
fn py_charlie_steps_1_and_2(sys: &System) -> Vec<String> {
    let mut logs = Vec::new();
    for step in ["1", "2"] {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let run = py_charlie(sys.root(), &["--step", step]);
        assert!(
            run.status.success(),
            "Python charlie step {step} ({}):\n{}",
            run.status,
            run.log
        );
        let size = fs::metadata(sys.root().join("files").join(sys.manifest().filename))
            .unwrap()
            .len();
        assert!(
            run.stdout.contains(&format!("{size} bytes")),
            "{}",
            run.stdout
        );
        assert!(sys.check_file(), "Python charlie step {step}: check_file");
        assert_same_file(sys, sys.root(), &format!("Python charlie step {step}"));
        assert!(!run.log.contains("VIOLATION"), "{}", run.log);
        logs.push(run.log);
    }
    logs
}

/// No Python program of the system saw a breach of the spec.
fn assert_no_violations(sys: &System) {
    for p in &sys.procs {
        let log = p.log_text();
        assert!(!log.contains("VIOLATION"), "{}:\n{log}", p.name);
    }
}

/// Waits (up to 10 s) until the log of `label` contains `needle`.
fn wait_log(sys: &mut System, label: &str, needle: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while !sys.proc(label).log_text().contains(needle) {
        let log = sys.proc(label).log_text();
        assert!(
            Instant::now() < end,
            "no {needle:?} in the log of {label}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Request counts of the connections a Python server's log reports as closed, leaving
/// out connections that carried no request (the harness's "is it listening?" probes).
fn py_connections(log: &str) -> Vec<usize> {
    log.lines()
        .filter_map(|l| l.split(" closed after ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .filter(|&n| n > 0)
        .collect()
}

/// Waits (up to 5 s) until a Python server's log reports `want` closed connections with
/// requests, and returns their request counts.
fn wait_py_connections(sys: &mut System, label: &str, want: usize) -> Vec<usize> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = py_connections(&sys.proc(label).log_text());
        if seen.len() >= want || Instant::now() > end {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// file.ini says every chunk is on both alice and bob, while each still has only its own
/// (the spec: a chunk file.ini lists may have been deleted). Whoever asks the wrong peer
/// gets CHUNK_NOT_FOUND and must ask the other.
fn claim_everything_everywhere(sys: &System) {
    let mut m = sys.manifest();
    for c in &mut m.chunks {
        c.peers = vec!["alice".into(), "bob".into()];
    }
    m.save(&sys.root().join("config/file.ini")).unwrap();
}

#[test]
fn our_charlie_steps_1_and_2_from_python_alice_bob_and_tracker() {
    // The root is prepared by Python too: create_chunks.py, 1 MiB chunks, a last chunk
    // whose length is not a multiple of 4, a 9-byte file name.
    require_python();
    let mut sys = System::new(5 * MIB + 4321, 512 * KIB);
    let files = sys.root().join("files");
    fs::rename(files.join("test.bin"), files.join("notes.txt")).unwrap();
    let out = Command::new("python3")
        .arg(CREATE_CHUNKS_PY)
        .arg(sys.root())
        .args(["notes.txt", &MIB.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "create_chunks.py: {out:?}");
    assert_eq!(sys.manifest().chunks.len(), 6);
    assert_eq!(sys.manifest().filename, "notes.txt");
    start_py(&mut sys, "alice", &["peer", "alice"]);
    start_py(&mut sys, "bob", &["peer", "bob"]);
    start_py(&mut sys, "tracker", &["tracker"]);
    our_charlie_steps_1_and_2(&sys);
    assert!(!sys.served("alice").is_empty() && !sys.served("bob").is_empty());
    // One connection per peer for each whole download (steps 1 and 2).
    for peer in ["alice", "bob"] {
        let conns = wait_py_connections(&mut sys, peer, 2);
        assert_eq!(
            conns.len(),
            2,
            "{peer}: connections with requests {conns:?}"
        );
    }
    assert_eq!(wait_py_connections(&mut sys, "tracker", 1), vec![1]);
    assert_no_violations(&sys);
}

#[test]
fn python_charlie_steps_1_and_2_from_our_alice_bob_and_tracker() {
    // 15 chunks, the last one 3 bytes long (1 padding byte), a name of 14 bytes; then a
    // 1-byte file, one chunk that only alice has (3 padding bytes), named in 12 bytes
    // but 10 characters.
    for (size, chunk, name) in [
        (7 * MIB + 3, 512 * KIB, "archive.tar.gz"),
        (1, 512 * KIB, "résumé.txt"),
    ] {
        let mut sys = System::new(size, chunk);
        rename_shared_file(&sys, name);
        sys.start_all();
        py_charlie_steps_1_and_2(&sys);
        assert!(!sys.served("alice").is_empty(), "{size} bytes");
        if size > chunk {
            assert!(!sys.served("bob").is_empty(), "{size} bytes");
        }
    }
}

#[test]
fn mixed_swarm_python_alice_our_bob_and_tracker_both_charlies() {
    let mut sys = System::new(4 * MIB + 2, 512 * KIB);
    rename_shared_file(&sys, "a.b");
    claim_everything_everywhere(&sys);
    start_py(&mut sys, "alice", &["peer", "alice"]);
    sys.start("bob", "bob", &[]);
    sys.start("tracker", "tracker", &[]);
    our_charlie_steps_1_and_2(&sys);
    let logs = py_charlie_steps_1_and_2(&sys);
    // The Python charlie asks alice and bob in turn, so it met the CHUNK_NOT_FOUND of
    // both implementations, and fell back.
    let (alice, bob) = (sys.addr("alice"), sys.addr("bob"));
    for log in &logs {
        for who in [alice, bob] {
            assert!(
                log.contains(&format!("{who} answered CHUNK_NOT_FOUND")),
                "{who}:\n{log}"
            );
        }
    }
    assert!(sys.proc("alice").log_text().contains("not found"));
    assert!(sys.proc("bob").log_text().contains("not found"));
    assert!(!sys.served("alice").is_empty() && !sys.served("bob").is_empty());
    assert_no_violations(&sys);
}

#[test]
fn mixed_swarm_our_alice_python_bob_and_tracker_both_charlies() {
    let mut sys = System::new(3 * MIB + 1, MIB);
    claim_everything_everywhere(&sys);
    sys.start("alice", "alice", &[]);
    start_py(&mut sys, "bob", &["peer", "bob"]);
    start_py(&mut sys, "tracker", &["tracker"]);
    our_charlie_steps_1_and_2(&sys);
    let logs = py_charlie_steps_1_and_2(&sys);
    let bob = sys.addr("bob");
    for log in &logs {
        assert!(
            log.contains(&format!("{bob} answered CHUNK_NOT_FOUND")),
            "{log}"
        );
    }
    assert!(!sys.served("alice").is_empty() && !sys.served("bob").is_empty());
    assert_no_violations(&sys);
}

#[test]
fn our_charlie_accepts_file_info_labelled_type_5_and_warns() {
    let mut sys = System::new(2 * MIB + 5, 512 * KIB);
    rename_shared_file(&sys, "report.pdf");
    sys.start_peers();
    start_py(&mut sys, "tracker", &["tracker", "--quirk-type5"]);
    let out = charlie_with_env(sys.root(), &["--step", "2"], &[("RUST_LOG", "warn")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(sys.check_file());
    assert_same_file(&sys, sys.root(), "step 2 with a type-5 FILE_INFO");
    let warning = err
        .lines()
        .find(|l| l.contains("WARN") && l.contains("msg_type 5"))
        .unwrap_or_else(|| panic!("no warning about msg_type 5:\n{err}"));
    eprintln!("charlie warned: {warning}");
    assert_no_violations(&sys);
}

// ------------------------------------------------------------------ step 3 (broadcast)

/// Our charlie's step 3, with debug logs, in a root of its own holding nothing at all;
/// returns its log after checking the file.
fn our_step3_in_empty_root(sys: &System) -> String {
    assert!(
        is_private_netns(),
        "step 3 must never broadcast from the host"
    );
    let empty = tempfile::tempdir().unwrap();
    let out = charlie_with_env(empty.path(), &["--step", "3"], &[("RUST_LOG", "debug")]);
    let err = stderr(&out);
    assert!(out.status.success(), "our charlie step 3:\n{err}");
    assert_same_file(sys, empty.path(), "our charlie step 3");
    err
}

/// Python alice, bob and a Python tracker with `quirks`, answering UDP 9000 in the
/// calling thread's (private) namespace.
fn python_system(size: usize, quirks: &[&str]) -> System {
    assert!(
        is_private_netns(),
        "a tracker on UDP 9000 only in a private netns"
    );
    let mut sys = System::new(size, 512 * KIB);
    start_py(&mut sys, "alice", &["peer", "alice"]);
    start_py(&mut sys, "bob", &["peer", "bob"]);
    let mut args = vec!["tracker"];
    args.extend_from_slice(quirks);
    start_py(&mut sys, "tracker", &args);
    // The tracker's UDP thread starts beside its TCP listener: wait for its log line.
    wait_log(
        &mut sys,
        "tracker",
        "answering DISCOVER_TRACKER on UDP 9000",
    );
    sys
}

fn heard_pytracker(sys: &System, log: &str) {
    let tracker = sys.addr("tracker");
    assert!(
        log.contains(&format!("heard tracker \"pytracker\" at {tracker}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("using tracker \"pytracker\" at {tracker}")),
        "{log}"
    );
}

#[test]
fn step3_our_charlie_finds_the_python_tracker() {
    in_private_netns(|| {
        let sys = python_system(3 * MIB + 7, &[]);
        let log = our_step3_in_empty_root(&sys);
        heard_pytracker(&sys, &log);
        assert!(!log.contains("two datagrams"), "{log}");
        assert_no_violations(&sys);
    });
}

#[test]
fn step3_our_charlie_finds_a_python_tracker_replying_in_two_datagrams() {
    in_private_netns(|| {
        let sys = python_system(2 * MIB + 1, &["--quirk-two-datagrams"]);
        let log = our_step3_in_empty_root(&sys);
        assert!(log.contains("reply in two datagrams reassembled"), "{log}");
        heard_pytracker(&sys, &log);
        assert_no_violations(&sys);
    });
}

#[test]
fn step3_our_charlie_finds_a_python_tracker_hearing_only_255_255_255_255() {
    in_private_netns(|| {
        let mut sys = python_system(2 * MIB + 2, &["--only-limited-broadcast"]);
        // The quirk is real: a DISCOVER_TRACKER sent to 127.0.0.1:9000 gets no answer.
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let discover = hex("01 00 0000 00000002");
        sock.send_to(&discover, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9000))
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(
            sock.recv_from(&mut buf).is_err(),
            "answered a datagram sent to 127.0.0.1"
        );
        // ... because it ignored it (it logs so), not because it was slow.
        wait_log(&mut sys, "tracker", "sent to 127.0.0.1");
        let log = our_step3_in_empty_root(&sys);
        heard_pytracker(&sys, &log);
        assert!(
            sys.proc("tracker")
                .log_text()
                .contains("to 255.255.255.255"),
            "the tracker answered no limited broadcast"
        );
        assert_no_violations(&sys);
    });
}

#[test]
fn step3_our_charlie_with_every_quirk_of_the_python_tracker_at_once() {
    in_private_netns(|| {
        let sys = python_system(
            4 * MIB + 3,
            &[
                "--quirk-two-datagrams",
                "--quirk-type5",
                "--only-limited-broadcast",
            ],
        );
        let log = our_step3_in_empty_root(&sys);
        heard_pytracker(&sys, &log);
        assert!(log.contains("reply in two datagrams reassembled"), "{log}");
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("msg_type 5")),
            "{log}"
        );
        assert_no_violations(&sys);
    });
}

#[test]
fn step3_python_charlie_finds_our_tracker() {
    in_private_netns(|| {
        let mut sys = System::new(5 * MIB + 9, 2 * MIB);
        rename_shared_file(&sys, "données");
        sys.start_all(); // in a private netns our tracker answers UDP 9000
        // Let the tracker's UDP responder start (it logs when it does).
        wait_log(&mut sys, "tracker", "UDP 0.0.0.0:9000");
        // The Python charlie accepts only a tracker named "tracker", as the spec warns
        // another group's does, and checks the bytes pedantically.
        let empty = tempfile::tempdir().unwrap();
        let run = py_charlie(empty.path(), &["--step", "3"]);
        assert!(run.status.success(), "({}):\n{}", run.status, run.log);
        assert_same_file(&sys, empty.path(), "Python charlie step 3");
        assert!(
            run.log.contains(&format!(
                "heard tracker 'tracker' at {}",
                sys.addr("tracker")
            )),
            "{}",
            run.log
        );
        assert!(!run.log.contains("VIOLATION"), "{}", run.log);
        assert!(!sys.served("alice").is_empty() && !sys.served("bob").is_empty());
    });
}
