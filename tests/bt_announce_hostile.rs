//! The announce client (`bt::announce::announce`) against hostile HTTP servers on
//! 127.0.0.1 (a redirect loop, an endless body, an error page, a cut compact list, a
//! server that never answers, plain HTTP behind an `https://` URL) and BEP 12 tiers
//! skipping a dead tracker: every case ends in a bounded, named error.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::free_port;
use swarmlet::bt::announce::http::HttpError;
use swarmlet::bt::announce::{AnnounceError, AnnounceRequest, Event, Tiers, announce};

use common::start_swarmlet_tracker as start_ours;
fn req(ih: u8, id: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: [ih; 20],
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(50),
        key: u32::from(id),
        tracker_id: None,
    }
}

#[test]
fn tiers_skip_a_dead_tracker_and_promote_the_one_that_answered() {
    let port = free_port();
    let _t = start_ours(port);
    // Nothing listens there: the connect is refused at once.
    let dead = format!("http://127.0.0.1:{}/announce", free_port());
    let live = format!("http://127.0.0.1:{port}/announce");
    let mut tiers = Tiers::in_order(None, Some(&[vec![dead.clone(), live.clone()]]));
    let (url, r) = tiers.announce_request(&req(6, 1, 7101, 0)).unwrap();
    assert_eq!(url, live);
    assert!(r.interval > Duration::ZERO);
    assert_eq!(tiers.tiers()[0], vec![live, dead]);
    // Unknown schemes are errors too, never a panic.
    let mut tiers = Tiers::in_order(Some("wss://127.0.0.1/announce"), None);
    let e = tiers.announce_request(&req(6, 1, 7101, 0)).unwrap_err();
    assert!(matches!(
        e.errors[0].1,
        AnnounceError::UnsupportedScheme { .. }
    ));
}

/// A one-thread HTTP server on 127.0.0.1 that answers every connection with `reply`
/// (after reading the request head) up to `conns` times; returns its port.
fn hostile_server(
    conns: usize,
    reply: impl Fn(u16, &mut std::net::TcpStream) + Send + 'static,
) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            reply(port, &mut s);
        }
    });
    port
}

#[test]
fn redirect_loops_endless_bodies_and_garbage_end_in_bounded_errors() {
    // A redirect to itself, for ever: stopped after MAX_REDIRECTS hops.
    let port = hostile_server(20, |port, s| {
        let _ = write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/announce\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let e = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Http(HttpError::Transport(t)) if matches!(**t, ureq::Error::TooManyRedirects)),
        "{e:?}"
    );
    // A body that never ends: cut at MAX_BODY.
    let port = hostile_server(1, |_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nd5:peers");
        let chunk = [b'9'; 64 * 1024];
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let e = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Http(HttpError::Transport(t)) if matches!(**t, ureq::Error::BodyExceedsLimit(_))),
        "{e:?}"
    );
    // An HTML error page with a 404: the status, not a bencode error.
    let port = hostile_server(1, |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>"
        );
    });
    let e = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Http(HttpError::Transport(t)) if matches!(**t, ureq::Error::StatusCode(404))),
        "{e:?}"
    );
    // Compact peers cut mid-record: refused whole.
    let port = hostile_server(1, |_, s| {
        let body = b"d8:intervali60e5:peers7:\x7f\x00\x00\x01\x1a\xe1\x00e";
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(body);
    });
    let e = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(e, AnnounceError::Http(HttpError::Compact(_))),
        "{e:?}"
    );
    // Plain HTTP behind an https:// URL: the TLS handshake fails, a transport error (the
    // scheme is spoken, not refused as unsupported).
    let port = hostile_server(1, |_, s| {
        let _ = write!(s, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let e = announce(
        &format!("https://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Http(HttpError::Transport(_))),
        "{e:?}"
    );
    // A server that accepts and never answers: the global timeout ends it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t0 = Instant::now();
    let e = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &req(7, 1, 1, 0),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Http(HttpError::Transport(t)) if matches!(**t, ureq::Error::Timeout(_))),
        "{e:?}"
    );
    // Hang guard only: the timeout is 15 s, far below this.
    assert!(t0.elapsed() < Duration::from_secs(120));
    drop(l);
}
