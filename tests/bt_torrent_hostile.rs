//! Hostile .torrent files against the real `swarmlet show`, `swarmlet download` and
//! `swarmlet seed`, and hostile bvTorrent file names against the real `bvtorrent-client`:
//! path traversal in every form, symbolic links already in the download directory, huge
//! counts and names, lying lengths and piece counts, duplicate and clashing paths.
//!
//! Every run happens in a sandbox directory: the download directory `dl/` and, beside
//! it, `outside/` with files a traversal would reach. After each run the whole sandbox is
//! listed again (without following links): nothing may have changed outside `dl/`. Each
//! refusal is one `error:` line on stderr, and every process's peak resident memory is
//! measured (wait4's ru_maxrss).
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::bin;
use swarmlet::bt::bencode::Bencode;

/// Hang guard for one process (not a speed assertion): a refusal takes milliseconds.
const LIMIT: Duration = Duration::from_secs(120);
const PIECE: i64 = 16 * 1024;

/// What a finished process did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident memory, KiB.
    max_rss_kib: i64,
}

impl Ran {
    fn summary(&self) -> String {
        format!(
            "exit {:?}, {} KiB peak\nstdout: {}\nstderr: {}",
            self.code,
            self.max_rss_kib,
            self.stdout.chars().take(2000).collect::<String>(),
            self.stderr.chars().take(2000).collect::<String>()
        )
    }
}

/// Runs `cmd` to its end (killed by pid past [`LIMIT`]) under GNU time, which reports
/// the peak resident memory. (wait4's own ru_maxrss cannot be used here: a child spawned
/// by vfork counts the test process's memory until it execs.) Output goes into files so
/// that a large `show` cannot block on a pipe.
fn run(cmd: Command, logs: &Path) -> Ran {
    let out = logs.join("stdout");
    let err = logs.join("stderr");
    let rss = logs.join("rss");
    let mut timed = Command::new(common::require_program("time", "time"));
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    let mut child = common::Proc {
        name: format!("{:?}", cmd.get_program()),
        child: timed
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
        log: err.clone(),
    };
    let status = child
        .wait_timeout(LIMIT)
        .unwrap_or_else(|| panic!("{cmd:?} still running after {LIMIT:?}"));
    let text = fs::read_to_string(&rss).unwrap_or_default();
    Ran {
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
        // The last line: GNU time writes "Command exited with non-zero status" first.
        max_rss_kib: text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak RSS from time: {text:?}")),
    }
}

/// What a file system entry looks like, links not followed.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File { len: u64, mtime_ns: i128, ino: u64 },
    Dir,
    Link(PathBuf),
}

/// Everything under `root`, links listed (never followed).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let entry = if m.file_type().is_symlink() {
                Entry::Link(fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                stack.push(p.clone());
                Entry::Dir
            } else {
                Entry::File {
                    len: m.len(),
                    mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                    ino: m.ino(),
                }
            };
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), entry);
        }
    }
    out
}

/// A sandbox: `dl/` (the download directory), `outside/` (what a traversal would reach,
/// with a victim file), `logs/`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["dl", "outside", "logs"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("outside/victim"), b"do not touch").unwrap();
        Sandbox { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn dl(&self) -> PathBuf {
        self.path("dl")
    }
    /// Everything but `dl/`'s contents and `logs/`.
    fn around(&self) -> BTreeMap<PathBuf, Entry> {
        snapshot(self.dir.path())
            .into_iter()
            .filter(|(p, _)| {
                let in_dl = p.starts_with("dl") && p != Path::new("dl");
                !(in_dl || p.starts_with("logs"))
            })
            .collect()
    }
}

/// A `.torrent` around `info` (no tracker: a download has no one to ask).
fn torrent(info: Bencode) -> Vec<u8> {
    let mut root = Bencode::dict();
    root.insert("info", info);
    root.encode()
}

fn hashes(n: u64) -> Bencode {
    Bencode::Bytes(vec![0xAB; (n * 20) as usize])
}

fn pieces_for(total: i64, piece: i64) -> u64 {
    (total.max(0) as u64).div_ceil(piece as u64)
}

