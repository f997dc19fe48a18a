//! Assembling the downloaded file **during** the download: each chunk is written at its
//! place in the final file by the verifier that just checked it, while its bytes are
//! still in memory, instead of in a second pass that reads every chunk file back once
//! the download is over.
//!
//! Why: that second pass (the merge) was half of Charlie's run on a 1 GiB file (it read,
//! re-hashed and re-wrote every byte on one core after the network was done). Done here,
//! the copy overlaps the transfer and nothing is read back. Measurements are in
//! `docs/BENCHMARKS.md`.
//!
//! The catch: FILE_INFO gives no chunk sizes, so a chunk's offset is only known if every
//! chunk before it has a known size. The course's chunkers cut every chunk at the same
//! size `S` except the last, so chunk `i` starts at `i × S`. The assembler assumes that
//! layout and **checks it on every chunk**: the first chunk that is not the last fixes
//! `S`, any other chunk that is not the last must be exactly `S` long, and the last at
//! most `S`. If the file breaks the rule, assembly is abandoned and the caller merges the
//! chunk files the ordinary way ([`Assembly::Abandoned`]); nothing wrong is ever renamed
//! into place. Chunks whose place is not known yet when they are verified (before `S` is)
//! and chunks found on disk at start (resumed) are copied from their chunk files at the
//! end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::chunker::copy_range;
use crate::hash::ChunkHash;
use crate::store::{ChunkStore, TEMP_PREFIX};

use crate::download::Verified;

/// Builds the final file from verified chunks as they arrive; see the module comment.
pub struct Assembler<'a> {
    store: &'a ChunkStore,
    n_chunks: usize,
    /// One lock for the layout state and the output file. Writes into one file are
    /// serialised by the kernel anyway (tmpfs takes the inode's lock for each write);
    /// taking ours first makes the other verifier sleep instead of spinning on the
    /// kernel's lock while 512 KiB are copied.
    state: Mutex<State>,
}

struct State {
    /// Created at the first verified chunk: after the engine has removed stale temporary
    /// files from the store (which would otherwise include this one).
    out: Option<tempfile::NamedTempFile>,
    /// The size of every chunk but the last, once one of them has been seen.
    chunk_size: Option<u64>,
    /// Which file positions are written.
    placed: Vec<bool>,
    /// Why assembly was abandoned, if it was.
    abandoned: Option<String>,
}

impl State {
    /// Abandons assembly and frees the disk space the partial file holds at once: from
    /// now on the space belongs to the chunk files, which make a later run resumable.
    fn give_up(&mut self, why: String) {
        self.abandoned.get_or_insert(why);
        self.out = None; // deletes the temporary file
    }
}

/// The outcome of [`Assembler::finish`].
#[derive(Debug)]
pub enum Assembly {
    /// The file is complete at the destination; its length in bytes.
    Done(u64),
    /// The chunks do not follow the one-size layout (or writing failed): merge them
    /// instead. Says why.
    Abandoned(String),
}

