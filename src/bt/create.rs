//! `swarmlet create`: hashes a file or a directory into a v1 .torrent.
//!
//! Directories: every regular file below, 0-byte files included, hidden files included,
//! sorted by the bytes of the whole relative path (as mktorrent sorts). Symlinks are
//! skipped (never followed), so a link cannot pull files from outside the tree.
//! Hashing streams: a batch of pieces is read, then hashed on every core at once, so
//! memory is bounded by `cores * PIECES_PER_CORE * piece length`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha1::{Digest, Sha1};

use super::bencode::Bencode;
use super::metainfo::{BLOCK, InfoHash, MAX_PIECE_LENGTH};

/// Pieces read ahead per core: two keeps every core busy while bounding memory.
const PIECES_PER_CORE: usize = 2;
/// The default piece length aims at this many pieces ...
const TARGET_PIECES: u64 = 1500;
/// ... but stays at least 16 KiB (one block) ...
const MIN_PIECE: u64 = BLOCK;
/// ... and at most 16 MiB (what clients handle well).
const MAX_PIECE: u64 = 16 * 1024 * 1024;

/// What `create` made.
pub struct Created {
    /// The .torrent written.
    pub output: PathBuf,
    /// Its infohash.
    pub info_hash: InfoHash,
}

/// The default piece length for `total` bytes: the power of two nearest above
/// `total / 1500`, clamped to 16 KiB..16 MiB (so 1,000-2,000 pieces in between).
pub fn default_piece_length(total: u64) -> u64 {
    (total / TARGET_PIECES)
        .next_power_of_two()
        .clamp(MIN_PIECE, MAX_PIECE)
}

fn walk(
    root: &Path,
    rel: &mut Vec<Vec<u8>>,
    out: &mut Vec<(Vec<Vec<u8>>, PathBuf, u64)>,
) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir = root.join(
        rel.iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect::<PathBuf>(),
    );
    for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        rel.push(e.file_name().as_bytes().to_vec());
        if ft.is_dir() {
            walk(root, rel, out)?;
        } else if ft.is_file() {
            let len = e.metadata()?.len();
            out.push((rel.clone(), e.path(), len));
        } else {
            log::info!("skipping {} (not a regular file)", e.path().display());
        }
        rel.pop();
    }
    Ok(())
}

/// `swarmlet create`: make a .torrent from a file or a directory.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// The file or directory to share
    pub path: PathBuf,
    /// Where to write the .torrent (default: ./<name>.torrent)
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Tracker announce URL; repeat for more tiers (the first is also `announce`)
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Piece length in bytes (a power of two, at least 16 KiB); default from the size
    #[arg(long, value_name = "BYTES")]
    pub piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27: no DHT, PEX or LSD)
    #[arg(long)]
    pub private: bool,
    /// A free-text comment
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Leave out the creation date (and so make the file reproducible)
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite OUT if it exists
    #[arg(long)]
    pub force: bool,
}

