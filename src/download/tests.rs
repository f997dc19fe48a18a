//! The engine against fake peers (no sockets): endgame duplicates, the first verified
//! copy winning, failures of one copy, and aborting the fetches still running at the
//! end. Fakes wait on conditions rather than sleeps, so outcomes do not depend on
//! timing (one test adds a pause, only to make the path it covers likely); a fake
//! never waits longer than [`CAP`], so a fake alone cannot hang a test.
use super::msg::{Ctx, Event, PieceIndexes, VerifyJob};
use super::worker::verifier;
use super::*;
use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::hash::ChunkHash;
use crate::storage::hash_dir::HashDirStore;
use crate::store::ChunkStore;
use crossbeam_channel::unbounded;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Longest any fake waits: far above every bound the tests assert.
const CAP: Duration = Duration::from_secs(60);
/// Bound on a download that must not wait for a slow or stuck peer. Not a speed
/// measure: the fakes answer in microseconds, a hang would take [`CAP`].
const PROMPT: Duration = Duration::from_secs(20);

/// When a fake answers a GET.
#[derive(Clone, Copy, Debug)]
enum When {
    /// At once.
    Now,
    /// Never: blocks until the connection is aborted (a stuck peer).
    Never,
    /// Once this peer has started a fetch (so that it got a piece of its own).
    PeerStarted(PeerId),
    /// Once another peer's fetch of the same chunk has returned, and then this long
    /// (time for that peer's worker to report while the download still runs).
    OtherReturned(Duration),
    /// Once the chunk has been passed to the `Verified` hook.
    Verified,
    /// Once this peer's fetch has returned, and then this long (time for its worker
    /// to report, so that the report is handled while the download still runs).
    AfterReturnOf(PeerId, Duration),
}

/// What a fake answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum What {
    Chunk,
    NotFound,
    /// Bytes that do not match the hash.
    Garbage,
    /// A broken connection.
    Break,
}

/// How a fake answers one chunk.
type Rule = (When, What);

#[derive(Default)]
struct State {
    /// Fetches started, per peer.
    started: HashMap<PeerId, usize>,
    /// Fetches returned, per (peer, chunk): how many, and when the first did.
    returned: HashMap<(PeerId, ChunkHash), (usize, Instant)>,
    /// Hook calls, per chunk.
    verified: HashMap<ChunkHash, usize>,
}

struct Shared {
    data: HashMap<ChunkHash, Vec<u8>>,
    /// Per peer label: default behaviour, and per-chunk overrides.
    rules: HashMap<String, (Rule, HashMap<ChunkHash, Rule>)>,
    state: Mutex<State>,
    changed: Condvar,
    connects: Vec<AtomicUsize>,
    aborts: Vec<AtomicUsize>,
}

impl Shared {
    fn rule(&self, peer: &str, hash: &ChunkHash) -> (When, What) {
        let (default, per) = &self.rules[peer];
        per.get(hash).copied().unwrap_or(*default)
    }

    fn ready(&self, st: &State, when: When, me: PeerId, hash: &ChunkHash) -> bool {
        match when {
            When::Now => true,
            When::Never => false,
            When::PeerStarted(p) => st.started.get(&p).copied().unwrap_or(0) > 0,
            When::OtherReturned(wait) => st
                .returned
                .iter()
                .any(|((p, h), (_, t))| *p != me && h == hash && t.elapsed() >= wait),
            When::Verified => st.verified.contains_key(hash),
            When::AfterReturnOf(p, wait) => {
                // From this peer's first return, whatever the chunk.
                st.returned
                    .iter()
                    .filter(|((q, _), _)| *q == p)
                    .map(|(_, (_, t))| *t)
                    .min()
                    .is_some_and(|t| t.elapsed() >= wait)
            }
        }
    }
}

struct FakeConnector(Arc<Shared>);

struct FakeSource {
    shared: Arc<Shared>,
    peer: PeerId,
    label: String,
    aborted: Arc<AtomicBool>,
}

struct FakeAbort {
    shared: Arc<Shared>,
    peer: PeerId,
    aborted: Arc<AtomicBool>,
}

