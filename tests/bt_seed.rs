//! `swarmlet seed` and the download connection (`bt::fetch`) against libtorrent, over
//! loopback, as real processes: libtorrent downloads a multi-file torrent from us, we
//! download it from libtorrent, and our own connection fetches every piece from our own
//! seeder. Files must come out identical.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bt::{
    Killed, LT_PEER, TREE_PIECES, assert_same_tree, lt_seed, make_torrent_ours as make_torrent,
    python, swarmlet_seed,
};
use common::random_bytes;
use swarmlet::bt::fetch::{PeerConnection, Timeouts};
use swarmlet::bt::metainfo::Metainfo;
use swarmlet::bt::peer_wire::PeerId;
use swarmlet::bt::seed::{self, Seeder};
use swarmlet::digest::Digest;
use swarmlet::storage::PieceStore;
use swarmlet::storage::files::FilesStore;

#[test]
fn libtorrent_downloads_a_multi_file_torrent_from_swarmlet_seed() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let (mut seed, addr) = swarmlet_seed(&torrent, d.path(), &[]);
    let leech = d.path().join("lt");
    let o = Command::new(python())
        .args([
            LT_PEER,
            "leech",
            torrent.to_str().unwrap(),
            leech.to_str().unwrap(),
        ])
        .arg(addr.to_string())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "libtorrent: {out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Measured once, never asserted: libtorrent's rate from us on loopback.
    let f: Vec<&str> = out.split_whitespace().collect();
    if let [_, bytes, secs] = f[..] {
        let (b, s): (f64, f64) = (bytes.parse().unwrap(), secs.parse().unwrap());
        eprintln!(
            "libtorrent <- swarmlet seed: {b} bytes in {s:.3} s ({:.1} MB/s)",
            b / s / 1e6
        );
    }
    assert_same_tree(d.path(), &leech);
    // SIGTERM: the seed exits 0.
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(seed.0.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = seed.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "seed did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "seed exited {status}");
}

#[test]
fn swarmlet_seed_refuses_incomplete_data_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let b = d.path().join("t/sub/deep/b.bin");
    let mut data = std::fs::read(&b).unwrap();
    data[70_000] ^= 1;
    std::fs::write(&b, data).unwrap();
    let o = Command::new(common::bin("swarmlet"))
        .args(["seed", torrent.to_str().unwrap(), "--dir"])
        .arg(d.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("1 of {TREE_PIECES} pieces are missing or bad")),
        "{err}"
    );
}

