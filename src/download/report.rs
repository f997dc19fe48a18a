//! What a download tells its caller: the [`Report`] of a completed one, and the
//! [`DownloadError`] of one that did not complete, whose causes are kept as values and
//! folded for people ("chunks 0-6: alice and bob refused the connection").

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::digest::HashAlgo;

use super::source::FetchCause;

/// What one peer contributed.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// Its label.
    pub label: String,
    /// Chunks it delivered that verified.
    pub chunks: usize,
    /// Bytes of those chunks.
    pub bytes: u64,
    /// Failures, in order ("chunk 3: wrong hash", "connection refused", ...), for logs.
    pub failures: Vec<String>,
    /// Why it was dropped, if it was.
    pub dropped: Option<PeerFate>,
}

/// The outcome of a completed download.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes fetched and verified in this run (resumed chunks excluded).
    pub bytes: u64,
    /// Wall time of this run.
    pub elapsed: Duration,
    /// Per peer, in the order they joined (the plan's first).
    pub peers: Vec<PeerReport>,
    /// Chunks found already verified on disk and not fetched again.
    pub resumed: usize,
    /// Fetches that had to be repeated (on the same or another peer).
    pub retries: usize,
    /// Endgame duplicates: second fetches of a piece started while its first fetch was
    /// still running on another peer (see [`super::MAX_FETCHES_PER_PIECE`]). Whichever
    /// copy verifies first counts in `bytes` and in its peer's chunks; the other counts
    /// nowhere.
    pub endgame_duplicates: usize,
}

impl Report {
    /// Megabytes (10^6 bytes) per second over this run.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one summary line a downloader prints.
    pub fn summary(&self, filename: &str) -> String {
        let per_peer: Vec<String> = self
            .peers
            .iter()
            .map(|p| format!("{} {}", p.label, p.chunks))
            .collect();
        let mut line = format!(
            "{filename}: {} bytes in {:.3} s ({:.1} MB/s); chunks from {}; resumed {}; retries {}",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.mb_per_s(),
            if per_peer.is_empty() {
                "no peer".to_string()
            } else {
                per_peer.join(", ")
            },
            self.resumed,
            self.retries
        );
        // Only when endgame happened, so that the usual line keeps its format.
        if self.endgame_duplicates > 0 {
            line.push_str(&format!("; endgame duplicates {}", self.endgame_duplicates));
        }
        line
    }
}

/// Why a peer is no longer asked for anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerFate {
    /// Connecting failed, twice; the cause and, when it says more, the error's text.
    Unreachable(FetchCause, Option<String>),
    /// The connection broke again right after a reconnection.
    BrokeAgain(FetchCause, Option<String>),
    /// It sent this many bad chunks in a row; the last one's cause.
    BadInARow(u32, Box<Why>),
    /// It left the swarm (a tracker no longer lists it).
    Left,
    /// Its worker thread ended unexpectedly.
    WorkerStopped,
}

impl fmt::Display for PeerFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerFate::Unreachable(c, None) => f.write_str(c.phrase()),
            PeerFate::Unreachable(_, Some(d)) => write!(f, "cannot connect: {d}"),
            PeerFate::BrokeAgain(c, None) => write!(f, "{} again after a reconnection", c.phrase()),
            PeerFate::BrokeAgain(_, Some(d)) => write!(f, "failed again after a reconnection: {d}"),
            PeerFate::BadInARow(n, last) => write!(f, "{n} bad chunks in a row (the last: {last})"),
            PeerFate::Left => f.write_str("left the swarm"),
            PeerFate::WorkerStopped => f.write_str("stopped"),
        }
    }
}

/// Why one peer did not deliver one piece.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Why {
    /// The fetch failed this way; with the error's text when it says more than the cause.
    Fetch(FetchCause, Option<String>),
    /// The peer answered with an error, shown as the protocol names it.
    Answered(String),
    /// Its copy did not hash to the piece's digest.
    BadDigest(HashAlgo),
    /// The peer was dropped before it delivered.
    Dropped(PeerFate),
}

impl Why {
    /// Whether it reads after a colon (`alice: timed out: no reply within 500 ms`) rather
    /// than as a verb phrase (`alice refused the connection`).
    fn is_detail(&self) -> bool {
        matches!(
            self,
            Why::Fetch(_, Some(_))
                | Why::Dropped(
                    PeerFate::Unreachable(_, Some(_)) | PeerFate::BrokeAgain(_, Some(_))
                )
        )
    }
}

/// The text of `e` when it says more than its cause's phrase.
pub fn detail(e: &super::source::FetchError) -> Option<String> {
    match e.cause() {
        FetchCause::ConnectionRefused | FetchCause::NotFound | FetchCause::Choked => None,
        _ => Some(e.to_string()),
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Fetch(c, None) => f.write_str(c.phrase()),
            Why::Fetch(_, Some(d)) => f.write_str(d),
            Why::Answered(a) => write!(f, "answered {a}"),
            Why::BadDigest(algo) => write!(f, "sent data that does not match its {algo}"),
            Why::Dropped(fate) => fmt::Display::fmt(fate, f),
        }
    }
}

