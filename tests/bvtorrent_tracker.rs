//! Our bvtorrent-tracker as a real process: its descriptor bytes against the independent
//! reference (tests/reference/bvtorrent.py), and the tracker quirks of other clients.
mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, random_bytes};

fn reference() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/bvtorrent.py")
}

fn start_tracker(file: &Path, chunk: u64) -> (Proc, u16) {
    let port = free_port();
    let log = file.with_extension("tracker.log");
    let child = Command::new(bin("bvtorrent-tracker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--chunk-size",
            &chunk.to_string(),
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc {
        name: "bvtorrent-tracker".into(),
        child,
        log,
    };
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "tracker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, port)
}

/// Connects and reads the whole descriptor; returns the reader and chunk count.
fn join(port: u16) -> (BufReader<TcpStream>, usize) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    let d = swarmlet::bv::codec::Descriptor::read(&mut r).unwrap();
    (r, d.chunks.len())
}

fn send(r: &mut BufReader<TcpStream>, b: &[u8]) {
    r.get_mut().write_all(b).unwrap();
}

fn list(r: &mut BufReader<TcpStream>, n: usize) -> Vec<(u16, String)> {
    send(r, b"CLIENT_LIST\n");
    swarmlet::bv::codec::read_client_list(r, n)
        .unwrap()
        .into_iter()
        .map(|e| (e.port, String::from_utf8(e.mask).unwrap()))
        .collect()
}

/// Polls the list until `pred` holds (the tracker removes a client on its own thread).
fn wait_list(r: &mut BufReader<TcpStream>, n: usize, pred: impl Fn(&[(u16, String)]) -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let l = list(r, n);
        if pred(&l) {
            return;
        }
        assert!(Instant::now() < end, "list never matched: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn descriptor_bytes_equal_the_reference_trackers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("my file é.bin");
    std::fs::write(&file, random_bytes(3 * 1_048_576 + 12_345, 7)).unwrap();
    for chunk in [1_048_576u64, 65_536] {
        let want = Command::new("python3")
            .arg(reference())
            .args([
                "descriptor",
                file.to_str().unwrap(),
                "--chunk-size",
                &chunk.to_string(),
            ])
            .output()
            .expect("needs python3");
        assert!(want.status.success());
        let (_t, port) = start_tracker(&file, chunk);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = vec![0u8; want.stdout.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want.stdout, "chunk size {chunk}");
        assert!(got.starts_with("my file é.bin\n".as_bytes()));
    }
}

#[test]
fn quirky_clients_end_only_their_own_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, random_bytes(5 * 1000, 3)).unwrap();
    let (_t, port) = start_tracker(&file, 1000);
    // An idle member: registers, then says nothing for the whole test.
    let (mut idle, n) = join(port);
    send(&mut idle, b"7000,00000\n");
    let (mut me, _) = join(port);
    send(&mut me, b"7001,11111\n");
    wait_list(&mut me, n, |l| l.len() == 2);
    // Port 0 entries are listed as they are.
    let quirks: &[&[u8]] = &[
        b"DISCONNECT\n",         // no '!', then close
        b"DISCONNECT!",          // no newline, then close
        b"",                     // plain close
        b"CLIENT_LIS",           // command without its newline, then close
        b"UPDATE_MASK\n111\n",   // wrong-length mask
        b"UPDATE_MASK\n11x11\n", // bad mask characters
    ];
    for (i, q) in quirks.iter().enumerate() {
        let (mut c, _) = join(port);
        send(&mut c, format!("{},10101\n", 8000 + i).as_bytes());
        wait_list(&mut me, n, |l| l.iter().any(|e| e.0 == 8000 + i as u16));
        send(&mut c, q);
        if q.starts_with(b"UPDATE") {
            // The tracker drops it on its own; our side stays open.
            wait_list(&mut me, n, |l| l.len() == 2);
        } else {
            drop(c);
            wait_list(&mut me, n, |l| l.len() == 2);
        }
    }
    // The idle member is still there and unchanged; updates still work for others.
    send(&mut me, b"UPDATE_MASK\n10000\n");
    wait_list(&mut me, n, |l| {
        l.contains(&(7000, "00000".into())) && l.contains(&(7001, "10000".into()))
    });
    let (mut z, _) = join(port);
    send(&mut z, b"0,00000\n");
    wait_list(&mut me, n, |l| l.iter().any(|e| e.0 == 0));
    send(&mut z, b"DISCONNECT!\n");
    let mut rest = Vec::new();
    let _ = z.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to DISCONNECT!");
    wait_list(&mut me, n, |l| l.len() == 2);
    drop(idle);
}
