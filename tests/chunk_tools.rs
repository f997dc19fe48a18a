//! The chunk tools as real processes: create_chunks, merge_chunks and check_file on
//! temporary roots, checked against the spec's "Files on disk" rules. Hashes are
//! recomputed with the `sha1` crate directly, not through swarmlet's own hash type.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use sha1::{Digest, Sha1};
use swarmlet::config::{FileManifest, ManifestChunk};
use swarmlet::hash::ChunkHash;

const CREATE: &str = env!("CARGO_BIN_EXE_create_chunks");
const MERGE: &str = env!("CARGO_BIN_EXE_merge_chunks");
const CHECK: &str = env!("CARGO_BIN_EXE_check_file");

const SIZE: usize = 3_300_000;
const KIB512: usize = 524_288;

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temporary root laid out like the repository: chunk directories with `.gitkeep`,
/// `files/NAME` holding `data`.
fn root_with(name: &str, data: &[u8]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in [
        "chunks/alice",
        "chunks/bob",
        "chunks/charlie",
        "files",
        "config",
    ] {
        fs::create_dir_all(d.path().join(sub)).unwrap();
        fs::write(d.path().join(sub).join(".gitkeep"), "").unwrap();
    }
    fs::write(d.path().join("files").join(name), data).unwrap();
    d
}

fn run(bin: &str, root: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status,
        stderr(o)
    );
}

/// A failure that says so in exactly one `error: ...` line, naming `needle`.
#[track_caller]
fn assert_fails_with(o: &Output, needle: &str) -> String {
    assert!(
        !o.status.success(),
        "expected failure; stdout: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
    lines[0].to_string()
}

/// Chunk file names (without `.bin`) in a peer's directory; checks that every other
/// entry is a dot-file and that each chunk's name is the SHA-1 of its content.
fn chunks_in(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue;
        }
        let hex = name
            .strip_suffix(".bin")
            .unwrap_or_else(|| panic!("stray {name}"));
        let content = fs::read(dir.join(&name)).unwrap();
        assert_eq!(sha1_hex(&content), hex, "{name} is not named by its SHA-1");
        out.insert(hex.to_string());
    }
    out
}

/// The SHA-1 hex of each `chunk`-sized piece of `data`, in order.
fn piece_hashes(data: &[u8], chunk: usize) -> Vec<String> {
    data.chunks(chunk).map(sha1_hex).collect()
}

fn set_of(hashes: &[String], indexes: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    indexes.into_iter().map(|i| hashes[i].clone()).collect()
}

/// Copies every peer's chunks into chunks/charlie, as a complete download would.
fn gather_into_charlie(root: &Path, peers: &[&str]) {
    for p in peers {
        for e in fs::read_dir(root.join("chunks").join(p)).unwrap() {
            let e = e.unwrap();
            if !e.file_name().to_string_lossy().starts_with('.') {
                fs::copy(e.path(), root.join("chunks/charlie").join(e.file_name())).unwrap();
            }
        }
    }
}

/// merge_chunks then check_file: the merged file equals `original` and check_file says so.
fn merge_and_check(root: &Path, name: &str, original: &[u8]) {
    let m = run(MERGE, root, &[]);
    assert_ok(&m);
    let merged = root.join("chunks/charlie").join(name);
    assert!(
        fs::read(&merged).unwrap() == original,
        "merged file differs"
    );
    let c = run(CHECK, root, &[]);
    assert_ok(&c);
    assert!(stdout(&c).contains("are identical"), "{}", stdout(&c));
}

/// The exact file.ini the course's Python script writes (configparser: `key = value`, a
/// blank line after every section).
fn python_file_ini(name: &str, hashes: &[String], peers: &[&str]) -> String {
    let mut s = format!(
        "[description]\nfilename = {name}\nchunks_count = {}\n\n[chunks]\n",
        hashes.len()
    );
    for (i, h) in hashes.iter().enumerate() {
        s += &format!("{i} = {h}\n");
    }
    s += "\n[chunks_peers]\n";
    for (i, p) in peers.iter().enumerate() {
        s += &format!("{i} = {p}\n");
    }
    s + "\n"
}

/// Section → key → value, read line by line without any INI library, keeping order of
/// keys within sections for the exactness checks.
fn parse_ini(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            out.entry(section.clone()).or_default();
        } else {
            let (k, v) = line
                .split_once(" = ")
                .unwrap_or_else(|| panic!("bad line {line}"));
            out.get_mut(&section).unwrap().push((k.into(), v.into()));
        }
    }
    out
}