fn single(name: &[u8], len: i64) -> Vec<u8> {
    let mut info = Bencode::dict();
    info.insert("name", Bencode::bytes(name))
        .insert("length", Bencode::Int(len))
        .insert("piece length", Bencode::Int(PIECE))
        .insert("pieces", hashes(pieces_for(len, PIECE)));
    torrent(info)
}

fn files_list(files: &[(Vec<Vec<u8>>, i64)]) -> Bencode {
    Bencode::List(
        files
            .iter()
            .map(|(path, len)| {
                let mut f = Bencode::dict();
                f.insert("length", Bencode::Int(*len)).insert(
                    "path",
                    Bencode::List(path.iter().map(Bencode::bytes).collect()),
                );
                f
            })
            .collect(),
    )
}

fn multi(name: &[u8], files: &[(Vec<Vec<u8>>, i64)]) -> Vec<u8> {
    let total: i64 = files.iter().map(|f| f.1).fold(0, i64::saturating_add);
    let mut info = Bencode::dict();
    info.insert("name", Bencode::bytes(name))
        .insert("piece length", Bencode::Int(PIECE))
        // Lengths that overflow get one hash: they are refused before it is counted.
        .insert("pieces", hashes(pieces_for(total, PIECE).min(100_000)))
        .insert("files", files_list(files));
    torrent(info)
}

/// One multi-file torrent with one file at `path`.
fn at(path: &[&[u8]]) -> Vec<u8> {
    multi(b"t", &[(path.iter().map(|c| c.to_vec()).collect(), 5)])
}

/// A raw info dictionary with these keys (to lie about lengths and pieces).
fn raw(name: &str, piece_length: i64, pieces: Bencode, length: i64) -> Vec<u8> {
    let mut info = Bencode::dict();
    info.insert("name", Bencode::bytes(name))
        .insert("length", Bencode::Int(length))
        .insert("piece length", Bencode::Int(piece_length))
        .insert("pieces", pieces);
    torrent(info)
}

fn swarmlet(sb: &Sandbox, t: &Path, sub: &str) -> Command {
    let mut c = Command::new(bin("swarmlet"));
    c.arg(sub).arg(t);
    if sub != "show" {
        c.arg("--dir")
            .arg(sb.dl())
            .args(["--listen", "127.0.0.1:0"]);
    }
    c
}

/// How a case must end for `download` and `seed`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    /// Refused when parsed: `show` refuses it too.
    RefusedByShow,
    /// Parsed (show prints it) but refused before anything is stored.
    RefusedByStorage,
}

/// Runs show, download and seed on `bytes` in a fresh sandbox (after `setup`), checks
/// each ends as `want` with one `error:` line holding `says`, and that nothing outside
/// `dl/` changed. Returns the peak RSS seen, KiB.
fn case(label: &str, bytes: &[u8], want: Want, says: &str, setup: impl Fn(&Sandbox)) -> i64 {
    let sb = Sandbox::new();
    setup(&sb);
    let t = sb.path("logs/case.torrent");
    fs::write(&t, bytes).unwrap();
    let before = sb.around();
    let mut peak = 0;
    for sub in ["show", "download", "seed"] {
        let r = run(swarmlet(&sb, &t, sub), &sb.path("logs"));
        peak = peak.max(r.max_rss_kib);
        let ctx = format!("{label}: swarmlet {sub}: {}", r.summary());
        if sub == "show" && want == Want::RefusedByStorage {
            assert_eq!(r.code, Some(0), "{ctx}");
            continue;
        }
        assert_eq!(r.code, Some(1), "{ctx}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {ctx}");
        assert!(lines[0].starts_with("error: "), "{ctx}");
        assert!(lines[0].len() < 400, "a short line: {ctx}");
        assert!(lines[0].contains(says), "says {says:?}: {ctx}");
        assert!(!r.stderr.contains("panicked"), "{ctx}");
        assert_eq!(sb.around(), before, "{ctx}: something outside dl/ changed");
    }
    assert_eq!(
        fs::read(sb.path("outside/victim")).unwrap(),
        b"do not touch",
        "{label}"
    );
    peak
}

fn no_setup(_: &Sandbox) {}

