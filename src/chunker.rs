//! TEMPORARY stand-in until the chunker branch lands (same signature).
#![allow(missing_docs)]
use std::io;
use std::path::Path;

use crate::hash::ChunkHash;
use crate::store::{ChunkStore, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("missing chunks {0:?}")]
    Missing(Vec<usize>),
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub fn merge_chunks(
    store: &ChunkStore,
    hashes: &[ChunkHash],
    dest: &Path,
) -> Result<u64, MergeError> {
    let missing: Vec<usize> = hashes
        .iter()
        .enumerate()
        .filter(|(_, h)| !store.contains(h))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing(missing));
    }
    let mut n = 0;
    write_atomic(dest, |f| {
        for h in hashes {
            n += io::copy(&mut std::fs::File::open(store.path(h))?, f)?;
        }
        Ok(())
    })?;
    Ok(n)
}
