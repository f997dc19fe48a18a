//! The chunk tools' library side: split a file of `files/` into chunk directories and
//! write `config/file.ini` (create_chunks), concatenate chunks back into a file
//! (merge_chunks), and compare two files (check_file).
//!
//! Everything streams: splitting holds one chunk in memory, merging and comparing hold a
//! few fixed-size buffers, so a 1 GiB file costs no more memory than a 1 MiB one.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, FileManifest, ManifestChunk};
use crate::hash::{ChunkHash, ChunkHasher};
use crate::root::{FileNameError, Root, check_file_name, display_path};
use crate::store::{ChunkStore, write_atomic};

/// The course's chunk size: 512 KiB.
pub const DEFAULT_CHUNK_SIZE: usize = 512 * 1024;

/// The course's two peers, in the order the thirds rule uses them.
pub const DEFAULT_PEERS: [&str; 2] = ["alice", "bob"];

/// The downloader's chunk directory name; it is emptied by [`split_file`] like the course's
/// script does, and it may not be used as a peer name.
pub const DOWNLOADER: &str = "charlie";

/// The most chunks a file may have: FILE_INFO's chunks_count is a u16.
pub const MAX_CHUNKS: usize = u16::MAX as usize;

/// The largest chunk size: CHUNK's content_length is a u32.
pub const MAX_CHUNK_SIZE: usize = u32::MAX as usize;

/// The chunk directories the course's create_chunks empties whatever peers are named.
const COURSE_CHUNK_DIRS: [&str; 3] = ["alice", "bob", DOWNLOADER];

/// Decides which peers hold each of `n_chunks` chunks; entry `i` names the holders of
/// chunk `i` (0-based), in the order they appear in `peers`.
///
/// - **Two peers** (the course's `[alice, bob]`, or any two names in that role): the course
///   rule. Chunk `k` (1-based) goes to the first peer alone if `k ≤ ⌈n/3⌉`, to both if
///   `k ≤ ⌈2n/3⌉`, else to the second alone. With 7 chunks: 0–2 alice, 3–4 both, 5–6 bob.
/// - **One peer**: it holds every chunk.
/// - **N > 2 peers**: every chunk is held by exactly two peers, chunk `k` (0-based) by peers
///   `k mod N` and `(k + ⌈N/2⌉) mod N`: the two copies sit half-way round the ring of
///   peers from each other. Every peer then holds `⌊2n/N⌋` or `⌈2n/N⌉` chunks (each full
///   round of N chunks gives every peer exactly two; in the last partial round of `r`
///   chunks the primary copies go to peers `0..r` and the second copies to the `r` peers
///   starting half-way round, which overlap only once they cover the whole ring).
///   Consecutive chunks have different primary peers, so a downloader fetching in order
///   spreads its requests over every peer.
/// - **No peers**: every chunk gets an empty list (callers such as [`split_file`] refuse
///   that case before asking).
///
/// Deterministic: the same arguments always give the same answer.
pub fn assign_peers(n_chunks: usize, peers: &[String]) -> Vec<Vec<String>> {
    match peers {
        [] => vec![Vec::new(); n_chunks],
        [only] => vec![vec![only.clone()]; n_chunks],
        [first, second] => {
            // ⌈n/3⌉ and ⌈2n/3⌉ = n − ⌊n/3⌋, written so that nothing can overflow.
            let first_only = n_chunks.div_ceil(3);
            let up_to_both = n_chunks - n_chunks / 3;
            (1..=n_chunks)
                .map(|k| {
                    if k <= first_only {
                        vec![first.clone()]
                    } else if k <= up_to_both {
                        vec![first.clone(), second.clone()]
                    } else {
                        vec![second.clone()]
                    }
                })
                .collect()
        }
        _ => {
            let n = peers.len();
            let half = n.div_ceil(2);
            (0..n_chunks)
                .map(|k| {
                    let a = k % n;
                    let b = (a + half) % n;
                    vec![peers[a.min(b)].clone(), peers[a.max(b)].clone()]
                })
                .collect()
        }
    }
}

/// Why a peer list cannot be used to split a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNameError {
    /// No peer at all.
    #[error("no peers named")]
    NoPeers,
    /// A name that cannot be a chunk directory or a peers.ini section.
    #[error(
        "{0:?} is not a valid peer name (letters, digits, '_', '-' and '.' only, \
         not starting with '.')"
    )]
    Invalid(String),
    /// The tracker's or the downloader's name.
    #[error("{0:?} is reserved (the tracker's or the downloader's name), not a peer")]
    Reserved(String),
    /// The same peer twice.
    #[error("peer {0:?} is named twice")]
    Duplicate(String),
}

