//! The engine's worker threads: one per peer (owning its one connection) and the
//! verifiers (hashing and storing every fetched piece off the socket threads).

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::digest::Digest;

use super::msg::{Assignment, Ctx, Event, Failure, VerifyJob};
use super::plan::{PeerId, PeerInfo};
use super::report::{PeerFate, detail};
use super::source::{FetchError, PieceSource};

/// How long an idle worker waits for an assignment before it lets its connection read
/// what the peer sent meanwhile ([`PieceSource::idle`]): short enough that a BitTorrent
/// peer's HAVE reaches the schedule within a second, long enough to cost nothing.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// One peer's thread: owns its connection, fetches what the coordinator assigns. Always
/// ends by sending [`Event::Exited`].
#[allow(clippy::too_many_arguments)]
pub(super) fn worker(
    id: PeerId,
    peer: PeerInfo,
    ctx: &Ctx<'_>,
    assignments: Receiver<Assignment>,
    events: Sender<Event>,
    pool: Receiver<Vec<u8>>,
    pool_back: Sender<Vec<u8>>,
    verify: Sender<VerifyJob>,
) {
    work(
        id,
        &peer,
        ctx,
        &assignments,
        &events,
        &pool,
        &pool_back,
        &verify,
    );
    let _ = events.send(Event::Exited(id));
}

/// The connection a worker holds, with the reconnect policy: after a failure, one new
/// connection after a short backoff. A success resets the allowance; a second failure
/// in a row drops the peer.
struct Link<'a> {
    id: PeerId,
    peer: &'a PeerInfo,
    ctx: &'a Ctx<'a>,
    events: &'a Sender<Event>,
    conn: Box<dyn PieceSource>,
    reconnected: bool,
    news: Vec<usize>,
}