impl AbortHandle for FakeAbort {
    fn abort(&self) {
        let _st = self.shared.state.lock().unwrap();
        self.aborted.store(true, Ordering::SeqCst);
        self.shared.aborts[self.peer].fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_all();
    }
}

impl Connector for FakeConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError> {
        let id = peer.addr.port() as PeerId;
        self.0.connects[id].fetch_add(1, Ordering::SeqCst);
        Ok(Connected::new(Box::new(FakeSource {
            shared: self.0.clone(),
            peer: id,
            label: peer.label.clone(),
            aborted: Arc::new(AtomicBool::new(false)),
        })))
    }
}

impl PieceSource for FakeSource {
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        let hash = &req.digest.to_chunk_hash().expect("SHA-1");
        let sh = self.shared.clone();
        let (when, what) = sh.rule(&self.label, hash);
        let end = Instant::now() + CAP;
        let mut st = sh.state.lock().unwrap();
        *st.started.entry(self.peer).or_default() += 1;
        sh.changed.notify_all();
        loop {
            if self.aborted.load(Ordering::SeqCst) {
                return Err(FetchError::Io(io::ErrorKind::ConnectionAborted.into()));
            }
            if sh.ready(&st, when, self.peer, hash) {
                break;
            }
            if Instant::now() > end {
                return Err(FetchError::Io(io::ErrorKind::TimedOut.into()));
            }
            st = sh
                .changed
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        st.returned
            .entry((self.peer, *hash))
            .or_insert((0, Instant::now()))
            .0 += 1;
        sh.changed.notify_all();
        drop(st);
        match what {
            What::Chunk => {
                buf.clear();
                buf.extend_from_slice(&sh.data[hash]);
                Ok(())
            }
            What::Garbage => {
                buf.clear();
                buf.extend_from_slice(b"not the chunk");
                Ok(())
            }
            What::NotFound => Err(FetchError::NotFound),
            What::Break => Err(FetchError::Io(io::ErrorKind::ConnectionReset.into())),
        }
    }

    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        Some(Box::new(FakeAbort {
            shared: self.shared.clone(),
            peer: self.peer,
            aborted: self.aborted.clone(),
        }))
    }
}

/// Counts hook calls per chunk.
struct Hook(Arc<Shared>);

impl Verified for Hook {
    fn verified(&self, _: &[usize], data: &[u8]) {
        let mut st = self.0.state.lock().unwrap();
        *st.verified.entry(ChunkHash::of(data)).or_default() += 1;
        self.0.changed.notify_all();
    }
}

type Rules<'a> = &'a [(&'a str, (When, What), &'a [(usize, (When, What))])];

struct Setup {
    plan: Plan,
    hashes: Vec<ChunkHash>,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
}

