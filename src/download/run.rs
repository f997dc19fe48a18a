//! The run loop: starts the verifiers and a worker per peer (more as peers join), and
//! feeds every event to the [`Coordinator`] until the download is over.

use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use indicatif::ProgressBar;

use super::coordinator::Coordinator;
use super::msg::{Assignment, Ctx, Event, VerifyJob};
use super::plan::MAX_PEERS;
use super::report::{DownloadError, Report};
use super::swarm::SwarmReceiver;
use super::worker::{verifier, worker};

/// The channels every worker is started with.
struct Pipes {
    events: Sender<Event>,
    verify: Sender<VerifyJob>,
    pool: Receiver<Vec<u8>>,
    pool_back: Sender<Vec<u8>>,
    /// Buffers made so far: enough for every worker running at once.
    buffers: usize,
}

/// How often the run loop wakes with no event, to check the stall timeout.
const TICK: Duration = Duration::from_millis(500);

/// Runs the download to its end: starts verifiers and workers (more as peers join) and
/// handles every event.
pub(super) fn run<'s, 'e: 's>(
    coord: &mut Coordinator,
    s: &'s thread::Scope<'s, 'e>,
    ctx: &'e Ctx<'e>,
    swarm: Option<SwarmReceiver>,
    progress: &ProgressBar,
) -> Result<Report, DownloadError> {
    let opts = ctx.opts;
    let (events_tx, events) = unbounded::<Event>();
    // Unbounded because it grows as workers start; it never holds more than the
    // buffers made, which [`Pipes::buffers`] bounds by the workers running.
    let (pool_back, pool) = unbounded::<Vec<u8>>();
    let per_peer = opts.buffers_per_peer.max(1);
    let (verify, verify_rx) =
        crossbeam_channel::bounded::<VerifyJob>(opts.max_live_peers.max(MAX_PEERS) * per_peer);
    let mut pipes = Pipes {
        events: events_tx,
        verify,
        pool,
        pool_back,
        buffers: 0,
    };
    if !coord.over() || swarm.is_some() {
        let n = if swarm.is_some() {
            opts.verifiers.max(1)
        } else {
            opts.verifiers.clamp(1, coord.peer_count().max(1))
        };
        for _ in 0..n {
            let (rx, ev, back) = (
                verify_rx.clone(),
                pipes.events.clone(),
                pipes.pool_back.clone(),
            );
            s.spawn(move || verifier(ctx, rx, ev, back));
        }
    }
    drop(verify_rx);
    let mut swarm = swarm;
    let never = crossbeam_channel::never();
    let start_workers = |coord: &mut Coordinator, pipes: &mut Pipes| {
        for (id, info) in coord.take_starts() {
            let running = coord.running();
            while pipes.buffers < running * per_peer {
                let _ = pipes.pool_back.send(Vec::new());
                pipes.buffers += 1;
            }
            let (tx, rx) = unbounded::<Assignment>();
            coord.started(id, tx);
            let (ev, vtx) = (pipes.events.clone(), pipes.verify.clone());
            let (pool, back) = (pipes.pool.clone(), pipes.pool_back.clone());
            s.spawn(move || worker(id, info, ctx, rx, ev, pool, back, vtx));
        }
    };
    let result = loop {
        if coord.over() {
            break Ok(());
        }
        start_workers(coord, &mut pipes);
        let swarm_rx = swarm.as_ref().unwrap_or(&never);
        select! {
            recv(events) -> ev => {
                let Ok(ev) = ev else { break Ok(()) }; // every worker and verifier is gone
                if let Err(e) = coord.handle(ev, progress) {
                    break Err(e);
                }
            }
            recv(swarm_rx) -> ev => match ev {
                Ok(ev) => coord.swarm_event(ev),
                Err(_) => {
                    swarm = None;
                    coord.swarm_closed();
                }
            },
            default(TICK) => {}
        }
        if coord.stalled(opts.stall_timeout) {
            log::warn!(
                "nothing received for {} s: giving up",
                opts.stall_timeout.unwrap_or_default().as_secs()
            );
            coord.give_up();
        }
    };
    coord.finish(ctx.finished);
    match result {
        Err(DownloadError::Store { index, source, .. }) => Err(DownloadError::Store {
            index,
            location: ctx.store.location(),
            source,
        }),
        Err(e) => Err(e),
        Ok(()) => coord.outcome(),
    }
}