#[test]
fn default_split_follows_the_course_rule_and_round_trips() {
    let data = random_bytes(SIZE, 1);
    let dir = root_with("test.bin", &data);
    let root = dir.path();
    // Leftovers from an earlier split must go; dot-files must stay.
    fs::write(
        root.join("chunks/alice")
            .join(format!("{}.bin", "0".repeat(40))),
        "old",
    )
    .unwrap();
    fs::write(root.join("chunks/charlie/old.bin"), "old").unwrap();
    fs::write(root.join("chunks/bob/notes.txt"), "old").unwrap();

    assert_ok(&run(CREATE, root, &["test.bin"]));

    let hashes = piece_hashes(&data, KIB512);
    assert_eq!(hashes.len(), 7);
    assert_eq!(
        chunks_in(&root.join("chunks/alice")),
        set_of(&hashes, 0..=4)
    );
    assert_eq!(chunks_in(&root.join("chunks/bob")), set_of(&hashes, 3..=6));
    assert!(chunks_in(&root.join("chunks/charlie")).is_empty());
    for sub in ["alice", "bob", "charlie"] {
        assert!(root.join("chunks").join(sub).join(".gitkeep").exists());
    }
    assert!(!root.join("chunks/bob/notes.txt").exists());
    let last = fs::read(root.join("chunks/bob").join(format!("{}.bin", hashes[6]))).unwrap();
    assert_eq!(last.len(), SIZE - 6 * KIB512);
    assert_eq!(last.len(), 154_272);
    assert_eq!(last, &data[6 * KIB512..]);

    // file.ini: exactly the spec's sections, keys and values.
    let text = fs::read_to_string(root.join("config/file.ini")).unwrap();
    let ini = parse_ini(&text);
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        ini.keys().collect::<Vec<_>>(),
        ["chunks", "chunks_peers", "description"]
    );
    assert_eq!(
        ini["description"],
        pairs(&[("filename", "test.bin"), ("chunks_count", "7")])
    );
    let expected_chunks: Vec<(String, String)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (i.to_string(), h.clone()))
        .collect();
    assert_eq!(ini["chunks"], expected_chunks);
    let holders = [
        "alice",
        "alice",
        "alice",
        "alice, bob",
        "alice, bob",
        "bob",
        "bob",
    ];
    let expected_peers: Vec<(String, String)> = holders
        .iter()
        .enumerate()
        .map(|(i, p)| (i.to_string(), p.to_string()))
        .collect();
    assert_eq!(ini["chunks_peers"], expected_peers);
    // Byte for byte the text Python's configparser writes.
    assert_eq!(text, python_file_ini("test.bin", &hashes, &holders));

    gather_into_charlie(root, &["alice", "bob"]);
    merge_and_check(root, "test.bin", &data);
}

#[test]
fn one_and_two_mib_chunks() {
    let data = random_bytes(SIZE, 2);
    // 3,300,000 bytes: 4 chunks of 1 MiB (0–1 alice, 2 both, 3 bob) or 2 of 2 MiB
    // (0 alice, 1 both).
    for (chunk, n, alice, bob) in [
        (1_048_576usize, 4usize, 0..=2usize, 2..=3usize),
        (2_097_152, 2, 0..=1, 1..=1),
    ] {
        let dir = root_with("big.dat", &data);
        let root = dir.path();
        assert_ok(&run(
            CREATE,
            root,
            &["big.dat", "--chunk-size", &chunk.to_string()],
        ));
        let hashes = piece_hashes(&data, chunk);
        assert_eq!(hashes.len(), n);
        assert_eq!(
            chunks_in(&root.join("chunks/alice")),
            set_of(&hashes, alice)
        );
        assert_eq!(chunks_in(&root.join("chunks/bob")), set_of(&hashes, bob));
        let m = FileManifest::load(&root.join("config/file.ini")).unwrap();
        assert_eq!(m.chunks.len(), n);
        let last = fs::read(
            root.join("chunks/bob")
                .join(format!("{}.bin", hashes[n - 1])),
        );
        assert_eq!(last.unwrap().len(), SIZE - (n - 1) * chunk);
        gather_into_charlie(root, &["alice", "bob"]);
        merge_and_check(root, "big.dat", &data);
    }
}