#[test]
fn swarmlet_download_fetches_every_piece_from_a_libtorrent_seeder() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let (_lt, port) = lt_seed(&torrent, d.path());
    let ours = d.path().join("ours");
    let o = Command::new(common::bin("swarmlet"))
        .args(["download", torrent.to_str().unwrap(), "--dir"])
        .arg(&ours)
        .args([
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "swarmlet <- libtorrent: {}",
        String::from_utf8_lossy(&o.stdout).trim()
    );
    assert_same_tree(d.path(), &ours);
    // Run again on complete data: nothing to fetch, exit 0 at once.
    let o = Command::new(common::bin("swarmlet"))
        .args(["download", torrent.to_str().unwrap(), "--dir"])
        .arg(&ours)
        .args([
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("downloaded 0 bytes"));
}

/// The library's connection against the library's seeder, in one process: every piece
/// fetched, checked against the torrent's SHA-1s, written through a `FilesStore`; and
/// the abort handle wakes a fetch blocked on a peer.
#[test]
fn peer_connection_fetches_every_piece_from_our_seeder() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let m = Metainfo::read(&torrent).unwrap();
    let layout = m.layout().unwrap();
    let src = FilesStore::create(d.path(), layout.clone()).unwrap();
    assert!(src.recheck(&m.digests()).unwrap().is_full());
    let seeder = Seeder::new(
        m.info_hash,
        PeerId(*b"-SW0001-seedseedseed"),
        Arc::new(src),
        &layout,
    );
    let addr = seed::spawn("127.0.0.1:0", seeder.clone()).unwrap();

    let dst = FilesStore::create(d.path().join("ours"), layout.clone()).unwrap();
    let id = PeerId(*b"-SW0001-leechleechle");
    let n = layout.piece_count();
    let (mut conn, has) =
        PeerConnection::connect(addr, m.info_hash, id, n, &Timeouts::default()).unwrap();
    assert!(has.is_full());
    let digests = m.digests();
    let mut buf = Vec::new();
    for (i, want) in digests.iter().enumerate() {
        conn.fetch_piece(i, layout.piece_len(i), &mut buf, &mut |_| {})
            .unwrap();
        assert_eq!(Digest::of(want.algo(), &buf), *want, "piece {i}");
        dst.write_piece(i, &buf).unwrap();
    }
    conn.idle(&mut |_| {}).unwrap();
    assert_same_tree(d.path(), &d.path().join("ours"));
    assert_eq!(seeder.uploaded(), m.total_length());

    // Another torrent's handshake is refused by the seeder (the connection closes).
    let other = swarmlet::bt::metainfo::InfoHash([7; 20]);
    assert!(PeerConnection::connect(addr, other, id, n, &Timeouts::default()).is_err());

    // The abort handle ends a fetch blocked on a peer that unchokes and then sends
    // nothing: a hand-made peer on a real socket.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let ih = m.info_hash;
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        use swarmlet::bt::peer_wire::{Handshake, Message, Reserved, bitfield_from};
        let (mut s, _) = silent.accept().unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).unwrap();
        let ours = Handshake {
            reserved: Reserved::NONE,
            info_hash: ih.0,
            peer_id: PeerId([1; 20]),
        };
        s.write_all(&ours.encode()).unwrap();
        let mut out = Message::Bitfield(bitfield_from(n as u32, |_| true))
            .to_bytes()
            .unwrap();
        out.extend(Message::Unchoke.to_bytes().unwrap());
        s.write_all(&out).unwrap();
        // Read requests until the other side goes away; answer none.
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(k) if k > 0) {}
    });
    let (conn, _) = PeerConnection::connect(silent_addr, ih, id, n, &Timeouts::default()).unwrap();
    let abort = conn.abort_handle();
    let len = layout.piece_len(0);
    let started = Instant::now();
    let h = std::thread::spawn(move || {
        let mut conn = conn;
        let mut buf = Vec::new();
        conn.fetch_piece(0, len, &mut buf, &mut |_| {})
    });
    std::thread::sleep(Duration::from_millis(300));
    swarmlet::download::AbortHandle::abort(&abort);
    assert!(h.join().unwrap().is_err(), "an aborted fetch fails");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the abort woke the fetch"
    );
    t.join().unwrap();
}

/// A hand-made peer on a real socket: handshake, full bitfield, unchoke, then `script`
/// with the stream and the piece data it serves.
fn scripted_peer(
    ih: swarmlet::bt::metainfo::InfoHash,
    n: usize,
    script: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    use swarmlet::bt::peer_wire::{Handshake, Message, Reserved, bitfield_from};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).unwrap();
        let ours = Handshake {
            reserved: Reserved::NONE,
            info_hash: ih.0,
            peer_id: PeerId([2; 20]),
        };
        s.write_all(&ours.encode()).unwrap();
        let mut out = Message::Bitfield(bitfield_from(n as u32, |_| true))
            .to_bytes()
            .unwrap();
        out.extend(Message::Unchoke.to_bytes().unwrap());
        s.write_all(&out).unwrap();
        script(&mut s);
    });
    (addr, t)
}

/// Reads messages until `count` requests came; returns them.
fn read_requests(
    s: &mut std::net::TcpStream,
    n: usize,
    count: usize,
) -> Vec<swarmlet::bt::peer_wire::BlockRequest> {
    use swarmlet::bt::peer_wire::{Limits, Message, read_message};
    let mut got = Vec::new();
    while got.len() < count {
        if let Message::Request(r) = read_message(s, &Limits::new(n as u32)).unwrap() {
            got.push(r);
        }
    }
    got
}

