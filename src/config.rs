//! The course's INI files, read and written with `configparser`:
//! `config/peers.ini` (who listens where) and `config/file.ini` (the file's chunks and who
//! has them). Layouts follow the spec's "Files on disk" section, so files written by the
//! course's Python scripts and by ours are interchangeable.
//!
//! Every error names the file, the section and the key, e.g.
//! `config/peers.ini: [bob] port_number: not a port: 80x1`.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use configparser::ini::{Ini, WriteOptions};

use crate::hash::ChunkHash;
use crate::root::display_path;
use crate::store::write_atomic;

/// The section of peers.ini that holds the tracker's address.
pub const TRACKER_SECTION: &str = "tracker";

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not INI.
    #[error("{path}: {msg}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        msg: String,
    },
    /// config/file.ini does not exist: nothing has been cut into chunks yet.
    #[error("{path}: no such file; run create_chunks FILE first")]
    NoFileIni {
        /// The file.
        path: String,
    },
    /// The file holds no `[section]` at all (empty, or only comments).
    #[error("{path}: the file is empty (it has no [section])")]
    NoSections {
        /// The file.
        path: String,
    },
    /// A section the program needs is not in the file.
    #[error("{path}: no [{section}] section")]
    MissingSection {
        /// The file.
        path: String,
        /// The section looked for.
        section: String,
    },
    /// A value is missing or wrong.
    #[error("{path}: [{section}] {key}: {msg}")]
    Value {
        /// The file.
        path: String,
        /// The section.
        section: String,
        /// The key (or `*` for the section as a whole).
        key: String,
        /// What is wrong.
        msg: String,
    },
}

/// The section under which configparser files keys that come before any `[section]`
/// header. No header can produce this name (a line never holds a newline), so that a peer
/// named `default` (configparser's own choice here) is an ordinary section, written with
/// its header like any other.
const OUTSIDE_SECTIONS: &str = "\n";

/// The INI reader and writer of both files. Section and key names are case-sensitive
/// (section names are peer names, and Python's configparser keeps section case too). As
/// in Python's configparser, which the course's scripts use, `#` and `;` start a comment
/// only at the start of a line: `filename = a#1.bin` is the file `a#1.bin`.
fn new_ini() -> Ini {
    let mut ini = Ini::new_cs();
    ini.set_inline_comment_symbols(Some(&[]));
    ini.set_default_section(OUTSIDE_SECTIONS);
    ini
}

/// Reading helper that remembers which file it reads, for error messages.
struct IniFile {
    path: String,
    ini: Ini,
}

/// Reads a whole configuration file; returns the path as shown in messages and the text.
fn read_text(path: &Path) -> Result<(String, String), ConfigError> {
    let shown = display_path(path);
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: shown.clone(),
        source,
    })?;
    Ok((shown, text))
}

/// Finds a section header or a key given twice, which Python's configparser refuses
/// (DuplicateSectionError, DuplicateOptionError) and configparser-rs would silently merge,
/// the last value winning: a file.ini listing chunk 3 twice is a broken file, not a choice.
/// Keys compare without regard to case, as Python lowercases them; indented lines are
/// continuations of a value in Python, so they are not keys.
fn find_duplicate(text: &str) -> Option<String> {
    use std::collections::HashSet;
    let mut sections = HashSet::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut section = "";
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if line.starts_with([' ', '\t']) || trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if !sections.insert(name) {
                return Some(format!("line {}: section [{name}] given twice", n + 1));
            }
            section = name;
            keys.clear();
        } else {
            let key = trimmed.split(['=', ':']).next().unwrap_or("").trim();
            if !keys.insert(key.to_ascii_lowercase()) {
                return Some(format!("line {}: [{section}] {key} given twice", n + 1));
            }
        }
    }
    None
}