/// `n` distinct chunks; `has[i]` lists the peers (by index in `rules`) holding chunk i.
fn setup(n: usize, has: &[&[PeerId]], rules: Rules<'_>) -> Setup {
    let chunks: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("chunk number {i}").repeat(100).into_bytes())
        .collect();
    let hashes: Vec<ChunkHash> = chunks.iter().map(|c| ChunkHash::of(c)).collect();
    let peers = rules
        .iter()
        .enumerate()
        .map(|(i, (label, _, _))| PeerInfo {
            // The port carries the peer's id to the fake connector.
            addr: SocketAddr::from(([127, 0, 0, 1], i as u16)),
            label: label.to_string(),
        })
        .collect::<Vec<_>>();
    let rules = rules
        .iter()
        .map(|(label, default, per)| {
            let per = per.iter().map(|&(i, r)| (hashes[i], r)).collect();
            (label.to_string(), (*default, per))
        })
        .collect();
    let shared = Arc::new(Shared {
        data: hashes.iter().copied().zip(chunks).collect(),
        rules,
        state: Mutex::default(),
        changed: Condvar::new(),
        connects: peers.iter().map(|_| AtomicUsize::new(0)).collect(),
        aborts: peers.iter().map(|_| AtomicUsize::new(0)).collect(),
    });
    let sources: Vec<Vec<PeerId>> = has.iter().map(|h| h.to_vec()).collect();
    let digests = hashes.iter().map(|&h| Digest::from(h)).collect();
    let plan = Plan::new("f.bin", digests, None)
        .unwrap()
        .with_sources(peers, &sources);
    Setup {
        plan,
        hashes,
        shared,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn run(&self) -> (Result<Report, DownloadError>, Duration) {
        self.run_live(None, &Options::default())
    }

    fn run_live(
        &self,
        swarm: Option<SwarmReceiver>,
        base: &Options,
    ) -> (Result<Report, DownloadError>, Duration) {
        let chunks = ChunkStore::create(self.dir.path().join("charlie")).unwrap();
        let store = HashDirStore::new(chunks, &self.plan.digests).unwrap();
        let opts = Options {
            reconnect_backoff: Duration::from_millis(10),
            verifiers: 2,
            ..base.clone()
        };
        let hook = Hook(self.shared.clone());
        let start = Instant::now();
        let r = download_with(
            &self.plan,
            &store,
            &FakeConnector(self.shared.clone()),
            &opts,
            &ProgressBar::hidden(),
            Extras {
                on_verified: Some(&hook),
                swarm,
            },
        );
        (r, start.elapsed())
    }

    /// Fetches of chunk `i` that returned, from every peer.
    fn returned(&self, i: usize) -> usize {
        let st = self.shared.state.lock().unwrap();
        let h = self.hashes[i];
        st.returned
            .iter()
            .filter(|((_, x), _)| *x == h)
            .map(|(_, (n, _))| n)
            .sum()
    }

    fn assert_each_verified_once(&self) {
        let st = self.shared.state.lock().unwrap();
        for (i, h) in self.hashes.iter().enumerate() {
            assert_eq!(st.verified.get(h), Some(&1), "chunk {i}");
        }
        let store = ChunkStore::new(self.dir.path().join("charlie"));
        for h in &self.hashes {
            assert!(store.verify(h).unwrap());
        }
    }

    fn connects(&self, p: PeerId) -> usize {
        self.shared.connects[p].load(Ordering::SeqCst)
    }

    fn aborts(&self, p: PeerId) -> usize {
        self.shared.aborts[p].load(Ordering::SeqCst)
    }
}

const OK: (When, What) = (When::Now, What::Chunk);

/// fast (0) and slow (1) both hold all `n` chunks; slow's first piece is answered
/// `when`; fast starts only once slow has a piece of its own.
fn tail_on_slow_peer(when: When) {
    let n = 6;
    let all: &[PeerId] = &[0, 1];
    let s = setup(
        n,
        &vec![all; n],
        &[
            ("fast", (When::PeerStarted(1), What::Chunk), &[]),
            ("slow", (when, What::Chunk), &[]),
        ],
    );
    let (r, took) = s.run();
    let report = r.unwrap();
    assert!(took < PROMPT, "waited for the slow peer: {took:?}");
    assert_eq!(report.endgame_duplicates, 1, "{report:?}");
    assert_eq!(report.peers[0].chunks, n, "{report:?}");
    assert_eq!(report.peers[1].chunks, 0, "{report:?}");
    assert_eq!(report.retries, 0);
    let bytes: u64 = s.hashes.iter().map(|h| s.shared.data[h].len() as u64).sum();
    assert_eq!(report.bytes, bytes, "the winning copy counts once");
    assert_eq!(report.peers[0].bytes, bytes);
    assert_eq!(report.peers[1].bytes, 0);
    s.assert_each_verified_once();
    // A stuck fetch is still running at the end: aborted, and that is not one of its
    // failures. A slow one answers as soon as the duplicate has won, which may be just
    // before or just after the end, so it is aborted at most once.
    if matches!(when, When::Never) {
        assert_eq!(s.aborts(1), 1);
    } else {
        assert!(s.aborts(1) <= 1, "aborted {} times", s.aborts(1));
    }
    assert!(report.peers[1].failures.is_empty(), "{report:?}");
    assert!(report.peers[1].dropped.is_none(), "{report:?}");
    // One connection per peer for the whole download.
    assert_eq!((s.connects(0), s.connects(1)), (1, 1));
    assert!(
        report.summary("f.bin").ends_with("; endgame duplicates 1"),
        "{}",
        report.summary("f.bin")
    );
}