/// A choke in the middle of a piece: the blocks already sent are kept, the dropped
/// requests are sent again after the unchoke, and the piece comes out whole; a HAVE and
/// a late block arriving while choked are taken in stride.
#[test]
fn a_choke_mid_piece_is_survived_and_dropped_requests_are_asked_again() {
    use std::io::Write;
    use swarmlet::bt::peer_wire::{Message, piece_header};
    let ih = swarmlet::bt::metainfo::InfoHash([9; 20]);
    let piece: Vec<u8> = random_bytes(4 * 16384 + 100, 5); // 5 blocks, the last short
    let served = piece.clone();
    let n = 3;
    let (addr, t) = scripted_peer(ih, n, move |s| {
        let reqs = read_requests(s, n, 5);
        let block = |s: &mut std::net::TcpStream, r: &swarmlet::bt::peer_wire::BlockRequest| {
            let mut m = piece_header(r.index, r.begin, r.length).unwrap().to_vec();
            m.extend_from_slice(&served[r.begin as usize..(r.begin + r.length) as usize]);
            s.write_all(&m).unwrap();
        };
        // Two blocks, then choke (BEP 3: the other requests are dropped), a have, and
        // a late block that was already on its way.
        block(s, &reqs[0]);
        block(s, &reqs[1]);
        s.write_all(&Message::Choke.to_bytes().unwrap()).unwrap();
        s.write_all(&Message::Have(2).to_bytes().unwrap()).unwrap();
        block(s, &reqs[4]);
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(&Message::Unchoke.to_bytes().unwrap()).unwrap();
        // Only the two still missing are asked again.
        let again = read_requests(s, n, 2);
        assert_eq!(
            again.iter().map(|r| r.begin).collect::<Vec<_>>(),
            vec![2 * 16384, 3 * 16384]
        );
        for r in &again {
            block(s, r);
        }
        // Wait for the other side to finish.
        let mut sink = [0u8; 64];
        while matches!(std::io::Read::read(s, &mut sink), Ok(k) if k > 0) {}
    });
    let (mut conn, _) =
        PeerConnection::connect(addr, ih, PeerId([3; 20]), n, &Timeouts::default()).unwrap();
    let mut buf = vec![0xEE; 7];
    let mut haves = Vec::new();
    conn.fetch_piece(0, piece.len() as u64, &mut buf, &mut |i| haves.push(i))
        .unwrap();
    assert!(buf == piece, "the piece came out whole");
    drop(conn);
    t.join().unwrap();
}

/// A block of a piece we did not ask for, or not on a block boundary, breaks the
/// protocol: the fetch fails with a protocol error (the engine drops the peer).
#[test]
fn unsolicited_and_misaligned_blocks_are_refused() {
    use std::io::Write;
    use swarmlet::bt::peer_wire::piece_header;
    use swarmlet::download::FetchCause;
    let ih = swarmlet::bt::metainfo::InfoHash([8; 20]);
    let n = 3;
    for (index, begin) in [(1u32, 0u32), (0, 100)] {
        let (addr, t) = scripted_peer(ih, n, move |s| {
            read_requests(s, n, 1);
            let mut m = piece_header(index, begin, 16).unwrap().to_vec();
            m.extend_from_slice(&[0u8; 16]);
            let _ = s.write_all(&m);
            let mut sink = [0u8; 64];
            while matches!(std::io::Read::read(s, &mut sink), Ok(k) if k > 0) {}
        });
        let (mut conn, _) =
            PeerConnection::connect(addr, ih, PeerId([3; 20]), n, &Timeouts::default()).unwrap();
        let e = conn
            .fetch_piece(0, 16384, &mut Vec::new(), &mut |_| {})
            .unwrap_err();
        assert_eq!(e.cause(), FetchCause::Protocol, "{index}:{begin}: {e}");
        drop(conn);
        t.join().unwrap();
    }
}