#[test]
fn three_peers_each_chunk_twice() {
    let data = random_bytes(SIZE, 3);
    let dir = root_with("t.bin", &data);
    let root = dir.path();
    fs::write(
        root.join("chunks/alice")
            .join(format!("{}.bin", "1".repeat(40))),
        "x",
    )
    .unwrap();
    assert_ok(&run(CREATE, root, &["t.bin", "--peers", "a,b,c"]));

    let hashes = piece_hashes(&data, KIB512);
    let held: Vec<BTreeSet<String>> = ["a", "b", "c"]
        .iter()
        .map(|p| chunks_in(&root.join("chunks").join(p)))
        .collect();
    // The course's directories are emptied even when other peers are named.
    assert!(chunks_in(&root.join("chunks/alice")).is_empty());
    for h in &hashes {
        assert_eq!(
            held.iter().filter(|s| s.contains(h)).count(),
            2,
            "chunk {h}"
        );
    }
    let loads: Vec<usize> = held.iter().map(BTreeSet::len).collect();
    assert!(
        loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
        "{loads:?}"
    );
    assert_eq!(loads.iter().sum::<usize>(), 14);

    let m = FileManifest::load(&root.join("config/file.ini")).unwrap();
    for (c, h) in m.chunks.iter().zip(&hashes) {
        assert_eq!(&c.hash.to_hex(), h);
        assert_eq!(c.peers.len(), 2);
        for (p, set) in ["a", "b", "c"].iter().zip(&held) {
            assert_eq!(c.peers.iter().any(|x| x == p), set.contains(h), "{p} {h}");
        }
    }
    gather_into_charlie(root, &["a", "b", "c"]);
    merge_and_check(root, "t.bin", &data);
}

#[test]
fn missing_empty_and_bad_arguments_fail_cleanly_and_touch_nothing() {
    let data = random_bytes(100_000, 4);
    let dir = root_with("ok.bin", &data);
    let root = dir.path();
    fs::write(root.join("files/empty.bin"), "").unwrap();
    assert_ok(&run(CREATE, root, &["ok.bin"]));
    let ini_before = fs::read(root.join("config/file.ini")).unwrap();
    let alice_before = chunks_in(&root.join("chunks/alice"));
    assert_eq!(alice_before.len(), 1);

    assert_fails_with(
        &run(CREATE, root, &["nope.bin"]),
        "files/nope.bin: no such file",
    );
    assert_fails_with(
        &run(CREATE, root, &["empty.bin"]),
        "empty.bin: the file is empty",
    );
    assert_fails_with(
        &run(CREATE, root, &["ok.bin", "--chunk-size", "0"]),
        "chunk size must be at least 1",
    );
    // 100,000 one-byte chunks would overflow the wire's u16 chunk count.
    let msg = assert_fails_with(&run(CREATE, root, &["ok.bin", "--chunk-size", "1"]), "u16");
    assert!(msg.contains("at least 2 bytes"), "{msg}");
    assert_fails_with(&run(CREATE, root, &["../ok.bin"]), "contains '..'");
    assert_fails_with(&run(CREATE, root, &["ok.bin", "--peers", "a,a"]), "twice");

    // Nothing was deleted by the failed runs.
    assert_eq!(fs::read(root.join("config/file.ini")).unwrap(), ini_before);
    assert_eq!(chunks_in(&root.join("chunks/alice")), alice_before);
}

