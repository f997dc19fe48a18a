# A libtorrent seeder and leecher (DHT, LSD, UPnP, NAT-PMP off; 127.0.0.1 only) that meet
# through the tracker URL given: used by tests/bt_tracker.rs. Exit 0 when the leecher holds
# the seeder's file, byte for byte, within 60 s.
import libtorrent as lt, sys, os, time
# usage: swarm.py TRACKER_URL WORKDIR
url, work = sys.argv[1], sys.argv[2]
seed_dir, leech_dir = os.path.join(work, "seed"), os.path.join(work, "leech")
os.makedirs(seed_dir, exist_ok=True); os.makedirs(leech_dir, exist_ok=True)
data = os.urandom(3 * 1024 * 1024 + 12345)
open(os.path.join(seed_dir, "payload.bin"), "wb").write(data)
fs = lt.file_storage(); lt.add_files(fs, os.path.join(seed_dir, "payload.bin"))
ct = lt.create_torrent(fs, 65536); ct.add_tracker(url); lt.set_piece_hashes(ct, seed_dir)
ti = lt.torrent_info(lt.bencode(ct.generate()))
def session():
    return lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False, "alert_mask": 0})
s1, s2 = session(), session()
h1 = s1.add_torrent({"ti": ti, "save_path": seed_dir})
h2 = s2.add_torrent({"ti": lt.torrent_info(ti), "save_path": leech_dir})
deadline = time.time() + 60
while time.time() < deadline:
    if h2.status().is_seeding: break
    time.sleep(0.2)
ok = h2.status().is_seeding and open(os.path.join(leech_dir, "payload.bin"), "rb").read() == data
print("identical" if ok else "not finished: %s" % h2.status().state)
sys.exit(0 if ok else 1)