/// Checks a peer list: non-empty, distinct names that are safe as directory names and as
/// peers.ini sections, and not `tracker` or `charlie`.
pub fn check_peer_names(peers: &[String]) -> Result<(), PeerNameError> {
    if peers.is_empty() {
        return Err(PeerNameError::NoPeers);
    }
    for (i, p) in peers.iter().enumerate() {
        let ok_chars = p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if p.is_empty() || p.starts_with('.') || !ok_chars {
            return Err(PeerNameError::Invalid(p.clone()));
        }
        if p == crate::config::TRACKER_SECTION || p == DOWNLOADER {
            return Err(PeerNameError::Reserved(p.clone()));
        }
        if peers[..i].contains(p) {
            return Err(PeerNameError::Duplicate(p.clone()));
        }
    }
    Ok(())
}

/// What went wrong while splitting a file.
#[derive(Debug, thiserror::Error)]
pub enum ChunkerError {
    /// The file name is not usable.
    #[error(transparent)]
    FileName(#[from] FileNameError),
    /// The peer list is not usable.
    #[error(transparent)]
    Peers(#[from] PeerNameError),
    /// The file to split does not exist.
    #[error("{path}: no such file (create_chunks splits files found in files/)")]
    NotFound {
        /// The missing file.
        path: String,
    },
    /// The path exists but is not a regular file.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// The file is empty: it would have no chunk, which neither file.ini nor the wire can
    /// describe usefully.
    #[error("{path}: the file is empty; there is nothing to share")]
    EmptyFile {
        /// The empty file.
        path: String,
    },
    /// A chunk size of 0.
    #[error("the chunk size must be at least 1 byte")]
    ZeroChunkSize,
    /// A chunk size beyond what a CHUNK message can carry.
    #[error(
        "chunk size {chunk_size} exceeds {MAX_CHUNK_SIZE} bytes, the most a CHUNK \
         message's u32 content_length can carry"
    )]
    ChunkTooLarge {
        /// The requested size.
        chunk_size: usize,
    },
    /// More chunks than FILE_INFO's u16 chunks_count can announce.
    #[error(
        "{path}: {size} bytes in chunks of {chunk_size} make {chunks} chunks, but the \
         wire's chunks_count is a u16 (at most {MAX_CHUNKS} chunks); use a chunk size of \
         at least {min_chunk_size} bytes"
    )]
    TooManyChunks {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The requested chunk size.
        chunk_size: usize,
        /// How many chunks that would make.
        chunks: u64,
        /// The smallest chunk size that fits.
        min_chunk_size: u64,
    },
    /// The file's size changed while it was being split, so the chunks do not describe one
    /// version of it.
    #[error("{path}: the file changed while it was being split ({expected} bytes expected)")]
    Changed {
        /// The file.
        path: String,
        /// Its size when splitting began.
        expected: u64,
    },
    /// Reading the file or writing a chunk or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing config/file.ini failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ChunkerError + '_ {
    move |source| ChunkerError::Io {
        path: display_path(path),
        source,
    }
}

/// Splits `files/<filename>` under `root` into chunks of `chunk_size` bytes (the last one
/// shorter, unpadded) and writes `config/file.ini`; returns the manifest it wrote.
///
/// Like the course's create_chunks it first empties `chunks/alice`, `chunks/bob` and
/// `chunks/charlie`, plus the directory of every named peer (created if needed); dot-files
/// such as `.gitkeep` survive. It also removes the old `config/file.ini` at that point, so
/// that if the split then fails half-way no file.ini describes chunks that are gone; a
/// split that fails half-way also removes the chunks it wrote, leaving the directories
/// empty rather than holding a set no file.ini describes. Everything that can be checked
/// beforehand (names, sizes, the chunk limit) is checked
/// before anything is deleted.
///
/// Each chunk is written atomically as `chunks/<peer>/<sha1hex>.bin` for every peer
/// [`assign_peers`] gives it. Two chunks with the same content share one file name; that
/// is harmless, since a name always denotes the same bytes. Memory holds one chunk.
pub fn split_file(
    root: &Root,
    filename: &str,
    chunk_size: usize,
    peers: &[String],
) -> Result<FileManifest, ChunkerError> {
    split_file_with_progress(root, filename, chunk_size, peers, |_| {})
}