#[test]
fn merge_names_every_missing_chunk_and_writes_nothing() {
    let data = random_bytes(SIZE, 5);
    let dir = root_with("m.bin", &data);
    let root = dir.path();
    assert_ok(&run(CREATE, root, &["m.bin"]));
    gather_into_charlie(root, &["alice", "bob"]);
    let hashes = piece_hashes(&data, KIB512);
    for i in [1, 5] {
        fs::remove_file(
            root.join("chunks/charlie")
                .join(format!("{}.bin", hashes[i])),
        )
        .unwrap();
    }
    let out = run(MERGE, root, &[]);
    let msg = assert_fails_with(&out, "missing 2 of 7 chunks");
    assert!(msg.ends_with("chunks 1, 5"), "{msg}");
    // No merged file, no temporary file: only the five remaining chunks and .gitkeep.
    let left: Vec<String> = fs::read_dir(root.join("chunks/charlie"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 6, "{left:?}");
    assert!(
        left.iter().all(|n| n == ".gitkeep" || n.ends_with(".bin")),
        "{left:?}"
    );
    assert!(!root.join("chunks/charlie/m.bin").exists());

    // check_file has nothing to compare and says so.
    let c = run(CHECK, root, &[]);
    assert_fails_with(&c, "m.bin");
}

#[test]
fn check_file_rejects_a_different_file() {
    let data = random_bytes(200_000, 6);
    let dir = root_with("c.bin", &data);
    let root = dir.path();
    assert_ok(&run(CREATE, root, &["c.bin"]));
    let merged = root.join("chunks/charlie/c.bin");

    let mut changed = data.clone();
    changed[123_456] ^= 0x80;
    fs::write(&merged, &changed).unwrap();
    let c = run(CHECK, root, &[]);
    assert!(!c.status.success());
    assert!(
        stdout(&c).contains("first difference at byte 123456"),
        "{}",
        stdout(&c)
    );

    fs::write(&merged, &data[..150_000]).unwrap();
    let c = run(CHECK, root, &["c.bin"]);
    assert!(!c.status.success());
    assert!(
        stdout(&c).contains("sizes differ (200000 vs 150000 bytes)"),
        "{}",
        stdout(&c)
    );

    fs::write(&merged, &data).unwrap();
    assert_ok(&run(CHECK, root, &["c.bin"]));
    // An explicit NAME needs no file.ini.
    fs::remove_file(root.join("config/file.ini")).unwrap();
    assert_ok(&run(CHECK, root, &["c.bin"]));
    assert_fails_with(&run(CHECK, root, &[]), "file.ini");
}

#[test]
fn python_written_file_ini_is_read_and_ours_round_trips() {
    let parts: [&[u8]; 2] = [b"hello, ", b"world\n"];
    let hashes: Vec<String> = parts.iter().map(|p| sha1_hex(p)).collect();
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    for sub in ["config", "chunks/charlie", "files"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    let ini = root.join("config/file.ini");
    fs::write(
        &ini,
        python_file_ini("x", &hashes, &["alice", "alice, bob"]),
    )
    .unwrap();

    let m = FileManifest::load(&ini).unwrap();
    let expected = FileManifest {
        filename: "x".into(),
        chunks: vec![
            ManifestChunk {
                hash: ChunkHash::from_hex(&hashes[0]).unwrap(),
                peers: vec!["alice".into()],
            },
            ManifestChunk {
                hash: ChunkHash::from_hex(&hashes[1]).unwrap(),
                peers: vec!["alice".into(), "bob".into()],
            },
        ],
    };
    assert_eq!(m, expected);

    // Ours reads back the same, and keeps the Python layout.
    let ours = root.join("config/ours.ini");
    m.save(&ours).unwrap();
    assert_eq!(FileManifest::load(&ours).unwrap(), expected);
    assert_eq!(
        fs::read_to_string(&ours).unwrap(),
        fs::read_to_string(&ini).unwrap()
    );

    // merge_chunks and check_file work from the Python-written file.ini.
    for (p, h) in parts.iter().zip(&hashes) {
        fs::write(root.join("chunks/charlie").join(format!("{h}.bin")), p).unwrap();
    }
    fs::write(root.join("files/x"), b"hello, world\n").unwrap();
    assert_ok(&run(MERGE, root, &[]));
    assert_eq!(
        fs::read(root.join("chunks/charlie/x")).unwrap(),
        b"hello, world\n"
    );
    assert_ok(&run(CHECK, root, &[]));
}

#[test]
fn help_and_version() {
    for bin in [CREATE, MERGE, CHECK] {
        let name = Path::new(bin)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let h = Command::new(bin).arg("--help").output().unwrap();
        assert_ok(&h);
        assert!(stdout(&h).contains("--root"), "{name}");
        let v = Command::new(bin).arg("--version").output().unwrap();
        assert_ok(&v);
        assert_eq!(
            stdout(&v).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Every regular file of a peer's chunk directory, by name, with its bytes (dot-files,
/// such as `.gitkeep`, aside).
fn chunk_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            let bytes = fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// Ours and a Python create_chunks written from the spec (tests/reference, with Python's
/// own configparser and hashlib) make the same chunk files and the same file.ini, byte
/// for byte, for every chunk count from 1 to 13 (all the rounding cases of the thirds)
/// and for the course's 3,300,000-byte file with 512 KiB and 1 MiB chunks.
#[test]
fn same_chunks_and_file_ini_as_the_python_reference() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/create_chunks.py"
    );
    let mut cases: Vec<(usize, usize)> = (1..=13).map(|n| (n * 1000 - (n % 2) * 7, 1000)).collect();
    cases.extend([(SIZE, KIB512), (SIZE, 1 << 20)]);
    for (i, (size, chunk)) in cases.into_iter().enumerate() {
        let data = random_bytes(size, 100 + i as u64);
        let ours = root_with("test.bin", &data);
        let theirs = root_with("test.bin", &data);
        let chunk_arg = chunk.to_string();
        assert_ok(&run(
            CREATE,
            ours.path(),
            &["test.bin", "--chunk-size", &chunk_arg],
        ));
        let py = Command::new(common::require_program("python3", "python3"))
            .arg(script)
            .arg(theirs.path())
            .args(["test.bin", &chunk_arg])
            .output()
            .expect("python3 is needed for this test (apt-get install python3)");
        assert_ok(&py);
        let what = format!("{size} bytes in {chunk}-byte chunks");
        for peer in ["alice", "bob", "charlie"] {
            let (a, b) = (
                chunk_files(&ours.path().join("chunks").join(peer)),
                chunk_files(&theirs.path().join("chunks").join(peer)),
            );
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{what}: chunks/{peer}"
            );
            assert!(a == b, "{what}: chunks/{peer} contents differ");
        }
        let (a, b) = (
            fs::read_to_string(ours.path().join("config/file.ini")).unwrap(),
            fs::read_to_string(theirs.path().join("config/file.ini")).unwrap(),
        );
        assert_eq!(a, b, "{what}: file.ini");
    }
}

/// A split that runs out of disk space halfway (chunks/ is a 3 MiB tmpfs in a private
/// mount namespace; the file needs 2 × 4 MiB) fails with one clear line and takes back
/// every chunk it wrote, so no peer serves a set that no file.ini describes; after the
/// space grows, the same command succeeds.
#[test]
fn a_split_that_fills_the_disk_leaves_no_partial_chunks() {
    let data = random_bytes(4 << 20, 77);
    let d = root_with("big.bin", &data);
    let root = d.path();
    swarmlet::config::PeersConfig::course_defaults()
        .save(&root.join("config/peers.ini"))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let script = r#"
        set -u
        mount -t tmpfs -o size=3m swarmlet-test "$ROOT/chunks" || exit 90
        mkdir -p "$ROOT/chunks/alice" "$ROOT/chunks/bob" "$ROOT/chunks/charlie"
        touch "$ROOT/chunks/alice/.gitkeep"
        "$CREATE" big.bin --root "$ROOT" 2> "$OUT/1.err"
        echo $? > "$OUT/1.rc"
        find "$ROOT/chunks" "$ROOT/config" -type f | sort > "$OUT/1.files"
        mount -o remount,size=32m "$ROOT/chunks" || exit 91
        "$CREATE" big.bin --root "$ROOT" 2> "$OUT/2.err"
        echo $? > "$OUT/2.rc"
        find "$ROOT/chunks" -name '*.bin' | wc -l > "$OUT/2.count"
    "#;
    common::require_program("mount", "mount");
    let status = Command::new(common::require_program("unshare", "util-linux"))
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("ROOT", root)
        .env("CREATE", CREATE)
        .env("OUT", out.path())
        .env_remove("RUST_LOG")
        .status()
        .expect("unshare (util-linux) is needed for the disk-full test");
    assert!(
        status.success(),
        "cannot set up the small tmpfs (needs root: unshare --mount, mount -t tmpfs): {status}"
    );
    let read = |f: &str| fs::read_to_string(out.path().join(f)).unwrap();
    assert_ne!(
        read("1.rc").trim(),
        "0",
        "a split into a full disk succeeded"
    );
    let err = read("1.err");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("No space left on device"),
        "{err}"
    );
    // Only the dot-file the test put there is left: no chunk, no temporary file, no
    // file.ini.
    let left: Vec<String> = read("1.files").lines().map(|l| l.to_string()).collect();
    // (and the peers.ini the test gave the root, so that stderr holds only the error)
    let dotfiles = [
        "chunks/alice/.gitkeep",
        "config/.gitkeep",
        "config/peers.ini",
    ];
    let dotfiles: Vec<String> = dotfiles
        .iter()
        .map(|f| root.join(f).display().to_string())
        .collect();
    assert_eq!(left, dotfiles, "left behind after a failed split");
    assert_eq!(read("2.rc").trim(), "0", "{}", read("2.err"));
    // 8 chunks of 512 KiB: alice holds 1-3 and 4-6, bob 4-6 and 7-8.
    assert_eq!(read("2.count").trim(), "11");
}
