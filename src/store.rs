//! The chunk store: a directory of `<sha1hex>.bin` files. It knows files, not peers.
//!
//! What a store holds is whatever its directory holds *now*: no index is cached, so a chunk
//! deleted or added while a peer runs is seen at once (the spec requires a peer to trust
//! only its directory, never file.ini).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::hash::{ChunkHash, ChunkHasher};

/// Prefix of the temporary files that atomic writes leave behind if killed mid-write;
/// [`ChunkStore::remove_stale_temp_files`] removes them.
pub const TEMP_PREFIX: &str = ".swarmlet-";
const TEMP_SUFFIX: &str = ".tmp";

/// A directory of chunk files named by their hash.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    dir: PathBuf,
}

impl ChunkStore {
    /// A store over `dir` (which need not exist yet; reads then find nothing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ChunkStore { dir: dir.into() }
    }

    /// Creates the directory if needed.
    pub fn create(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let s = Self::new(dir);
        fs::create_dir_all(&s.dir)?;
        Ok(s)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the chunk with this hash lives (whether or not it is there).
    pub fn path(&self, hash: &ChunkHash) -> PathBuf {
        self.dir.join(hash.file_name())
    }

    /// Whether the directory holds this chunk now.
    pub fn contains(&self, hash: &ChunkHash) -> bool {
        self.path(hash).is_file()
    }

    /// Every chunk the directory holds now, sorted. Names that are not exactly
    /// `<40 lowercase hex>.bin` (temporary files, merged files, notes) are ignored.
    pub fn list(&self) -> io::Result<Vec<ChunkHash>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(h) = entry
                .file_name()
                .to_str()
                .and_then(ChunkHash::from_file_name)
                && entry.file_type()?.is_file()
            {
                out.push(h);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens a chunk for streaming, with its length; `None` if the store does not have it.
    pub fn open(&self, hash: &ChunkHash) -> io::Result<Option<(File, u64)>> {
        match File::open(self.path(hash)) {
            Ok(f) => {
                let meta = f.metadata()?;
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some((f, meta.len())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole chunk into memory.
    pub fn read(&self, hash: &ChunkHash) -> io::Result<Vec<u8>> {
        fs::read(self.path(hash))
    }

    /// Writes a chunk atomically: a temporary file in the same directory, then a rename, so
    /// a reader (or a crash) never sees a partial chunk under its real name.
    pub fn write(&self, hash: &ChunkHash, data: &[u8]) -> io::Result<()> {
        write_atomic(&self.path(hash), |f| f.write_all(data))
    }

    /// Whether the stored chunk's content hashes to its name. `Ok(false)` if absent.
    pub fn verify(&self, hash: &ChunkHash) -> io::Result<bool> {
        match self.open(hash)? {
            Some((f, _)) => Ok(hash_reader(f)? == *hash),
            None => Ok(false),
        }
    }

    /// Removes a chunk; absent is not an error.
    pub fn remove(&self, hash: &ChunkHash) -> io::Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes temporary files left by writers that were killed mid-write.
    pub fn remove_stale_temp_files(&self) -> io::Result<usize> {
        let mut n = 0;
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes every regular file except dot-files (such as `.gitkeep`): what the course's
    /// create_chunks does to the chunk directories before splitting.
    pub fn clear(&self) -> io::Result<()> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() && !entry.file_name().to_string_lossy().starts_with('.')
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// SHA-1 of everything a reader yields, streamed in 256 KiB blocks.
pub fn hash_reader(r: impl Read) -> io::Result<ChunkHash> {
    let mut h = ChunkHasher::new();
    for_each_block(r, &mut vec![0u8; 256 * 1024], |block| {
        h.update(block);
        Ok(())
    })?;
    Ok(h.finish())
}

/// Reads `r` to its end through `buf`, handing each block read to `f` (retrying reads
/// that were interrupted); returns the number of bytes read. Memory is `buf`, whatever
/// the length of the input.
pub fn for_each_block(
    mut r: impl Read,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                f(&buf[..n])?;
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `path` atomically: `fill` writes into a temporary file in the same directory,
/// which is renamed over `path` only if `fill` succeeds. On any error the temporary file
/// is removed and whatever was at `path` before is untouched.
///
/// No fsync: the guarantee is against crashes of the process (SIGKILL, a panic, a full
/// disk), which is what a downloader meets; the page cache survives those. Syncing every
/// chunk would cost more than the transfer on tmpfs-speed paths.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_list_verify_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = ChunkStore::create(d.path().join("c")).unwrap();
        assert!(s.list().unwrap().is_empty());
        let h = ChunkHash::of(b"hello");
        s.write(&h, b"hello").unwrap();
        fs::write(s.dir().join("notes.txt"), "x").unwrap();
        fs::write(s.dir().join(h.to_hex().to_uppercase() + ".bin"), "x").unwrap();
        fs::write(s.dir().join(".swarmlet-abc.tmp"), "partial").unwrap();
        assert_eq!(s.list().unwrap(), vec![h]);
        assert!(s.contains(&h));
        assert!(s.verify(&h).unwrap());
        assert_eq!(s.read(&h).unwrap(), b"hello");
        assert_eq!(s.remove_stale_temp_files().unwrap(), 1);
        // A corrupted chunk no longer verifies.
        fs::write(s.path(&h), b"hellp").unwrap();
        assert!(!s.verify(&h).unwrap());
        s.remove(&h).unwrap();
        assert!(!s.contains(&h));
        assert!(!s.verify(&h).unwrap());
        s.remove(&h).unwrap();
    }

    #[test]
    fn failed_atomic_write_keeps_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        let r = write_atomic(&p, |f| {
            f.write_all(b"new but")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn clear_keeps_dotfiles() {
        let d = tempfile::tempdir().unwrap();
        let s = ChunkStore::create(d.path()).unwrap();
        fs::write(d.path().join(".gitkeep"), "").unwrap();
        s.write(&ChunkHash::of(b"a"), b"a").unwrap();
        s.clear().unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
