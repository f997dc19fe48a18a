//! Resume records: which pieces were verified, and each file's size and modification time
//! when that was written down, so that a restart vouches for the pieces of unchanged
//! files instead of hashing them again (a 4 GiB torrent restarts in milliseconds).
//!
//! Safety rests on two rules. A record is written atomically (temporary file, rename), so
//! a crash leaves the old record or the new one, never half of one. And a file's stamp is
//! taken *after* the pieces the record lists were written to it: a piece written later
//! either changes the stamp (the whole file is then checked again) or is not listed (it is
//! checked again on its own). Either way nothing unverified is ever taken as verified;
//! the cost of a crash is re-hashing, never a wrong byte.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::bitfield::Bitfield;
use crate::layout::Layout;

/// Largest record read back: a bitfield of a million pieces is 250 KB of hex, and a
/// stamp per file of a 100,000-file torrent a few MB more; a bigger file is not ours.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// How often a running download writes its record at most: often enough that a crash
/// loses a second of bookkeeping (re-hashing those pieces at restart), rarely enough
/// that writing it costs nothing beside the data.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What a file looked like when the record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Its length.
    pub len: u64,
    /// Its modification time, in nanoseconds since the epoch.
    pub mtime_ns: u128,
}

/// One torrent's resume record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the record is of (an infohash in hex): a record of another torrent is ignored.
    pub id: String,
    /// The pieces verified when it was written.
    pub have: Bitfield,
    /// Per file of the layout (pad files included, as `None`), its stamp then.
    pub files: Vec<Option<Stamp>>,
}

/// Why a record cannot be used (it is then ignored and the data checked in full).
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Reading it failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The record's path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// It is larger than [`MAX_RECORD_BYTES`].
    #[error("{path}: {len} bytes, more than a record can be")]
    TooLarge {
        /// The record's path.
        path: String,
        /// Its length.
        len: u64,
    },
    /// It is not a record, or one of another torrent or layout.
    #[error("{path}: not a resume record of this torrent ({what})")]
    Foreign {
        /// The record's path.
        path: String,
        /// What did not fit.
        what: &'static str,
    },
}

/// The stamp of the file at `path` now; `None` if it is missing.
pub fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match fs::metadata(path) {
        Ok(m) => {
            let mtime_ns = m
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Ok(Some(Stamp {
                len: m.len(),
                mtime_ns,
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Record {
    /// Reads the record at `path` if there is one and it is of torrent `id` with this
    /// layout. A missing file is `Ok(None)`.
    pub fn load(path: &Path, id: &str, layout: &Layout) -> Result<Option<Record>, ResumeError> {
        let shown = || crate::root::display_path(path);
        let read = |source| ResumeError::Read {
            path: shown(),
            source,
        };
        let len = match fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        if len > MAX_RECORD_BYTES {
            return Err(ResumeError::TooLarge { path: shown(), len });
        }
        let text = fs::read(path).map_err(read)?;
        let foreign = |what| ResumeError::Foreign {
            path: shown(),
            what,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|_| foreign("not JSON"))?;
        if v["version"] != 1 {
            return Err(foreign("version"));
        }
        if v["id"] != id {
            return Err(foreign("another torrent"));
        }
        let n = layout.piece_count();
        let bytes = v["have"]
            .as_str()
            .and_then(from_hex)
            .ok_or(foreign("have"))?;
        let have = Bitfield::from_bytes(&bytes, n).ok_or(foreign("have's length"))?;
        let files = v["files"].as_array().ok_or(foreign("files"))?;
        if files.len() != layout.file_entries().len() {
            return Err(foreign("file count"));
        }
        let mut stamps = Vec::with_capacity(files.len());
        for f in files {
            stamps.push(if f.is_null() {
                None
            } else {
                let len = f["len"].as_u64().ok_or(foreign("a file's length"))?;
                let mtime_ns = f["mtime_ns"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or(foreign("a file's time"))?;
                Some(Stamp { len, mtime_ns })
            });
        }
        Ok(Some(Record {
            id: id.to_string(),
            have,
            files: stamps,
        }))
    }

    /// Writes the record to `path` atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|s| match s {
                None => serde_json::Value::Null,
                Some(s) => serde_json::json!({"len": s.len, "mtime_ns": s.mtime_ns.to_string()}),
            })
            .collect();
        let v = serde_json::json!({
            "version": 1,
            "id": self.id,
            "pieces": self.have.len(),
            "have": to_hex(self.have.as_bytes()),
            "files": files,
        });
        let body = serde_json::to_vec(&v).map_err(io::Error::other)?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::store::write_atomic(path, |f| io::Write::write_all(f, &body))
    }

    /// The pieces this record vouches for, given the files' stamps now (`paths`, one per
    /// file of `layout`): listed pieces all of whose files are unchanged.
    pub fn vouched(&self, layout: &Layout, paths: &[PathBuf]) -> io::Result<Bitfield> {
        let mut unchanged = Vec::with_capacity(paths.len());
        for (i, (p, f)) in paths.iter().zip(layout.file_entries()).enumerate() {
            unchanged.push(
                f.pad
                    || (self.files.get(i).copied().flatten().is_some()
                        && stamp(p)? == self.files[i]),
            );
        }
        let mut out = Bitfield::new(layout.piece_count());
        for i in self.have.ones() {
            if layout.spans(i).all(|s| unchanged[s.file]) {
                out.set(i);
            }
        }
        Ok(out)
    }
}

/// Keeps a download's record up to date: told of each verified piece, it writes the
/// record at most every [`SAVE_EVERY`], and on [`Recorder::save`].
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    id: String,
    paths: Vec<PathBuf>,
    pads: Vec<bool>,
    state: Mutex<(Bitfield, Instant)>,
}

impl Recorder {
    /// A recorder writing to `path` for torrent `id`, whose files are `paths` (pad files
    /// flagged in `pads`), starting from `have`.
    pub fn new(
        path: PathBuf,
        id: String,
        paths: Vec<PathBuf>,
        pads: Vec<bool>,
        have: Bitfield,
    ) -> Self {
        Recorder {
            path,
            id,
            paths,
            pads,
            state: Mutex::new((have, Instant::now())),
        }
    }

    /// Piece `index` is verified and written.
    pub fn verified(&self, index: usize) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0.set(index);
        if st.1.elapsed() >= SAVE_EVERY {
            st.1 = Instant::now();
            self.write(&st.0)?;
        }
        Ok(())
    }

    /// Writes the record now.
    pub fn save(&self) -> io::Result<()> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.write(&st.0)
    }

    fn write(&self, have: &Bitfield) -> io::Result<()> {
        // Stamps after the pieces listed were written (see the module comment).
        let mut files = Vec::with_capacity(self.paths.len());
        for (p, &pad) in self.paths.iter().zip(&self.pads) {
            files.push(if pad { None } else { stamp(p)? });
        }
        Record {
            id: self.id.clone(),
            have: have.clone(),
            files,
        }
        .save(&self.path)
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(crate::digest::hex_digit(p[0])? << 4 | crate::digest::hex_digit(p[1])?))
        .collect()
}
