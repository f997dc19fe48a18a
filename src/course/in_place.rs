//! Charlie's file, written once: each verified chunk goes straight to its place in a
//! partial file, `chunks/charlie/<name>.part-<S>`, which is renamed to `<name>` when every
//! chunk is in it. No chunk file is written on the way.
//!
//! Why: writing every byte twice (a chunk file, then the merged file) was the largest cost
//! of a download on tmpfs, where a write is a copy into fresh pages; the profile is in
//! `docs/BENCHMARKS.md`. Written once, a download costs what `--no-merge` costs.
//!
//! **The layout.** FILE_INFO gives no chunk sizes, so a chunk's offset is only known
//! from a rule: the course's chunkers cut every chunk at one size `S` except the last, so
//! chunk `i` starts at `i × S`. The rule is checked on every chunk: chunk 0 (or any chunk
//! that is not the last) fixes `S`, every other chunk but the last must be `S` long, the
//! last at most `S`. A last chunk verified before `S` is known waits in memory (one chunk,
//! bounded by the client's chunk limit). A file that breaks the rule is **spilled**: what
//! the partial file holds is copied out into chunk files, the partial file is removed, and
//! from then on chunks are written as chunk files and merged at the end, as with
//! `--no-merge` followed by `merge_chunks` ([`Assembly::Spilled`]).
//!
//! **Resume.** `S` is in the partial file's name, so a later run (after a kill, a full
//! disk, Ctrl-C) re-hashes each chunk's range of it and keeps the ones that match: a
//! range is only ever counted as verified by hashing it, so a kill mid-write costs that
//! chunk, never a wrong byte. A complete `<name>` left by an earlier run is recognised
//! too: its `S` is found by hashing chunk 0 at each length the rule allows, and when
//! every chunk matches, nothing is fetched or written. Chunk files already in the
//! directory (from `--no-merge`, another program, a spilled run) count as well, and are
//! copied into place at the end; they are never deleted.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::bitfield::Bitfield;
use crate::chunker::copy_range;
use crate::digest::Digest;
use crate::hash::{ChunkHash, ChunkHasher};
use crate::storage::PieceStore;
use crate::storage::hash_dir::{HashDirStore, NotSha1};
use crate::store::{ChunkStore, for_each_block};

/// What separates the file name from `S` in a partial file's name.
const PART_INFIX: &str = ".part-";

/// Most chunk sizes tried when recognising a complete file: each try is one clone and
/// finalisation of a SHA-1 state (well under a microsecond), so this bounds the search
/// to a fraction of a second. Only a file of very few, very large chunks has more
/// possible sizes; it is then fetched again rather than searched.
const MAX_SIZE_CANDIDATES: u64 = 1 << 20;

/// Read size for re-hashing ranges: large enough for full-speed reads, small enough to
/// keep a recheck's memory flat whatever the chunk size.
const READ_BLOCK: usize = 256 * 1024;

/// The outcome of [`InPlaceStore::finish`].
#[derive(Debug)]
pub enum Assembly {
    /// The file is complete at its destination; its length in bytes.
    Done(u64),
    /// The chunks broke the one-size rule (or the partial file could not be made): they
    /// are chunk files now and must be merged from there. Says why.
    Spilled(String),
}

/// Charlie's storage when merging: see the module comment.
#[derive(Debug)]
pub struct InPlaceStore {
    /// Chunk files: those of earlier runs, and every chunk once spilled.
    chunks: HashDirStore,
    dir: PathBuf,
    name: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The size of every chunk but the last, once known.
    size: Option<u64>,
    /// The partial file, once `size` is known; `None` after a spill.
    out: Option<(File, PathBuf)>,
    /// Positions whose bytes are in `out` (written by this run, or re-hashed there).
    placed: Bitfield,
    /// The last chunk, verified before `size` was known.
    early: Option<(usize, Vec<u8>)>,
    /// Why chunks go to chunk files instead, once they do.
    spilled: Option<String>,
    /// A complete file that verified in full at the start: nothing to do at the end.
    complete: Option<u64>,
    /// Positions stored anywhere (`out`, `early`, chunk files, or an equal chunk).
    have: Bitfield,
}