#[test]
fn path_traversal_in_every_form_is_refused_before_anything_is_written() {
    let abs_target = std::env::temp_dir().join(format!("swarmlet-abs-{}", std::process::id()));
    let abs = abs_target.to_str().unwrap().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("component ..", at(&[b".."])),
        ("a/../..", at(&[b"a", b"..", b".."])),
        ("../x in one component", at(&[b"../x"])),
        (
            "../../outside/victim",
            at(&[b"..", b"..", b"outside", b"victim"]),
        ),
        ("absolute /etc/passwd", at(&[b"/etc/passwd"])),
        ("absolute first component", at(&[&abs])),
        ("absolute /", at(&[b"/", b"x"])),
        ("empty component", at(&[b"a", b"", b"b"])),
        ("empty last component", at(&[b"a", b""])),
        ("no components", at(&[])),
        ("component .", at(&[b"."])),
        ("a/./b", at(&[b"a", b".", b"b"])),
        ("backslashes", at(&[b"..\\..\\outside\\x"])),
        ("drive letter", at(&[b"C:\\x"])),
        ("drive relative", at(&[b"C:x"])),
        ("NUL", at(&[b"a\0b"])),
        ("single-file name ..", single(b"..", 5)),
        ("single-file name /etc/passwd", single(b"/etc/passwd", 5)),
        ("single-file name absolute", single(&abs, 5)),
        ("single-file name empty", single(b"", 5)),
        ("single-file name .", single(b".", 5)),
        ("single-file name with NUL", single(b"x\0", 5)),
        ("single-file name ..\\x", single(b"..\\x", 5)),
        (
            "multi-file name ..",
            multi(b"..", &[(vec![b"f".to_vec()], 5)]),
        ),
        (
            "multi-file name ../x",
            multi(b"../x", &[(vec![b"f".to_vec()], 5)]),
        ),
        (
            "multi-file name empty",
            multi(b"", &[(vec![b"f".to_vec()], 5)]),
        ),
        (
            "multi-file name /",
            multi(b"/", &[(vec![b"f".to_vec()], 5)]),
        ),
    ];
    let n = cases.len();
    for (label, bytes) in cases {
        case(label, &bytes, Want::RefusedByShow, "unsafe path", no_setup);
    }
    assert!(!abs_target.exists(), "an absolute path was written");
    eprintln!("{n} traversal torrents refused by show, download and seed");
}

#[test]
fn symbolic_links_already_in_the_download_directory_are_never_followed() {
    // dl/evil -> ../outside: a multi-file torrent named "evil".
    let dir_link = |sb: &Sandbox| symlink(sb.path("outside"), sb.dl().join("evil")).unwrap();
    case(
        "torrent directory is a link",
        &multi(b"evil", &[(vec![b"new".to_vec()], 5)]),
        Want::RefusedByStorage,
        "symbolic link",
        dir_link,
    );
    // dl/t/sub -> ../../outside: a link deeper down.
    let deep = |sb: &Sandbox| {
        fs::create_dir(sb.dl().join("t")).unwrap();
        symlink(sb.path("outside"), sb.dl().join("t/sub")).unwrap();
    };
    case(
        "subdirectory is a link",
        &at(&[b"sub", b"victim"]),
        Want::RefusedByStorage,
        "symbolic link",
        deep,
    );
    // dl/victim -> ../outside/victim: a single-file torrent would cut it to 5 bytes.
    let file_link =
        |sb: &Sandbox| symlink(sb.path("outside/victim"), sb.dl().join("victim")).unwrap();
    case(
        "file is a link",
        &single(b"victim", 5),
        Want::RefusedByStorage,
        "symbolic link",
        file_link,
    );
    // A dangling link: following it would create the file outside.
    let dangling =
        |sb: &Sandbox| symlink(sb.path("outside/created"), sb.dl().join("created")).unwrap();
    case(
        "dangling link",
        &single(b"created", 5),
        Want::RefusedByStorage,
        "symbolic link",
        dangling,
    );
}