#[test]
fn a_slow_peer_holding_the_last_piece_is_overtaken_by_a_duplicate() {
    // Slow: answers only once the duplicate has won (well after the end, in effect).
    tail_on_slow_peer(When::Verified);
}

#[test]
fn a_stuck_peer_is_aborted_when_the_download_is_complete() {
    tail_on_slow_peer(When::Never);
}

#[test]
fn no_duplicate_when_every_piece_is_served_in_time() {
    let s = setup(
        4,
        &[&[0], &[1], &[0], &[1]],
        &[("a", OK, &[]), ("b", OK, &[])],
    );
    let report = s.run().0.unwrap();
    assert_eq!(report.endgame_duplicates, 0);
    assert!(!report.summary("f.bin").contains("endgame"));
    s.assert_each_verified_once();
}

/// Chunk 0 held by fast (0) and slow (1); chunk 1 only by fast. Fast takes chunk 1
/// first (rarest first), then duplicates chunk 0, held by slow until fast's copy has
/// ended (`what` fails it) and 300 ms more, so that the failure is handled while the
/// download still runs; then slow's copy verifies.
#[test]
fn a_failed_duplicate_does_not_requeue_or_fail_the_piece() {
    for what in [What::NotFound, What::Garbage, What::Break] {
        let s = setup(
            2,
            &[&[0, 1], &[0]],
            &[
                (
                    "fast",
                    (When::PeerStarted(1), What::Chunk),
                    &[(0, (When::Now, what))],
                ),
                (
                    "slow",
                    (When::OtherReturned(Duration::from_millis(300)), What::Chunk),
                    &[],
                ),
            ],
        );
        let report = s.run().0.unwrap_or_else(|e| panic!("{what:?}: {e}"));
        assert_eq!(report.endgame_duplicates, 1, "{what:?}: {report:?}");
        assert_eq!(report.peers[1].chunks, 1, "{what:?}: {report:?}");
        assert_eq!(report.peers[0].chunks, 1, "{what:?}: {report:?}");
        assert_eq!(report.peers[0].failures.len(), 1, "{what:?}: {report:?}");
        // Not requeued: nobody fetched chunk 0 a third time, no retry counted.
        assert_eq!(report.retries, 0, "{what:?}: {report:?}");
        assert_eq!(s.returned(0), 2, "{what:?}");
        s.assert_each_verified_once();
    }
}

/// The duplicate wins; the original fetch then fails (or delivers a losing copy)
/// while the download is still running (chunk 2, on a third peer, waits for it): the
/// piece stays done and is not fetched again.
#[test]
fn a_failure_of_the_losing_copy_after_the_win_changes_nothing() {
    for what in [What::NotFound, What::Garbage, What::Break, What::Chunk] {
        let s = setup(
            3,
            &[&[0, 1], &[0], &[2]],
            &[
                ("fast", (When::PeerStarted(1), What::Chunk), &[]),
                ("slow", (When::Verified, what), &[]),
                (
                    "last",
                    (
                        When::AfterReturnOf(1, Duration::from_millis(300)),
                        What::Chunk,
                    ),
                    &[],
                ),
            ],
        );
        let report = s.run().0.unwrap_or_else(|e| panic!("{what:?}: {e}"));
        assert_eq!(report.endgame_duplicates, 1, "{what:?}: {report:?}");
        assert_eq!(report.retries, 0, "{what:?}: {report:?}");
        assert_eq!(s.returned(0), 2, "{what:?}");
        assert_eq!(report.peers[0].chunks, 2, "{what:?}: {report:?}");
        assert_eq!(report.peers[1].chunks, 0, "{what:?}: {report:?}");
        // At most the one failure (none if its report came after the end).
        let failures = usize::from(what != What::Chunk);
        assert!(report.peers[1].failures.len() <= failures, "{report:?}");
        s.assert_each_verified_once();
    }
}