impl InPlaceStore {
    /// The store of file `name` (a name already checked to be a plain file name) with
    /// chunks `digests` (SHA-1, in file order), in `store`'s directory.
    pub fn new(store: ChunkStore, name: &str, digests: &[Digest]) -> Result<Self, NotSha1> {
        let chunks = HashDirStore::new(store, digests)?;
        let n = chunks.hashes().len();
        Ok(InPlaceStore {
            dir: chunks.chunk_store().dir().to_path_buf(),
            chunks,
            name: name.to_string(),
            state: Mutex::new(State {
                size: None,
                out: None,
                placed: Bitfield::new(n),
                early: None,
                spilled: None,
                complete: None,
                have: Bitfield::new(n),
            }),
        })
    }

    /// The chunk directory (for a merge after a spill).
    pub fn chunk_store(&self) -> &ChunkStore {
        self.chunks.chunk_store()
    }

    /// Where the complete file goes.
    pub fn dest(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn part_path(&self, size: u64) -> PathBuf {
        self.dir.join(format!("{}{PART_INFIX}{size}", self.name))
    }

    /// The chunk hashes in file order (kept once, by the chunk directory: at the
    /// protocol's 65,535 chunks a second copy would be over a megabyte).
    fn hashes(&self) -> &[ChunkHash] {
        self.chunks.hashes()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn n(&self) -> usize {
        self.hashes().len()
    }

    fn is_last(&self, index: usize) -> bool {
        index + 1 == self.n()
    }

    /// Checks a chunk of `len` bytes at `index` against the rule: `Ok(Some(offset))` if
    /// its place is known, `Ok(None)` if it must wait for `S`, `Err(why)` if the rule
    /// is broken.
    fn place(&self, st: &mut State, index: usize, len: u64) -> Result<Option<u64>, String> {
        if index == 0 || !self.is_last(index) {
            match st.size {
                None => st.size = Some(len),
                Some(s) if s != len && !self.is_last(index) => {
                    return Err(format!(
                        "chunk {index} is {len} bytes where the chunks before the last are {s}"
                    ));
                }
                Some(_) => {}
            }
        }
        match st.size {
            Some(s) if self.is_last(index) && len > s => Err(format!(
                "the last chunk is {len} bytes, longer than the others ({s})"
            )),
            Some(s) => Ok(Some(index as u64 * s)),
            None => Ok(None),
        }
    }

    /// The partial file, created when first needed (`S` known).
    fn output<'s>(&self, st: &'s mut State) -> io::Result<&'s File> {
        if st.out.is_none() {
            let size = st.size.ok_or(io::ErrorKind::InvalidInput)?;
            let path = self.part_path(size);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            st.out = Some((file, path));
        }
        Ok(&st.out.as_ref().expect("just created").0)
    }

    /// Writes `data` (chunk `index`, verified) at its place, or keeps it for later.
    fn write_placed(&self, st: &mut State, index: usize, data: &[u8]) -> io::Result<()> {
        match self.place(st, index, data.len() as u64) {
            Ok(Some(offset)) => {
                let out = match self.output(st) {
                    Ok(out) => out,
                    // No partial file can be made here (a name too long for one, say):
                    // chunk files still can.
                    Err(e) if e.kind() != io::ErrorKind::StorageFull => {
                        self.spill(st, format!("cannot create the partial file: {e}"))?;
                        return self.chunks.write_piece(index, data);
                    }
                    Err(e) => return Err(e),
                };
                out.write_all_at(data, offset)?;
                st.placed.set(index);
                if let Some((i, early)) = st.early.take() {
                    return self.write_placed(st, i, &early);
                }
                Ok(())
            }
            Ok(None) => {
                st.early = Some((index, data.to_vec()));
                Ok(())
            }
            Err(why) => {
                self.spill(st, why)?;
                self.chunks.write_piece(index, data)
            }
        }
    }

