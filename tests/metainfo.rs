//! `swarmlet create` and `swarmlet show` against the programs people use: mktorrent,
//! transmission-create/-show and libtorrent; and hostile .torrent files refused in one line.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{random_bytes, require_program};

fn swarmlet(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin("swarmlet"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok_stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The infohash `swarmlet show --json` reports.
fn shown_infohash(dir: &Path, torrent: &str) -> String {
    let out = ok_stdout(&swarmlet(dir, &["show", torrent, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["infohash"].as_str().unwrap().to_string()
}

fn python_libtorrent(script: &str) -> String {
    let o = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .output();
    match o {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => panic!(
            "libtorrent script failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => panic!(
            "needs /usr/bin/python3 with libtorrent (Debian package python3-libtorrent): run scripts/test.sh, which installs it"
        ),
    }
}

#[test]
fn single_file_infohash_equals_mktorrents() {
    let mk = require_program("mktorrent", "mktorrent");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (size, log2) in [
        (1usize, 15u32),
        (32768, 15),
        (32769, 15),
        (20_000_000, 18),
        (20_000_000, 20),
    ] {
        std::fs::write(d.join("f.bin"), random_bytes(size, size as u64)).unwrap();
        let _ = std::fs::remove_file(d.join("mk.torrent"));
        let _ = std::fs::remove_file(d.join("ours.torrent"));
        let o = Command::new(&mk)
            .current_dir(d)
            .args(["-l", &log2.to_string(), "-o", "mk.torrent", "f.bin"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours = ok_stdout(&swarmlet(
            d,
            &[
                "create",
                "f.bin",
                "--piece-length",
                &(1u64 << log2).to_string(),
                "--no-date",
                "-o",
                "ours.torrent",
            ],
        ));
        let last = ours.lines().last().unwrap().to_string();
        assert_eq!(last.len(), 40, "{ours}");
        assert_eq!(
            last,
            shown_infohash(d, "mk.torrent"),
            "size {size}, 2^{log2}"
        );
        assert_eq!(last, shown_infohash(d, "ours.torrent"));
    }
}

#[test]
fn show_reads_transmission_and_libtorrent_torrents_with_their_infohash() {
    let tc = require_program("transmission-create", "transmission-cli");
    let ts = require_program("transmission-show", "transmission-cli");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("tree/sub")).unwrap();
    std::fs::write(d.join("tree/a b.txt"), b"hello").unwrap();
    std::fs::write(d.join("tree/sub/données"), random_bytes(100_000, 3)).unwrap();
    let o = Command::new(&tc)
        .current_dir(d)
        .args(["-o", "tr.torrent", "tree"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8_lossy(
        &Command::new(&ts)
            .current_dir(d)
            .arg("tr.torrent")
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let hash_line = shown
        .lines()
        .find(|l| l.trim_start().starts_with("Hash:"))
        .unwrap();
    assert_eq!(
        hash_line.split_whitespace().last().unwrap(),
        shown_infohash(d, "tr.torrent")
    );
    // libtorrent 2 makes hybrid v1+v2 torrents, whose `info_hash()` is the truncated v2
    // hash: the v1 infohash (what we use a hybrid through) is asked for explicitly.
    let lt = python_libtorrent(&format!(
        "import libtorrent as lt\nfs=lt.file_storage(); lt.add_files(fs, {:?})\nct=lt.create_torrent(fs, 16384); lt.set_piece_hashes(ct, {:?})\nopen({:?},'wb').write(lt.bencode(ct.generate()))\nprint(lt.torrent_info({:?}).info_hashes().v1)",
        d.join("tree").to_str().unwrap(),
        d.to_str().unwrap(),
        d.join("lt.torrent").to_str().unwrap(),
        d.join("lt.torrent").to_str().unwrap(),
    ));
    assert_eq!(lt, shown_infohash(d, "lt.torrent"));
}

#[test]
fn libtorrent_and_transmission_accept_our_multi_file_torrent_and_every_piece_verifies() {
    let ts = require_program("transmission-show", "transmission-cli");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A piece spanning 3 files, 0-byte files first, in the middle and last, a file under
    // 16 KiB, nested directories, UTF-8 and spaces in names.
    let files: [(&str, usize); 7] = [
        ("t/0 first", 0),
        ("t/a.bin", 20_000),
        ("t/small", 5),
        ("t/mid/zero", 0),
        ("t/mid/résumé b.bin", 70_001),
        ("t/z/deep/x", 16_383),
        ("t/zz last", 0),
    ];
    for (i, (p, n)) in files.iter().enumerate() {
        let path = d.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, random_bytes(*n, i as u64 + 10)).unwrap();
    }
    let ours = ok_stdout(&swarmlet(
        d,
        &["create", "t", "--piece-length", "16384", "-o", "t.torrent"],
    ));
    let ih = ours.lines().last().unwrap().to_string();
    let listing = String::from_utf8_lossy(
        &Command::new(&ts)
            .current_dir(d)
            .arg("t.torrent")
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    for (p, _) in files {
        assert!(
            listing.contains(p),
            "transmission-show lacks {p}:\n{listing}"
        );
    }
    libtorrent_verifies_every_piece(d, "t.torrent", &ih, 7);
    // And a single-file torrent of ours.
    std::fs::write(d.join("one.bin"), random_bytes(100_001, 99)).unwrap();
    let ours = ok_stdout(&swarmlet(d, &["create", "one.bin", "-o", "one.torrent"]));
    let ih = ours.lines().last().unwrap().to_string();
    libtorrent_verifies_every_piece(d, "one.torrent", &ih, 1);
}

/// libtorrent loads `torrent` (in `d`, data beside it), has infohash `ih` and `files`
/// files, and finds every piece of the data valid.
fn libtorrent_verifies_every_piece(d: &Path, torrent: &str, ih: &str, files: usize) {
    let script = format!(
        r#"
import libtorrent as lt, time
ti = lt.torrent_info({torrent:?})
s = lt.session({{"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
    "enable_upnp": False, "enable_natpmp": False}})
h = s.add_torrent({{"ti": ti, "save_path": {save:?}}})
end = time.time() + 60
while time.time() < end and not h.status().is_seeding:
    time.sleep(0.1)
st = h.status()
print(ti.info_hash(), ti.num_files(), st.num_pieces, ti.num_pieces(), st.is_seeding)
"#,
        torrent = d.join(torrent).to_str().unwrap(),
        save = d.to_str().unwrap(),
    );
    let out = python_libtorrent(&script);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f[0], ih);
    assert_eq!(f[1], files.to_string());
    assert_eq!(
        f[2], f[3],
        "libtorrent verified {} of {} pieces",
        f[2], f[3]
    );
    assert_eq!(f[4], "True");
}

#[test]
fn hostile_torrents_are_refused_in_one_line_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let info = |inner: &str| format!("d4:info{inner}e");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), ""),
        (b"i01e".to_vec(), "leading zero"),
        (b"i-0e".to_vec(), ""),
        (b"d".to_vec(), ""),
        (b"99999999999:x".to_vec(), ""),
        (b"de".to_vec(), "info"),
        ("l".repeat(1_000_000).into_bytes(), ""),
        (info("d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces19:aaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d6:lengthi5e4:name1:x12:piece lengthi0e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d6:lengthi5e4:name1:x12:piece lengthi1000e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d6:lengthi-5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d6:lengthi99999e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d5:filesld6:lengthi1e4:pathl2:..1:xeee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ".."),
        (info("d5:filesld6:lengthi1e4:pathl0:eee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d5:filesld6:lengthi1e4:pathl3:a/beee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "a/b"),
        (info("d6:lengthi5e4:name2:..12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ".."),
        (info("d6:lengthi5e4:name4:/etc12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "/etc"),
        (info("d12:meta versioni2e4:name1:x12:piece lengthi16384ee").into_bytes(), "v2"),
        (b"l".to_vec(), ""),
        (b"i12".to_vec(), ""),
        (b"ie".to_vec(), ""),
        (b"i-e".to_vec(), ""),
        (b"i99999999999999999999999e".to_vec(), ""),
        (b"5:abc".to_vec(), ""),
        (b"-1:x".to_vec(), ""),
        (b"10000000000:x".to_vec(), ""),
        (b"d1:ai1e1:ai2ee".to_vec(), "duplicate"),
        (b"di1ei2ee".to_vec(), ""),
        (b"d4:infoi1ee".to_vec(), "info"),
        (info("d6:lengthi5e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "name"),
        (info("d6:lengthi5e4:name1:x6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "piece length"),
        (info("d6:lengthi5e4:name1:x12:piece lengthi16384ee").into_bytes(), "pieces"),
        (info("d5:filesle4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d5:filesld6:lengthi1eee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "path"),
        (info("d5:filesld6:lengthi1e4:pathl3:a\0beee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d5:filesld6:lengthi1e4:pathl3:a\\beee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d5:filesld6:lengthi1e4:pathl2:C:eee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "C:"),
        (info("d6:lengthi5e4:name3:a/b12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), "a/b"),
        (info("d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces40:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (format!("{}x", info("d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae")).into_bytes(), ""),
        (info("d6:lengthi5e4:name1:x12:piece lengthi-16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae").into_bytes(), ""),
        (info("d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces1:ae").into_bytes(), ""),
    ];
    for (i, (bytes, needle)) in cases.iter().enumerate() {
        let name = format!("bad{i}.torrent");
        std::fs::write(d.join(&name), bytes).unwrap();
        let o = swarmlet(d, &["show", &name]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "case {i}: not one line: {err}"
        );
        assert!(
            err.contains(needle),
            "case {i}: {err:?} should mention {needle:?}"
        );
    }
    // Nothing was written beside the inputs.
    assert_eq!(std::fs::read_dir(d).unwrap().count(), cases.len());
    assert!(cases.len() >= 40);
    // A file over the size limit is refused before it is read whole (sparse: no disk used).
    let big = std::fs::File::create(d.join("big.torrent")).unwrap();
    big.set_len(65 << 20).unwrap();
    let o = swarmlet(d, &["show", "big.torrent"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}

#[test]
fn our_file_storage_rechecks_a_torrent_made_by_mktorrent_and_finds_a_changed_byte() {
    use swarmlet::bt::metainfo::Metainfo;
    use swarmlet::storage::{PieceStore, files::FilesStore};
    let mk = require_program("mktorrent", "mktorrent");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A piece (32 KiB, mktorrent's smallest) spanning 3 files, 0-byte files, nested directories.
    for (i, (p, n)) in [
        ("m/a", 10_000usize),
        ("m/b/empty", 0),
        ("m/b/c", 3_000),
        ("m/d", 50_000),
    ]
    .iter()
    .enumerate()
    {
        let path = d.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, random_bytes(*n, i as u64 + 40)).unwrap();
    }
    let o = Command::new(&mk)
        .current_dir(d)
        .args(["-l", "15", "-o", "m.torrent", "m"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = Metainfo::read(&d.join("m.torrent")).unwrap();
    let layout = meta.layout().unwrap();
    assert_eq!(layout.piece_count(), meta.pieces.len());
    assert_eq!(layout.spans(0).count(), 3, "piece 0 covers a, b/c and d");
    let store = FilesStore::create(d, layout).unwrap();
    let have = store.recheck(&meta.digests()).unwrap();
    assert!(
        have.is_full(),
        "every piece of mktorrent's torrent verifies through our storage"
    );
    // One byte changed in d: exactly the piece holding it fails.
    let path = d.join("m/d");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40_000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let have = store.recheck(&meta.digests()).unwrap();
    let bad: Vec<usize> = (0..meta.pieces.len()).filter(|&i| !have.has(i)).collect();
    assert_eq!(bad, vec![(10_000 + 3_000 + 40_000) / 32_768]);
}