#[test]
fn duplicate_and_clashing_paths_are_refused() {
    let f = |p: &[&[u8]], len| (p.iter().map(|c| c.to_vec()).collect::<Vec<_>>(), len);
    let cases = [
        (
            "duplicate",
            vec![f(&[b"a"], 5), f(&[b"a"], 7)],
            "listed twice",
        ),
        (
            "duplicate deep",
            vec![f(&[b"d", b"a"], 5), f(&[b"x"], 1), f(&[b"d", b"a"], 5)],
            "listed twice",
        ),
        (
            // Not UTF-8: both become U+FFFD when stored.
            "duplicate once lossy",
            vec![f(&[b"\xff"], 5), f(&[b"\xfe"], 5)],
            "listed twice",
        ),
        (
            "file then directory",
            vec![f(&[b"a"], 5), f(&[b"a", b"b"], 5)],
            "both a file and a directory",
        ),
        (
            "directory then file",
            vec![f(&[b"a", b"b", b"c"], 5), f(&[b"a", b"b"], 5)],
            "both a file and a directory",
        ),
    ];
    for (label, files, says) in cases {
        case(
            label,
            &multi(b"t", &files),
            Want::RefusedByStorage,
            says,
            no_setup,
        );
    }
}

#[test]
fn lying_lengths_and_piece_counts_are_refused() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one hash short",
            raw("f", PIECE, hashes(2), 3 * PIECE),
            "piece hashes",
        ),
        (
            "one hash too many",
            raw("f", PIECE, hashes(4), 3 * PIECE),
            "piece hashes",
        ),
        (
            "no hashes",
            raw("f", PIECE, hashes(0), 3 * PIECE),
            "piece hashes",
        ),
        (
            "pieces not a multiple of 20",
            raw("f", PIECE, Bencode::Bytes(vec![1; 59]), 3 * PIECE),
            "multiple of 20",
        ),
        ("piece length 0", raw("f", 0, hashes(1), 5), "piece length"),
        (
            "piece length 1000",
            raw("f", 1000, hashes(1), 5),
            "piece length",
        ),
        (
            "piece length negative",
            raw("f", -PIECE, hashes(1), 5),
            "piece length",
        ),
        (
            "piece length 1 TiB",
            raw("f", 1 << 40, hashes(1), 1 << 40),
            "piece length",
        ),
        (
            "piece length 2^62",
            raw("f", 1 << 62, hashes(1), 5),
            "piece length",
        ),
        (
            "length negative",
            raw("f", PIECE, hashes(1), -5),
            "bad length",
        ),
        (
            "length i64::MIN",
            raw("f", PIECE, hashes(1), i64::MIN),
            "bad length",
        ),
        (
            "lengths overflow",
            multi(
                b"t",
                &[
                    (vec![b"a".to_vec()], i64::MAX),
                    (vec![b"b".to_vec()], i64::MAX),
                    (vec![b"c".to_vec()], i64::MAX),
                ],
            ),
            "overflows",
        ),
        (
            "a file length negative",
            multi(b"t", &[(vec![b"a".to_vec()], 5), (vec![b"b".to_vec()], -1)]),
            "bad length",
        ),
        ("length 0", raw("f", PIECE, hashes(0), 0), "empty"),
    ];
    for (label, bytes, says) in cases {
        // A zero-length torrent parses (show prints it); the store refuses it.
        let want = if label == "length 0" {
            Want::RefusedByStorage
        } else {
            Want::RefusedByShow
        };
        case(label, &bytes, want, says, no_setup);
    }
}

#[test]
fn names_of_ten_kilobytes_are_refused_in_one_short_line() {
    let long = vec![b'n'; 10_000];
    case(
        "10 KB component",
        &at(&[&long]),
        Want::RefusedByStorage,
        "longer than 255 bytes",
        no_setup,
    );
    case(
        "10 KB single-file name",
        &single(&long, 5),
        Want::RefusedByStorage,
        "longer than 255 bytes",
        no_setup,
    );
    let many: Vec<&[u8]> = vec![b"abcd"; 2_500];
    case(
        "10 KB of short components",
        &at(&many),
        Want::RefusedByStorage,
        "the path is longer than",
        no_setup,
    );
}

/// `n` one-byte files, 1,000 to a directory, as a multi-file .torrent.
fn many_files(n: usize) -> Vec<u8> {
    let files: Vec<(Vec<Vec<u8>>, i64)> = (0..n)
        .map(|i| {
            let dir = format!("d{}", i / 1000).into_bytes();
            (vec![dir, format!("{i}").into_bytes()], 1)
        })
        .collect();
    multi(b"many", &files)
}

