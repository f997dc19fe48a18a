//! Steps 1 and 2 through real processes on loopback: downloads, fallbacks, faults,
//! resume and the servers' error replies.

mod common;

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use common::*;
use swarmlet::hash::ChunkHash;
use swarmlet::wire::{ErrorCode, Message, Tolerance};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn download_ok(chunk_size: usize, size: usize) {
    let mut sys = System::new(size, chunk_size);
    sys.start_all();
    for step in ["1", "2"] {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let out = sys.charlie(&["--step", step]);
        assert!(out.status.success(), "step {step}: {}", stderr(&out));
        assert!(sys.check_file(), "step {step}: file differs");
        let summary = stdout(&out);
        assert!(summary.contains(&format!("{size} bytes")), "{summary}");
    }
    // Every chunk came from a peer that has it, and both peers served.
    assert!(!sys.served("alice").is_empty());
    assert!(!sys.served("bob").is_empty());
}

#[test]
fn steps_1_and_2_with_512k_chunks() {
    download_ok(512 * KIB, 7 * MIB + 12345);
}

#[test]
fn steps_1_and_2_with_1m_chunks() {
    download_ok(MIB, 9 * MIB + 1);
}

#[test]
fn steps_1_and_2_with_2m_chunks() {
    download_ok(2 * MIB, 13 * MIB - 3);
}

/// Index of a chunk file.ini lists on both peers.
fn shared_chunk(sys: &System) -> (usize, ChunkHash) {
    let m = sys.manifest();
    let i = m.chunks.iter().position(|c| c.peers.len() == 2).unwrap();
    (i, m.chunks[i].hash)
}