/// [`split_file`], calling `progress` with the number of bytes read so far after each
/// chunk (for a progress bar).
pub fn split_file_with_progress(
    root: &Root,
    filename: &str,
    chunk_size: usize,
    peers: &[String],
    mut progress: impl FnMut(u64),
) -> Result<FileManifest, ChunkerError> {
    check_file_name(filename)?;
    check_peer_names(peers)?;
    if chunk_size == 0 {
        return Err(ChunkerError::ZeroChunkSize);
    }
    if chunk_size > MAX_CHUNK_SIZE {
        return Err(ChunkerError::ChunkTooLarge { chunk_size });
    }

    let path = root.files_dir().join(filename);
    let shown = display_path(&path);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ChunkerError::NotFound { path: shown });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let meta = file.metadata().map_err(io_err(&path))?;
    if !meta.is_file() {
        return Err(ChunkerError::NotAFile { path: shown });
    }
    let size = meta.len();
    if size == 0 {
        return Err(ChunkerError::EmptyFile { path: shown });
    }
    let chunks = size.div_ceil(chunk_size as u64);
    if chunks > MAX_CHUNKS as u64 {
        return Err(ChunkerError::TooManyChunks {
            path: shown,
            size,
            chunk_size,
            chunks,
            min_chunk_size: size.div_ceil(MAX_CHUNKS as u64),
        });
    }
    let n_chunks = chunks as usize;
    let holders = assign_peers(n_chunks, peers);

    // Validation is over: from here on the old split is replaced.
    let file_ini = root.file_ini();
    match fs::remove_file(&file_ini) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&file_ini)(e)),
        _ => {}
    }
    for name in COURSE_CHUNK_DIRS {
        let dir = root.chunks_dir(name);
        ChunkStore::new(&dir).clear().map_err(io_err(&dir))?;
    }
    let mut stores = Vec::with_capacity(peers.len());
    for name in peers {
        let dir = root.chunks_dir(name);
        let store = ChunkStore::create(&dir).map_err(io_err(&dir))?;
        store.clear().map_err(io_err(&dir))?;
        stores.push((name.as_str(), store));
    }

    let result = write_chunks(
        &mut file,
        &path,
        size,
        chunk_size,
        holders,
        &stores,
        &mut progress,
    )
    .and_then(|chunks| {
        let manifest = FileManifest {
            filename: filename.to_string(),
            chunks,
        };
        let config_dir = root.config_dir();
        fs::create_dir_all(&config_dir).map_err(io_err(&config_dir))?;
        manifest.save(&file_ini)?;
        Ok(manifest)
    });
    if result.is_err() {
        // A split that stops halfway (disk full, the file changed) takes back the chunks
        // it wrote: peers would otherwise serve a set that no file.ini describes. Best
        // effort; the error that stopped the split is the one reported.
        for (_, store) in &stores {
            if let Err(e) = store.clear() {
                log::warn!(
                    "cannot remove the partial split in {}: {e}",
                    store.dir().display()
                );
            }
        }
    }
    result
}

/// Reads `file` (of `size` bytes) chunk by chunk and writes each chunk to the stores of
/// the peers `holders` names for it; returns the chunks in order.
fn write_chunks(
    file: &mut File,
    path: &Path,
    size: u64,
    chunk_size: usize,
    holders: Vec<Vec<String>>,
    stores: &[(&str, ChunkStore)],
    progress: &mut impl FnMut(u64),
) -> Result<Vec<ManifestChunk>, ChunkerError> {
    let shown = display_path(path);
    // A file smaller than one chunk needs no more buffer than its own size.
    let mut buf = vec![0u8; chunk_size.min(usize::try_from(size).unwrap_or(usize::MAX))];
    let mut chunks = Vec::with_capacity(holders.len());
    let mut done = 0u64;
    for (index, chunk_peers) in holders.into_iter().enumerate() {
        let len = read_full(file, &mut buf).map_err(io_err(path))?;
        let expected_len = (size - done).min(chunk_size as u64) as usize;
        if len != expected_len {
            return Err(ChunkerError::Changed {
                path: shown,
                expected: size,
            });
        }
        let data = &buf[..len];
        let hash = ChunkHash::of(data);
        for peer in &chunk_peers {
            let (_, store) = stores
                .iter()
                .find(|(n, _)| n == peer)
                .expect("assign_peers only names given peers");
            let chunk_path = store.path(&hash);
            store.write(&hash, data).map_err(io_err(&chunk_path))?;
        }
        log::debug!(
            "chunk {index}: {hash} ({len} bytes) -> {}",
            chunk_peers.join(", ")
        );
        chunks.push(ManifestChunk {
            hash,
            peers: chunk_peers,
        });
        done += len as u64;
        progress(done);
    }
    // The file must end where its size said it would.
    if read_full(file, &mut buf[..1]).map_err(io_err(path))? != 0 {
        return Err(ChunkerError::Changed {
            path: shown,
            expected: size,
        });
    }
    Ok(chunks)
}