impl IniFile {
    fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        if let Some(msg) = find_duplicate(text) {
            return Err(ConfigError::Syntax {
                path: path.to_string(),
                msg,
            });
        }
        let mut ini = new_ini();
        ini.read(text.to_string())
            .map_err(|msg| ConfigError::Syntax {
                path: path.to_string(),
                msg,
            })?;
        // Python's configparser rejects such a file too (MissingSectionHeaderError).
        if let Some(keys) = ini.get_map_ref().get(OUTSIDE_SECTIONS) {
            let key = keys.keys().next().map_or("", String::as_str);
            return Err(ConfigError::Syntax {
                path: path.to_string(),
                msg: format!("key {key:?} comes before the first [section]"),
            });
        }
        Ok(IniFile {
            path: path.to_string(),
            ini,
        })
    }

    fn err(&self, section: &str, key: &str, msg: impl fmt::Display) -> ConfigError {
        ConfigError::Value {
            path: self.path.clone(),
            section: section.to_string(),
            key: key.to_string(),
            msg: msg.to_string(),
        }
    }

    /// A value, with the key matched without regard to ASCII case: Python's configparser
    /// lowercases keys (but not sections), so `IP_ADDRESS = ...` written by another
    /// group's tools means `ip_address`.
    fn get(&self, section: &str, key: &str) -> Result<String, ConfigError> {
        self.ini
            .get_map_ref()
            .get(section)
            .and_then(|keys| {
                // The exact key first, by hash: file.ini looks up every chunk index, and
                // a scan per lookup made loading a 65,535-chunk file.ini take 15 s
                // (quadratic; found by scripts/bench.sh). The scan is for other cases.
                match keys.get(key) {
                    Some(v) => v.as_deref(),
                    None => keys
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .and_then(|(_, v)| v.as_deref()),
                }
            })
            .map(|v| v.trim().to_string())
            .ok_or_else(|| self.err(section, key, "missing"))
    }

    fn parse_value<T>(
        &self,
        section: &str,
        key: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let v = self.get(section, key)?;
        parse(&v).ok_or_else(|| self.err(section, key, format!("not {what}: {v}")))
    }
}

/// The text of `ini` byte for byte as Python's `configparser.write` gives it, which the
/// course's scripts use: `key = value`, and a blank line after every section, the last
/// one included (configparser-rs puts blank lines only between sections).
fn ini_text(ini: &Ini) -> String {
    let mut opts = WriteOptions::new();
    opts.space_around_delimiters = true;
    opts.blank_lines_between_sections = 1;
    let mut text = ini.pretty_writes(&opts);
    if !text.is_empty() {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
    }
    text
}

fn write_text(path: &Path, text: &str) -> Result<(), ConfigError> {
    write_atomic(path, |f| io::Write::write_all(f, text.as_bytes())).map_err(|source| {
        ConfigError::Io {
            path: display_path(path),
            source,
        }
    })
}

/// `config/peers.ini`: an ordered list of named addresses; the `tracker` section is the
/// tracker, every other section a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersConfig {
    entries: Vec<(String, SocketAddrV4)>,
}

impl PeersConfig {
    /// The course defaults: tracker 127.0.0.1:8000, alice :8001, bob :8002.
    pub fn course_defaults() -> Self {
        let lo = Ipv4Addr::LOCALHOST;
        PeersConfig {
            entries: vec![
                (TRACKER_SECTION.into(), SocketAddrV4::new(lo, 8000)),
                ("alice".into(), SocketAddrV4::new(lo, 8001)),
                ("bob".into(), SocketAddrV4::new(lo, 8002)),
            ],
        }
    }

    /// A configuration from explicit entries (name, address), in order.
    pub fn from_entries(entries: Vec<(String, SocketAddrV4)>) -> Self {
        PeersConfig { entries }
    }

