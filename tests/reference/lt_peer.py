# One libtorrent peer for the BitTorrent tests, on 127.0.0.1 only, with DHT, LSD, UPnP,
# NAT-PMP, uTP off and no default plugins (so no PEX): nothing leaves loopback.
#   lt_peer.py seed TORRENT SAVE_DIR [RATE]   checks the data, prints "port N" once
#                                             seeding, then seeds until killed (at most
#                                             300 s), uploading at most RATE bytes/s
#   lt_peer.py leech TORRENT SAVE_DIR IP:PORT downloads from that peer only; prints
#                                             "done BYTES SECONDS" and exits 0 when
#                                             complete, 1 after 120 s
#   lt_peer.py leech TORRENT SAVE_DIR -       the same with the peers the torrent's
#                                             trackers list (and those that dial it)
# LT_PEER_IP=10.x.y.z listens on that address instead (inside a private network
# namespace only: tests/bt_tracker_clients.rs, where Transmission needs a non-127 peer).
import libtorrent as lt, os, sys, time

def session():
    ip = os.environ.get("LT_PEER_IP", "127.0.0.1")
    return lt.session({"listen_interfaces": "%s:0" % ip, "enable_dht": False,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        # Every peer of a loopback swarm is 127.0.0.1: by default libtorrent accepts
        # one connection per IP and turns the other peers away.
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0}, 0)

mode, torrent, save = sys.argv[1], sys.argv[2], sys.argv[3]
s = session()
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
if mode == "seed":
    if len(sys.argv) > 4:
        # A torrent's own limit: unlike the session's, it also holds for peers on the
        # local network, which libtorrent otherwise leaves unlimited.
        h.set_upload_limit(int(sys.argv[4]))
    end = time.time() + 30
    while time.time() < end and not h.status().is_seeding:
        time.sleep(0.05)
    if not h.status().is_seeding:
        print("not seeding: %s" % h.status().state, flush=True); sys.exit(1)
    print("port %d" % s.listen_port(), flush=True)
    time.sleep(300)
    sys.exit(0)
ip, port = sys.argv[4].rsplit(":", 1) if sys.argv[4] != "-" else (None, 0)
end = time.time() + 120
start = time.time()
last_dial = 0
while time.time() < end and not h.status().is_seeding:
    st = h.status()
    # Dial (again) while not connected: bounded, once a second at most.
    if ip and st.num_peers == 0 and time.time() - last_dial > 1 and st.state in (
            lt.torrent_status.downloading, lt.torrent_status.downloading_metadata):
        h.connect_peer((ip, int(port)))
        last_dial = time.time()
    time.sleep(0.02)
st = h.status()
if not st.is_seeding:
    print("not finished: %s, %d of %d pieces" % (st.state, st.num_pieces,
        h.torrent_file().num_pieces()), flush=True)
    sys.exit(1)
print("done %d %.3f" % (st.total_wanted, time.time() - start), flush=True)