/// Fills `buf` from `r` as far as it can; returns fewer bytes than `buf.len()` only at
/// end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What went wrong while merging chunks.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No chunks to merge: a list of zero chunks never comes from a real split.
    #[error("no chunks to merge")]
    NoChunks,
    /// Chunks absent from the store; nothing was written.
    #[error(
        "missing {} of {} in {dir}: chunk{} {}",
        missing.len(),
        crate::text::count(*total, "chunk", "chunks"),
        if missing.len() == 1 { "" } else { "s" },
        IndexList(missing)
    )]
    Missing {
        /// The store's directory.
        dir: String,
        /// Every missing chunk index (0-based, ascending).
        missing: Vec<usize>,
        /// How many chunks the file has.
        total: usize,
    },
    /// A chunk whose content does not hash to its name (corrupted on disk); nothing was
    /// written.
    #[error("chunk {index} ({path}) is corrupt: its content does not match its SHA-1 name")]
    Corrupt {
        /// The chunk's index.
        index: usize,
        /// Its file.
        path: String,
    },
    /// Reading a chunk or writing the output failed; nothing was written.
    #[error("{path}: {source}")]
    Io {
        /// The chunk or output file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
}

pub use crate::download::report::IndexList;

/// The size of each chunk in `hashes`, or the error listing **every** missing index (so
/// a merge fails before writing anything, and says all that is wrong at once).
fn chunk_sizes(store: &ChunkStore, hashes: &[ChunkHash]) -> Result<Vec<u64>, MergeError> {
    if hashes.is_empty() {
        return Err(MergeError::NoChunks);
    }
    let mut sizes = Vec::with_capacity(hashes.len());
    let mut missing = Vec::new();
    for (index, hash) in hashes.iter().enumerate() {
        match fs::metadata(store.path(hash)) {
            Ok(m) if m.is_file() => sizes.push(m.len()),
            Ok(_) => missing.push(index),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(index),
            Err(source) => {
                return Err(MergeError::Io {
                    path: display_path(&store.path(hash)),
                    source,
                });
            }
        }
    }
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            dir: display_path(store.dir()),
            missing,
            total: hashes.len(),
        });
    }
    Ok(sizes)
}

/// Concatenates the chunks named by `hashes`, in that order, from `store` into `dest`;
/// returns the number of bytes written.
///
/// The list may come from file.ini or from the network: nothing here depends on where.
/// If any chunk is missing, the error lists every missing index and nothing is written.
/// The output is written atomically (a temporary file renamed over `dest`), so a failure
/// half-way, including a chunk whose content no longer matches its hash (each chunk is
/// hashed as it is copied), leaves `dest` as it was. Memory use is a fixed-size copy
/// buffer whatever the file size.
pub fn merge_chunks(
    store: &ChunkStore,
    hashes: &[ChunkHash],
    dest: &Path,
) -> Result<u64, MergeError> {
    chunk_sizes(store, hashes)?;

    // write_atomic's closure can only return io::Error; the typed cause is kept aside.
    let mut failure: Option<MergeError> = None;
    let mut written = 0u64;
    let result = write_atomic(dest, |out| {
        for (index, hash) in hashes.iter().enumerate() {
            let path = store.path(hash);
            let fail = |source| MergeError::Io {
                path: display_path(&path),
                source,
            };
            let (file, _) = match store.open(hash) {
                Ok(Some(f)) => f,
                // Deleted since the check above.
                Ok(None) => {
                    failure = Some(MergeError::Missing {
                        dir: display_path(store.dir()),
                        missing: vec![index],
                        total: hashes.len(),
                    });
                    return Err(io::Error::other("chunk missing"));
                }
                Err(e) => {
                    failure = Some(fail(e));
                    return Err(io::Error::other("chunk unreadable"));
                }
            };
            let mut reader = HashingReader {
                inner: file,
                hasher: ChunkHasher::new(),
                read_failed: false,
            };
            match io::copy(&mut reader, out) {
                Ok(n) => written += n,
                Err(source) => {
                    // io::copy does not say which side failed; the reader remembers.
                    let path = if reader.read_failed {
                        path.as_path()
                    } else {
                        dest
                    };
                    failure = Some(MergeError::Io {
                        path: display_path(path),
                        source,
                    });
                    return Err(io::Error::other("copy failed"));
                }
            }
            if reader.hasher.finish() != *hash {
                failure = Some(MergeError::Corrupt {
                    index,
                    path: display_path(&path),
                });
                return Err(io::Error::other("chunk corrupt"));
            }
        }
        out.flush()
    });
    match (result, failure) {
        (Ok(()), _) => Ok(written),
        (Err(_), Some(f)) => Err(f),
        (Err(source), None) => Err(MergeError::Io {
            path: display_path(dest),
            source,
        }),
    }
}

