//! Faults with nothing lost: charlie SIGKILLed again and again over one download, the
//! disk filling up under it (a small tmpfs in a private mount namespace), and a tracker
//! that is not there.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use swarmlet::hash::ChunkHash;
use swarmlet::store::TEMP_PREFIX;

/// What charlie's file is made of: its chunks' hashes in order and their size.
struct Chunks {
    hashes: Vec<ChunkHash>,
    size: u64,
}

impl Chunks {
    fn of(sys: &System, size: u64) -> Chunks {
        let hashes = sys.manifest().chunks.iter().map(|c| c.hash).collect();
        Chunks { hashes, size }
    }
}

/// What is in chunks/charlie/: the verified chunks (in chunk files, in the partial file
/// `test.bin.part-<S>`, or in the finished `test.bin` once `merged_ok`), and how many
/// temporary files a killed writer left. Panics on anything else: a chunk file whose bytes
/// do not match its name, a finished file before the end, a stray name.
fn charlie_state(dir: &Path, merged_ok: bool, c: &Chunks) -> (HashSet<ChunkHash>, usize) {
    let mut temps = 0;
    let part = format!("test.bin.part-{}", c.size);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.starts_with(TEMP_PREFIX) {
                temps += 1;
            } else if ChunkHash::from_file_name(&name).is_none() && name != part {
                assert!(merged_ok && name == "test.bin", "unexpected file {name}");
            }
        }
    }
    (charlie_verified(dir, "test.bin", &c.hashes, c.size), temps)
}

