//! The files of a [`Layout`] under a root directory, written in place: each verified
//! piece goes to its spans with positioned writes, from any verifier thread at once.
//!
//! Paths come from the network (a .torrent, a tracker's file name), so every component is
//! checked before anything is created: see [`check_component`]. Files are created sparse
//! at their final length (zero-length files too); pad files are never created or
//! written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::layout::Layout;

use super::PieceStore;
use super::resume::Record;

/// Open files kept at once. A torrent may list thousands of files; 64 descriptors cover
/// the files a few pieces in flight touch, far below the usual limit of 1,024.
pub const MAX_OPEN_FILES: usize = 64;

/// Why a layout's file cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A path component that could escape the root or is not a plain name.
    #[error("file {file}: refusing the path component {component:?}: {why}")]
    UnsafePath {
        /// Index of the file in the layout.
        file: usize,
        /// The component.
        component: String,
        /// What is wrong with it.
        why: UnsafeComponent,
    },
    /// Two files at one path (after names that are not UTF-8 are made lossy), or a file
    /// at a path another file needs as a directory: one would overwrite the other's
    /// pieces, and the download could never verify.
    #[error("file {file}: {path} is {clash}")]
    Clash {
        /// Index of the later file in the layout.
        file: usize,
        /// Its path under the root, shortened for display.
        path: String,
        /// How it clashes.
        clash: PathClash,
    },
    /// A file or directory on the way is a symbolic link already on disk: following it
    /// could write outside the root.
    #[error("refusing to follow the symbolic link {path}")]
    Symlink {
        /// The link, shortened for display.
        path: String,
    },
    /// More files than [`MAX_FILES`].
    #[error("{0} files: more than the {MAX_FILES} a download may create")]
    TooManyFiles(usize),
    /// Creating a file or directory failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// How two files of a layout clash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathClash {
    /// The same path as an earlier file.
    #[error("listed twice")]
    Duplicate,
    /// A file's path is a directory of another file's path (`a` and `a/b`).
    #[error("both a file and a directory")]
    FileAndDirectory,
}

/// Most files a store creates. Every file costs an inode, an `open` and a `set_len` when
/// the store is made, and about 200 bytes of paths in memory for the whole run: a
/// hostile .torrent of millions of empty files would fill the disk's inode table and
/// take minutes before a single piece is fetched. 100,000 is several times the largest
/// real torrents (software archives of tens of thousands of files); libtorrent's default
/// limit of 3,000,000 bencode tokens stops near 500,000.
pub const MAX_FILES: usize = 100_000;

/// Longest path component: `NAME_MAX` of every common filesystem. A longer one cannot be
/// created anyway, and refusing it first keeps the error to one short line.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Longest path under the root, components and separators: Linux's `PATH_MAX` (4096)
/// less room for the root itself.
pub const MAX_PATH_BYTES: usize = 3072;

/// How much of a hostile name an error message shows: enough to recognise it.
const SHOWN_BYTES: usize = 80;

