//! Which pieces of data already on disk verify: streamed piece by piece, on every core.
//!
//! Memory is one piece buffer per thread, whatever the size of the data; threads take
//! the next piece index from a shared counter, so a slow disk region holds up one thread,
//! not the others.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::layout::Layout;

use super::PieceStore;

/// Threads a recheck uses: one per core (hashing is the work; more threads than cores
/// only add switches).
pub fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The pieces of `store` that hash to their `digests`, on `threads` threads. A piece that
/// cannot be read (a file shorter than the layout, say) does not verify; other I/O errors
/// are returned.
pub fn recheck(
    store: &(impl PieceStore + ?Sized),
    layout: &Layout,
    digests: &[Digest],
    threads: usize,
) -> io::Result<Bitfield> {
    recheck_except(
        store,
        layout,
        digests,
        threads,
        &Bitfield::new(layout.piece_count()),
    )
}

/// [`recheck`], taking the pieces in `known` as verified without reading them (a resume
/// record vouches for them).
pub fn recheck_except(
    store: &(impl PieceStore + ?Sized),
    layout: &Layout,
    digests: &[Digest],
    threads: usize,
    known: &Bitfield,
) -> io::Result<Bitfield> {
    let n = layout.piece_count().min(digests.len());
    let next = AtomicUsize::new(0);
    let mut start = known.clone();
    if start.len() != layout.piece_count() {
        start = Bitfield::new(layout.piece_count());
    }
    let have = Mutex::new(start);
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || failed.lock().is_ok_and(|f| f.is_some()) {
                        return;
                    }
                    if known.has(i) {
                        continue;
                    }
                    buf.resize(layout.piece_len(i) as usize, 0);
                    match store.read_at(i, 0, &mut buf) {
                        Ok(()) => {
                            if Digest::of(digests[i].algo(), &buf) == digests[i] {
                                have.lock().unwrap_or_else(|e| e.into_inner()).set(i);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(have.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlgo;
    use crate::storage::files::FilesStore;

    #[test]
    fn finds_good_pieces_among_bad_on_several_threads() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(d.path().join("f"), &data).unwrap();
        let layout = Layout::single("f", 1000, 64).unwrap();
        let mut digests: Vec<Digest> = data
            .chunks(64)
            .map(|c| Digest::of(HashAlgo::Sha1, c))
            .collect();
        digests[3] = Digest::of(HashAlgo::Sha1, b"other");
        let s = FilesStore::create(d.path(), layout.clone()).unwrap();
        for t in [1, 3] {
            let have = recheck(&s, &layout, &digests, t).unwrap();
            assert_eq!(have.count(), digests.len() - 1);
            assert!(!have.has(3));
        }
    }
}