/// The pieces that failed for the same reasons.
#[derive(Debug, Clone)]
pub struct PieceFailure {
    /// Piece indexes, ascending.
    pub pieces: Vec<usize>,
    /// Per holder (its label), why it did not deliver; empty when no peer had them.
    pub holders: Vec<(String, Why)>,
}

impl fmt::Display for PieceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", chunk_list(&self.pieces))?;
        if self.holders.is_empty() {
            return f.write_str("no usable peer listed");
        }
        // "alice and bob refused the connection; carol timed out": holders grouped by
        // cause, in the order the causes first appear.
        let mut groups: Vec<(&Why, Vec<&str>)> = Vec::new();
        for (label, why) in &self.holders {
            match groups.iter_mut().find(|(w, _)| *w == why) {
                Some((_, names)) => names.push(label),
                None => groups.push((why, vec![label])),
            }
        }
        for (i, (why, names)) in groups.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let sep = if why.is_detail() { ": " } else { " " };
            write!(f, "{}{sep}{why}", and_list(names))?;
        }
        Ok(())
    }
}

/// Folds per-piece causes into groups of pieces with the same causes, first piece first.
pub fn fold(per_piece: impl IntoIterator<Item = (usize, Vec<(String, Why)>)>) -> Vec<PieceFailure> {
    let mut by_causes: HashMap<Vec<(String, Why)>, usize> = HashMap::new();
    let mut out: Vec<PieceFailure> = Vec::new();
    for (piece, holders) in per_piece {
        match by_causes.get(&holders) {
            Some(&g) => out[g].pieces.push(piece),
            None => {
                by_causes.insert(holders.clone(), out.len());
                out.push(PieceFailure {
                    pieces: vec![piece],
                    holders,
                });
            }
        }
    }
    for g in &mut out {
        g.pieces.sort_unstable();
    }
    out.sort_by_key(|g| g.pieces[0]);
    out
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Some chunks could not be had from any peer.
    #[error("{} could not be downloaded from any peer: {}", chunk_list(.missing), Failures(.failures))]
    Incomplete {
        /// Chunk indexes (file order) still missing.
        missing: Vec<usize>,
        /// Why, folded: pieces that failed alike are one entry.
        failures: Vec<PieceFailure>,
        /// The partial report.
        report: Box<Report>,
    },
    /// The store failed (disk full, permissions).
    #[error("cannot store chunk {index} in {location}: {source}")]
    Store {
        /// The piece being written.
        index: usize,
        /// Where the store is.
        location: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading the chunks already on disk failed.
    #[error("cannot check chunks already in {dir}: {source}")]
    Resume {
        /// The store's location.
        dir: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The plan is unusable (see [`super::PlanError`]).
    #[error(transparent)]
    Plan(#[from] super::PlanError),
}

/// The first few groups of an [`DownloadError::Incomplete`]: folding keeps the line short
/// when many pieces fail alike, and this bounds it when they fail in many ways.
struct Failures<'a>(&'a [PieceFailure]);

/// How many failure groups [`Failures`] shows.
const GROUPS_SHOWN: usize = 6;

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.len().min(GROUPS_SHOWN);
        for (i, g) in self.0[..shown].iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{g}")?;
        }
        if self.0.len() > shown {
            let more: usize = self.0[shown..].iter().map(|g| g.pieces.len()).sum();
            let noun = if more == 1 { "chunk" } else { "chunks" };
            write!(f, "; and {more} more {noun}")?;
        }
        Ok(())
    }
}

/// `chunk 3` or `chunks 0-2, 5`.
pub(crate) fn chunk_list(idx: &[usize]) -> String {
    let noun = if idx.len() == 1 { "chunk" } else { "chunks" };
    format!("{noun} {}", IndexList(idx))
}

/// `alice`, `alice and bob`, `alice, bob and carol`.
fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Indexes for messages, consecutive runs shortened to ranges (`1, 4, 6-9`) so that even
/// 65,535 missing chunks make a readable line.
pub struct IndexList<'a>(pub &'a [usize]);

impl fmt::Display for IndexList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let v = self.0;
        while i < v.len() {
            let mut j = i;
            while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                j += 1;
            }
            if i > 0 {
                f.write_str(", ")?;
            }
            if j == i {
                write!(f, "{}", v[i])?;
            } else {
                write!(f, "{}-{}", v[i], v[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_fold_by_piece_and_by_peer() {
        let refused = Why::Dropped(PeerFate::Unreachable(FetchCause::ConnectionRefused, None));
        let both = vec![
            ("alice".to_string(), refused.clone()),
            ("bob".into(), refused),
        ];
        let groups = fold((0..7).map(|i| (i, both.clone())));
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].to_string(),
            "chunks 0-6: alice and bob refused the connection"
        );
        let bad = vec![("alice".to_string(), Why::BadDigest(HashAlgo::Sha1))];
        let g = fold([(3, bad), (1, vec![])]);
        assert_eq!(g[0].to_string(), "chunk 1: no usable peer listed");
        assert_eq!(
            g[1].to_string(),
            "chunk 3: alice sent data that does not match its SHA-1"
        );
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
        let slow = Why::Fetch(FetchCause::TimedOut, Some("timed out: no reply".into()));
        let g = fold([(0, vec![("bob".to_string(), slow)])]);
        assert_eq!(g[0].to_string(), "chunk 0: bob: timed out: no reply");
    }
}