/// `s` made printable ([`crate::text::printable`]) and cut to [`SHOWN_BYTES`] (at a
/// character boundary), with `…` when cut.
fn shorten(s: &str) -> String {
    let s = crate::text::printable(s);
    if s.len() <= SHOWN_BYTES {
        return s.to_string();
    }
    let mut end = SHOWN_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What makes a path component unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeComponent {
    /// No path at all.
    #[error("the path is empty")]
    NoPath,
    /// An empty component.
    #[error("empty")]
    Empty,
    /// `.` or `..`.
    #[error("a relative step")]
    Dot,
    /// Holds `/`, `\` or NUL (a separator, or a name the OS cannot take).
    #[error("holds a separator or NUL")]
    Separator,
    /// Longer than [`MAX_COMPONENT_BYTES`].
    #[error("longer than {MAX_COMPONENT_BYTES} bytes")]
    TooLong,
    /// The whole path is longer than [`MAX_PATH_BYTES`].
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
}

/// Checks one path component: not empty, not `.` or `..`, no `/`, `\` or NUL (which also
/// rules out absolute paths), at most [`MAX_COMPONENT_BYTES`].
pub fn check_component(c: &str) -> Result<(), UnsafeComponent> {
    if c.len() > MAX_COMPONENT_BYTES {
        Err(UnsafeComponent::TooLong)
    } else if c.is_empty() {
        Err(UnsafeComponent::Empty)
    } else if c == "." || c == ".." {
        Err(UnsafeComponent::Dot)
    } else if c.contains(['/', '\\', '\0']) {
        Err(UnsafeComponent::Separator)
    } else {
        Ok(())
    }
}

/// A [`PieceStore`] over the files of a layout.
#[derive(Debug)]
pub struct FilesStore {
    root: PathBuf,
    layout: Layout,
    /// Full path of each file (pad files included, never opened).
    paths: Vec<PathBuf>,
    open: Mutex<HashMap<usize, Arc<File>>>,
    have: Mutex<Bitfield>,
    /// A resume record to vouch for pieces at the next recheck.
    record: Option<Record>,
}

impl FilesStore {
    /// Checks every path, then creates the directories and files (sparse, at their
    /// lengths; an existing file keeps its content and is cut or extended to its length).
    pub fn create(root: impl Into<PathBuf>, layout: Layout) -> Result<Self, FilesError> {
        let root = root.into();
        let stored = layout.file_entries().iter().filter(|f| !f.pad).count();
        if stored > MAX_FILES {
            return Err(FilesError::TooManyFiles(stored));
        }
        let mut paths = Vec::with_capacity(layout.file_entries().len());
        for (i, f) in layout.file_entries().iter().enumerate() {
            if f.path.is_empty() {
                return Err(FilesError::UnsafePath {
                    file: i,
                    component: String::new(),
                    why: UnsafeComponent::NoPath,
                });
            }
            let unsafe_path = |c: &str, why| FilesError::UnsafePath {
                file: i,
                component: shorten(c),
                why,
            };
            let mut p = root.clone();
            for c in &f.path {
                check_component(c).map_err(|why| unsafe_path(c, why))?;
                p.push(c);
            }
            let len = f.path.iter().map(|c| c.len() + 1).sum::<usize>();
            if len > MAX_PATH_BYTES {
                return Err(unsafe_path(&f.path.join("/"), UnsafeComponent::PathTooLong));
            }
            paths.push(p);
        }
        check_clashes(&layout)?;
        let err = |p: &Path, source| FilesError::Create {
            path: shorten(&crate::root::display_path(p)),
            source,
        };
        fs::create_dir_all(&root).map_err(|e| err(&root, e))?;
        for (p, f) in paths.iter().zip(layout.file_entries()) {
            if f.pad {
                continue;
            }
            // Directory by directory, never through a link already there (a hostile
            // torrent naming `x/f` where the user has `x -> /etc`): create_dir_all would
            // follow it.
            let mut dir = root.clone();
            for c in &f.path[..f.path.len() - 1] {
                dir.push(c);
                match fs::symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(FilesError::Symlink {
                            path: shorten(&crate::root::display_path(&dir)),
                        });
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                            return Err(err(&dir, e));
                        }
                        _ => {}
                    },
                    Err(e) => return Err(err(&dir, e)),
                }
            }
            let file = open_nofollow(p, true).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    FilesError::Symlink {
                        path: shorten(&crate::root::display_path(p)),
                    }
                } else {
                    err(p, e)
                }
            })?;
            if file.metadata().map_err(|e| err(p, e))?.len() != f.len {
                file.set_len(f.len).map_err(|e| err(p, e))?;
            }
        }
        let n = layout.piece_count();
        Ok(FilesStore {
            root,
            layout,
            paths,
            open: Mutex::new(HashMap::new()),
            have: Mutex::new(Bitfield::new(n)),
            record: None,
        })
    }

    /// Lets [`PieceStore::recheck`] take the pieces `record` vouches for (those of files
    /// unchanged since it was written) without reading them; the others are hashed.
    pub fn with_record(mut self, record: Option<Record>) -> Self {
        self.record = record;
        self
    }

    /// Every file's path, pad files included (they are never created).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where file `i` lives.
    pub fn path(&self, i: usize) -> &Path {
        &self.paths[i]
    }

    fn file(&self, i: usize) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&i) {
            return Ok(f.clone());
        }
        let f = Arc::new(open_nofollow(&self.paths[i], false)?);
        if open.len() >= MAX_OPEN_FILES {
            // Any one: which files are hot is not known; a reopen costs one open(2).
            let k = *open.keys().next().expect("not empty");
            open.remove(&k);
        }
        open.insert(i, f.clone());
        Ok(f)
    }

    fn have(&self) -> std::sync::MutexGuard<'_, Bitfield> {
        self.have.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens `p` to read and write, failing with `ELOOP` if it is a symbolic link (the last
/// component: the directories above were checked when the store was created).
fn open_nofollow(p: &Path, create: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(create)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
}

/// Refuses two stored files at one path, and a stored file whose path is a directory of
/// another's. Pad files are never created, so they clash with nothing (BEP 47 torrents
/// repeat `.pad/16384`).
fn check_clashes(layout: &Layout) -> Result<(), FilesError> {
    use std::collections::HashSet;
    let stored = || {
        layout
            .file_entries()
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.pad)
    };
    let mut files: HashSet<&[String]> = HashSet::new();
    let mut dirs: HashSet<&[String]> = HashSet::new();
    for (i, f) in stored() {
        if !files.insert(&f.path) {
            return Err(FilesError::Clash {
                file: i,
                path: shorten(&f.path.join("/")),
                clash: PathClash::Duplicate,
            });
        }
        for k in 1..f.path.len() {
            dirs.insert(&f.path[..k]);
        }
    }
    if let Some((i, f)) = stored().find(|(_, f)| dirs.contains(&f.path[..])) {
        return Err(FilesError::Clash {
            file: i,
            path: shorten(&f.path.join("/")),
            clash: PathClash::FileAndDirectory,
        });
    }
    Ok(())
}

