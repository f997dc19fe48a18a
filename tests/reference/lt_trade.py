# One libtorrent peer that trades with a peer it dials, for tests/bt_swarm.rs: on
# 127.0.0.1 only, with DHT, LSD, UPnP, NAT-PMP, uTP and PEX-by-DHT off: nothing leaves
# loopback.
#   lt_trade.py TORRENT SAVE_DIR IP:PORT
# Checks what SAVE_DIR already holds (a part of the torrent), dials IP:PORT (again, once a
# second at most, while not connected), downloads the rest from it while uploading to it,
# prints "done" once complete, keeps seeding until its stdin closes (at most 90 s), then
# prints "final uploaded U downloaded D peers P" (payload bytes) and exits 0; exits 1
# if not complete after 90 s.
import libtorrent as lt, select, sys, time

s = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False,
    "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "alert_mask": 0})
torrent, save, peer = sys.argv[1], sys.argv[2], sys.argv[3]
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
ip, port = peer.rsplit(":", 1)
end = time.time() + 90
last_dial = 0
most_peers = 0
while time.time() < end and not h.status().is_seeding:
    st = h.status()
    most_peers = max(most_peers, st.num_peers)
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
print("done", flush=True)
# Seed on until told (stdin closed), bounded.
while time.time() < end:
    most_peers = max(most_peers, h.status().num_peers)
    r, _, _ = select.select([sys.stdin], [], [], 0.1)
    if r and not sys.stdin.read(1):
        break
st = h.status()
print("final uploaded %d downloaded %d peers %d" % (st.total_payload_upload,
    st.total_payload_download, most_peers), flush=True)