    /// Moves everything the partial file and memory hold into chunk files, and removes
    /// the partial file: from now on this is a chunk directory.
    fn spill(&self, st: &mut State, why: String) -> io::Result<()> {
        log::info!("writing chunk files instead of the file in place: {why}");
        if let (Some((out, path)), Some(size)) = (&st.out, st.size) {
            let mut buf = Vec::new();
            for i in st.placed.ones() {
                let len = range_len(out, i, size, self.n())?;
                buf.resize(len as usize, 0);
                out.read_exact_at(&mut buf, i as u64 * size)?;
                self.chunks.write_piece(i, &buf)?;
            }
            fs::remove_file(path)?;
        }
        if let Some((i, early)) = st.early.take() {
            self.chunks.write_piece(i, &early)?;
        }
        st.out = None;
        st.placed = Bitfield::new(self.n());
        st.spilled = Some(why);
        Ok(())
    }

    /// Re-hashes each chunk's range of `file` (chunks of `size` bytes); the positions
    /// that match.
    fn verify_ranges(&self, file: &File, size: u64) -> io::Result<Bitfield> {
        let mut ok = Bitfield::new(self.n());
        let mut buf = vec![0u8; READ_BLOCK];
        for i in 0..self.n() {
            let Ok(len) = range_len(file, i, size, self.n()) else {
                continue;
            };
            if hash_range(file, i as u64 * size, len, &mut buf)? == self.hashes()[i] {
                ok.set(i);
            }
        }
        Ok(ok)
    }

    /// The partial file an earlier run left, and its `S`.
    fn find_part(&self) -> io::Result<Option<(PathBuf, u64)>> {
        let prefix = format!("{}{PART_INFIX}", self.name);
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(size) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&s| s > 0)
            else {
                continue;
            };
            if entry.file_type()?.is_file() {
                return Ok(Some((entry.path(), size)));
            }
        }
        Ok(None)
    }

    /// Finishes the file: every chunk not yet in place is copied there (from a chunk
    /// file, an equal chunk, or memory), the length is set and the partial file renamed
    /// to [`InPlaceStore::dest`].
    pub fn finish(self) -> io::Result<Assembly> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(len) = st.complete {
            return Ok(Assembly::Done(len));
        }
        // Where each content is in place already, for the positions that repeat it.
        let mut placed_at: HashMap<ChunkHash, usize> = HashMap::new();
        for i in st.placed.ones() {
            placed_at.entry(self.hashes()[i]).or_insert(i);
        }
        for i in 0..self.n() {
            if st.spilled.is_some() {
                break;
            }
            if st.placed.has(i) || st.early.as_ref().is_some_and(|(e, _)| *e == i) {
                continue;
            }
            let h = self.hashes()[i];
            if let (Some(&j), Some(size)) = (placed_at.get(&h), st.size) {
                let out = &st.out.as_ref().expect("placed implies a file").0;
                let len = range_len(out, j, size, self.n())?;
                let mut buf = vec![0u8; len as usize];
                out.read_exact_at(&mut buf, j as u64 * size)?;
                self.write_placed(st, i, &buf)?;
                continue;
            }
            let Some((chunk, len)) = self.chunks.chunk_store().open(&h)? else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("chunk {i} ({h}) is neither in place nor in a chunk file"),
                ));
            };
            match self.place(st, i, len) {
                Ok(Some(offset)) => {
                    copy_range(&chunk, self.output(st)?, offset, len)?;
                    st.placed.set(i);
                    placed_at.entry(h).or_insert(i);
                }
                Ok(None) => unreachable!("only the last chunk waits, and it is placed last"),
                Err(why) => self.spill(st, why)?,
            }
        }
        // The last chunk, if it came before any other: `S` is known by now.
        if let Some((i, early)) = st.early.take()
            && st.spilled.is_none()
        {
            self.write_placed(st, i, &early)?;
        }
        if let Some(why) = st.spilled.take() {
            return Ok(Assembly::Spilled(why));
        }
        let size = st.size.expect("every chunk is placed");
        let (out, path) = st.out.take().expect("every chunk is placed");
        let last = range_len(&out, self.n() - 1, size, self.n())?;
        let total = (self.n() as u64 - 1) * size + last;
        out.set_len(total)?;
        drop(out);
        fs::rename(&path, self.dest())?;
        Ok(Assembly::Done(total))
    }
}