/// Concatenates chunks that **this process has already verified** (Charlie's, right after
/// its download: every fetched chunk was hashed in memory before it was written, every
/// resumed one was re-hashed from disk when the run started), without hashing them a
/// second time. Same contract as [`merge_chunks`] otherwise: every missing index is
/// listed, and `dest` is written atomically or not at all.
///
/// Each chunk is moved with `copy_file_range(2)`: a kernel copy, with no trip through
/// user space and no 8 KiB copy buffer. One thread: writes into one file are serialised
/// by the kernel anyway (a two-thread version spent its time spinning on the inode's
/// lock). Charlie uses it only when the file could not be written in place during the
/// download (`course::in_place` spilled it into chunk files); the `merge_chunks` tool uses [`merge_chunks`], whose chunks
/// may come from anywhere.
pub fn merge_verified_chunks(
    store: &ChunkStore,
    hashes: &[ChunkHash],
    dest: &Path,
) -> Result<u64, MergeError> {
    // Sizes first: a missing chunk fails before any write.
    let sizes = chunk_sizes(store, hashes)?;
    // write_atomic's closure can only return io::Error; the typed cause is kept aside.
    let mut failure: Option<MergeError> = None;
    let mut offset = 0u64;
    let result = write_atomic(dest, |out| {
        for (hash, &len) in hashes.iter().zip(&sizes) {
            let path = store.path(hash);
            let copied = File::open(&path).and_then(|chunk| copy_range(&chunk, out, offset, len));
            if let Err(source) = copied {
                // The source is named unless the output failed (a full disk, say).
                let path = match fs::metadata(&path) {
                    Ok(m) if m.len() == len => dest.to_path_buf(),
                    _ => path,
                };
                failure = Some(MergeError::Io {
                    path: display_path(&path),
                    source,
                });
                return Err(io::Error::other("merge failed"));
            }
            offset += len;
        }
        Ok(())
    });
    match (result, failure) {
        (Ok(()), _) => Ok(offset),
        (Err(_), Some(f)) => Err(f),
        (Err(source), None) => Err(MergeError::Io {
            path: display_path(dest),
            source,
        }),
    }
}

/// Copies `len` bytes from the start of `src` to `offset` in `out` with
/// `copy_file_range(2)`, falling back to positioned reads and writes where the kernel
/// cannot (different filesystems on old kernels, some network filesystems). Neither
/// file's position is used, so several threads may write into `out` at once.
pub(crate) fn copy_range(src: &File, out: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out): (libc::loff_t, libc::loff_t) = (0, offset as libc::loff_t);
    let mut left = len;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the duration of the call (borrowed
        // files) and the offsets point to live locals.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                out.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n > 0 {
            left -= n as u64;
            continue;
        }
        if n == 0 {
            // The chunk is shorter than its size a moment ago: it changed under us.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunk shrank while being merged",
            ));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM) => {
                break; // the kernel cannot copy these two files: do it by hand
            }
            _ => return Err(e),
        }
    }
    let mut buf = vec![0u8; if left > 0 { MERGE_FALLBACK_BUF } else { 0 }];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = src.read_at(&mut buf[..want], off_in as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunk shrank while being merged",
            ));
        }
        out.write_all_at(&buf[..n], off_out as u64)?;
        off_in += n as libc::loff_t;
        off_out += n as libc::loff_t;
        left -= n as u64;
    }
    Ok(())
}

/// Copy buffer of [`copy_range`]'s fallback: 1 MiB moves a course chunk in one or two
/// system calls, and there is one per merging thread at most.
const MERGE_FALLBACK_BUF: usize = 1 << 20;