/// Runs show, download and seed on `bytes`; `show_ok` says whether show lists it; the
/// others must refuse it in one line holding `says`, creating nothing. Peak RSS in KiB.
fn refused_with_memory(label: &str, bytes: &[u8], show_ok: bool, says: &str) -> Vec<i64> {
    let sb = Sandbox::new();
    let t = sb.path("logs/many.torrent");
    fs::write(&t, bytes).unwrap();
    let before = sb.around();
    let mut peaks = Vec::new();
    for sub in ["show", "download", "seed"] {
        let r = run(swarmlet(&sb, &t, sub), &sb.path("logs"));
        let ctx = format!("{label}: {sub}: {}", r.summary());
        if sub == "show" && show_ok {
            assert_eq!(r.code, Some(0), "{ctx}");
        } else {
            assert_eq!(r.code, Some(1), "{ctx}");
            assert!(r.stderr.starts_with("error: "), "{ctx}");
            assert_eq!(r.stderr.lines().count(), 1, "{ctx}");
            assert!(r.stderr.contains(says), "{ctx}");
        }
        eprintln!(
            "{label} ({} bytes): {sub}: exit {:?}, peak {} MiB",
            bytes.len(),
            r.code,
            r.max_rss_kib / 1024
        );
        peaks.push(r.max_rss_kib);
    }
    assert_eq!(sb.around(), before, "{label}");
    assert_eq!(
        fs::read_dir(sb.dl()).unwrap().count(),
        0,
        "{label}: created"
    );
    peaks
}

/// A million files (a 35 MB .torrent) is more bencode values than a .torrent may hold
/// (`bt::metainfo::MAX_VALUES`, 1,500,000): refused by all three, memory bounded.
#[test]
fn a_million_files_are_refused_within_bounded_memory() {
    let peaks = refused_with_memory("1,000,000 files", &many_files(1_000_000), false, "values");
    assert!(peaks.iter().all(|&k| k < 256 * 1024), "{peaks:?} KiB");
}

/// One file more than a download may create (`storage::files::MAX_FILES`): show lists
/// it, download and seed refuse it before creating any file.
#[test]
fn more_files_than_a_download_may_create_are_refused() {
    let n = swarmlet::storage::files::MAX_FILES + 1;
    let peaks = refused_with_memory("100,001 files", &many_files(n), true, "more than");
    assert!(peaks.iter().all(|&k| k < 256 * 1024), "{peaks:?} KiB");
}

// ---- bvTorrent file names from a tracker --------------------------------------------

/// A fake bvTorrent tracker that sends `name` as the file name of a valid one-chunk
/// descriptor to every client that connects, then reads what the client says.
fn fake_tracker(name: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        // One client per case; bounded.
        for s in l.incoming().take(1) {
            let Ok(mut s) = s else { return };
            let mut d = name.to_vec();
            d.extend_from_slice(format!("\n1024\n1\n5,{}\n", "0".repeat(56)).as_bytes());
            let _ = s.write_all(&d);
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut line = Vec::new();
            let _ = BufReader::new(&s).read_until(b'\n', &mut line);
        }
    });
    addr
}

#[test]
fn bvtorrent_client_refuses_unsafe_file_names_from_a_tracker() {
    let names: [&'static [u8]; 9] = [
        b"../x",
        b"/etc/passwd",
        b"",
        b"a\0b",
        b".",
        b"..",
        b"..\\x",
        b"d/f",
        b"victim", // a link to outside/victim already in the directory
    ];
    for name in names {
        let sb = Sandbox::new();
        symlink(sb.path("outside/victim"), sb.dl().join("victim")).unwrap();
        let before = sb.around();
        let tracker = fake_tracker(name);
        let mut c = Command::new(bin("bvtorrent-client"));
        c.arg("--dir")
            .arg(sb.dl())
            .args(["--listen", "127.0.0.1:0", "--exit-when-done"])
            .arg(tracker.to_string());
        let r = run(c, &sb.path("logs"));
        let ctx = format!("{:?}: {}", String::from_utf8_lossy(name), r.summary());
        assert_eq!(r.code, Some(1), "{ctx}");
        assert_eq!(r.stderr.lines().count(), 1, "{ctx}");
        assert!(r.stderr.starts_with("error: "), "{ctx}");
        assert!(
            ["unsafe", "refusing"].iter().any(|w| r.stderr.contains(w)),
            "{ctx}"
        );
        assert_eq!(sb.around(), before, "{ctx}");
        let left: Vec<_> = fs::read_dir(sb.dl())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![sb.dl().join("victim")], "{ctx}");
        assert_eq!(
            fs::read(sb.path("outside/victim")).unwrap(),
            b"do not touch"
        );
    }
}

