//! The README's tour, followed literally from an empty directory with the real binaries:
//! no --root, the course's default ports from the peers.ini that create_chunks makes.
//! It runs in a private network namespace, so the fixed ports 8000-8002 and step 3's
//! broadcast meet no one else (needs root, as the step-3 tests do).

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// The tour's file size (`head -c 3300000 /dev/urandom > files/test.bin`).
const SIZE: usize = 3_300_000;

/// Runs `program args...` in `dir` as a user would type it (no --root).
fn run_in(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(bin(program))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

/// Starts a server in `dir` (no --root), logs in `dir/<program>.log`.
fn serve_in(dir: &Path, program: &str) -> Proc {
    let log = dir.join(format!("{program}.log"));
    let child = Command::new(bin(program))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc {
        name: program.to_string(),
        child,
        log,
    }
}

/// Bytes charlie's summary line says it downloaded (`test.bin: N bytes in ...`) and the
/// chunks it resumed.
fn downloaded(out: &Output) -> (u64, u64) {
    let line = stdout(out);
    let bytes = line
        .strip_prefix("test.bin: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {out:?}"));
    let resumed = line
        .split("resumed ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resumed count: {out:?}"));
    (bytes, resumed)
}

#[test]
fn the_readme_tour_works_from_an_empty_directory() {
    in_private_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // mkdir -p files && head -c 3300000 /dev/urandom > files/test.bin
        fs::create_dir_all(d.join("files")).unwrap();
        fs::write(d.join("files/test.bin"), random_bytes(SIZE, 9)).unwrap();

        // create_chunks test.bin: makes the rest of the root and says so.
        let out = run_in(d, "create_chunks", &["test.bin"]);
        assert!(out.status.success(), "{out:?}");
        let log = stderr(&out);
        assert!(
            log.contains("created config/peers.ini with the course defaults"),
            "{log}"
        );
        for made in ["chunks/alice/", "chunks/bob/", "chunks/charlie/"] {
            assert!(log.contains(&format!("created {made}")), "{made}: {log}");
        }
        assert!(log.contains("into 7 chunks"), "{log}");

        // alice & bob & tracker &
        let _servers: Vec<Proc> = ["alice", "bob", "tracker"]
            .iter()
            .map(|p| serve_in(d, p))
            .collect();
        for port in [8000, 8001, 8002] {
            wait_listening(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        }

        // Each step downloads the whole file for real, then check_file agrees.
        for args in [
            &["--step", "1"][..],
            &["--step", "2", "--fresh"][..],
            &["--step", "3", "--fresh"][..],
        ] {
            let out = run_in(d, "charlie", args);
            assert!(out.status.success(), "charlie {args:?}: {out:?}");
            assert_eq!(
                downloaded(&out),
                (SIZE as u64, 0),
                "charlie {args:?}: {out:?}"
            );
            let check = run_in(d, "check_file", &[]);
            assert!(
                check.status.success(),
                "check_file after {args:?}: {check:?}"
            );
        }

        // Without --fresh the chunks already there are kept: nothing is fetched again.
        let out = run_in(d, "charlie", &["--step", "2"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(downloaded(&out), (0, 7), "{out:?}");
    });
}