#[test]
fn charlie_killed_20_times_finishes_with_a_correct_file_and_no_refetch() {
    const KILLS: usize = 20;
    // 512 chunks of 64 KiB: fine-grained enough that kills land between, during and
    // after chunk transfers, hashes and writes, and enough that 20 kills never reach the
    // end (each kill lets at most a few dozen chunks through).
    let mut sys = System::new(32 << 20, 64 << 10);
    sys.start_all();
    let chunks = Chunks::of(&sys, 64 << 10);
    let total = sys.manifest().chunks.len();
    let dir = sys.chunk_dir("charlie");
    let mut rng = Rng(0x5eed_2024_0417);
    // For each kill: the chunks verified on disk right after it, and how many chunks each
    // peer had logged as served by then.
    let mut after_kill: Vec<(HashSet<ChunkHash>, usize, usize)> = Vec::new();
    let mut temps_seen = 0;
    for k in 0..KILLS {
        let have = charlie_written(&dir, chunks.size);
        let mut charlie = sys.spawn_charlie(&["--step", "2"]);
        // Every other kill comes at a random time from start (startup, asking the
        // tracker, re-verifying what is on disk); the others once a random number of new
        // chunks has landed, so they hit the middle of the transfer.
        let label = if k % 2 == 0 {
            let ms = rng.below(25);
            std::thread::sleep(Duration::from_millis(ms));
            format!("{ms} ms after start")
        } else {
            let target = have + 1 + rng.below(8) as usize;
            let end = Instant::now() + Duration::from_secs(30);
            while charlie_written(&dir, chunks.size) < target {
                assert!(Instant::now() < end, "kill {k}: no progress");
                std::thread::sleep(Duration::from_micros(200));
            }
            format!("at {target} chunks")
        };
        assert!(
            charlie.child.try_wait().unwrap().is_none(),
            "kill {k} ({label}): charlie had already ended:\n{}",
            charlie.log_text()
        );
        charlie.kill(); // SIGKILL, by pid
        // The peers' connection threads end once charlie's sockets are closed; only then
        // are their "sent chunk" logs complete.
        for peer in ["alice", "bob"] {
            let pid = sys.proc(peer).pid();
            assert_eq!(wait_threads(pid, 1, Duration::from_secs(5)), 1);
        }
        let (verified, temps) = charlie_state(&dir, false, &chunks);
        temps_seen += temps;
        let (a, b) = (sys.served("alice").len(), sys.served("bob").len());
        eprintln!(
            "kill {k:2} {label:>18}: {} of {total} chunks verified on disk, {temps} temp file(s)",
            verified.len()
        );
        after_kill.push((verified, a, b));
    }
    let out = sys.charlie(&["--step", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sys.check_file(), "merged file differs after {KILLS} kills");
    let (verified, temps) = charlie_state(&dir, true, &chunks);
    assert_eq!(verified.len(), total);
    assert_eq!(
        temps, 0,
        "the last run must clear killed writers' temp files"
    );
    let resumed = after_kill.last().unwrap().0.len();
    assert!(resumed > 0 && resumed < total);
    assert!(
        stdout(&out).contains(&format!("resumed {resumed};")),
        "{}",
        stdout(&out)
    );

    // No chunk was fetched again once verified: every "sent chunk h" logged after the
    // kill that first found h verified on disk would be a refetch.
    let alice = sys.served("alice");
    let bob = sys.served("bob");
    let mut first_verified: HashMap<ChunkHash, usize> = HashMap::new();
    for (k, (v, _, _)) in after_kill.iter().enumerate() {
        for h in v {
            first_verified.entry(*h).or_insert(k);
            // Once verified, a chunk stays (charlie never deletes a verified chunk).
            for later in &after_kill[k..] {
                assert!(later.0.contains(h), "verified chunk {h} disappeared");
            }
        }
    }
    for (h, k) in &first_verified {
        let (_, a, b) = after_kill[*k];
        let again = alice[a..]
            .iter()
            .chain(&bob[b..])
            .filter(|x| *x == h)
            .count();
        assert_eq!(
            again, 0,
            "chunk {h}, verified by kill {k}, was fetched again"
        );
    }
    eprintln!(
        "{KILLS} kills: {} chunks verified before the last run, {temps_seen} temp files \
         left by kills (all cleared), {} chunks served in all for {total}",
        first_verified.len(),
        alice.len() + bob.len()
    );
}

/// Runs charlie twice in a private mount namespace whose `chunks/` is a 5 MiB tmpfs with
/// `ballast` bytes taken: first as is, then after deleting the ballast. Returns, for each
/// run, its exit code, its stderr and a copy of chunks/charlie/ as it left it (in `out`).
fn disk_full_runs(
    sys: &System,
    ballast: usize,
    out: &tempfile::TempDir,
) -> Vec<(i32, String, PathBuf)> {
    let out = out.path();
    let script = r#"
        set -u
        mount -t tmpfs -o size=5m swarmlet-test "$ROOT/chunks" || exit 90
        head -c "$BALLAST" /dev/zero > "$ROOT/chunks/ballast" || exit 91
        for run in 1 2; do
            "$CHARLIE" --root "$ROOT" --step 2 > "$OUT/$run.out" 2> "$OUT/$run.err"
            echo $? > "$OUT/$run.rc"
            cp -a "$ROOT/chunks/charlie" "$OUT/$run.dir" 2>/dev/null || mkdir "$OUT/$run.dir"
            rm -f "$ROOT/chunks/ballast"
        done
    "#;
    require_program("mount", "mount");
    let status = Command::new(require_program("unshare", "util-linux"))
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("ROOT", sys.root())
        .env("BALLAST", ballast.to_string())
        .env("CHARLIE", bin("charlie"))
        .env("OUT", out)
        .status()
        .expect("unshare (util-linux) is needed for the disk-full test");
    assert!(
        status.success(),
        "cannot set up the small tmpfs (needs root: unshare --mount, mount -t tmpfs): {status}"
    );
    (1..=2)
        .map(|run| {
            let rc = fs::read_to_string(out.join(format!("{run}.rc"))).unwrap();
            let err = fs::read_to_string(out.join(format!("{run}.err"))).unwrap();
            (
                rc.trim().parse().unwrap(),
                err,
                out.join(format!("{run}.dir")),
            )
        })
        .collect()
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[test]
fn a_full_disk_mid_download_is_a_clear_error_and_a_later_run_finishes() {
    // 2 MiB in 8 chunks of 256 KiB; the tmpfs is 5 MiB.
    let mut sys = System::new(2 << 20, 256 << 10);
    sys.start_all();
    let chunks = Chunks::of(&sys, 256 << 10);
    let want = fs::read(sys.root().join("files/test.bin")).unwrap();
    let total = sys.manifest().chunks.len();
    let fresh = |sys: &System| {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        fs::create_dir_all(sys.chunk_dir("charlie")).unwrap();
    };
    // Room for about 3 chunks: the disk fills mid-download.
    fresh(&sys);
    let out = tempfile::tempdir().unwrap();
    let runs = disk_full_runs(&sys, 4 << 20, &out);
    let (rc, err, dir) = &runs[0];
    assert_eq!(*rc, 1, "first run should fail:\n{err}");
    let line = error_line(err);
    assert_eq!(line.matches("No space left on device").count(), 1, "{line}");
    assert!(line.contains("cannot store chunk"), "{line}");
    let (verified, temps) = charlie_state(dir, false, &chunks);
    assert_eq!(temps, 0, "temporary files left");
    assert!(
        !verified.is_empty() && verified.len() < total,
        "{}",
        verified.len()
    );
    eprintln!(
        "disk full after {} of {total} chunks: {line}",
        verified.len()
    );
    // After the space is freed, the next run resumes and finishes.
    let (rc, err, dir) = &runs[1];
    assert_eq!(*rc, 0, "second run failed:\n{err}");
    let (all, temps) = charlie_state(dir, true, &chunks);
    assert_eq!((all.len(), temps), (total, 0));
    assert!(
        fs::read(dir.join("test.bin")).unwrap() == want,
        "file differs"
    );
    assert!(
        err.contains(&format!("resuming: {} chunks", verified.len())),
        "{err}"
    );
    // Room for the file once and a half: enough, since every byte is written once
    // (chunk files and a merged copy would need twice the file).
    fresh(&sys);
    let out = tempfile::tempdir().unwrap();
    let runs = disk_full_runs(&sys, 2 << 20, &out);
    let (rc, err, dir) = &runs[0];
    assert_eq!(*rc, 0, "a file that fits once must download:\n{err}");
    assert!(
        fs::read(dir.join("test.bin")).unwrap() == want,
        "file differs"
    );
    assert_eq!(charlie_state(dir, true, &chunks).0.len(), total);
}

#[test]
fn a_tracker_that_is_down_is_a_clear_error_after_bounded_retries() {
    let sys = System::new(64 << 10, 16 << 10);
    // Nothing listens on the tracker's port.
    let t = Instant::now();
    let out = sys.charlie(&["--step", "2"]);
    let took = t.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = error_line(&err);
    let tracker = sys.addr("tracker");
    assert!(
        line.contains(&format!("tracker {tracker} unreachable after 3 attempts")),
        "{line}"
    );
    assert_eq!(line.matches("Connection refused").count(), 1, "{line}");
    // Three attempts, 500 ms apart: a second or so, never long.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Step 1 with both peers down names what failed, also within a bounded time.
    let t = Instant::now();
    let out = sys.charlie(&["--step", "1"]);
    let took = t.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = error_line(&err);
    assert!(line.contains("could not be downloaded"), "{line}");
    // One cause per group of chunks, not one per chunk.
    assert!(
        line.contains("alice and bob refused the connection"),
        "{line}"
    );
    assert_eq!(line.matches("refused").count(), 3, "{line}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