#[test]
fn fetch_errors_name_their_cause() {
    use FetchCause as C;
    let io = |k: io::ErrorKind| FetchError::Io(k.into());
    assert_eq!(FetchError::NotFound.cause(), C::NotFound);
    assert_eq!(io(io::ErrorKind::TimedOut).cause(), C::TimedOut);
    assert_eq!(
        io(io::ErrorKind::ConnectionRefused).cause(),
        C::ConnectionRefused
    );
    assert_eq!(io(io::ErrorKind::ConnectionReset).cause(), C::Reset);
    assert_eq!(io(io::ErrorKind::UnexpectedEof).cause(), C::Reset);
    let short = FetchError::ShortRead {
        expected: 4,
        got: 1,
    };
    assert_eq!(short.cause(), C::ShortRead);
    assert!(short.breaks_connection());
    let refused = FetchError::Refused("ERROR INVALID_REQUEST".into());
    assert!(!refused.breaks_connection());
    assert_eq!(refused.to_string(), "peer answered ERROR INVALID_REQUEST");
    let h = crate::digest::Digest::from(ChunkHash::of(b"a"));
    let wrong = FetchError::WrongPiece { asked: h, got: h };
    assert!(wrong.breaks_connection());
    assert!(wrong.to_string().contains("got a CHUNK labelled"));
}

/// The verifier alone: of two good copies of one piece, the first is written and
/// reported, the second is neither (the chunk file, removed in between, stays gone).
#[test]
fn only_the_first_verified_copy_is_written_and_reported() {
    let s = setup(1, &[&[0, 1]], &[("a", OK, &[]), ("b", OK, &[])]);
    let store = ChunkStore::create(s.dir.path().join("charlie")).unwrap();
    let pieces = HashDirStore::new(store.clone(), &s.plan.digests).unwrap();
    let indexes = PieceIndexes::new([&[0usize][..]].into_iter());
    let claimed = [AtomicBool::new(false)];
    let finished = AtomicBool::new(false);
    let hook = Hook(s.shared.clone());
    let opts = Options::default();
    let connector = FakeConnector(s.shared.clone());
    let ctx = Ctx {
        store: &pieces,
        connector: &connector,
        opts: &opts,
        indexes: &indexes,
        on_verified: Some(&hook),
        claimed: &claimed,
        finished: &finished,
    };
    let hash = s.hashes[0];
    let data = s.shared.data[&hash].clone();
    let (jobs_tx, jobs) = unbounded();
    let (ev_tx, events) = unbounded();
    let (pool_tx, pool) = unbounded();
    let job = |peer| VerifyJob {
        piece: 0,
        peer,
        digest: Digest::from(hash),
        buf: data.clone(),
    };
    thread::scope(|sc| {
        sc.spawn(|| verifier(&ctx, jobs, ev_tx, pool_tx));
        jobs_tx.send(job(1)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Verified(0, 1, _)));
        assert!(store.verify(&hash).unwrap());
        store.remove(&hash).unwrap();
        jobs_tx.send(job(0)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Duplicate(0, 0)));
        drop(jobs_tx);
    });
    assert!(!store.contains(&hash), "the losing copy was written");
    assert_eq!(s.shared.state.lock().unwrap().verified[&hash], 1);
    assert_eq!(pool.iter().count(), 2, "both buffers went back to the pool");
}