impl Link<'_> {
    /// Passes on what the peer announced since the last call.
    fn report_news(&mut self) {
        self.conn.news(&mut self.news);
        if !self.news.is_empty() {
            let _ = self
                .events
                .send(Event::Has(self.id, std::mem::take(&mut self.news)));
        }
    }

    /// After a broken connection: reconnects once, or tells the coordinator the peer is
    /// dead. Returns whether the worker goes on.
    fn recover(&mut self, e: &FetchError) -> bool {
        if self.reconnected {
            let _ = self.events.send(Event::PeerDead(
                self.id,
                PeerFate::BrokeAgain(e.cause(), detail(e)),
            ));
            return false;
        }
        thread::sleep(self.ctx.opts.reconnect_backoff);
        if self.ctx.finished.load(Ordering::SeqCst) {
            return false;
        }
        match self.ctx.connector.connect(self.peer) {
            Ok(c) => {
                log::info!("reconnected to {}", self.peer);
                self.conn = c.source;
                self.reconnected = true;
                let _ =
                    self.events
                        .send(Event::Connected(self.id, self.conn.abort_handle(), c.has));
                true
            }
            Err(e) => {
                log::warn!("cannot reconnect to {}: {e}", self.peer);
                let _ = self.events.send(Event::PeerDead(
                    self.id,
                    PeerFate::Unreachable(e.cause(), detail(&e)),
                ));
                false
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn work(
    id: PeerId,
    peer: &PeerInfo,
    ctx: &Ctx<'_>,
    assignments: &Receiver<Assignment>,
    events: &Sender<Event>,
    pool: &Receiver<Vec<u8>>,
    pool_back: &Sender<Vec<u8>>,
    verify: &Sender<VerifyJob>,
) {
    let connected = match connect_with_retry(peer, ctx) {
        Ok(c) => c,
        Err(e) => {
            let _ = events.send(Event::PeerDead(
                id,
                PeerFate::Unreachable(e.cause(), detail(&e)),
            ));
            return;
        }
    };
    log::info!("connected to {peer}");
    let _ = events.send(Event::Connected(
        id,
        connected.source.abort_handle(),
        connected.has,
    ));
    let mut link = Link {
        id,
        peer,
        ctx,
        events,
        conn: connected.source,
        reconnected: false,
        news: Vec::new(),
    };
    link.report_news();
    loop {
        if events.send(Event::Idle(id)).is_err() {
            return;
        }
        let (piece, req) = loop {
            match assignments.recv_timeout(IDLE_POLL) {
                Ok(Assignment::Fetch(piece, req)) => break (piece, req),
                Err(RecvTimeoutError::Disconnected) => return, // the coordinator is done with us
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = link.conn.idle() {
                        log::warn!("{peer}: {e}");
                        if !link.recover(&e) {
                            return;
                        }
                    }
                    link.report_news();
                }
            }
        };
        let Ok(mut buf) = pool.recv() else { return };
        let result = link.conn.fetch(&req, &mut buf);
        link.report_news();
        match result {
            Ok(()) => {
                link.reconnected = false;
                let job = VerifyJob {
                    piece,
                    peer: id,
                    digest: req.digest,
                    buf,
                };
                if verify.send(job).is_err() {
                    return;
                }
            }
            Err(e) => {
                // Give the buffer back before anything else can block.
                let _ = pool_back.send(buf);
                if ctx.finished.load(Ordering::SeqCst) {
                    return; // aborted because the download is over: not the peer's failure
                }
                let broken = e.breaks_connection();
                let failure = match &e {
                    FetchError::NotFound => Failure::NotFound,
                    FetchError::Refused(why) => Failure::Answered(why.to_string()),
                    e => Failure::Broken(e.cause(), detail(e), e.to_string()),
                };
                let _ = events.send(Event::Failed(piece, id, failure));
                if broken && !link.recover(&e) {
                    return;
                }
            }
        }
    }
}

fn connect_with_retry(
    peer: &PeerInfo,
    ctx: &Ctx<'_>,
) -> Result<super::source::Connected, FetchError> {
    match ctx.connector.connect(peer) {
        Ok(c) => Ok(c),
        Err(e) => {
            // A connect can take as long as the protocol's timeouts (BitTorrent: 30 s
            // waiting for an unchoke that never comes). If the download finished in the
            // meantime, a second connect would only hold the exit as long again.
            if ctx.finished.load(Ordering::SeqCst) {
                return Err(e);
            }
            log::warn!("cannot connect to {peer}: {e}; retrying once");
            thread::sleep(ctx.opts.reconnect_backoff);
            if ctx.finished.load(Ordering::SeqCst) {
                return Err(e);
            }
            ctx.connector.connect(peer)
        }
    }
}

/// A verifier thread: hashes each fetched piece and, if it matches, stores it at every
/// position with that content.
pub(super) fn verifier(
    ctx: &Ctx<'_>,
    jobs: Receiver<VerifyJob>,
    events: Sender<Event>,
    pool: Sender<Vec<u8>>,
) {
    for job in jobs {
        let ev = if Digest::of(job.digest.algo(), &job.buf) != job.digest {
            Event::Failed(job.piece, job.peer, Failure::BadDigest)
        } else if ctx.claimed[job.piece].swap(true, Ordering::AcqRel) {
            // Endgame: another copy of this piece verified first and was written and
            // reported; this one is dropped without touching the store or the hook.
            Event::Duplicate(job.piece, job.peer)
        } else {
            store(ctx, &job)
        };
        let _ = pool.send(job.buf);
        if events.send(ev).is_err() {
            return;
        }
    }
}

fn store(ctx: &Ctx<'_>, job: &VerifyJob) -> Event {
    let indexes = ctx.indexes.of(job.piece);
    for &i in indexes {
        if let Err(e) = ctx.store.write_piece(i, &job.buf) {
            return Event::StoreFailed(i, e);
        }
    }
    if let Some(hook) = ctx.on_verified {
        hook.verified(indexes, &job.buf);
    }
    Event::Verified(job.piece, job.peer, job.buf.len() as u64)
}