/// Names, comments and tracker URLs holding terminal escapes (colour, a new window
/// title, a carriage return that overwrites a line): `show` prints them escaped.
#[test]
fn show_escapes_control_characters() {
    let mut info = Bencode::dict();
    info.insert("name", Bencode::bytes("\x1b[31mred\x1b]0;owned\x07"))
        .insert("piece length", Bencode::Int(PIECE))
        .insert("pieces", hashes(1))
        .insert(
            "files",
            files_list(&[(vec![b"ok\rinfohash: 0000".to_vec()], 5)]),
        );
    let mut root = Bencode::dict();
    root.insert("info", info)
        .insert("comment", Bencode::bytes("\x1b[2J"))
        .insert("announce", Bencode::bytes("http://x/\x1b[1A"));
    let sb = Sandbox::new();
    let t = sb.path("logs/esc.torrent");
    fs::write(&t, root.encode()).unwrap();
    let r = run(swarmlet(&sb, &t, "show"), &sb.path("logs"));
    assert_eq!(r.code, Some(0), "{}", r.summary());
    assert!(!r.stdout.contains(['\x1b', '\x07', '\r']), "{:?}", r.stdout);
    assert!(r.stdout.contains("\\u{1b}[31mred"), "{}", r.stdout);
    // JSON escapes them its own way.
    let mut c = swarmlet(&sb, &t, "show");
    c.arg("--json");
    let r = run(c, &sb.path("logs"));
    assert!(!r.stdout.contains(['\x1b', '\x07', '\r']), "{:?}", r.stdout);
}

/// `swarmlet show big.torrent | head -1`: the pipe closes early; show stops quietly.
#[test]
fn show_into_a_pipe_closed_early_does_not_panic() {
    let sb = Sandbox::new();
    let t = sb.path("logs/many.torrent");
    fs::write(&t, many_files(20_000)).unwrap();
    let mut child = swarmlet(&sb, &t, "show")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("name: many"), "{first}");
    // The read end is dropped: every later write gets EPIPE.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

/// `swarmlet create` makes nothing our own parser would refuse: piece lengths above
/// 64 MiB (or not a power of two) are refused before anything is read or allocated, and
/// links and special files in the tree are skipped, never followed.
#[test]
fn create_refuses_huge_pieces_and_skips_links() {
    let sb = Sandbox::new();
    let tree = sb.path("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), b"hello").unwrap();
    symlink(sb.path("outside"), tree.join("out-dir")).unwrap();
    symlink(sb.path("outside/victim"), tree.join("out-file")).unwrap();
    let create = |pl: &str, out: &str| {
        let mut c = Command::new(bin("swarmlet"));
        c.arg("create")
            .arg(&tree)
            .arg("-o")
            .arg(sb.path(out))
            .args(["--no-date", "--piece-length", pl]);
        run(c, &sb.path("logs"))
    };
    for pl in ["134217728", "1099511627776", "4611686018427387904", "24576"] {
        let r = create(pl, "bad.torrent");
        assert_eq!(r.code, Some(1), "{pl}: {}", r.summary());
        assert!(
            r.stderr
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("error: "))
                && r.stderr.matches("error: ").count() == 1,
            "{pl}: {}",
            r.summary()
        );
        assert!(r.max_rss_kib < 64 * 1024, "{pl}: {} KiB", r.max_rss_kib);
        assert!(!sb.path("bad.torrent").exists());
    }
    let r = create("16384", "good.torrent");
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let mut c = swarmlet(&sb, &sb.path("good.torrent"), "show");
    c.arg("--json");
    let r = run(c, &sb.path("logs"));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["a"], "links are not followed");
}