impl<'a> Assembler<'a> {
    /// An assembler of a file of `n_chunks` chunks, whose temporary file will live in
    /// `store`'s directory (so that the final rename stays within one filesystem).
    pub fn new(store: &'a ChunkStore, n_chunks: usize) -> Self {
        Assembler {
            store,
            n_chunks,
            state: Mutex::new(State {
                out: None,
                chunk_size: None,
                placed: vec![false; n_chunks],
                abandoned: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_last(&self, index: usize) -> bool {
        index + 1 == self.n_chunks
    }

    /// Checks `len` for position `index` against the layout; `Some(offset)` if the
    /// chunk's place is known now, `None` if it must wait. Abandons on a violation.
    fn place(&self, st: &mut State, index: usize, len: u64) -> Option<u64> {
        if st.abandoned.is_some() || index >= self.n_chunks {
            return None;
        }
        if !self.is_last(index) {
            match st.chunk_size {
                None => st.chunk_size = Some(len),
                Some(s) if s != len => {
                    st.give_up(format!(
                        "chunk {index} is {len} bytes where the chunks before the last are {s}"
                    ));
                    return None;
                }
                Some(_) => {}
            }
        }
        match st.chunk_size {
            Some(s) if self.is_last(index) && len > s => {
                st.give_up(format!(
                    "the last chunk is {len} bytes, longer than the others ({s})"
                ));
                None
            }
            Some(s) => Some(index as u64 * s),
            None if index == 0 => Some(0),
            None => None,
        }
    }

    fn output<'s>(&self, st: &'s mut State) -> io::Result<&'s File> {
        if st.out.is_none() {
            let tmp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .suffix(".tmp")
                .tempfile_in(self.store.dir())?;
            st.out = Some(tmp);
        }
        Ok(st.out.as_ref().expect("just created").as_file())
    }

    /// Writes the remaining chunks from their files, fixes the length and renames the
    /// result to `dest`. `hashes` are the file's chunks in order (the plan's).
    pub fn finish(self, hashes: &[ChunkHash], dest: &Path) -> io::Result<Assembly> {
        if hashes.len() != self.n_chunks || hashes.is_empty() {
            return Ok(Assembly::Abandoned("the chunk list changed".into()));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        // First every size, from the chunk files, so that the layout is checked on every
        // chunk before anything more is copied. In index order, so the size is known
        // before the last chunk is met.
        let mut todo = Vec::new();
        for (index, hash) in hashes.iter().enumerate() {
            if st.placed[index] {
                continue;
            }
            let len = std::fs::metadata(self.store.path(hash))?.len();
            match self.place(st, index, len) {
                Some(offset) => todo.push((hash, offset, len)),
                None => {
                    let why = st.abandoned.take();
                    return Ok(Assembly::Abandoned(
                        why.unwrap_or_else(|| format!("no place for chunk {index}")),
                    ));
                }
            }
        }
        if let Some(why) = st.abandoned.take() {
            return Ok(Assembly::Abandoned(why));
        }
        for (hash, offset, len) in todo {
            let chunk = File::open(self.store.path(hash))?;
            copy_range(&chunk, self.output(st)?, offset, len)?;
        }
        let s = st.chunk_size.unwrap_or(0);
        let last = std::fs::metadata(self.store.path(&hashes[self.n_chunks - 1]))?.len();
        let total = (self.n_chunks as u64 - 1) * s + last;
        self.output(st)?.set_len(total)?;
        let out = st.out.take().expect("created above");
        out.persist(dest).map_err(|e| e.error)?;
        Ok(Assembly::Done(total))
    }
}

/// Bytes an unprivileged writer may still put on the filesystem holding `dir`.
fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero statvfs is a valid value of a plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call; `st` is valid for writes.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

impl Verified for Assembler<'_> {
    fn verified(&self, indexes: &[usize], data: &[u8]) {
        let mut st = self.lock();
        if st.out.is_none() && st.abandoned.is_none() {
            // Before taking any space: the chunk files come first (they are what a later
            // run resumes from), so assemble only if the filesystem has room for the
            // whole file besides them; otherwise the file is merged at the end, as when
            // there is no assembler, and a full disk fails there, not mid-download.
            let size = st.chunk_size.unwrap_or(data.len() as u64);
            let need = 2 * self.n_chunks as u64 * size;
            if let Ok(free) = free_space(self.store.dir())
                && free < need
            {
                st.give_up(format!(
                    "{free} bytes free, {need} needed for the chunks and the file"
                ));
                return;
            }
        }
        for &index in indexes {
            let Some(offset) = self.place(&mut st, index, data.len() as u64) else {
                continue;
            };
            let written = self
                .output(&mut st)
                .and_then(|out| out.write_all_at(data, offset));
            match written {
                Ok(()) => st.placed[index] = true,
                Err(e) => {
                    // The ordinary merge will meet the same problem and report it.
                    st.give_up(format!("writing the assembled file: {e}"));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding `parts` as chunks, and their hashes in file order.
    fn store_with(dir: &Path, parts: &[&[u8]]) -> (ChunkStore, Vec<ChunkHash>) {
        let store = ChunkStore::create(dir.join("c")).unwrap();
        let hashes: Vec<ChunkHash> = parts.iter().map(|p| ChunkHash::of(p)).collect();
        for (h, p) in hashes.iter().zip(parts) {
            store.write(h, p).unwrap();
        }
        (store, hashes)
    }

    fn feed(a: &Assembler<'_>, parts: &[&[u8]], which: &[usize]) {
        for &i in which {
            a.verified(&[i], parts[i]);
        }
    }

    #[test]
    fn assembles_in_any_order_and_fills_in_resumed_chunks() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 5] = [b"aaaa", b"bbbb", b"cccc", b"dddd", b"ee"];
        let (store, hashes) = store_with(d.path(), &parts);
        let a = Assembler::new(&store, parts.len());
        // The last chunk and chunk 3 before any size is known (3 fixes it), 1 never
        // (as if resumed from disk): all must land in place.
        feed(&a, &parts, &[4, 3, 2, 0]);
        let dest = store.dir().join("out.bin");
        match a.finish(&hashes, &dest).unwrap() {
            Assembly::Done(n) => assert_eq!(n, 18),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"aaaabbbbccccddddee");
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
    }

    #[test]
    fn repeated_content_lands_at_every_position() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 4] = [b"zz", b"xy", b"zz", b"q"];
        let (store, hashes) = store_with(d.path(), &parts);
        let a = Assembler::new(&store, parts.len());
        a.verified(&[0, 2], parts[0]);
        a.verified(&[3], parts[3]);
        let dest = store.dir().join("out.bin");
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Done(7)
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), b"zzxyzzq");
    }