/// Hashes what passes through it, so that a chunk is verified in the same pass that
/// copies it.
struct HashingReader<R> {
    inner: R,
    hasher: ChunkHasher,
    read_failed: bool,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.read_failed = e.kind() != io::ErrorKind::Interrupted;
        })?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The outcome of [`compare_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same length, same bytes.
    Identical {
        /// The common length in bytes.
        len: u64,
    },
    /// The files differ.
    Different {
        /// Offset of the first byte that differs; when one file is a prefix of the other,
        /// this is the shorter one's length.
        first_difference: u64,
        /// Length of the first file.
        len_a: u64,
        /// Length of the second file.
        len_b: u64,
    },
}

impl Comparison {
    /// Whether the files are identical.
    pub fn is_identical(&self) -> bool {
        matches!(self, Comparison::Identical { .. })
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Comparison::Identical { len } => write!(f, "identical ({len} bytes)"),
            Comparison::Different {
                first_difference,
                len_a,
                len_b,
            } if len_a != len_b && first_difference == len_a.min(len_b) => write!(
                f,
                "sizes differ ({len_a} vs {len_b} bytes); the first {first_difference} \
                 bytes are equal"
            ),
            Comparison::Different {
                first_difference,
                len_a,
                len_b,
            } => {
                write!(f, "first difference at byte {first_difference}")?;
                if len_a == len_b {
                    write!(f, " (both {len_a} bytes)")
                } else {
                    write!(f, " (sizes differ too: {len_a} vs {len_b} bytes)")
                }
            }
        }
    }
}

/// Compares two files byte by byte, streaming both in fixed-size blocks. I/O errors name
/// the file they concern.
pub fn compare_files(a: &Path, b: &Path) -> io::Result<Comparison> {
    const BLOCK: usize = 256 * 1024;
    fn with_path(p: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
        move |e| io::Error::new(e.kind(), format!("{}: {e}", display_path(p)))
    }
    let open = |p: &Path| -> io::Result<(File, u64)> {
        let f = File::open(p).map_err(with_path(p))?;
        let len = f.metadata().map_err(with_path(p))?.len();
        Ok((f, len))
    };
    let (mut fa, _) = open(a)?;
    let (mut fb, _) = open(b)?;
    let mut ba = vec![0u8; BLOCK];
    let mut bb = vec![0u8; BLOCK];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(with_path(a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(with_path(b))?;
        let common = na.min(nb);
        if let Some(i) = ba[..common]
            .iter()
            .zip(&bb[..common])
            .position(|(x, y)| x != y)
        {
            let first_difference = offset + i as u64;
            return Ok(Comparison::Different {
                first_difference,
                len_a: offset + na as u64 + remaining(&mut fa).map_err(with_path(a))?,
                len_b: offset + nb as u64 + remaining(&mut fb).map_err(with_path(b))?,
            });
        }
        if na != nb {
            return Ok(Comparison::Different {
                first_difference: offset + common as u64,
                len_a: offset + na as u64 + remaining(&mut fa).map_err(with_path(a))?,
                len_b: offset + nb as u64 + remaining(&mut fb).map_err(with_path(b))?,
            });
        }
        if na == 0 {
            return Ok(Comparison::Identical { len: offset });
        }
        offset += na as u64;
    }
}

/// How many bytes are left to read, counted by reading them (so a file that grew or
/// shrank since it was opened is measured as it is read, consistently with the rest of
/// the comparison).
fn remaining(f: &mut File) -> io::Result<u64> {
    io::copy(f, &mut io::sink())
}

/// Paths of the chunk tools' files under `root`, for the binaries: the original
/// (`files/<name>`) and the merged copy (`chunks/charlie/<name>`).
pub fn original_and_merged(root: &Root, filename: &str) -> (PathBuf, PathBuf) {
    (
        root.files_dir().join(filename),
        root.chunks_dir(DOWNLOADER).join(filename),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The course rule written the way the statement says it, with real division.
    fn course_rule(n: usize, k1: usize) -> &'static [&'static str] {
        let third = (n as f64 / 3.0).ceil() as usize;
        let two_thirds = (2.0 * n as f64 / 3.0).ceil() as usize;
        if k1 <= third {
            &["alice"]
        } else if k1 <= two_thirds {
            &["alice", "bob"]
        } else {
            &["bob"]
        }
    }

    #[test]
    fn course_thirds() {
        let ab = names(&DEFAULT_PEERS);
        for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 65534, 65535] {
            let got = assign_peers(n, &ab);
            assert_eq!(got.len(), n);
            for (i, holders) in got.iter().enumerate() {
                assert_eq!(holders, &names(course_rule(n, i + 1)), "n={n} chunk {i}");
            }
        }
    }

    #[test]
    fn course_thirds_small_cases_spelled_out() {
        let ab = names(&DEFAULT_PEERS);
        let a = names(&["alice"]);
        let both = names(&["alice", "bob"]);
        let b = names(&["bob"]);
        assert_eq!(assign_peers(0, &ab), Vec::<Vec<String>>::new());
        assert_eq!(assign_peers(1, &ab), vec![a.clone()]);
        assert_eq!(assign_peers(2, &ab), vec![a.clone(), both.clone()]);
        assert_eq!(
            assign_peers(3, &ab),
            vec![a.clone(), both.clone(), b.clone()]
        );
        assert_eq!(
            assign_peers(7, &ab),
            vec![
                a.clone(),
                a.clone(),
                a.clone(),
                both.clone(),
                both.clone(),
                b.clone(),
                b
            ]
        );
        // 65,535: ⌈n/3⌉ = 21,845 = ⌈2n/3⌉ − 21,845, so the thirds are exact.
        let big = assign_peers(65535, &ab);
        assert_eq!(big[21844], a);
        assert_eq!(big[21845], both);
        assert_eq!(big[43689], both);
        assert_eq!(big[43690], names(&["bob"]));
        let count = |who: &str| big.iter().filter(|h| h.iter().any(|p| p == who)).count();
        assert_eq!((count("alice"), count("bob")), (43690, 43690));
    }

    #[test]
    fn one_peer_gets_everything() {
        let solo = names(&["solo"]);
        assert_eq!(assign_peers(3, &solo), vec![solo.clone(); 3]);
        assert_eq!(assign_peers(2, &[]), vec![Vec::<String>::new(); 2]);
    }

    #[test]
    fn many_peers_two_copies_even_load() {
        for n_peers in 3..=9 {
            let peers: Vec<String> = (0..n_peers).map(|i| format!("p{i}")).collect();
            for n in 0..=40 {
                let got = assign_peers(n, &peers);
                assert_eq!(got, assign_peers(n, &peers), "deterministic");
                let mut load = vec![0usize; n_peers];
                for holders in &got {
                    assert_eq!(holders.len(), 2);
                    assert_ne!(holders[0], holders[1]);
                    let idx: Vec<usize> = holders
                        .iter()
                        .map(|h| peers.iter().position(|p| p == h).unwrap())
                        .collect();
                    assert!(idx[0] < idx[1], "holders in peer order");
                    for i in idx {
                        load[i] += 1;
                    }
                }
                let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(max - min <= 1, "{n_peers} peers, {n} chunks: load {load:?}");
            }
        }
        // Spelled out for three peers: copies half-way round the ring (offset 2).
        let abc = names(&["a", "b", "c"]);
        assert_eq!(
            assign_peers(4, &abc),
            vec![
                names(&["a", "c"]),
                names(&["a", "b"]),
                names(&["b", "c"]),
                names(&["a", "c"])
            ]
        );
    }

    #[test]
    fn split_reports_progress_per_chunk() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        fs::create_dir_all(root.files_dir()).unwrap();
        fs::write(root.files_dir().join("f"), vec![7u8; 2500]).unwrap();
        let mut seen = Vec::new();
        let m =
            split_file_with_progress(&root, "f", 1000, &names(&["p"]), |n| seen.push(n)).unwrap();
        assert_eq!(seen, [1000, 2000, 2500]);
        // Chunks 0 and 1 have the same content, hence one file for both.
        assert_eq!(m.chunks[0].hash, m.chunks[1].hash);
        let store = ChunkStore::new(root.chunks_dir("p"));
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(FileManifest::load(&root.file_ini()).unwrap(), m);
    }

    #[test]
    fn index_list_ranges() {
        assert_eq!(IndexList(&[1, 4]).to_string(), "1, 4");
        assert_eq!(IndexList(&[0, 1, 2, 5, 7, 8]).to_string(), "0-2, 5, 7-8");
        assert_eq!(IndexList(&[]).to_string(), "");
    }

    #[test]
    fn name_checks() {
        assert!(check_peer_names(&names(&["alice", "bob-2", "c_3"])).is_ok());
        assert_eq!(check_peer_names(&[]), Err(PeerNameError::NoPeers));
        for bad in ["", ".x", "a/b", "a b", "a,b", ".."] {
            assert!(check_peer_names(&names(&[bad])).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_peer_names(&names(&["charlie"])),
            Err(PeerNameError::Reserved(_))
        ));
        assert!(matches!(
            check_peer_names(&names(&["a", "b", "a"])),
            Err(PeerNameError::Duplicate(_))
        ));
    }

    #[test]
    fn compare_reports_first_difference_and_sizes() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        // Beyond one 256 KiB block, so that offsets across blocks are exercised.
        let base: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(p("a"), &base).unwrap();
        fs::write(p("same"), &base).unwrap();
        let mut changed = base.clone();
        changed[300_001] ^= 1;
        fs::write(p("changed"), &changed).unwrap();
        fs::write(p("short"), &base[..500_000]).unwrap();
        fs::write(p("empty"), b"").unwrap();

        let cmp = |x: &str, y: &str| compare_files(&p(x), &p(y)).unwrap();
        assert_eq!(cmp("a", "same"), Comparison::Identical { len: 600_000 });
        assert!(cmp("a", "same").is_identical());
        assert_eq!(
            cmp("a", "changed"),
            Comparison::Different {
                first_difference: 300_001,
                len_a: 600_000,
                len_b: 600_000
            }
        );
        assert_eq!(
            cmp("short", "a"),
            Comparison::Different {
                first_difference: 500_000,
                len_a: 500_000,
                len_b: 600_000
            }
        );
        assert!(cmp("a", "short").to_string().starts_with("sizes differ"));
        assert_eq!(cmp("empty", "empty"), Comparison::Identical { len: 0 });
        let e = compare_files(&p("a"), &p("nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn merge_detects_corrupt_chunk_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let store = ChunkStore::create(d.path().join("c")).unwrap();
        let parts: [&[u8]; 3] = [b"first ", b"second ", b"third"];
        let hashes: Vec<ChunkHash> = parts.iter().map(|p| ChunkHash::of(p)).collect();
        for (h, p) in hashes.iter().zip(parts) {
            store.write(h, p).unwrap();
        }
        let dest = d.path().join("c").join("out.txt");
        assert_eq!(merge_chunks(&store, &hashes, &dest).unwrap(), 18);
        assert_eq!(fs::read(&dest).unwrap(), b"first second third");

        fs::write(store.path(&hashes[1]), b"SECOND ").unwrap();
        fs::write(&dest, b"previous").unwrap();
        let e = merge_chunks(&store, &hashes, &dest).unwrap_err();
        assert!(matches!(e, MergeError::Corrupt { index: 1, .. }), "{e}");
        assert_eq!(fs::read(&dest).unwrap(), b"previous");
        // No temporary file left behind.
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);

        assert!(matches!(
            merge_chunks(&store, &[], &dest),
            Err(MergeError::NoChunks)
        ));
    }

    #[test]
    fn merge_missing_lists_every_index() {
        let d = tempfile::tempdir().unwrap();
        let store = ChunkStore::create(d.path()).unwrap();
        let hashes: Vec<ChunkHash> = (0..6u8).map(|i| ChunkHash::of(&[i])).collect();
        for (i, h) in hashes.iter().enumerate() {
            if ![1, 3, 4].contains(&i) {
                store.write(h, &[i as u8]).unwrap();
            }
        }
        let dest = d.path().join("out");
        let e = merge_chunks(&store, &hashes, &dest).unwrap_err();
        match &e {
            MergeError::Missing { missing, total, .. } => {
                assert_eq!((missing.as_slice(), *total), (&[1, 3, 4][..], 6));
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(msg.starts_with("missing 3 of 6 chunks in "), "{msg}");
        assert!(msg.ends_with(": chunks 1, 3-4"), "{msg}");
        assert!(!dest.exists());
    }

    #[test]
    fn merge_verified_concatenates_without_hashing() {
        let d = tempfile::tempdir().unwrap();
        let store = ChunkStore::create(d.path().join("c")).unwrap();
        // Uneven sizes and a repeated chunk: offsets come from each chunk's own size.
        let parts: [&[u8]; 6] = [b"first ", b"2nd ", b"first ", b"fourth ", b"", b"end"];
        let hashes: Vec<ChunkHash> = parts.iter().map(|p| ChunkHash::of(p)).collect();
        for (h, p) in hashes.iter().zip(parts) {
            store.write(h, p).unwrap();
        }
        let dest = d.path().join("c").join("out.txt");
        fs::write(&dest, b"previous, longer content").unwrap();
        let n = merge_verified_chunks(&store, &hashes, &dest).unwrap();
        assert_eq!(n, 26);
        assert_eq!(fs::read(&dest).unwrap(), b"first 2nd first fourth end");
        // A big chunk, past one kernel copy call's usual slice.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let hb = ChunkHash::of(&big);
        store.write(&hb, &big).unwrap();
        let n = merge_verified_chunks(&store, &[hashes[0], hb, hashes[5]], &dest).unwrap();
        assert_eq!(n, 3_000_009);
        let got = fs::read(&dest).unwrap();
        assert_eq!(
            (&got[..6], &got[6..3_000_006], &got[3_000_006..]),
            (&b"first "[..], &big[..], &b"end"[..])
        );

        store.remove(&hashes[3]).unwrap();
        let e = merge_verified_chunks(&store, &hashes, &dest).unwrap_err();
        assert!(
            matches!(&e, MergeError::Missing { missing, .. } if missing == &[3]),
            "{e}"
        );
        assert_eq!(fs::read(&dest).unwrap().len(), 3_000_009, "dest untouched");
        assert!(matches!(
            merge_verified_chunks(&store, &[], &dest),
            Err(MergeError::NoChunks)
        ));
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
    }
}