/// The length of chunk `i`'s range in `file` (chunks of `size` bytes, `n` of them): `size`
/// for all but the last, what the file holds past the others for the last (which must be
/// between 1 and `size` bytes).
fn range_len(file: &File, i: usize, size: u64, n: usize) -> io::Result<u64> {
    if i + 1 < n {
        return Ok(size);
    }
    let start = i as u64 * size;
    let len = file.metadata()?.len().saturating_sub(start);
    if len == 0 || len > size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(len)
}

/// Feeds `len` bytes of `file` from `offset` to `h` through `buf` (fewer if the file is
/// shorter); returns how many were fed.
fn feed(
    h: &mut ChunkHasher,
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
) -> io::Result<u64> {
    // The file's own position is free to move: every other access here is positioned.
    let mut r = file;
    r.seek(SeekFrom::Start(offset))?;
    for_each_block(r.take(len), buf, |block| {
        h.update(block);
        Ok(())
    })
}

/// SHA-1 of `len` bytes of `file` from `offset`; a short file hashes what is there.
fn hash_range(file: &File, offset: u64, len: u64, buf: &mut [u8]) -> io::Result<ChunkHash> {
    let mut h = ChunkHasher::new();
    feed(&mut h, file, offset, len, buf)?;
    Ok(h.finish())
}

/// The chunk size `S` of a complete file of `n` chunks whose first chunk hashes to
/// `first`: the lengths the rule allows are tried, each by finishing a copy of one
/// running SHA-1 state. `None` when no length matches or there are too many to try.
fn find_size(file: &File, n: usize, first: ChunkHash) -> io::Result<Option<u64>> {
    let total = file.metadata()?.len();
    if n == 0 || total == 0 {
        return Ok(None);
    }
    if n == 1 {
        return Ok(Some(total));
    }
    // The last chunk holds between 1 and S bytes: S ≥ total / n and (n-1)·S < total.
    let n64 = n as u64;
    let lo = total.div_ceil(n64);
    let hi = (total - 1) / (n64 - 1);
    if lo > hi || hi - lo >= MAX_SIZE_CANDIDATES {
        return Ok(None);
    }
    let mut h = ChunkHasher::new();
    let mut buf = vec![0u8; READ_BLOCK];
    // Feed everything before the smallest candidate, then one candidate at a time.
    let mut pos = feed(&mut h, file, 0, lo, &mut buf)?;
    if pos < lo {
        return Ok(None);
    }
    while pos <= hi {
        let want = (hi + 1 - pos).min(buf.len() as u64) as usize;
        let got = file.read_at(&mut buf[..want], pos)?;
        if got == 0 {
            return Ok(None);
        }
        for &b in &buf[..got] {
            if h.clone().finish() == first {
                return Ok(Some(pos));
            }
            h.update(&[b]);
            pos += 1;
        }
    }
    Ok(None)
}

impl PieceStore for InPlaceStore {
    fn write_piece(&self, index: usize, data: &[u8]) -> io::Result<()> {
        if index >= self.n() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut st = self.lock();
        if st.spilled.is_some() {
            self.chunks.write_piece(index, data)?;
        } else {
            self.write_placed(&mut st, index, data)?;
        }
        st.have.set(index);
        Ok(())
    }

