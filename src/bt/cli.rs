//! The `swarmlet` subcommands' arguments and runners. Each subcommand is one args struct
//! (clap `Args`) and one `run_*` function here, so that `src/bin/swarmlet.rs` stays one enum
//! variant and one match arm per subcommand.

use std::path::PathBuf;

/// `swarmlet create`'s arguments are [`create::create`](super::create::create)'s input,
/// so they live with it.
pub use super::create::CreateArgs;

/// `swarmlet show`: print what a .torrent holds.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `swarmlet create`.
pub fn run_create(args: &CreateArgs) -> anyhow::Result<()> {
    let made = super::create::create(args)?;
    println!("wrote {}", made.output.display());
    println!("{}", made.info_hash);
    Ok(())
}

/// Runs `swarmlet show`.
pub fn run_show(args: &ShowArgs) -> anyhow::Result<()> {
    use super::metainfo::Metainfo;
    let m = Metainfo::read(&args.torrent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.torrent.display()))?;
    let files: Vec<serde_json::Value> = m
        .files
        .iter()
        .map(|f| serde_json::json!({"path": f.display_path(), "length": f.length, "pad": f.pad}))
        .collect();
    if args.json {
        let v = serde_json::json!({
            "name": m.name_lossy(),
            "infohash": m.info_hash.to_string(),
            "total_length": m.total_length(),
            "piece_length": m.piece_length,
            "piece_count": m.pieces.len(),
            "files": files,
            "trackers": m.trackers,
            "url_list": m.url_list,
            "private": m.private,
            "comment": m.comment,
            "created_by": m.created_by,
            "creation_date": m.creation_date,
            "hybrid": m.hybrid,
            "magnet": m.magnet(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("name: {}", m.name_lossy());
    println!("infohash: {}", m.info_hash);
    println!("size: {} bytes", m.total_length());
    println!("piece length: {}", m.piece_length);
    println!("pieces: {}", m.pieces.len());
    println!("private: {}", if m.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        println!("comment: {c}");
    }
    if let Some(c) = &m.created_by {
        println!("created by: {c}");
    }
    if let Some(d) = m.creation_date {
        println!("creation date: {d}");
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        println!("tier {}: {}", i + 1, tier.join(" "));
    }
    for u in &m.url_list {
        println!("web seed: {u}");
    }
    println!("files:");
    for f in &m.files {
        let shown = if m.multi_file {
            format!("{}/{}", m.name_lossy(), f.display_path())
        } else {
            f.display_path()
        };
        println!(
            "  {shown} ({} bytes){}",
            f.length,
            if f.pad { " [pad]" } else { "" }
        );
    }
    println!("magnet: {}", m.magnet());
    Ok(())
}

/// `swarmlet seed`: serve a complete torrent's data to peers that connect.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Directory holding the data (`DIR/<name>`)
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Address to accept peers on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    pub listen: std::net::SocketAddr,
}

/// `swarmlet download`: fetch a torrent's data from the given peers (a stopgap loop,
/// sequential over the peers, until the shared engine takes over).
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// The .torrent file
    pub torrent: PathBuf,
    /// Directory to write the data into (`DIR/<name>`)
    #[arg(
        short = 'o',
        long = "dir",
        visible_alias = "output",
        value_name = "DIR",
        default_value = "."
    )]
    pub dir: PathBuf,
    /// A peer to download from (repeatable)
    #[arg(long = "peer", value_name = "IP:PORT", required = true)]
    pub peers: Vec<std::net::SocketAddr>,
}

