#!/usr/bin/env python3
"""Tracker benchmark: announces/s over UDP (BEP 15) and HTTP (keep-alive) from N
concurrent client processes, against a tracker on 127.0.0.1, and the tracker's peak RSS.

usage: bench_tracker.py PID PORT [--clients N] [--seconds S] [--swarms K --peers P]

With --swarms/--peers it instead fills K swarms of P peers each (UDP) and reports the
tracker's VmHWM. Traffic goes to 127.0.0.1 only; every loop is bounded in time. The
clients are Python, so on a small machine they, not the tracker, may be the bottleneck:
compare trackers in the same run, not against other machines."""
import argparse, http.client, multiprocessing as mp, os, socket, struct, time

PROTO = 0x41727101980

def connect(s, to):
    s.sendto(struct.pack(">QII", PROTO, 0, 1), to)
    d, _ = s.recvfrom(2048)
    return struct.unpack(">IIQ", d[:16])[2]

def udp_worker(port, seconds, wid, out):
    to = ("127.0.0.1", port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    cid = connect(s, to); n = 0; end = time.time() + seconds
    while time.time() < end:
        ih = struct.pack(">I", n % 1000) + b"\x00" * 16
        pid = struct.pack(">II", wid, n) + b"\x01" * 12
        s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, n, ih, pid, 0, 100, 0, 2, 0, 0, 50, 6000 + wid), to)
        try:
            s.recvfrom(2048); n += 1
        except socket.timeout:
            cid = connect(s, to)
    out.put(n)

def pct(b): return "".join("%%%02X" % c for c in b)

def http_worker(port, seconds, wid, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); n = 0; end = time.time() + seconds
    while time.time() < end:
        ih = struct.pack(">I", n % 1000) + b"\x00" * 16
        pid = struct.pack(">II", wid, n) + b"\x02" * 12
        q = "/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=100&compact=1&numwant=50" % (pct(ih), pct(pid), 6000 + wid)
        try:
            c.request("GET", q); r = c.getresponse(); r.read(); n += 1
            if r.getheader("Connection", "").lower() == "close": c.close()
        except Exception:
            c.close(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out.put(n)

def run(kind, port, clients, seconds):
    q = mp.Queue(); f = udp_worker if kind == "udp" else http_worker
    ps = [mp.Process(target=f, args=(port, seconds, i, q)) for i in range(clients)]
    for p in ps: p.start()
    total = sum(q.get() for _ in ps)
    for p in ps: p.join()
    return total / seconds

def rss(pid, field):
    for l in open("/proc/%d/status" % pid):
        if l.startswith(field + ":"): return int(l.split()[1])

def fill_worker(port, swarms, peers, wid, nw, out):
    to = ("127.0.0.1", port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    cid = connect(s, to); n = 0; t0 = time.time()
    for sw in range(wid, swarms, nw):
        if time.time() - t0 > 100: cid = connect(s, to); t0 = time.time()
        ih = b"\xee" + struct.pack(">I", sw) + b"\x00" * 15
        for p in range(peers):
            pid = struct.pack(">II", sw, p) + b"\x03" * 12
            s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, n, ih, pid, 0, 100, 0, 2, 0, 0, 0, 1024 + p), to)
            try: s.recvfrom(2048); n += 1
            except socket.timeout: pass
    out.put(n)

if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("pid", type=int); a.add_argument("port", type=int)
    a.add_argument("--clients", type=int, default=8); a.add_argument("--seconds", type=float, default=5)
    a.add_argument("--swarms", type=int); a.add_argument("--peers", type=int, default=50)
    o = a.parse_args()
    if o.swarms:
        q = mp.Queue(); nw = o.clients
        ps = [mp.Process(target=fill_worker, args=(o.port, o.swarms, o.peers, i, nw, q)) for i in range(nw)]
        t = time.time()
        for p in ps: p.start()
        n = sum(q.get() for _ in ps)
        for p in ps: p.join()
        print("filled %d swarms x %d peers (%d announces answered) in %.1f s: VmRSS %d KiB, VmHWM %d KiB"
              % (o.swarms, o.peers, n, time.time() - t, rss(o.pid, "VmRSS"), rss(o.pid, "VmHWM")))
    else:
        for kind in ("udp", "http"):
            print("%s: %.0f announces/s from %d clients over %.0f s" % (kind, run(kind, o.port, o.clients, o.seconds), o.clients, o.seconds))
        print("VmHWM %d KiB" % rss(o.pid, "VmHWM"))