#[test]
fn chunk_deleted_from_alice_is_fetched_from_bob() {
    // Every chunk on both peers, then every other one deleted from alice while file.ini
    // still lists her for it: alice and bob start on the same queue, so alice's first
    // or second request is for a deleted chunk. (With the course's thirds, only the
    // shared middle third was deleted, and alice reached it only if she finished her own
    // third before bob had taken the whole middle one: on a loaded machine she sometimes
    // did not, and was never asked for a deleted chunk.)
    let mut sys = System::new(4 * MIB, 64 * KIB);
    share_everything(&sys);
    sys.start_all();
    let m = sys.manifest();
    let deleted: Vec<ChunkHash> = m.chunks.iter().step_by(2).map(|c| c.hash).collect();
    for h in &deleted {
        fs::remove_file(sys.chunk_dir("alice").join(h.file_name())).unwrap();
    }
    for step in ["1", "2"] {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let out = sys.charlie(&["--step", step]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(sys.check_file());
    }
    let alice: HashSet<ChunkHash> = sys.served("alice").into_iter().collect();
    for h in &deleted {
        assert!(!alice.contains(h), "alice cannot have sent a deleted chunk");
    }
    assert!(sys.proc("alice").log_text().contains("not found"));
}

#[test]
fn corrupted_chunks_at_alice_are_detected_and_fetched_from_bob() {
    let mut sys = System::new(4 * MIB, 512 * KIB);
    share_everything(&sys);
    // Corrupt every chunk alice has: whatever she is asked first is bad, deterministically.
    for c in sys.manifest().chunks {
        let path = sys.chunk_dir("alice").join(c.hash.file_name());
        let mut data = fs::read(&path).unwrap();
        data[1000] ^= 0xff;
        fs::write(&path, data).unwrap();
    }
    sys.start_all();
    let out = sys.charlie(&["--step", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sys.check_file());
    let err = stderr(&out);
    assert!(err.contains("does not match its SHA-1"), "{err}");
    assert!(!sys.served("alice").is_empty());
    // Every chunk alice sent was refetched from bob.
    let bob: HashSet<ChunkHash> = sys.served("bob").into_iter().collect();
    for h in sys.served("alice") {
        assert!(
            bob.contains(&h),
            "chunk {h} from alice must come again from bob"
        );
    }
}

#[test]
fn corrupted_chunk_only_source_alice_reports_the_hash_failure() {
    // The same corruption on a chunk only alice has must be detected (not stored) and
    // named in the error, deterministically.
    let mut sys = System::new(4 * MIB, 512 * KIB);
    sys.start_all();
    let m = sys.manifest();
    let h = m.chunks[0].hash;
    let path = sys.chunk_dir("alice").join(h.file_name());
    let mut data = fs::read(&path).unwrap();
    data[0] ^= 1;
    fs::write(&path, data).unwrap();
    let out = sys.charlie(&["--step", "2"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("chunk 0"), "{err}");
    assert!(err.contains("does not match its SHA-1"), "{err}");
    assert!(!sys.chunk_dir("charlie").join(h.file_name()).exists());
}

/// Puts every chunk on both peers, so either can finish the download alone.
fn share_everything(sys: &System) {
    let mut m = sys.manifest();
    for c in &mut m.chunks {
        for p in ["alice", "bob"] {
            let dst = sys.chunk_dir(p).join(c.hash.file_name());
            if !dst.exists() {
                let other = if p == "alice" { "bob" } else { "alice" };
                fs::copy(sys.chunk_dir(other).join(c.hash.file_name()), dst).unwrap();
            }
        }
        c.peers = vec!["alice".into(), "bob".into()];
    }
    m.save(&sys.root().join("config/file.ini")).unwrap();
}

/// Waits until charlie has at least `n` chunks on disk (or gives up after 60 s).
fn wait_for_chunks(sys: &System, charlie: &mut Proc, n: usize) {
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = charlie_written(&sys.chunk_dir("charlie"), 512 * KIB as u64);
        if have >= n {
            return;
        }
        assert!(
            charlie.child.try_wait().unwrap().is_none(),
            "charlie ended early"
        );
        assert!(std::time::Instant::now() < end, "charlie made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn peer_killed_mid_download_charlie_finishes_from_the_other() {
    let mut sys = System::new(96 * MIB, 512 * KIB);
    share_everything(&sys);
    sys.start_all();
    let mut charlie = sys.spawn_charlie(&["--step", "1"]);
    wait_for_chunks(&sys, &mut charlie, 8);
    assert!(
        charlie.child.try_wait().unwrap().is_none(),
        "must kill mid-download"
    );
    sys.proc("alice").kill();
    let status = charlie
        .wait_timeout(Duration::from_secs(120))
        .expect("charlie hangs");
    assert!(status.success(), "{}", charlie.log_text());
    assert!(sys.check_file());
    let total = sys.manifest().chunks.len();
    assert!(sys.served("alice").len() < total);
}

#[test]
fn charlie_killed_and_restarted_never_refetches_verified_chunks() {
    let mut sys = System::new(96 * MIB, 512 * KIB);
    sys.start_all();
    let mut charlie = sys.spawn_charlie(&["--step", "2"]);
    wait_for_chunks(&sys, &mut charlie, 20);
    charlie.kill();
    let hashes: Vec<ChunkHash> = sys.manifest().chunks.iter().map(|c| c.hash).collect();
    let verified = charlie_verified(
        &sys.chunk_dir("charlie"),
        "test.bin",
        &hashes,
        512 * KIB as u64,
    );
    assert!(!verified.is_empty());
    let out = sys.charlie(&["--step", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sys.check_file());
    let summary = stdout(&out);
    assert!(
        summary.contains(&format!("resumed {}", verified.len())),
        "{summary}"
    );
    // Peers' logs cover both runs: a verified chunk must have been served exactly once.
    let mut served = sys.served("alice");
    served.extend(sys.served("bob"));
    for h in &verified {
        let n = served.iter().filter(|x| *x == h).count();
        assert_eq!(n, 1, "verified chunk {h} was served {n} times");
    }
    assert!(served.len() >= sys.manifest().chunks.len());
}

#[test]
fn chunk_no_peer_has_fails_and_is_named() {
    let mut sys = System::new(4 * MIB, 512 * KIB);
    sys.start_all();
    let (i, h) = shared_chunk(&sys);
    for p in ["alice", "bob"] {
        fs::remove_file(sys.chunk_dir(p).join(h.file_name())).unwrap();
    }
    let out = sys.charlie(&["--step", "2"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("chunk {i} ")), "{err}");
    assert!(err.contains("CHUNK_NOT_FOUND"), "{err}");
    assert!(!sys.chunk_dir("charlie").join("test.bin").exists());
}

#[test]
fn two_charlies_at_once_both_finish() {
    let mut sys = System::new(32 * MIB, 512 * KIB);
    sys.start_all();
    // A second root for the second charlie: same config, its own chunks/charlie.
    let other = tempfile::tempdir().unwrap();
    fs::create_dir_all(other.path().join("config")).unwrap();
    fs::copy(
        sys.root().join("config/peers.ini"),
        other.path().join("config/peers.ini"),
    )
    .unwrap();
    let mut a = sys.spawn_charlie(&["--step", "2"]);
    let b = std::thread::spawn({
        let root = other.path().to_path_buf();
        move || charlie_in(&root, &["--step", "2"])
    });
    let status = a
        .wait_timeout(Duration::from_secs(120))
        .expect("charlie hangs");
    assert!(status.success(), "{}", a.log_text());
    let out = b.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sys.check_file());
    let want = fs::read(sys.root().join("files/test.bin")).unwrap();
    let got = fs::read(other.path().join("chunks/charlie/test.bin")).unwrap();
    assert!(want == got, "second charlie's file differs");
}

fn error_reply(code: ErrorCode) -> Vec<u8> {
    Message::Error(code).encode().unwrap()
}

#[test]
fn servers_answer_the_three_errors_and_keep_serving() {
    let mut sys = System::new(2 * MIB, 512 * KIB);
    sys.start_all();
    let alice = sys.addr("alice");
    let tracker = sys.addr("tracker");
    let garbage = [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 2];
    let get_file_info = Message::GetFileInfo.encode().unwrap();
    let unknown = Message::GetChunk(ChunkHash::of(b"nobody has this"))
        .encode()
        .unwrap();
    let cases = [
        (alice, &garbage[..], ErrorCode::InvalidMessageFormat),
        (alice, &get_file_info, ErrorCode::InvalidRequest),
        (alice, &unknown, ErrorCode::ChunkNotFound),
        (tracker, &garbage, ErrorCode::InvalidMessageFormat),
        (tracker, &unknown, ErrorCode::InvalidRequest),
    ];
    for (server, request, code) in cases {
        assert_eq!(
            exchange(server, request, 12),
            error_reply(code),
            "{request:02x?}"
        );
    }

    // All three on one connection, then a real request: the connection keeps serving.
    let h = sys.manifest().chunks[0].hash;
    let data = fs::read(sys.chunk_dir("alice").join(h.file_name())).unwrap();
    let chunk = Message::Chunk { hash: h, data }.encode().unwrap();
    let mut req = Vec::new();
    for r in [
        &garbage[..],
        &get_file_info,
        &unknown,
        &Message::GetChunk(h).encode().unwrap(),
    ] {
        req.extend_from_slice(r);
    }
    let reply = exchange(alice, &req, 36 + chunk.len());
    assert_eq!(
        &reply[..12],
        &error_reply(ErrorCode::InvalidMessageFormat)[..]
    );
    assert_eq!(&reply[12..24], &error_reply(ErrorCode::InvalidRequest)[..]);
    assert_eq!(&reply[24..36], &error_reply(ErrorCode::ChunkNotFound)[..]);
    assert!(reply[36..] == chunk[..]);

    // The tracker still answers FILE_INFO.
    let mut s = std::net::TcpStream::connect(tracker).unwrap();
    std::io::Write::write_all(&mut s, &get_file_info).unwrap();
    let msg = swarmlet::wire::read_message(&mut s, 1 << 20, Tolerance::default()).unwrap();
    match msg {
        Message::FileInfo(fi) => {
            assert_eq!(fi.filename, "test.bin");
            assert_eq!(fi.chunks.len(), 4);
            assert_eq!(fi.chunks[0].peers, vec![alice]);
        }
        other => panic!("expected FILE_INFO, got {other:?}"),
    }
}

#[test]
fn three_peers_including_a_generic_peer_by_name() {
    let mut sys = System::with_peers(6 * MIB, 512 * KIB, &["alice", "bob", "carol"]);
    sys.start_all();
    for step in ["1", "2"] {
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let out = sys.charlie(&["--step", step]);
        assert!(out.status.success(), "step {step}: {}", stderr(&out));
        assert!(sys.check_file());
    }
    assert!(
        !sys.served("carol").is_empty(),
        "carol (peer --name carol) served nothing"
    );
}

#[test]
fn tracker_refuses_to_start_when_file_ini_names_an_unknown_peer() {
    let sys = System::new(MIB, 512 * KIB);
    let mut m = sys.manifest();
    m.chunks[0].peers = vec!["mallory".into()];
    m.save(&sys.root().join("config/file.ini")).unwrap();
    // --no-udp: in the host's namespace a tracker must not listen on 0.0.0.0:9000.
    let out = std::process::Command::new(bin("tracker"))
        .arg("--root")
        .arg(sys.root())
        .arg("--no-udp")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("\"mallory\" is not in peers.ini"), "{err}");
    // Charlie's step 1 says the same about the same file.
    let out = sys.charlie(&["--step", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"mallory\" is not in peers.ini"));
}

/// Endgame: every chunk is listed on bob and on a fake peer that accepts the connection,
/// reads the requests and never answers. Charlie must finish from bob (fetching a second
/// copy of whatever it asked the staller for) and end without waiting for the staller's
/// reply deadline: the bound below is a third of it, and a hang would take all of it.
#[test]
fn a_peer_that_never_answers_does_not_hold_up_the_end() {
    use std::io::Read;
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use swarmlet::config::PeersConfig;

    // 97 chunks: enough work for bob that the staller's worker has connected and been
    // given a chunk long before bob could finish alone (with 17 chunks, bob could finish
    // before the staller was ever asked on a loaded machine).
    let mut sys = System::with_peers(48 * MIB + 7, 512 * KIB, &["bob"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(stall_addr) = listener.local_addr().unwrap() else {
        unreachable!("bound to IPv4")
    };
    let (connections, received) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    {
        let (connections, received) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                connections.fetch_add(1, Ordering::SeqCst);
                let received = received.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    // Reads until charlie closes (or aborts) the connection.
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        received.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
    }
    let mut entries = sys.peers.entries().to_vec();
    entries.push(("stall".into(), stall_addr));
    sys.peers = PeersConfig::from_entries(entries);
    sys.peers
        .save(&sys.root().join("config/peers.ini"))
        .unwrap();
    let mut manifest = sys.manifest();
    for c in &mut manifest.chunks {
        c.peers.push("stall".into());
    }
    manifest.save(&sys.root().join("config/file.ini")).unwrap();
    sys.start("bob", "bob", &[]);

    let start = Instant::now();
    let out = sys.charlie(&["--step", "1", "--timeout-ms", "60000"]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sys.check_file(), "file differs");
    assert!(
        took < Duration::from_secs(20),
        "charlie waited for the staller: {took:?}"
    );
    // The staller was asked (so bob had to fetch a second copy), on one connection.
    assert!(
        received.load(Ordering::SeqCst) > 0,
        "the staller was never asked"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let summary = stdout(&out);
    assert!(summary.contains("; endgame duplicates "), "{summary}");
    assert!(summary.contains("stall 0"), "{summary}");
    let n = sys.manifest().chunks.len();
    assert!(summary.contains(&format!("bob {n}")), "{summary}");
}
