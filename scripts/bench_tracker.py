#!/usr/bin/env python3
"""Tracker benchmark: `swarmlet tracker` beside opentracker, in one run on this machine.

usage: bench_tracker.py --swarmlet BIN [--opentracker BIN] [--clients "4 16"]
                        [--seconds S] [--repeat N] [--swarms K --peers P] [--markdown]

For each client count, each protocol (UDP BEP 15, HTTP keep-alive where the tracker keeps
the connection) and each repeat, N client processes announce as fast as they get
answers for S seconds, to ours and then to opentracker (the order alternates by repeat,
so neither always runs on a warmer or quieter machine). Reported: the median announces/s
of each, their ratio, and the tracker's CPU time per announce (user + system, from
/proc: on a shared machine this moves less than the rate does).

Then each tracker, fresh, is filled with K swarms of P distinct peers each over UDP and
its peak RSS (VmHWM) read.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time. The clients
are Python, so on a small machine they take much of the CPU: compare the two trackers
of the same run, never figures of different machines. Every process started here is
ended by its pid."""
import argparse, http.client, multiprocessing as mp, os, socket, statistics, struct
import shutil, subprocess, sys, tempfile, time

PROTO = 0x41727101980
FILL_DEADLINE = 300  # seconds: the fill gives up beyond this, whatever it reached


def connect(s, to):
    # A datagram can be lost on a loaded machine: a few tries, each bounded by the
    # socket's timeout.
    for _ in range(5):
        s.sendto(struct.pack(">QII", PROTO, 0, 1), to)
        try:
            d, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if len(d) >= 16 and d[:4] == b"\0\0\0\0":
            return struct.unpack(">IIQ", d[:16])[2]
    raise SystemExit("no UDP connect reply from %r" % (to,))


def bench_hash(i):
    """The infohash of benchmark swarm i (1,000 of them)."""
    return struct.pack(">I", i % 1000) + b"\x00" * 16


def fill_hash(sw):
    """The infohash of fill swarm sw."""
    return b"\xee" + struct.pack(">I", sw) + b"\x00" * 15


def answered(d, tx):
    """An announce reply (action 1, our transaction id, at least the 20-byte head), not an
    error: a tracker that refuses counts nothing."""
    return len(d) >= 20 and struct.unpack(">II", d[:8]) == (1, tx & 0xFFFFFFFF)


def udp_worker(port, seconds, wid, out):
    to = ("127.0.0.1", port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    cid = connect(s, to); n = 0; end = time.time() + seconds; i = 0
    while time.time() < end:
        i += 1
        # 1,000 swarms; a client re-announces as 200 distinct peers, so swarms stay
        # about 16 x 200 / 1000 peers big and replies carry peers.
        ih = bench_hash(i)
        pid = struct.pack(">II", wid, i % 200) + b"\x01" * 12
        s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, i, ih, pid, 0, 100, 0, 2, 0, 0,
                             50, 6000 + wid), to)
        try:
            d, _ = s.recvfrom(2048); n += answered(d, i)
        except socket.timeout:
            cid = connect(s, to)
    out.put(n)


def pct(b):
    return "".join("%%%02X" % c for c in b)


def http_worker(port, seconds, wid, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); n = 0
    end = time.time() + seconds; i = 0
    while time.time() < end:
        i += 1
        ih = bench_hash(i)
        pid = struct.pack(">II", wid, i % 200) + b"\x02" * 12
        q = ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=100"
             "&compact=1&numwant=50" % (pct(ih), pct(pid), 6000 + wid))
        try:
            c.request("GET", q); r = c.getresponse(); body = r.read()
            n += b"failure reason" not in body
            if r.getheader("Connection", "").lower() == "close" or r.version == 10:
                c.close()
        except Exception:
            c.close(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out.put(n)


def cpu_ticks(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def status(pid, field):
    for l in open("/proc/%d/status" % pid):
        if l.startswith(field + ":"):
            return int(l.split()[1])


def load(kind, pid, port, clients, seconds):
    """announces/s and tracker CPU microseconds per announce."""
    q = mp.Queue(); f = udp_worker if kind == "udp" else http_worker
    ps = [mp.Process(target=f, args=(port, seconds, i, q)) for i in range(clients)]
    c0 = cpu_ticks(pid)
    for p in ps: p.start()
    total = sum(q.get(timeout=seconds + 60) for _ in ps)
    for p in ps: p.join(timeout=30)
    used = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK")
    return total / seconds, (used * 1e6 / total if total else float("nan"))


def fill_worker(port, swarms, peers, wid, nw, out):
    to = ("127.0.0.1", port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    cid = connect(s, to); n = 0; t_id = time.time(); end = time.time() + FILL_DEADLINE
    for sw in range(wid, swarms, nw):
        if time.time() > end:
            break
        if time.time() - t_id > 60:
            cid = connect(s, to); t_id = time.time()
        ih = fill_hash(sw)
        for p in range(peers):
            pid = struct.pack(">II", sw, p) + b"\x03" * 12
            tx = sw * peers + p
            s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, tx, ih, pid, 0, 100, 0, 2, 0, 0,
                                 0, 1024 + p), to)
            try:
                d, _ = s.recvfrom(2048); n += answered(d, tx)
            except socket.timeout:
                pass
    out.put(n)


def fill(pid, port, swarms, peers, workers):
    q = mp.Queue(); t = time.time()
    ps = [mp.Process(target=fill_worker, args=(port, swarms, peers, i, workers, q))
          for i in range(workers)]
    for p in ps: p.start()
    n = sum(q.get(timeout=FILL_DEADLINE + 60) for _ in ps)
    for p in ps: p.join(timeout=30)
    return n, time.time() - t, status(pid, "VmRSS"), status(pid, "VmHWM")


def free_port():
    while True:
        t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port)); return port
        except OSError:
            pass
        finally:
            t.close(); u.close()


