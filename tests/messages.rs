//! The messages a user meets first: a missing or empty configuration, a port already
//! taken, counts of one, and `--version`. Real binaries in a temporary root.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, stderr, stdout};

/// Every binary of the crate, by the name a user types.
const BINARIES: [&str; 11] = [
    "alice",
    "bob",
    "peer",
    "tracker",
    "charlie",
    "create_chunks",
    "merge_chunks",
    "check_file",
    "swarmlet",
    "bench",
    "bvtorrent-tracker",
];

/// Runs `program` in `root` with a hang guard; the programs here all fail at start-up.
fn run_in(root: &Path, program: &str, args: &[&str]) -> Output {
    let mut child = Command::new(bin(program))
        .args(args)
        .arg("--root")
        .arg(root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} did not stop within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A root with `peers_ini` as config/peers.ini and the chunk folders.
fn root_with_peers(peers_ini: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("config")).unwrap();
    for d in ["chunks/alice", "chunks/bob", "chunks/charlie", "files"] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    fs::write(dir.path().join("config/peers.ini"), peers_ini).unwrap();
    dir
}

fn fails_with(o: &Output, needle: &str, what: &str) {
    assert!(!o.status.success(), "{what}: succeeded");
    let err = stderr(o);
    assert!(err.contains(needle), "{what}: {needle:?} not in {err:?}");
}

#[test]
fn every_binary_prints_its_own_name_and_the_version() {
    for name in BINARIES {
        let out = Command::new(bin(name)).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version: {}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
    }
}

#[test]
fn an_empty_peers_ini_is_called_empty() {
    for text in ["", "; only a comment\n\n"] {
        let root = root_with_peers(text);
        for (program, args) in [
            ("alice", &[][..]),
            ("bob", &[][..]),
            ("tracker", &[][..]),
            ("charlie", &["--step", "2"][..]),
        ] {
            let out = run_in(root.path(), program, args);
            let what = format!("{program} with peers.ini {text:?}");
            fails_with(&out, "peers.ini: the file is empty", &what);
            assert!(!stderr(&out).contains("no [alice]"), "{what}");
        }
    }
}

#[test]
fn a_missing_section_is_named_without_a_key() {
    let root = root_with_peers("[alice]\nip_address = 127.0.0.1\nport_number = 8001\n");
    let out = run_in(root.path(), "charlie", &["--step", "2"]);
    fails_with(&out, "config/peers.ini: no [tracker] section", "charlie");
    assert!(!stderr(&out).contains("*:"), "{}", stderr(&out));
    let out = run_in(root.path(), "bob", &[]);
    fails_with(&out, "config/peers.ini: no [bob] section", "bob");
}

#[test]
fn a_missing_file_ini_says_to_run_create_chunks() {
    let root = root_with_peers(
        "[tracker]\nip_address = 127.0.0.1\nport_number = 8000\n\
         [alice]\nip_address = 127.0.0.1\nport_number = 8001\n",
    );
    for (program, args) in [("tracker", &[][..]), ("charlie", &["--step", "1"][..])] {
        let out = run_in(root.path(), program, args);
        fails_with(
            &out,
            "config/file.ini: no such file; run create_chunks FILE first",
            program,
        );
    }
}

#[test]
fn servers_say_serving_only_once_they_listen() {
    // A port someone else holds: every server must fail to bind, and say nothing of
    // serving before it does.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let root = root_with_peers(&format!(
        "[tracker]\nip_address = 127.0.0.1\nport_number = {port}\n\
         [alice]\nip_address = 127.0.0.1\nport_number = {port}\n\
         [bob]\nip_address = 127.0.0.1\nport_number = {port}\n"
    ));
    fs::write(root.path().join("files/x"), b"hello\n").unwrap();
    let made = run_in(root.path(), "create_chunks", &["x"]);
    assert!(made.status.success(), "create_chunks: {}", stderr(&made));
    for program in ["alice", "bob", "tracker"] {
        let args: &[&str] = if program == "tracker" {
            &["--no-udp"]
        } else {
            &[]
        };
        let out = run_in(root.path(), program, args);
        fails_with(&out, "cannot listen on", program);
        assert!(
            !stderr(&out).contains("serving"),
            "{program}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_count_of_one_is_singular() {
    // One DISCOVER_TRACKER to a loopback port where a socket listens but never answers:
    // "within 1 try", not "1 tries". (Loopback only: nothing leaves the host.)
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let root = tempfile::tempdir().unwrap();
    let out = run_in(
        root.path(),
        "charlie",
        &[
            "--step",
            "3",
            "--broadcast",
            "127.0.0.1",
            "--discover-port",
            &port,
            "--discover-tries",
            "1",
            "--discover-ms",
            "50",
        ],
    );
    fails_with(
        &out,
        &format!("no tracker answered DISCOVER_TRACKER on 127.0.0.1:{port} within 1 try of 50 ms"),
        "charlie step 3",
    );
}

#[test]
fn create_and_merge_name_one_chunk_in_the_singular() {
    let root = root_with_peers("");
    fs::write(root.path().join("files/x"), b"hello\n").unwrap();
    let out = run_in(root.path(), "create_chunks", &["x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for want in ["into 1 chunk of", "alice: 1 chunk in", "bob: 0 chunks in"] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    // Gather alice's single chunk as a download would, then merge.
    for e in fs::read_dir(root.path().join("chunks/alice")).unwrap() {
        let e = e.unwrap();
        fs::copy(
            e.path(),
            root.path().join("chunks/charlie").join(e.file_name()),
        )
        .unwrap();
    }
    let out = run_in(root.path(), "merge_chunks", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("merged 1 chunk (6 bytes)"),
        "{}",
        stderr(&out)
    );
}