    #[test]
    fn uneven_chunks_abandon_and_write_nothing() {
        let d = tempfile::tempdir().unwrap();
        // Chunk 1 is shorter than chunk 0: offsets cannot be computed from one size.
        let parts: [&[u8]; 3] = [b"aaaa", b"bb", b"cccc"];
        let (store, hashes) = store_with(d.path(), &parts);
        let dest = store.dir().join("out.bin");
        let a = Assembler::new(&store, parts.len());
        feed(&a, &parts, &[0, 1, 2]);
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Abandoned(_)
        ));
        assert!(!dest.exists());
        // Seen only at the end (chunks resumed from disk): the same.
        let a = Assembler::new(&store, parts.len());
        feed(&a, &parts, &[0]);
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Abandoned(_)
        ));
        // A last chunk longer than the others: the same.
        let parts: [&[u8]; 2] = [b"aa", b"bbbb"];
        let (store, hashes) = store_with(&d.path().join("x"), &parts);
        let a = Assembler::new(&store, parts.len());
        feed(&a, &parts, &[0, 1]);
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Abandoned(_)
        ));
        assert!(!dest.exists());
        // The abandoned temporary files are gone with the assemblers.
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
    }

    #[test]
    fn a_single_chunk_and_a_fully_resumed_file() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 1] = [b"only"];
        let (store, hashes) = store_with(d.path(), &parts);
        let dest = store.dir().join("out.bin");
        let a = Assembler::new(&store, 1);
        feed(&a, &parts, &[0]);
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Done(4)
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), b"only");
        // Nothing fed at all (everything resumed): built from the files at the end.
        let parts: [&[u8]; 3] = [b"123", b"456", b"7"];
        let (store, hashes) = store_with(&d.path().join("r"), &parts);
        let a = Assembler::new(&store, 3);
        assert!(matches!(
            a.finish(&hashes, &dest).unwrap(),
            Assembly::Done(7)
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), b"1234567");
    }
}