/// Hostile requests to our seeder drop that peer (the connection closes) and only
/// that peer: past the piece, over 16 KiB, a piece it lacks; an MSE opening is closed
/// on its first byte; another torrent's handshake is not answered.
#[test]
fn the_seeder_drops_peers_that_break_the_rules() {
    use std::io::{Read, Write};
    use swarmlet::bt::peer_wire::{
        BlockRequest, Handshake, Limits, Message, Reserved, read_handshake, read_message,
    };
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let m = Metainfo::read(&torrent).unwrap();
    let layout = m.layout().unwrap();
    let store = FilesStore::create(d.path(), layout.clone()).unwrap();
    // Every piece but the last verifies: the last is "one we lack".
    let mut digests = m.digests();
    let last = digests.len() - 1;
    digests[last] = Digest::of(digests[last].algo(), b"not it");
    store.recheck(&digests).unwrap();
    let seeder = Seeder::new(m.info_hash, PeerId([5; 20]), Arc::new(store), &layout);
    let addr = seed::spawn("127.0.0.1:0", seeder.clone()).unwrap();
    let n = layout.piece_count() as u32;
    let limits = Limits::new(n);

    // Connects, handshakes, becomes interested and waits for the unchoke.
    let open = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let h = Handshake {
            reserved: Reserved::NONE,
            info_hash: m.info_hash.0,
            peer_id: PeerId([6; 20]),
        };
        s.write_all(&h.encode()).unwrap();
        assert_eq!(read_handshake(&mut s).unwrap().info_hash, m.info_hash.0);
        let Message::Bitfield(bits) = read_message(&mut s, &limits).unwrap() else {
            panic!("no bitfield")
        };
        assert!(!swarmlet::bt::peer_wire::bitfield_has(&bits, n - 1));
        assert!(swarmlet::bt::peer_wire::bitfield_has(&bits, 0));
        s.write_all(&Message::Interested.to_bytes().unwrap())
            .unwrap();
        assert_eq!(read_message(&mut s, &limits).unwrap(), Message::Unchoke);
        s
    };
    let closed = |s: &mut std::net::TcpStream| {
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(0) | Err(_))
    };
    let bad = [
        BlockRequest {
            index: 0,
            begin: 65536 - 100,
            length: 16384,
        },
        BlockRequest {
            index: 0,
            begin: 0,
            length: 32768,
        },
        BlockRequest {
            index: n - 1,
            begin: 0,
            length: 16,
        },
    ];
    for r in bad {
        let mut s = open();
        s.write_all(&Message::Request(r).to_bytes().unwrap())
            .unwrap();
        assert!(closed(&mut s), "{r:?} did not drop the peer");
    }
    // A good request is still answered (after all those), block and header in place.
    let mut s = open();
    let r = BlockRequest {
        index: 1,
        begin: 16384,
        length: 16384,
    };
    s.write_all(&Message::Request(r).to_bytes().unwrap())
        .unwrap();
    let Message::Piece { index, begin, data } = read_message(&mut s, &limits).unwrap() else {
        panic!("no piece")
    };
    assert_eq!((index, begin, data.len()), (1, 16384, 16384));
    // An MSE opening (first byte not 19) is closed at once, without an answer.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x8F; 96]).unwrap();
    assert!(closed(&mut s));
    // Another torrent: no handshake back.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = Handshake {
        reserved: Reserved::NONE,
        info_hash: [1; 20],
        peer_id: PeerId([6; 20]),
    };
    s.write_all(&h.encode()).unwrap();
    assert!(closed(&mut s));
}

/// aria2 downloads from `swarmlet seed`, meeting it through `swarmlet tracker`: our seed
/// announces over UDP, aria2 (whose UDP tracker support needs its DHT, which stays off)
/// over HTTP, to the same tracker, in a private network namespace with only `lo`.
#[test]
fn aria2_downloads_from_swarmlet_seed_through_our_tracker() {
    let aria2 = common::require_program("aria2c", "aria2");
    common::in_private_netns(move || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::write(dir.join("f.bin"), random_bytes(3_000_017, 77)).unwrap();
        let port = common::free_port();
        let tracker = Killed(
            Command::new(common::bin("swarmlet"))
                .args(["tracker", "--listen", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        common::wait_listening(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            port,
        ));
        let udp = format!("udp://127.0.0.1:{port}/announce");
        let http = format!("http://127.0.0.1:{port}/announce");
        let o = Command::new(common::bin("swarmlet"))
            .current_dir(dir)
            .args([
                "create",
                "f.bin",
                "--piece-length",
                "65536",
                "-t",
                &udp,
                "-t",
                &http,
            ])
            .args(["-o", "f.torrent"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let torrent = dir.join("f.torrent");
        let (_seed, _addr) = swarmlet_seed(&torrent, dir, &[]);
        let o = Command::new(aria2)
            .arg(format!("--dir={}", dir.join("dl").display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--seed-time=0",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--stop=60",
            ])
            .arg(&torrent)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "aria2c: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            std::fs::read(dir.join("f.bin")).unwrap()
                == std::fs::read(dir.join("dl/f.bin")).unwrap_or_default(),
            "aria2's copy differs"
        );
        drop(tracker);
    });
}
