//! `scripts/lab.sh`, the LAN lab, run for real: four hosts (network namespaces joined by
//! a bridge in a fifth), steps 1 to 3, a lossy LAN, a peer cut off mid-download, and an
//! interrupted run that must still remove everything. Each run's namespaces carry the
//! script's pid in their names, so the tests can run at once; after each run, none of
//! them may be left.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

fn bin_dir() -> PathBuf {
    bin("charlie").parent().unwrap().to_path_buf()
}

/// Fails with the program and its package unless every outside program the lab runs is
/// installed (lab.sh checks them too, but only those its options need, and a test that
/// stops at its first line should say why).
fn require_lab_programs() {
    require_root();
    for (program, package) in [
        ("bash", "bash"),
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nft", "nftables"),
        ("iptables", "iptables"),
        ("python3", "python3"),
    ] {
        require_program(program, package);
    }
}

/// The lab's namespace prefix, from its first line (`== lab swlPID in DIR`).
fn prefix(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("== lab "))
        .and_then(|l| l.split_whitespace().next())
        .expect("lab printed no prefix")
        .to_string()
}

/// The lab's working directory, from its first line.
fn lab_dir(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("== lab "))
        .and_then(|l| l.split(" in ").nth(1))
        .expect("lab printed no directory")
        .trim()
        .to_string()
}

/// No process still runs with the lab's directory in its command line.
fn assert_no_processes_left(dir: &str) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains(dir), "left running: {cmd}");
    }
    assert!(!Path::new(dir).exists(), "{dir} left behind");
}

fn assert_no_namespaces_left(prefix: &str) {
    let out = Command::new(require_program("ip", "iproute2"))
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        !list.contains(&format!("{prefix}-")),
        "namespaces of {prefix} left behind:\n{list}"
    );
}

/// Runs the lab with `args` (at most 5 minutes) and checks it cleaned up after itself.
fn lab(args: &[&str]) -> (Output, String) {
    require_lab_programs();
    let mut child = Command::new("bash")
        .arg(script())
        .arg("--bin")
        .arg(bin_dir())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("lab.sh {args:?} did not finish within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    // A lab that stopped before making anything (a missing program, a bad option)
    // prints why on stderr: show it rather than "no prefix".
    assert!(
        stdout(&out).contains("== lab "),
        "lab.sh {args:?} stopped before it began ({}):\n{text}",
        out.status
    );
    assert_no_namespaces_left(&prefix(&stdout(&out)));
    assert_no_processes_left(&lab_dir(&stdout(&out)));
    (out, text)
}

#[test]
fn lab_runs_steps_1_to_3_across_four_hosts() {
    let (out, text) = lab(&[]);
    assert!(out.status.success(), "{text}");
    // Four hosts, four distinct addresses.
    for (role, ip) in [
        ("tracker", "10.41.7.1 "),
        ("alice", "10.41.7.11 "),
        ("bob", "10.41.7.12 "),
        ("charlie", "10.41.7.100 "),
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(role) && l.contains(ip)),
            "no {role} at {ip}:\n{text}"
        );
    }
    for step in 1..=3 {
        assert!(
            text.contains(&format!("== step {step}: file identical")),
            "{text}"
        );
    }
    // Step 3 found the tracker across the LAN, at its LAN address (it is bound to
    // 0.0.0.0 and must announce what charlie can reach).
    assert!(
        text.contains("heard tracker \"tracker\" at 10.41.7.1:8000 (reply from 10.41.7.1:9000"),
        "{text}"
    );
    assert!(text.contains("across 4 hosts"), "{text}");
}