class Tracker:
    """One tracker process on a fresh port, started by `with` and killed by its pid."""

    def __init__(self, name, argv_for_port):
        self.name, self.argv_for_port = name, argv_for_port

    def __enter__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(self.argv_for_port(self.port), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        # Ready when an announce of a listed infohash is accepted (opentracker reads its
        # whitelist in a thread of its own after it listens). Bounded.
        q = ("/announce?info_hash=%s&peer_id=%s&port=1&uploaded=0&downloaded=0&left=0"
             "&event=stopped" % (pct(bench_hash(0)), pct(b"-ready-" * 2 + b"-ready")))
        end = time.time() + 20
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", q); body = c.getresponse().read(); c.close()
                if b"failure reason" not in body:
                    break
            except OSError:
                pass
            if time.time() > end or self.proc.poll() is not None:
                self.proc.kill(); self.proc.wait()
                raise SystemExit("%s did not start or refuses the benchmark's infohashes"
                                 % self.name)
            time.sleep(0.1)
        return self

    def __exit__(self, *_):
        self.proc.kill(); self.proc.wait()


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--swarmlet", required=True)
    a.add_argument("--opentracker", default="opentracker")
    a.add_argument("--clients", default="4 16")
    a.add_argument("--seconds", type=float, default=3)
    a.add_argument("--repeat", type=int, default=5)
    a.add_argument("--swarms", type=int, default=10000)
    a.add_argument("--peers", type=int, default=50)
    a.add_argument("--fill-workers", type=int, default=4)
    a.add_argument("--markdown", action="store_true")
    o = a.parse_args()
    # Debian builds opentracker as a whitelist tracker (without a list it refuses every
    # torrent, cheaply): both trackers get the same whitelist of every infohash used.
    work = tempfile.mkdtemp(prefix="bench-tracker.")
    # opentracker run as root drops to an unprivileged user before it reads the list:
    # the directory and the file must be readable by anyone.
    os.chmod(work, 0o755)
    allow = os.path.join(work, "whitelist")
    with open(allow, "w") as f:
        for i in range(1000):
            f.write(bench_hash(i).hex() + "\n")
        for sw in range(o.swarms):
            f.write(fill_hash(sw).hex() + "\n")

    def ot_argv(p):
        conf = os.path.join(work, "opentracker-%d.conf" % p)
        with open(conf, "w") as f:
            f.write("listen.tcp 127.0.0.1:%d\nlisten.udp 127.0.0.1:%d\naccess.whitelist %s\n"
                    % (p, p, allow))
        return [o.opentracker, "-f", conf]

    trackers = [
        Tracker("swarmlet tracker",
                lambda p: [o.swarmlet, "tracker", "--listen", "127.0.0.1:%d" % p,
                           "--allow", allow]),
        Tracker("opentracker", ot_argv),
    ]
    rows = []
    for clients in [int(c) for c in o.clients.split()]:
        for kind in ("udp", "http"):
            got = {t.name: [] for t in trackers}
            for rep in range(o.repeat):
                order = trackers if rep % 2 == 0 else trackers[::-1]
                for t in order:
                    with t:
                        got[t.name].append(load(kind, t.proc.pid, t.port, clients, o.seconds))
            ours, theirs = got[trackers[0].name], got[trackers[1].name]
            med = lambda xs, i: statistics.median(x[i] for x in xs)
            ratios = [a[0] / b[0] for a, b in zip(ours, theirs) if b[0]]
            rows.append((kind.upper(), clients, med(ours, 0), med(theirs, 0),
                         statistics.median(ratios), med(ours, 1), med(theirs, 1)))
            print("%s %d clients: ours %.0f/s, opentracker %.0f/s, ratio %.2f "
                  "(cpu %.1f vs %.1f us/announce)" % rows[-1], file=sys.stderr, flush=True)
    fills = []
    for t in trackers:
        with t:
            fills.append((t.name,) + fill(t.proc.pid, t.port, o.swarms, o.peers, o.fill_workers))
            print("%s: %d announces in %.1f s, VmRSS %d KiB, VmHWM %d KiB" % fills[-1],
                  file=sys.stderr, flush=True)
    head = ("| protocol | clients | swarmlet tracker (announces/s) | opentracker (announces/s) "
            "| ratio (median of %d) | CPU µs/announce, ours | CPU µs/announce, opentracker |"
            % o.repeat)
    shutil.rmtree(work, ignore_errors=True)
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %d | %.0f | %.0f | %.2f | %.1f | %.1f |" % r)
    print()
    print("| tracker | %d swarms × %d peers: announces answered | fill time (s) | VmRSS (MiB) "
          "| peak RSS, VmHWM (MiB) |" % (o.swarms, o.peers))
    print("|---|---:|---:|---:|---:|")
    for name, n, secs, rss, hwm in fills:
        print("| %s | %d | %.1f | %.1f | %.1f |" % (name, n, secs, rss / 1024, hwm / 1024))


if __name__ == "__main__":
    main()