    /// Reads a peers.ini. Every section needs `ip_address` (IPv4) and `port_number`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (shown, text) = read_text(path)?;
        Self::parse(&text, &shown)
    }

    /// Parses the text of a peers.ini, as [`PeersConfig::load`] does; `path` only names the
    /// file in error messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let f = IniFile::parse(path, text)?;
        let mut entries = Vec::new();
        for section in f.ini.sections() {
            let ip = f.parse_value(&section, "ip_address", "an IPv4 address", |v| {
                v.parse::<Ipv4Addr>().ok()
            })?;
            let port =
                f.parse_value(&section, "port_number", "a port", |v| v.parse::<u16>().ok())?;
            entries.push((section, SocketAddrV4::new(ip, port)));
        }
        Ok(PeersConfig { entries })
    }

    /// Writes the file atomically, sections in order.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_text(path, &self.to_text())
    }

    /// The text [`PeersConfig::save`] writes; [`PeersConfig::parse`] reads it back.
    pub fn to_text(&self) -> String {
        let mut ini = new_ini();
        for (name, addr) in &self.entries {
            ini.set(name, "ip_address", Some(addr.ip().to_string()));
            ini.set(name, "port_number", Some(addr.port().to_string()));
        }
        ini_text(&ini)
    }

    /// The address of a named entry.
    pub fn get(&self, name: &str) -> Option<SocketAddrV4> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The tracker's address, or an error naming the file.
    pub fn tracker(&self, path: &Path) -> Result<SocketAddrV4, ConfigError> {
        self.require(TRACKER_SECTION, path)
    }

    /// The address of entry `name`, or an error naming the file (`path`): an empty file
    /// is reported as empty, not as one that lacks this particular section, since adding
    /// that one section is not the fix then.
    pub fn require(&self, name: &str, path: &Path) -> Result<SocketAddrV4, ConfigError> {
        if self.entries.is_empty() {
            return Err(ConfigError::NoSections {
                path: display_path(path),
            });
        }
        self.get(name).ok_or_else(|| ConfigError::MissingSection {
            path: display_path(path),
            section: name.into(),
        })
    }

    /// Every entry, tracker included, in file order.
    pub fn entries(&self) -> &[(String, SocketAddrV4)] {
        &self.entries
    }

    /// The peers (every entry except the tracker), in file order.
    pub fn peers(&self) -> impl Iterator<Item = &(String, SocketAddrV4)> {
        self.entries.iter().filter(|(n, _)| n != TRACKER_SECTION)
    }
}

/// One chunk of file.ini: its hash and the names of the peers that have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestChunk {
    /// The chunk's SHA-1.
    pub hash: ChunkHash,
    /// Peer names (sections of peers.ini).
    pub peers: Vec<String>,
}

/// `config/file.ini`: the file's name and its chunks in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileManifest {
    /// The file's name (in `files/`, and as Charlie saves it).
    pub filename: String,
    /// Chunks in file order.
    pub chunks: Vec<ManifestChunk>,
}

const DESCRIPTION: &str = "description";
const CHUNKS: &str = "chunks";
const CHUNKS_PEERS: &str = "chunks_peers";

