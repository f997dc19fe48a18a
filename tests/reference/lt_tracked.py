# One libtorrent peer that finds its swarm only through the torrent's tracker, for
# tests/bt_tracker_clients.rs: DHT, LSD, UPnP, NAT-PMP and uTP off, no peer dialed by
# hand, listening on the one address given (a private network namespace's 10.x address).
#   lt_tracked.py seed TORRENT SAVE_DIR IP   checks the data, prints "seeding" once it
#                                            seeds, then seeds until killed (at most 180 s)
#   lt_tracked.py leech TORRENT SAVE_DIR IP  downloads; prints "done" and exits 0 when
#                                            complete, 1 after 120 s
import libtorrent as lt, sys, time

mode, torrent, save, ip = sys.argv[1:5]
s = lt.session({"listen_interfaces": "%s:0" % ip, "enable_dht": False,
    "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "alert_mask": 0})
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
end = time.time() + (30 if mode == "seed" else 120)
while time.time() < end and not h.status().is_seeding:
    time.sleep(0.05)
st = h.status()
if not st.is_seeding:
    print("not finished: %s, %d of %d pieces, %d peers" % (st.state, st.num_pieces,
        h.torrent_file().num_pieces(), st.num_peers), flush=True)
    sys.exit(1)
if mode == "seed":
    print("seeding", flush=True)
    time.sleep(180)
else:
    print("done", flush=True)
sys.exit(0)