#[test]
fn lab_with_5_percent_loss_still_completes() {
    let (out, text) = lab(&["--loss", "5", "--size", "4194304"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("== step 3: file identical"), "{text}");
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("== the LAN dropped "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("no drop count");
    assert!(dropped > 0, "a 5% loss dropped nothing:\n{text}");
}

#[test]
fn lab_with_delay_slows_every_round_trip() {
    let (out, text) = lab(&["--delay", "25", "--steps", "3", "--size", "1048576"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("== step 3: file identical"), "{text}");
    // The discovery round trip crosses the bridge twice: at least 2 x 25 ms.
    let line = text
        .lines()
        .find(|l| l.contains("heard tracker") && l.contains(" after "))
        .expect("no discovery line");
    let ms: f64 = line
        .rsplit(" after ")
        .next()
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .expect("no discovery time");
    assert!(
        ms >= 50.0,
        "discovery took {ms} ms across a 25 ms LAN: {line}"
    );
}

#[test]
fn lab_alice_cut_off_mid_download_charlie_finishes_from_bob() {
    let (out, text) = lab(&[
        "--steps", "3", "--cut", "alice", "--size", "33554432", "--rate", "100",
    ]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cut alice off the LAN after charlie had"),
        "{text}"
    );
    assert!(text.contains("== step 3: file identical"), "{text}");
    // The summary line: bob (10.41.7.12) sent the chunks alice no longer could.
    let summary = text
        .lines()
        .find(|l| l.starts_with("lab.bin: "))
        .expect("no summary");
    let from_bob: usize = summary
        .split("10.41.7.12:8002 ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("no count for bob");
    assert!(from_bob > 32, "bob sent only {from_bob} of 64: {summary}");
}

#[test]
fn lab_interrupted_like_ctrl_c_removes_everything() {
    require_lab_programs();
    use std::os::unix::process::CommandExt;
    // Its own process group, so that SIGINT reaches it as a Ctrl-C at a terminal does.
    let mut command = Command::new("bash");
    command
        .arg(script())
        .arg("--bin")
        .arg(bin_dir())
        .args([
            "--steps", "3", "--cut", "alice", "--size", "33554432", "--rate", "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: signal() is async-signal-safe, as pre_exec requires. A terminal's Ctrl-C
    // meets a shell whose SIGINT is at its default; a shell that starts with SIGINT
    // ignored cannot trap it at all. A test run from a background job (`cargo test &`,
    // nohup, some CI runners) hands that "ignored" down, and the lab then ran to the end
    // and exited 0, so the child gets the default back first.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut first = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("== lab ") {
            first = line.clone();
        }
        if line.starts_with("== charlie --step 3") {
            break;
        }
    }
    let (prefix, dir) = (prefix(&first), lab_dir(&first));
    std::thread::sleep(Duration::from_millis(300));
    let pgid = child.id() as i32;
    // SAFETY: kill has no memory preconditions; the group is the one this test started.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "lab.sh ignored SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    for _ in lines {} // drain
    assert_eq!(status.code(), Some(130), "an interrupted lab exits 130");
    assert_no_namespaces_left(&prefix);
    assert_no_processes_left(&dir);
}

/// A lab whose option needs a program that is not installed stops before making
/// anything, with one line naming the program and its Debian package (here nft, hidden
/// by a PATH without /usr/sbin, for --loss).
#[test]
fn lab_names_a_missing_program_and_its_package() {
    require_root();
    let tools = tempfile::tempdir().unwrap();
    // tc and ip, which every lab needs, stay reachable; nft does not.
    for program in ["ip", "tc"] {
        let path = require_program(program, "iproute2");
        std::os::unix::fs::symlink(&path, tools.path().join(program)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", tools.path().display());
    assert!(
        !["/usr/bin/nft", "/bin/nft"]
            .iter()
            .any(|p| Path::new(p).exists()),
        "this test hides nft by leaving /usr/sbin off PATH"
    );
    let out = Command::new(require_program("bash", "bash"))
        .arg(script())
        .arg("--bin")
        .arg(bin_dir())
        .args(["--loss", "5"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("--loss needs the program nft (Debian package nftables)"),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("== lab "),
        "it began anyway: {out:?}"
    );
}

/// The helper every test uses for outside programs names the program and the package.
#[test]
fn require_program_names_the_program_and_its_package() {
    assert!(require_program("bash", "bash").ends_with("bash"));
    let panic = std::panic::catch_unwind(|| require_program("swarmlet-no-such-tool", "nothing"))
        .expect_err("a missing program must fail the test");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        msg,
        "needs swarmlet-no-such-tool (Debian package nothing): run scripts/test.sh, which installs it"
    );
}
