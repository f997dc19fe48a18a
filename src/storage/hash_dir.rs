//! The course's storage: one file per distinct chunk content, named by its SHA-1, in a
//! [`ChunkStore`] directory. Positions that share a content share its file, so it is
//! written once (for its first position).

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::hash::ChunkHash;
use crate::store::ChunkStore;

use super::PieceStore;

/// A [`PieceStore`] over a chunk directory, for the chunks `hashes` in file order.
#[derive(Debug)]
pub struct HashDirStore {
    store: ChunkStore,
    hashes: Vec<ChunkHash>,
    /// For each position, the first position with the same content.
    first: Vec<usize>,
    have: Mutex<Bitfield>,
}

/// Why a plan cannot be kept in a chunk directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunk {index}: a chunk directory names chunks by SHA-1, this one is {digest:?}")]
pub struct NotSha1 {
    /// The position.
    pub index: usize,
    /// Its digest.
    pub digest: Digest,
}

impl HashDirStore {
    /// The chunks `digests` (SHA-1, in file order) in `store`.
    pub fn new(store: ChunkStore, digests: &[Digest]) -> Result<Self, NotSha1> {
        let mut hashes = Vec::with_capacity(digests.len());
        let mut seen = std::collections::HashMap::new();
        let mut first = Vec::with_capacity(digests.len());
        for (index, d) in digests.iter().enumerate() {
            let h = d.to_chunk_hash().ok_or(NotSha1 { index, digest: *d })?;
            first.push(*seen.entry(h).or_insert(index));
            hashes.push(h);
        }
        Ok(HashDirStore {
            store,
            have: Mutex::new(Bitfield::new(hashes.len())),
            hashes,
            first,
        })
    }

    /// The chunk directory.
    pub fn chunk_store(&self) -> &ChunkStore {
        &self.store
    }

    /// The chunk hashes in file order.
    pub fn hashes(&self) -> &[ChunkHash] {
        &self.hashes
    }

    fn have(&self) -> std::sync::MutexGuard<'_, Bitfield> {
        self.have.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PieceStore for HashDirStore {
    fn write_piece(&self, index: usize, data: &[u8]) -> io::Result<()> {
        let Some(&first) = self.first.get(index) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // A content seen at an earlier position is already its file.
        if first == index || !self.store.contains(&self.hashes[index]) {
            self.store.write(&self.hashes[index], data)?;
        }
        self.have().set(index);
        Ok(())
    }

    fn read_at(&self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let h = self.hashes.get(index).ok_or(io::ErrorKind::InvalidInput)?;
        let (f, _) = self.store.open(h)?.ok_or(io::ErrorKind::NotFound)?;
        f.read_exact_at(buf, offset)
    }

    fn has(&self, index: usize) -> bool {
        self.have().has(index)
    }

    fn recheck(&self, digests: &[Digest]) -> io::Result<Bitfield> {
        self.store.remove_stale_temp_files()?;
        let mut have = Bitfield::new(self.hashes.len());
        // Each distinct content is hashed once, at its first position.
        let mut ok = vec![false; self.hashes.len()];
        for (i, h) in self.hashes.iter().enumerate() {
            if digests.get(i) != Some(&Digest::from(*h)) {
                continue;
            }
            let first = self.first[i];
            if first == i && self.store.contains(h) {
                if self.store.verify(h)? {
                    ok[i] = true;
                } else {
                    log::warn!("chunk {h} on disk is corrupt: fetching it again");
                    self.store.remove(h)?;
                }
            }
            if ok[first] {
                have.set(i);
            }
        }
        *self.have() = have.clone();
        Ok(have)
    }

    fn location(&self) -> String {
        crate::root::display_path(self.store.dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_contents_are_written_once_and_rechecked() {
        let d = tempfile::tempdir().unwrap();
        let parts: [&[u8]; 3] = [b"zz", b"ab", b"zz"];
        let digests: Vec<Digest> = parts
            .iter()
            .map(|p| Digest::from(ChunkHash::of(p)))
            .collect();
        let s = HashDirStore::new(ChunkStore::create(d.path()).unwrap(), &digests).unwrap();
        assert_eq!(s.recheck(&digests).unwrap().count(), 0);
        s.write_piece(0, parts[0]).unwrap();
        s.write_piece(2, parts[2]).unwrap();
        assert!(s.has(0) && s.has(2) && !s.has(1));
        let mut b = [0u8; 1];
        s.read_at(2, 1, &mut b).unwrap();
        assert_eq!(&b, b"z");
        assert_eq!(
            s.recheck(&digests).unwrap().ones().collect::<Vec<_>>(),
            vec![0, 2]
        );
        // A corrupt chunk file is removed and not counted.
        std::fs::write(s.chunk_store().path(&s.hashes()[0]), b"zy").unwrap();
        assert_eq!(s.recheck(&digests).unwrap().count(), 0);
        assert!(!s.chunk_store().contains(&s.hashes()[0]));
        let sha224 = [Digest::of(crate::digest::HashAlgo::Sha224, b"x")];
        assert!(HashDirStore::new(ChunkStore::new(d.path()), &sha224).is_err());
    }
}