/// Our peer id: Azureus style, `-SW0001-` and 12 random characters, fresh per run.
pub fn our_peer_id() -> super::peer_wire::PeerId {
    let mut id = *b"-SW0001-000000000000";
    let r = format!(
        "{:016x}",
        super::announce::random_u64() ^ u64::from(std::process::id())
    );
    id[8..].copy_from_slice(&r.as_bytes()[..12]);
    super::peer_wire::PeerId(id)
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do.
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// How often the main thread of `seed` looks for SIGINT/SIGTERM: a tenth of a second is
/// prompt for a person and costs nothing.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens a torrent's data under `dir` and rechecks it.
fn open_data(
    torrent: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(
    super::metainfo::Metainfo,
    std::sync::Arc<crate::storage::files::FilesStore>,
    crate::bitfield::Bitfield,
)> {
    use crate::storage::PieceStore;
    let m = super::metainfo::Metainfo::read(torrent)
        .map_err(|e| anyhow::anyhow!("{}: {e}", torrent.display()))?;
    let layout = m.layout()?;
    let store = crate::storage::files::FilesStore::create(dir, layout)?;
    let have = store.recheck(&m.digests())?;
    Ok((m, std::sync::Arc::new(store), have))
}

/// Runs `swarmlet seed`: recheck, refuse unless complete, serve until SIGINT/SIGTERM.
pub fn run_seed(args: &SeedArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let (m, store, have) = open_data(&args.torrent, &args.dir)?;
    if !have.is_full() {
        anyhow::bail!(
            "not seeding: {} of {} pieces are missing or bad under {}",
            have.len() - have.count(),
            have.len(),
            args.dir.display()
        );
    }
    let layout = store.layout().clone();
    let seeder = super::seed::Seeder::new(m.info_hash, our_peer_id(), store, &layout);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let h = on_stop_signal as *const () as libc::sighandler_t;
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
    }
    let addr = super::seed::spawn(args.listen, seeder.clone())?;
    // On stdout, for scripts and tests that connect peers directly: the data is checked
    // and the listener open, so a peer that dials now is served.
    println!("seeding {} on {addr}", m.info_hash);
    std::io::stdout().flush()?;
    while !STOP.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(STOP_POLL);
    }
    log::info!("seed: stopping; uploaded {} bytes", seeder.uploaded());
    Ok(())
}

/// Runs `swarmlet download`: recheck, then every missing piece from the first peer that
/// has it, verified with its SHA-1 and written in place.
pub fn run_download(args: &DownloadArgs) -> anyhow::Result<()> {
    use super::fetch::{PeerConnection, Timeouts};
    use crate::digest::Digest;
    use crate::storage::PieceStore;
    let start = std::time::Instant::now();
    let (m, store, mut have) = open_data(&args.torrent, &args.dir)?;
    let digests = m.digests();
    let layout = store.layout().clone();
    let n = layout.piece_count();
    let resumed = have.count();
    let id = our_peer_id();
    let timeouts = Timeouts::default();
    let mut peers: Vec<Option<PeerConnection>> = args.peers.iter().map(|_| None).collect();
    let mut dead = vec![false; args.peers.len()];
    let mut buf = Vec::new();
    let mut fetched_bytes = 0u64;
    let mut refetched = 0usize;
    'pieces: for i in 0..n {
        if have.has(i) {
            continue;
        }
        // Each piece: the peers in order, each connected on first use; a peer that
        // fails is not asked again; a bad piece is asked of the next peer.
        for p in 0..args.peers.len() {
            if dead[p] {
                continue;
            }
            if peers[p].is_none() {
                match PeerConnection::connect(args.peers[p], m.info_hash, id, n, &timeouts) {
                    Ok((c, _)) => peers[p] = Some(c),
                    Err(e) => {
                        log::warn!("{}: {e}", args.peers[p]);
                        dead[p] = true;
                        continue;
                    }
                }
            }
            let conn = peers[p].as_mut().expect("connected above");
            match conn.fetch_piece(i, layout.piece_len(i), &mut buf, &mut |_| {}) {
                Ok(()) if Digest::of(digests[i].algo(), &buf) == digests[i] => {
                    store.write_piece(i, &buf)?;
                    have.set(i);
                    fetched_bytes += buf.len() as u64;
                    continue 'pieces;
                }
                Ok(()) => {
                    log::warn!("{}: piece {i} does not match its SHA-1", args.peers[p]);
                    refetched += 1;
                    dead[p] = true;
                    peers[p] = None;
                }
                Err(crate::download::FetchError::NotFound) => {}
                Err(e) => {
                    log::warn!("{}: piece {i}: {e}", args.peers[p]);
                    dead[p] = true;
                    peers[p] = None;
                }
            }
        }
        anyhow::bail!(
            "piece {i}: no peer left that has it ({} of {n} pieces stored)",
            have.count()
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "downloaded {} bytes in {:.2} s ({:.1} MB/s); {} pieces resumed, {} re-fetched",
        fetched_bytes,
        secs,
        fetched_bytes as f64 / secs.max(1e-9) / 1e6,
        resumed,
        refetched
    );
    Ok(())
}