impl PieceStore for FilesStore {
    fn write_piece(&self, index: usize, data: &[u8]) -> io::Result<()> {
        if index >= self.layout.piece_count() || data.len() as u64 != self.layout.piece_len(index) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        for s in self.layout.spans(index) {
            let part = &data[s.piece_offset as usize..(s.piece_offset + s.len) as usize];
            self.file(s.file)?.write_all_at(part, s.file_offset)?;
        }
        self.have().set(index);
        Ok(())
    }

    fn read_at(&self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = self.layout.piece_len(index);
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > len) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let start = self.layout.piece_offset(index) + offset;
        // Pad bytes are zeros: fill first, then overwrite what files hold.
        buf.fill(0);
        for s in self.layout.range_spans(start..start + buf.len() as u64) {
            let part = &mut buf[s.piece_offset as usize..(s.piece_offset + s.len) as usize];
            self.file(s.file)?.read_exact_at(part, s.file_offset)?;
        }
        Ok(())
    }

    fn has(&self, index: usize) -> bool {
        self.have().has(index)
    }

    fn recheck(&self, digests: &[Digest]) -> io::Result<Bitfield> {
        let known = match &self.record {
            Some(r) => r.vouched(&self.layout, &self.paths)?,
            None => Bitfield::new(self.layout.piece_count()),
        };
        if known.count() > 0 {
            log::info!(
                "resume record vouches for {} of {}; checking the others",
                known.count(),
                crate::text::count(known.len(), "piece", "pieces")
            );
        }
        let threads = super::recheck::threads();
        let have = super::recheck::recheck_except(self, &self.layout, digests, threads, &known)?;
        *self.have() = have.clone();
        Ok(have)
    }

    fn location(&self) -> String {
        crate::root::display_path(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlgo;

    fn f(path: &[&str], len: u64, pad: bool) -> (Vec<String>, u64, bool) {
        (path.iter().map(|s| s.to_string()).collect(), len, pad)
    }

    #[test]
    fn writes_pieces_across_files_and_reads_them_back() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::files(
            vec![
                f(&["empty"], 0, false),
                f(&["dir", "a"], 5, false),
                f(&[".pad", "3"], 3, true),
                f(&["dir", "sub", "b"], 4, false),
            ],
            4,
        )
        .unwrap();
        let data: Vec<u8> = b"hello\0\0\0wrld".to_vec();
        let digests: Vec<Digest> = data
            .chunks(4)
            .map(|c| Digest::of(HashAlgo::Sha224, c))
            .collect();
        let s = FilesStore::create(d.path(), layout).unwrap();
        assert!(d.path().join("empty").is_file());
        assert!(!d.path().join(".pad").exists());
        assert_eq!(fs::metadata(d.path().join("dir/a")).unwrap().len(), 5);
        assert_eq!(s.recheck(&digests).unwrap().count(), 0);
        for (i, c) in data.chunks(4).enumerate() {
            s.write_piece(i, c).unwrap();
        }
        assert_eq!(fs::read(d.path().join("dir/a")).unwrap(), b"hello");
        assert_eq!(fs::read(d.path().join("dir/sub/b")).unwrap(), b"wrld");
        let mut b = [9u8; 4];
        s.read_at(1, 0, &mut b).unwrap();
        assert_eq!(&b, b"o\0\0\0");
        assert!(s.read_at(1, 2, &mut b).is_err(), "past the piece");
        // A fresh store over the same files finds every piece.
        let s2 = FilesStore::create(d.path(), s.layout().clone()).unwrap();
        assert!(s2.recheck(&digests).unwrap().is_full());
        assert!(s2.has(2));
        assert!(s2.write_piece(0, b"short").is_err());
    }

    #[test]
    fn refuses_paths_that_leave_the_root() {
        let d = tempfile::tempdir().unwrap();
        for bad in [
            &[""][..],
            &["."],
            &[".."],
            &["a", ".."],
            &["/etc"],
            &["a\\b"],
            &["a\0"],
            &[],
        ] {
            let layout = Layout::files(vec![f(bad, 1, false)], 4).unwrap();
            assert!(
                matches!(
                    FilesStore::create(d.path().join("r"), layout),
                    Err(FilesError::UnsafePath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(!d.path().join("r").exists(), "nothing created");
    }

    #[test]
    fn refuses_clashing_paths_and_links_but_not_repeated_pads() {
        let d = tempfile::tempdir().unwrap();
        let clash = |files| {
            let layout = Layout::files(files, 4).unwrap();
            match FilesStore::create(d.path().join("c"), layout) {
                Err(FilesError::Clash { clash, .. }) => Some(clash),
                _ => None,
            }
        };
        assert_eq!(
            clash(vec![f(&["a"], 1, false), f(&["a"], 2, false)]),
            Some(PathClash::Duplicate)
        );
        assert_eq!(
            clash(vec![f(&["a", "b"], 1, false), f(&["a"], 2, false)]),
            Some(PathClash::FileAndDirectory)
        );
        // BEP 47 pads repeat their names, and are never created.
        let pads = vec![
            f(&["a"], 3, false),
            f(&[".pad", "1"], 1, true),
            f(&["b"], 3, false),
            f(&[".pad", "1"], 1, true),
        ];
        assert_eq!(clash(pads), None);
        // A link on the way, or at the file itself, is never followed.
        let root = d.path().join("l");
        fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(d.path().join("x"), root.join("file")).unwrap();
        for path in [&["up", "x"][..], &["file"], &["real", "..", "up"]] {
            let layout = Layout::files(vec![f(path, 1, false)], 4).unwrap();
            let e = FilesStore::create(&root, layout).unwrap_err();
            assert!(
                matches!(
                    e,
                    FilesError::Symlink { .. } | FilesError::UnsafePath { .. }
                ),
                "{path:?}: {e}"
            );
        }
        assert!(!d.path().join("x").exists());
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::digest::HashAlgo;
    use crate::storage::resume::Recorder;

    /// A record vouches for pieces of unchanged files only; a changed file is hashed
    /// again and its changed piece is found; a record of another torrent is refused.
    #[test]
    fn a_record_spares_hashing_unchanged_files_and_never_vouches_for_changed_ones() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::files(
            vec![
                (vec!["a".to_string()], 8, false),
                (vec!["b".to_string()], 8, false),
            ],
            4,
        )
        .unwrap();
        let data = b"0123456789abcdef";
        let digests: Vec<Digest> = data
            .chunks(4)
            .map(|c| Digest::of(HashAlgo::Sha1, c))
            .collect();
        let s = FilesStore::create(d.path(), layout.clone()).unwrap();
        let rec_path = d.path().join(".swarmlet/x.resume");
        let pads = vec![false, false];
        let r = Recorder::new(
            rec_path.clone(),
            "x".into(),
            s.paths().to_vec(),
            pads,
            Bitfield::new(4),
        );
        for (i, c) in data.chunks(4).enumerate() {
            s.write_piece(i, c).unwrap();
            r.verified(i).unwrap();
        }
        r.save().unwrap();
        let rec = Record::load(&rec_path, "x", &layout).unwrap().unwrap();
        assert!(rec.have.is_full());
        assert!(rec.vouched(&layout, s.paths()).unwrap().is_full());
        // Change a byte of b behind its back: b's pieces are no longer vouched for, and
        // the recheck finds the changed one.
        let mut b = fs::read(d.path().join("b")).unwrap();
        b[5] ^= 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(d.path().join("b"), &b).unwrap();
        let v = rec.vouched(&layout, s.paths()).unwrap();
        assert_eq!(v.ones().collect::<Vec<_>>(), vec![0, 1]);
        let s2 = FilesStore::create(d.path(), layout.clone())
            .unwrap()
            .with_record(Some(rec));
        let have = s2.recheck(&digests).unwrap();
        assert_eq!(have.ones().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(Record::load(&rec_path, "other", &layout).is_err());
        assert!(
            Record::load(&d.path().join("none"), "x", &layout)
                .unwrap()
                .is_none()
        );
        fs::write(&rec_path, b"garbage").unwrap();
        assert!(Record::load(&rec_path, "x", &layout).is_err());
    }
}