/// The live swarm: a piece nobody has waits (rather than failing) until a peer that has
/// it joins; a mask update gives a peer more pieces; a peer that leaves is asked nothing
/// more; closing the swarm fails what nobody has.
#[test]
fn a_live_swarm_waits_for_peers_that_join_and_learn_more() {
    let mut s = setup(
        3,
        &[&[0], &[], &[]],
        &[("first", OK, &[]), ("joiner", OK, &[]), ("never", OK, &[])],
    );
    let later = s.plan.peers.split_off(1);
    s.plan.peers[0].has = Some(Bitfield::from_bools([true, false, false]));
    let (tx, rx) = swarm::channel();
    let (joiner, never) = (later[0].info.clone(), later[1].info.clone());
    let (r, _) = thread::scope(|sc| {
        sc.spawn(|| {
            // After the first peer's piece, the joiner comes with piece 1, then learns 2.
            thread::sleep(Duration::from_millis(300));
            let mut has = Bitfield::new(3);
            has.set(1);
            tx.send(SwarmEvent::Join(PeerSpec {
                info: joiner.clone(),
                has: Some(has.clone()),
            }))
            .unwrap();
            thread::sleep(Duration::from_millis(300));
            has.set(2);
            tx.send(SwarmEvent::Leave(never.addr)).unwrap();
            // The last event: the download may end (and drop the receiver) right after.
            tx.send(SwarmEvent::Has {
                addr: joiner.addr,
                has,
            })
            .unwrap();
        });
        s.run_live(Some(rx), &Options::default())
    });
    let report = r.unwrap();
    assert_eq!(report.peers.len(), 2, "{report:?}");
    assert_eq!(report.peers[0].chunks, 1);
    assert_eq!(report.peers[1].chunks, 2);
    s.assert_each_verified_once();

    // Closing the swarm with a piece nobody has ends the download with that piece missing.
    let mut s = setup(2, &[&[0], &[]], &[("only", OK, &[])]);
    s.plan.peers[0].has = Some(Bitfield::from_bools([true, false]));
    let (tx, rx) = swarm::channel();
    let (r, took) = thread::scope(|sc| {
        sc.spawn(move || {
            thread::sleep(Duration::from_millis(300));
            drop(tx);
        });
        s.run_live(Some(rx), &Options::default())
    });
    assert!(took < PROMPT);
    match r {
        Err(DownloadError::Incomplete { missing, .. }) => assert_eq!(missing, vec![1]),
        other => panic!("{other:?}"),
    }

    // A stall timeout gives up on its own.
    let s = setup(1, &[&[]], &[("none", OK, &[])]);
    let (_tx, rx) = swarm::channel();
    let opts = Options {
        stall_timeout: Some(Duration::from_millis(600)),
        ..Options::default()
    };
    let (r, took) = s.run_live(Some(rx), &opts);
    assert!(matches!(r, Err(DownloadError::Incomplete { .. })), "{r:?}");
    assert!(took < PROMPT);
}

#[test]
fn a_liar_rejoins_after_a_while_unless_liars_are_banned() {
    for ban_liars in [false, true] {
        let mut s = setup(
            3,
            &[&[0], &[], &[]],
            &[
                ("liar", (When::Now, What::Garbage), &[]),
                ("honest", OK, &[]),
            ],
        );
        let later = s.plan.peers.split_off(1);
        s.plan.peers[0].has = Some(Bitfield::from_bools([true, true, true]));
        let (liar, honest) = (s.plan.peers[0].info.clone(), later[0].info.clone());
        let (tx, rx) = swarm::channel();
        let opts = Options {
            rejoin_after: Duration::ZERO,
            ban_liars,
            ..Options::default()
        };
        let (r, _) = thread::scope(|sc| {
            sc.spawn(|| {
                // The liar is offered again once it was dropped for its bad pieces, then
                // the honest peer comes.
                thread::sleep(Duration::from_millis(300));
                let all = Bitfield::from_bools([true, true, true]);
                for info in [liar.clone(), honest.clone()] {
                    let has = Some(all.clone());
                    tx.send(SwarmEvent::Join(PeerSpec { info, has })).unwrap();
                    thread::sleep(Duration::from_millis(300));
                }
            });
            s.run_live(Some(rx), &opts)
        });
        let report = r.unwrap();
        assert!(report.rejected >= 3, "{report:?}");
        let expected = if ban_liars { 1 } else { 2 };
        assert_eq!(s.connects(0), expected, "ban_liars {ban_liars}: {report:?}");
        s.assert_each_verified_once();
    }
}