    fn read_at(&self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let st = self.lock();
        if st.placed.has(index)
            && let (Some((out, _)), Some(size)) = (&st.out, st.size)
        {
            return out.read_exact_at(buf, index as u64 * size + offset);
        }
        if let Some((i, early)) = &st.early
            && *i == index
        {
            let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
            let part = early
                .get(start..start + buf.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(part);
            return Ok(());
        }
        if let Some(len) = st.complete {
            let size = st.size.unwrap_or(len);
            return File::open(self.dest())?.read_exact_at(buf, index as u64 * size + offset);
        }
        drop(st);
        self.chunks.read_at(index, offset, buf)
    }

    fn has(&self, index: usize) -> bool {
        self.lock().have.has(index)
    }

    fn recheck(&self, digests: &[Digest]) -> io::Result<Bitfield> {
        let from_chunks = self.chunks.recheck(digests)?;
        let mut st = self.lock();
        let mut have = from_chunks;
        if let Some((path, size)) = self.find_part()? {
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let ok = self.verify_ranges(&file, size)?;
            log::info!(
                "{}: {} of {} chunks verified in place",
                crate::root::display_path(&path),
                ok.count(),
                self.n()
            );
            st.size = Some(size);
            st.out = Some((file, path));
            st.placed = ok;
        } else if let Ok(file) = File::open(self.dest())
            && let Some(&first) = self.hashes().first()
            && let Some(size) = find_size(&file, self.n(), first)?
        {
            let ok = self.verify_ranges(&file, size)?;
            if ok.is_full() {
                st.size = Some(size);
                st.complete = Some(file.metadata()?.len());
                st.placed = ok;
            } else {
                // A complete file that no longer matches: it becomes the partial file,
                // so that the chunks that still match are kept and only the rest fetched.
                drop(file);
                let path = self.part_path(size);
                fs::rename(self.dest(), &path)?;
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                st.size = Some(size);
                st.out = Some((file, path));
                st.placed = ok;
            }
        }
        // A chunk in place vouches for every position with the same content.
        let mut in_place: std::collections::HashSet<ChunkHash> = Default::default();
        for i in st.placed.ones() {
            in_place.insert(self.hashes()[i]);
        }
        for (i, h) in self.hashes().iter().enumerate() {
            if in_place.contains(h) {
                have.set(i);
            }
        }
        st.have = have.clone();
        Ok(have)
    }

    fn location(&self) -> String {
        crate::root::display_path(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn digests(parts: &[&[u8]]) -> Vec<Digest> {
        parts
            .iter()
            .map(|p| Digest::from(ChunkHash::of(p)))
            .collect()
    }

    fn store(dir: &Path, parts: &[&[u8]]) -> InPlaceStore {
        let cs = ChunkStore::create(dir).unwrap();
        let s = InPlaceStore::new(cs, "out.bin", &digests(parts)).unwrap();
        s.recheck(&digests(parts)).unwrap();
        s
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_in_any_order_once_and_renames_at_the_end() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 5] = [b"aaaa", b"bbbb", b"cccc", b"dddd", b"ee"];
        let s = store(d.path(), &parts);
        // The last chunk first (it waits for S), then the others.
        for i in [4, 3, 1, 2, 0] {
            s.write_piece(i, parts[i]).unwrap();
        }
        assert_eq!(names(d.path()), ["out.bin.part-4"]);
        let mut b = [0u8; 2];
        s.read_at(4, 0, &mut b).unwrap();
        assert_eq!(&b, b"ee");
        assert!(matches!(s.finish().unwrap(), Assembly::Done(18)));
        assert_eq!(
            fs::read(d.path().join("out.bin")).unwrap(),
            b"aaaabbbbccccddddee"
        );
        assert_eq!(names(d.path()), ["out.bin"]);
    }

    #[test]
    fn a_partial_file_resumes_by_rehashing_and_a_torn_chunk_is_fetched_again() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 4] = [b"aaaa", b"bbbb", b"cccc", b"d"];
        let s = store(d.path(), &parts);
        for i in [0, 2, 3] {
            s.write_piece(i, parts[i]).unwrap();
        }
        drop(s); // killed
        // A torn write of chunk 2.
        let part = d.path().join("out.bin.part-4");
        File::options()
            .write(true)
            .open(&part)
            .unwrap()
            .write_all_at(b"cx", 8)
            .unwrap();
        let s = InPlaceStore::new(ChunkStore::new(d.path()), "out.bin", &digests(&parts)).unwrap();
        let have = s.recheck(&digests(&parts)).unwrap();
        assert_eq!(have.ones().collect::<Vec<_>>(), [0, 3]);
        s.write_piece(1, parts[1]).unwrap();
        s.write_piece(2, parts[2]).unwrap();
        assert!(matches!(s.finish().unwrap(), Assembly::Done(13)));
        assert_eq!(
            fs::read(d.path().join("out.bin")).unwrap(),
            b"aaaabbbbccccd"
        );
        // A second run on the complete file: everything verified, nothing written.
        let s = InPlaceStore::new(ChunkStore::new(d.path()), "out.bin", &digests(&parts)).unwrap();
        assert!(s.recheck(&digests(&parts)).unwrap().is_full());
        assert!(matches!(s.finish().unwrap(), Assembly::Done(13)));
        assert_eq!(names(d.path()), ["out.bin"]);
    }

