# One libtorrent peer for tests/bt_seed.rs, on 127.0.0.1 only, with DHT, LSD, UPnP,
# NAT-PMP, uTP and PEX-by-DHT off: nothing leaves loopback.
#   lt_peer.py seed TORRENT SAVE_DIR          checks the data, prints "port N" once
#                                             seeding, then seeds until killed (at most
#                                             120 s)
#   lt_peer.py leech TORRENT SAVE_DIR IP:PORT downloads from that peer only; prints
#                                             "done BYTES SECONDS" and exits 0 when
#                                             complete, 1 after 60 s
import libtorrent as lt, sys, time

def session():
    return lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": 0})

mode, torrent, save = sys.argv[1], sys.argv[2], sys.argv[3]
s = session()
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
if mode == "seed":
    end = time.time() + 30
    while time.time() < end and not h.status().is_seeding:
        time.sleep(0.05)
    if not h.status().is_seeding:
        print("not seeding: %s" % h.status().state, flush=True); sys.exit(1)
    print("port %d" % s.listen_port(), flush=True)
    time.sleep(120)
    sys.exit(0)
ip, port = sys.argv[4].rsplit(":", 1)
end = time.time() + 60
start = time.time()
last_dial = 0
while time.time() < end and not h.status().is_seeding:
    st = h.status()
    # Dial (again) while not connected: bounded, once a second at most.
    if st.num_peers == 0 and time.time() - last_dial > 1 and st.state in (
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