impl FileManifest {
    /// Reads a file.ini: `[description] filename, chunks_count`, then `[chunks]` and
    /// `[chunks_peers]` keyed `0 .. chunks_count-1`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (shown, text) = read_text(path).map_err(|e| match e {
            ConfigError::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
                ConfigError::NoFileIni { path }
            }
            e => e,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses the text of a file.ini, as [`FileManifest::load`] does; `path` only names the
    /// file in error messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let f = IniFile::parse(path, text)?;
        let filename = f.get(DESCRIPTION, "filename")?;
        if filename.is_empty() {
            return Err(f.err(DESCRIPTION, "filename", "empty"));
        }
        let count = f.parse_value(DESCRIPTION, "chunks_count", "a chunk count", |v| {
            v.parse::<usize>().ok()
        })?;
        // Never trust the count for allocation: every chunk needs its own key in [chunks],
        // so the file cannot describe more chunks than that section has entries (a
        // 40-byte file claiming 10^18 chunks reserves nothing and fails at key 0).
        let listed = f.ini.get_map_ref().get(CHUNKS).map_or(0, |m| m.len());
        let mut chunks = Vec::with_capacity(count.min(listed));
        for i in 0..count {
            let key = i.to_string();
            let hash = f.parse_value(CHUNKS, &key, "a SHA-1 hash", |v| {
                ChunkHash::from_hex(v).ok()
            })?;
            let names = f.get(CHUNKS_PEERS, &key)?;
            let peers: Vec<String> = names
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            if peers.is_empty() {
                return Err(f.err(CHUNKS_PEERS, &key, "no peer named"));
            }
            chunks.push(ManifestChunk { hash, peers });
        }
        Ok(FileManifest { filename, chunks })
    }

    /// Writes the file atomically in the course's layout (names joined by `", "`).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        write_text(path, &self.to_text())
    }

    /// The text [`FileManifest::save`] writes; [`FileManifest::parse`] reads it back.
    pub fn to_text(&self) -> String {
        let mut ini = new_ini();
        ini.set(DESCRIPTION, "filename", Some(self.filename.clone()));
        ini.set(
            DESCRIPTION,
            "chunks_count",
            Some(self.chunks.len().to_string()),
        );
        for (i, c) in self.chunks.iter().enumerate() {
            ini.set(CHUNKS, &i.to_string(), Some(c.hash.to_hex()));
        }
        for (i, c) in self.chunks.iter().enumerate() {
            ini.set(CHUNKS_PEERS, &i.to_string(), Some(c.peers.join(", ")));
        }
        ini_text(&ini)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_missing_section_and_missing_file_ini_are_told_apart() {
        let p = Path::new("config/peers.ini");
        for text in ["", "; nothing but a comment\n"] {
            let empty = PeersConfig::parse(text, "config/peers.ini").unwrap();
            assert_eq!(
                empty.require("alice", p).unwrap_err().to_string(),
                "config/peers.ini: the file is empty (it has no [section])"
            );
        }
        let one =
            PeersConfig::parse("[alice]\nip_address=127.0.0.1\nport_number=8001\n", "x").unwrap();
        assert_eq!(
            one.tracker(p).unwrap_err().to_string(),
            "config/peers.ini: no [tracker] section"
        );
        let d = tempfile::tempdir().unwrap();
        let err = FileManifest::load(&d.path().join("file.ini")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("file.ini: no such file; run create_chunks FILE first"),
            "{err}"
        );
    }

    #[test]
    fn peers_round_trip_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.ini");
        let c = PeersConfig::course_defaults();
        c.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("[tracker]\nip_address = 127.0.0.1\nport_number = 8000\n"));
        assert_eq!(PeersConfig::load(&p).unwrap(), c);
        assert_eq!(c.tracker(&p).unwrap().port(), 8000);
        assert_eq!(c.peers().count(), 2);

        std::fs::write(&p, "[bob]\nip_address = 127.0.0.1\nport_number = 80x1\n").unwrap();
        let e = PeersConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("peers.ini: [bob] port_number: not a port: 80x1"),
            "{e}"
        );
        std::fs::write(&p, "[bob]\nport_number = 8001\n").unwrap();
        let e = PeersConfig::load(&p).unwrap_err().to_string();
        assert!(e.ends_with("[bob] ip_address: missing"), "{e}");
    }

    /// The shipped config/peers.ini is what `to_text` writes for the course defaults, and
    /// what Python's configparser writes for them (checked with Python when it was made).
    #[test]
    fn shipped_peers_ini_is_the_course_defaults() {
        let shipped = include_str!("../config/peers.ini");
        assert_eq!(PeersConfig::course_defaults().to_text(), shipped);
        assert!(shipped.ends_with("port_number = 8002\n\n"));
    }

    /// Python's configparser refuses a section or a key given twice; so do we, naming
    /// the line, instead of letting the last value win.
    #[test]
    fn duplicate_sections_and_keys_are_errors() {
        let e = |t: &str| PeersConfig::parse(t, "peers.ini").unwrap_err().to_string();
        let one = "[bob]\nip_address = 127.0.0.1\nport_number = 8002\n";
        assert_eq!(
            e(&format!("{one}\n{one}")),
            "peers.ini: line 5: section [bob] given twice"
        );
        assert_eq!(
            e(&format!("{one}PORT_NUMBER: 8003\n")),
            "peers.ini: line 4: [bob] PORT_NUMBER given twice"
        );
        // The same key in two sections, a continuation line and comments are fine.
        let ok = format!(
            "{one}  continued\n# port_number = 1\n[alice]\nip_address = 127.0.0.1\nport_number = 8001\n"
        );
        assert_eq!(
            PeersConfig::parse(&ok, "peers.ini")
                .unwrap()
                .entries()
                .len(),
            2
        );
    }

    #[test]
    fn manifest_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("file.ini");
        let m = FileManifest {
            filename: "test.bin".into(),
            chunks: vec![
                ManifestChunk {
                    hash: ChunkHash::of(b"0"),
                    peers: vec!["alice".into()],
                },
                ManifestChunk {
                    hash: ChunkHash::of(b"1"),
                    peers: vec!["alice".into(), "bob".into()],
                },
            ],
        };
        m.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("[chunks_peers]\n0 = alice\n1 = alice, bob"),
            "{text}"
        );
        assert_eq!(FileManifest::load(&p).unwrap(), m);
    }

    /// Found by tests/config_props.rs: `#` and `;` inside a value or a section name were
    /// read as the start of an inline comment, so `filename = a#1.bin` (which Python's
    /// configparser reads whole) was read as `a`, and a saved section `[x;y]` did not load.
    #[test]
    fn comment_characters_inside_values_and_names() {
        let text = "[description]\nfilename = a#1;b.bin\nchunks_count = 1\n\
                    [chunks]\n0 = 0000000000000000000000000000000000000000\n\
                    [chunks_peers]\n0 = x;y, #z\n";
        let m = FileManifest::parse(text, "file.ini").unwrap();
        assert_eq!(m.filename, "a#1;b.bin");
        assert_eq!(m.chunks[0].peers, ["x;y", "#z"]);
        assert_eq!(FileManifest::parse(&m.to_text(), "file.ini").unwrap(), m);

        let lo = Ipv4Addr::LOCALHOST;
        let c = PeersConfig::from_entries(vec![("x;y#".into(), SocketAddrV4::new(lo, 1))]);
        assert_eq!(PeersConfig::parse(&c.to_text(), "peers.ini").unwrap(), c);
        // A comment line is still a comment.
        let p =
            PeersConfig::parse("# c\n; c\n[a]\nip_address=1.2.3.4\nport_number=5\n", "p").unwrap();
        assert_eq!(p.entries().len(), 1);
    }

    /// Found by tests/config_props.rs: configparser filed a section named `default` as its
    /// headerless default section, so a peer named `default` was written first without a
    /// `[default]` header (unreadable by Python, and out of order when read back).
    #[test]
    fn peer_named_default_is_an_ordinary_section() {
        let lo = Ipv4Addr::LOCALHOST;
        let c = PeersConfig::from_entries(vec![
            ("tracker".into(), SocketAddrV4::new(lo, 8000)),
            ("default".into(), SocketAddrV4::new(lo, 8001)),
        ]);
        let text = c.to_text();
        assert!(
            text.contains("[default]\nip_address = 127.0.0.1\n"),
            "{text}"
        );
        assert_eq!(PeersConfig::parse(&text, "peers.ini").unwrap(), c);
    }

    #[test]
    fn keys_before_the_first_section_are_rejected() {
        let e = PeersConfig::parse("ip_address = 1.2.3.4\n[a]\n", "config/peers.ini")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config/peers.ini: key \"ip_address\" comes before the first [section]"
        );
        assert!(FileManifest::parse("filename = x\n", "f").is_err());
    }

    #[test]
    fn huge_chunks_count_reserves_nothing_and_fails() {
        let text = "[description]\nfilename = x\nchunks_count = 18446744073709551615\n";
        let e = FileManifest::parse(text, "file.ini")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "file.ini: [chunks] 0: missing");
    }

    #[test]
    fn keys_match_without_regard_to_case_like_python() {
        let text = "[Alice]\nIP_Address = 10.0.0.2\nPORT_NUMBER = 8001\n";
        let c = PeersConfig::parse(text, "peers.ini").unwrap();
        // Sections keep their case (Python's configparser does too).
        assert_eq!(c.get("Alice").unwrap().to_string(), "10.0.0.2:8001");
        assert!(c.get("alice").is_none());
    }
}