    #[test]
    fn repeated_content_and_chunk_files_of_an_earlier_run_land_in_place() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 4] = [b"zz", b"xy", b"zz", b"q"];
        let cs = ChunkStore::create(d.path()).unwrap();
        cs.write(&ChunkHash::of(b"xy"), b"xy").unwrap();
        let s = InPlaceStore::new(cs, "out.bin", &digests(&parts)).unwrap();
        assert_eq!(s.recheck(&digests(&parts)).unwrap().count(), 1);
        s.write_piece(0, parts[0]).unwrap();
        s.write_piece(3, parts[3]).unwrap();
        assert!(matches!(s.finish().unwrap(), Assembly::Done(7)));
        assert_eq!(fs::read(d.path().join("out.bin")).unwrap(), b"zzxyzzq");
        // The chunk file of the earlier run is kept.
        assert!(d.path().join(ChunkHash::of(b"xy").file_name()).exists());
    }

    #[test]
    fn uneven_chunks_spill_into_chunk_files() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 3] = [b"aaaa", b"bb", b"cccc"];
        let s = store(d.path(), &parts);
        s.write_piece(0, parts[0]).unwrap();
        s.write_piece(1, parts[1]).unwrap();
        s.write_piece(2, parts[2]).unwrap();
        assert!(matches!(s.finish().unwrap(), Assembly::Spilled(_)));
        let cs = ChunkStore::new(d.path());
        assert_eq!(cs.list().unwrap().len(), 3);
        assert!(!d.path().join("out.bin").exists());
        assert!(!names(d.path()).iter().any(|n| n.contains(PART_INFIX)));
        // A last chunk longer than the others: the same.
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 2] = [b"aa", b"bbbb"];
        let s = store(d.path(), &parts);
        s.write_piece(1, parts[1]).unwrap();
        s.write_piece(0, parts[0]).unwrap();
        assert!(matches!(s.finish().unwrap(), Assembly::Spilled(_)));
        assert_eq!(ChunkStore::new(d.path()).list().unwrap().len(), 2);
    }

    #[test]
    fn the_chunk_size_of_a_complete_file_is_found_by_hashing() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = d.path().join("f");
        fs::write(&path, &data).unwrap();
        let f = File::open(&path).unwrap();
        // 1000 bytes in 7 chunks: S between 143 and 166; 150 it is.
        let first = ChunkHash::of(&data[..150]);
        assert_eq!(find_size(&f, 7, first).unwrap(), Some(150));
        assert_eq!(find_size(&f, 7, ChunkHash::of(b"x")).unwrap(), None);
        assert_eq!(find_size(&f, 1, first).unwrap(), Some(1000));
        // The largest allowed size (166) and the smallest (143) are both tried.
        assert_eq!(
            find_size(&f, 7, ChunkHash::of(&data[..166])).unwrap(),
            Some(166)
        );
        assert_eq!(
            find_size(&f, 7, ChunkHash::of(&data[..143])).unwrap(),
            Some(143)
        );
    }

    #[test]
    fn a_single_chunk_file() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 1] = [b"only"];
        let s = store(d.path(), &parts);
        s.write_piece(0, parts[0]).unwrap();
        assert!(matches!(s.finish().unwrap(), Assembly::Done(4)));
        assert_eq!(fs::read(d.path().join("out.bin")).unwrap(), b"only");
    }
}