/// Makes the torrent `args` describe and writes it.
pub fn create(args: &CreateArgs) -> anyhow::Result<Created> {
    use std::os::unix::ffi::OsStrExt;
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    let name = args
        .path
        .canonicalize()?
        .file_name()
        .context("the path has no name")?
        .as_bytes()
        .to_vec();
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(&args.path, &mut Vec::new(), &mut files)?;
        files.sort_by_key(|f| f.0.join(&b'/'));
        anyhow::ensure!(!files.is_empty(), "{} holds no files", args.path.display());
    } else {
        files.push((vec![name.clone()], args.path.clone(), meta.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let piece_length = match args.piece_length {
        Some(p) => {
            // The upper bound is what `Metainfo::parse` accepts; a piece is held whole
            // while hashed, so 2^40 would also be 1 TiB of memory here.
            anyhow::ensure!(
                (BLOCK..=MAX_PIECE_LENGTH).contains(&p) && p.is_power_of_two(),
                "piece length {p} is not a power of two from 16 KiB to 64 MiB"
            );
            p
        }
        None => default_piece_length(total),
    };
    let output = match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(format!("{}.torrent", String::from_utf8_lossy(&name))),
    };
    anyhow::ensure!(
        args.force || !output.exists(),
        "{} exists (use --force to overwrite)",
        output.display()
    );

    let pieces = hash_pieces(&files, piece_length, total)?;

    let mut info = Bencode::dict();
    info.insert("name", Bencode::bytes(&name))
        .insert("piece length", Bencode::Int(piece_length as i64))
        .insert("pieces", Bencode::Bytes(pieces));
    if meta.is_dir() {
        let list = files
            .iter()
            .map(|(rel, _, len)| {
                let mut f = Bencode::dict();
                f.insert("length", Bencode::Int(*len as i64)).insert(
                    "path",
                    Bencode::List(rel.iter().map(Bencode::bytes).collect()),
                );
                f
            })
            .collect();
        info.insert("files", Bencode::List(list));
    } else {
        info.insert("length", Bencode::Int(total as i64));
    }
    if args.private {
        info.insert("private", Bencode::Int(1));
    }
    let info_bytes = info.encode();
    let mut root = Bencode::dict();
    if let Some(first) = args.trackers.first() {
        root.insert("announce", first.as_str().into());
    }
    if args.trackers.len() > 1 {
        let tiers = args
            .trackers
            .iter()
            .map(|t| Bencode::List(vec![t.as_str().into()]))
            .collect();
        root.insert("announce-list", Bencode::List(tiers));
    }
    if let Some(c) = &args.comment {
        root.insert("comment", c.as_str().into());
    }
    root.insert(
        "created by",
        concat!("swarmlet ", env!("CARGO_PKG_VERSION")).into(),
    );
    if !args.no_date {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        root.insert("creation date", Bencode::Int(now));
    }
    root.insert("info", info);
    std::fs::write(&output, root.encode())
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(Created {
        output,
        info_hash: InfoHash::of(&info_bytes),
    })
}

/// Reads the files as one stream cut into pieces; hashes each batch on every core.
fn hash_pieces(
    files: &[(Vec<Vec<u8>>, PathBuf, u64)],
    piece_length: u64,
    total: u64,
) -> anyhow::Result<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch = cores * PIECES_PER_CORE;
    let pb = crate::cli::byte_progress(total, "hashing");
    let mut out = Vec::with_capacity((total.div_ceil(piece_length) * 20) as usize);
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut cur = vec![0u8; piece_length as usize];
    let mut fill = 0usize;
    let flush = |bufs: &mut Vec<Vec<u8>>, out: &mut Vec<u8>| {
        let hashes: Vec<[u8; 20]> = std::thread::scope(|s| {
            let per = bufs.len().div_ceil(cores).max(1);
            let handles: Vec<_> = bufs
                .chunks(per)
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|b| <[u8; 20]>::from(Sha1::digest(b)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("hash thread"))
                .collect()
        });
        for h in hashes {
            out.extend_from_slice(&h);
        }
        bufs.clear();
    };
    for (_, path, len) in files {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut left = *len;
        while left > 0 {
            let want = (cur.len() - fill).min(left as usize);
            let n = f.read(&mut cur[fill..fill + want])?;
            anyhow::ensure!(n > 0, "{} shrank while hashing", path.display());
            fill += n;
            left -= n as u64;
            pb.inc(n as u64);
            if fill == cur.len() {
                bufs.push(std::mem::replace(
                    &mut cur,
                    vec![0u8; piece_length as usize],
                ));
                fill = 0;
                if bufs.len() == batch {
                    flush(&mut bufs, &mut out);
                }
            }
        }
    }
    if fill > 0 {
        cur.truncate(fill);
        bufs.push(cur);
    }
    flush(&mut bufs, &mut out);
    pb.finish_and_clear();
    Ok(out)
}
