#!/usr/bin/env python3
"""Independent reference implementation of the bvTorrent protocol.

Written from the bvTorrent spec only (standard library, Python 3).

    bvtorrent.py tracker FILE [--listen HOST:PORT] [--chunk-size N] [--print-descriptor]
    bvtorrent.py descriptor FILE [--chunk-size N]
    bvtorrent.py client TRACKER_HOST:PORT --dir DIR [--listen HOST:PORT]
                 [--exit-when-done] [--slow-upload BYTES_PER_SEC] [--fault MODE]
                 [--workers N]

Everything on the wire is raw bytes; logs go to stderr, never to a socket.
"""
import argparse
import hashlib
import os
import random
import signal
import socket
import sys
import threading
import time

DEFAULT_CHUNK = 1048576
COMMAND_LEN = 12                      # every tracker command is 11 chars + '\n'
CMD_UPDATE = b"UPDATE_MASK\n"
CMD_LIST = b"CLIENT_LIST\n"
CMD_DISCONNECT = b"DISCONNECT!\n"

PEER_TIMEOUT = 5.0      # per recv/connect to other clients (spec quirk list: >= 5 s)
TRACKER_TIMEOUT = 30.0  # client side: per recv from the tracker
BEGUN_TIMEOUT = 10.0    # tracker side: once a line/command has begun, finish within this
MAX_TRACKER_CLIENTS = 1000
MAX_UPLOADS = 64        # simultaneous incoming client connections served


def log(role, msg):
    sys.stderr.write("%s %s: %s\n" % (time.strftime("%H:%M:%S"), role, msg))
    sys.stderr.flush()


def parse_addr(text):
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Reader:
    """Buffered reader over a socket: exact-size blocks and '\\n' lines.

    `idle` is the timeout while waiting for the FIRST byte of an item (None = forever),
    `begun` the timeout for every later recv once the item has started arriving.
    Raises EOFError on close/short data, socket.timeout on timeout, ValueError on overlong line.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def read_exact(self, n, idle, begun):
        while len(self.buf) < n:
            self._fill(idle if not self.buf else begun)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_line(self, maxlen, idle, begun):
        """Return one line WITHOUT its '\\n'."""
        while True:
            pos = self.buf.find(b"\n")
            if pos >= 0:
                out = bytes(self.buf[:pos])
                del self.buf[:pos + 1]
                return out
            if len(self.buf) > maxlen:
                raise ValueError("line too long")
            self._fill(idle if not self.buf else begun)


# --------------------------------------------------------------------------- descriptor

def build_descriptor(path, chunk_size):
    """Descriptor bytes exactly as the classic tracker sends them, plus chunk count.

    <fileName>\\n<maxChunkSize>\\n<numChunks>\\n then per chunk <size>,<sha224hex>\\n.
    fileName is the base name as raw bytes (UTF-8 on a UTF-8 system).
    numChunks = ceil(size / chunk_size): an exact multiple gives no empty last chunk.
    """
    if chunk_size <= 0:
        raise ValueError("chunk size must be positive")
    lines = []
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_size)
            if not data:
                break
            lines.append(b"%d,%s\n" % (len(data), hashlib.sha224(data).hexdigest().encode()))
    name = os.fsencode(os.path.basename(os.path.abspath(path)))
    head = b"%s\n%d\n%d\n" % (name, chunk_size, len(lines))
    return head + b"".join(lines), len(lines)


def cmd_descriptor(args):
    desc, _ = build_descriptor(args.file, args.chunk_size)
    sys.stdout.buffer.write(desc)
    sys.stdout.buffer.flush()
    return 0


# --------------------------------------------------------------------------- tracker

class Tracker:
    def __init__(self, desc, num_chunks):
        self.desc = desc
        self.n = num_chunks
        # (ip, port) -> [mask bytes, owning session object]; dict keeps registration order,
        # and a re-registration of the same key keeps its place but replaces the mask/owner.
        self.clients = {}
        self.lock = threading.Lock()
        self.sessions = 0

    def valid_mask(self, mask):
        return len(mask) == self.n and all(c in b"01" for c in mask)

    def client_list(self):
        with self.lock:
            items = list(self.clients.items())
        out = [b"%d\n" % len(items)]
        for (ip, port), (mask, _) in items:
            out.append(b"%s:%d,%s\n" % (ip.encode(), port, mask))
        return b"".join(out)

    def session(self, conn, addr):
        ip = addr[0]
        me = object()          # identity of this connection, owner of its entry
        key = None
        who = "%s:%d" % (ip, addr[1])
        try:
            conn.sendall(self.desc)
            rd = Reader(conn)
            # Registration: one line '<listenPort>,<mask>'. No timeout before the first
            # byte (an idle connection is legitimate); bounded once it has begun.
            line = rd.read_line(self.n + 32, None, BEGUN_TIMEOUT)
            port_s, sep, mask = line.partition(b",")
            if not sep or not port_s.isdigit() or int(port_s) > 65535 or not self.valid_mask(mask):
                # The classic tracker would store garbage / desynchronise; we drop the client.
                log("tracker", "%s bad registration %r: dropped" % (who, line[:80]))
                return
            key = (ip, int(port_s))
            with self.lock:
                self.clients[key] = [mask, me]
            log("tracker", "registered %s:%d from %s (%d/%d chunks)"
                % (key[0], key[1], who, mask.count(b"1"), self.n))
            while True:
                # Commands are fixed 12-byte blocks, as in the classic tracker. EOF inside
                # (e.g. 'DISCONNECT\n' + close, or no newline + close) ends the session.
                cmd = rd.read_exact(COMMAND_LEN, None, BEGUN_TIMEOUT)
                if cmd == CMD_UPDATE:
                    block = rd.read_exact(self.n + 1, BEGUN_TIMEOUT, BEGUN_TIMEOUT)
                    mask = block[:-1]
                    if block[-1:] != b"\n" or not self.valid_mask(mask):
                        log("tracker", "%s:%d bad mask %r: dropped" % (key[0], key[1], block[:80]))
                        return
                    with self.lock:
                        ent = self.clients.get(key)
                        if ent is not None and ent[1] is me:
                            ent[0] = mask
                    log("tracker", "update %s:%d (%d/%d chunks)"
                        % (key[0], key[1], mask.count(b"1"), self.n))
                elif cmd == CMD_LIST:
                    data = self.client_list()
                    conn.sendall(data)
                    log("tracker", "list to %s:%d (%s entries)"
                        % (key[0], key[1], data.split(b"\n", 1)[0].decode()))
                elif cmd == CMD_DISCONNECT:
                    log("tracker", "disconnect %s:%d" % key)
                    return
                else:
                    log("tracker", "%s:%d unknown command %r: session ended" % (key[0], key[1], cmd))
                    return
        except (EOFError, OSError, ValueError) as e:
            log("tracker", "%s session ended: %s" % (who if key is None else "%s:%d" % key,
                                                    e.__class__.__name__ + (" " + str(e) if str(e) else "")))
        finally:
            if key is not None:
                with self.lock:
                    ent = self.clients.get(key)
                    # Only the connection that owns the entry removes it (a later
                    # re-registration of the same ip:port survives the old one closing).
                    if ent is not None and ent[1] is me:
                        del self.clients[key]
            with self.lock:
                self.sessions -= 1
            try:
                conn.close()
            except OSError:
                pass


def cmd_tracker(args):
    desc, n = build_descriptor(args.file, args.chunk_size)
    if args.print_descriptor:
        sys.stdout.buffer.write(desc)
        sys.stdout.buffer.flush()
        return 0
    tr = Tracker(desc, n)
    host, port = args.listen
    srv = socket.socket(family_of(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    srv.settimeout(0.5)                     # lets the loop notice a stop request
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log("tracker", "serving %s (%d chunks of %d) on %s:%d"
        % (os.path.basename(args.file), n, args.chunk_size, host, srv.getsockname()[1]))
    while not stop.is_set():
        try:
            conn, addr = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            continue
        with tr.lock:
            full = tr.sessions >= MAX_TRACKER_CLIENTS
            if not full:
                tr.sessions += 1
        if full:
            conn.close()
            continue
        threading.Thread(target=tr.session, args=(conn, addr), daemon=True).start()
    srv.close()
    log("tracker", "stopped")
    return 0


# --------------------------------------------------------------------------- client

class Client:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()     # SIGINT/SIGTERM, fatal error, or done
        self.fatal = None
        self.lock = threading.Lock()      # protects have/inprog/peers/bans/counters
        self.tlock = threading.Lock()     # serialises use of the tracker connection
        self.downloaded_chunks = 0
        self.downloaded_bytes = 0
        self.uploaded = 0
        self.active_uploads = 0
        self.inprog = set()
        self.peers = []                   # [(ip, port, mask bytes)] without self / port 0
        self.peers_time = 0.0
        self.bans = {}                    # (ip, port, chunk) -> until: failed for that chunk
        self.liars = {}                   # (ip, port) -> until: sent a wrong digest

    # ---- tracker connection
    def connect_tracker(self):
        host, port = self.args.tracker
        self.tsock = socket.create_connection((host, port), timeout=TRACKER_TIMEOUT)
        self.trd = Reader(self.tsock)
        rd = lambda: self.trd.read_line(1 << 16, TRACKER_TIMEOUT, TRACKER_TIMEOUT)
        self.name = rd()
        self.max_chunk = int(rd())
        n = int(rd())
        if n < 0 or n > 10_000_000:
            raise ValueError("bad chunk count %d" % n)
        self.sizes, self.digests, self.offsets = [], [], []
        off = 0
        for _ in range(n):
            size_s, sep, dig = rd().partition(b",")
            size = int(size_s)
            if not sep or size <= 0 or len(dig) != 56:
                raise ValueError("bad chunk line")
            self.sizes.append(size)
            self.digests.append(dig.decode("ascii").lower())
            self.offsets.append(off)
            off += size
        self.n, self.total = n, off
        if not self.name or b"/" in self.name or b"\0" in self.name or self.name in (b".", b".."):
            raise ValueError("unsafe file name %r" % self.name)
        self.shown = self.name.decode("utf-8", "replace")
        self.my_ip = self.tsock.getsockname()[0]   # how the tracker sees us (to skip self)

    def tracker_send(self, data):
        with self.tlock:
            self.tsock.sendall(data)

    def mask(self):
        with self.lock:
            return b"".join(b"1" if h else b"0" for h in self.have)

    def send_mask(self):
        m = self.mask()
        self.tracker_send(CMD_UPDATE + m + b"\n")

    def refresh_peers(self, max_age):
        """CLIENT_LIST, at most once per max_age seconds across all workers."""
        with self.tlock:
            if time.monotonic() - self.peers_time < max_age:
                return
            self.tsock.sendall(CMD_LIST)
            rd = lambda: self.trd.read_line(self.n + 100, TRACKER_TIMEOUT, TRACKER_TIMEOUT)
            count = int(rd())
            if count < 0 or count > 1_000_000:
                raise ValueError("bad client count")
            peers = []
            for _ in range(count):
                line = rd()
                addr, _, mask = line.rpartition(b",")
                ip, _, port = addr.rpartition(b":")
                if not port.isdigit():
                    continue                      # tolerate a garbled entry
                ip, port = ip.decode("ascii", "replace").strip("[]"), int(port)
                if port == 0 or port > 65535:
                    continue                      # registered before it listened
                if port == self.my_port and ip == self.my_ip:
                    continue                      # our own entry
                peers.append((ip, port, mask))
            self.peers_time = time.monotonic()
        with self.lock:
            self.peers = peers

    # ---- local file
    def open_file(self):
        d = os.fsencode(self.args.dir)
        os.makedirs(d, exist_ok=True)
        self.path = os.path.join(d, self.name)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.have = [False] * self.n
        size = os.fstat(self.fd).st_size
        for i in range(self.n):
            if self.offsets[i] + self.sizes[i] > size:
                break
            data = os.pread(self.fd, self.sizes[i], self.offsets[i])
            self.have[i] = hashlib.sha224(data).hexdigest() == self.digests[i]
        log("client", "%s: %d/%d chunks already valid" % (self.shown, sum(self.have), self.n))

    def write_chunk(self, i, data):
        off, view = self.offsets[i], memoryview(data)
        while view:
            k = os.pwrite(self.fd, view, off)
            view, off = view[k:], off + k

    # ---- upload server
    def serve_uploads(self):
        while not self.stop.is_set():
            try:
                conn, addr = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                busy = self.active_uploads >= MAX_UPLOADS
                if not busy:
                    self.active_uploads += 1
            if busy:
                conn.close()
                continue
            threading.Thread(target=self.upload, args=(conn, addr), daemon=True).start()

    def send_throttled(self, conn, data):
        rate = self.args.slow_upload
        if not rate:
            conn.sendall(data)
            return
        block = max(1, min(16384, rate // 20))
        start, sent = time.monotonic(), 0
        while sent < len(data):
            conn.sendall(data[sent:sent + block])
            sent += min(block, len(data) - sent)
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def upload(self, conn, addr):
        who = "%s:%d" % addr[:2]
        try:
            line = Reader(conn).read_line(32, PEER_TIMEOUT, PEER_TIMEOUT).strip()
            i = int(line) if line.isdigit() else -1
            with self.lock:
                ok = 0 <= i < self.n and self.have[i]
            if not ok:
                log("client", "upload: %s asked %r, not held: closing" % (who, line[:20]))
                return
            data = os.pread(self.fd, self.sizes[i], self.offsets[i])
            fault = self.args.fault
            if fault == "wrong":
                b = bytearray(data)
                b[len(b) // 2] ^= 0xFF
                data = bytes(b)
            elif fault == "short":
                data = data[:len(data) // 2]
            elif fault == "extra":
                data = data + os.urandom(1000)
            self.send_throttled(conn, data)
            if fault == "noclose":
                self.stop.wait(60)                # keep it open, never close early
            if fault != "short":
                with self.lock:
                    self.uploaded += 1
            log("client", "upload: chunk %d to %s%s" % (i, who, " (fault %s)" % fault if fault else ""))
            # Close after the last byte: half-close first, then drain briefly, so the
            # requester gets a FIN (not a RST that could destroy unread data).
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2.0)
            for _ in range(16):
                if not conn.recv(4096):
                    break
        except (OSError, ValueError, EOFError) as e:
            log("client", "upload to %s ended: %s" % (who, e.__class__.__name__))
        finally:
            with self.lock:
                self.active_uploads -= 1
            try:
                conn.close()
            except OSError:
                pass

    # ---- downloader
    def pick(self):
        """Rarest missing chunk not in progress with a usable holder; random among equals."""
        now = time.monotonic()
        with self.lock:
            best, best_n = [], None
            for i in range(self.n):
                if self.have[i] or i in self.inprog:
                    continue
                holders = [p for p in self.peers if i < len(p[2]) and p[2][i:i + 1] == b"1"]
                usable = [p for p in holders
                          if self.bans.get((p[0], p[1], i), 0) < now
                          and self.liars.get((p[0], p[1]), 0) < now]
                if not usable:
                    continue
                if best_n is None or len(holders) < best_n:
                    best, best_n = [(i, usable)], len(holders)
                elif len(holders) == best_n:
                    best.append((i, usable))
            if not best:
                return None
            i, usable = random.choice(best)
            self.inprog.add(i)
            return i, random.choice(usable)

    def fetch(self, i, peer):
        """One chunk from one holder over a fresh connection; verified bytes or None."""
        ip, port, _ = peer
        size = self.sizes[i]
        try:
            # No source address: outgoing sockets are never bound to --listen.
            with socket.create_connection((ip, port), timeout=PEER_TIMEOUT) as s:
                s.sendall(b"%d\n" % i)
                # Read exactly the chunk size, never wait for EOF (some holders never close).
                data = Reader(s).read_exact(size, PEER_TIMEOUT, PEER_TIMEOUT)
        except (OSError, EOFError) as e:
            log("client", "chunk %d from %s:%d failed: %s" % (i, ip, port, e.__class__.__name__))
            with self.lock:
                self.bans[(ip, port, i)] = time.monotonic() + 5.0
            return None
        if hashlib.sha224(data).hexdigest() != self.digests[i]:
            log("client", "chunk %d from %s:%d: WRONG DIGEST, avoiding that holder" % (i, ip, port))
            with self.lock:
                self.liars[(ip, port)] = time.monotonic() + 60.0
            return None
        return data

    def worker(self):
        try:
            while not self.stop.is_set():
                with self.lock:
                    if all(self.have):
                        return
                # Client list: refreshed at most once a second while downloading.
                self.refresh_peers(1.0)
                task = self.pick()
                if task is None:
                    # No usable holder now (or everything left is in flight elsewhere):
                    # wait a little; the next refresh brings new masks.
                    self.stop.wait(0.3)
                    continue
                i, peer = task
                try:
                    data = self.fetch(i, peer)
                    if data is not None:
                        self.write_chunk(i, data)     # stored at its offset at once
                        with self.lock:
                            self.have[i] = True
                            self.downloaded_chunks += 1
                            self.downloaded_bytes += len(data)
                            got = sum(self.have)
                        self.send_mask()              # UPDATE_MASK after every chunk
                        log("client", "chunk %d from %s:%d ok (%d/%d)" % (i, peer[0], peer[1], got, self.n))
                finally:
                    with self.lock:
                        self.inprog.discard(i)
        except (OSError, EOFError, ValueError) as e:
            self.fatal = "downloader stopped (tracker connection or file error): %s %s" % (e.__class__.__name__, e)
            self.stop.set()

    # ---- main
    def run(self):
        a = self.args
        try:
            self.connect_tracker()
            self.open_file()
        except (OSError, EOFError, ValueError) as e:
            log("client", "startup failed: %s %s" % (e.__class__.__name__, e))
            return 1
        # Listen BEFORE registering, and advertise the port really bound.
        host, port = a.listen
        self.lsock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(64)
        self.lsock.settimeout(0.5)
        self.my_port = self.lsock.getsockname()[1]
        threading.Thread(target=self.serve_uploads, daemon=True).start()
        try:
            self.tracker_send(b"%d,%s\n" % (self.my_port, self.mask()))
        except OSError as e:
            log("client", "registration failed: %s" % e)
            return 1
        log("client", "registered port %d for %s (%d bytes, %d chunks)"
            % (self.my_port, self.shown, self.total, self.n))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(a.workers)]
        for w in workers:
            w.start()
        complete_logged = False
        while not self.stop.is_set():
            with self.lock:
                complete = all(self.have)
            if complete and not complete_logged:
                complete_logged = True
                if os.fstat(self.fd).st_size > self.total:
                    os.ftruncate(self.fd, self.total)
                log("client", "%s complete" % self.shown)
                if a.exit_when_done:
                    break
            self.stop.wait(0.2)
        self.stop_requested = self.stop.is_set()
        try:
            self.tracker_send(CMD_DISCONNECT)
        except OSError:
            pass
        self.stop.set()
        # Grace period: let uploads already in flight finish (bounded).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.lock:
                if self.active_uploads == 0:
                    break
            time.sleep(0.1)
        for s in (self.lsock, self.tsock):
            try:
                s.close()
            except OSError:
                pass
        with self.lock:
            complete = all(self.have)
            line = "%s %s %d bytes %d chunks downloaded, %d chunks uploaded" % (
                "done" if complete else "stopped", self.shown, self.downloaded_bytes,
                self.downloaded_chunks, self.uploaded)
        print(line, flush=True)
        if self.fatal:
            log("client", self.fatal)
            return 1
        return 0


def cmd_client(args):
    return Client(args).run()


def main(argv=None):
    p = argparse.ArgumentParser(description="bvTorrent reference tracker and client")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tracker", help="classic-compatible tracker")
    t.add_argument("file")
    t.add_argument("--listen", type=parse_addr, default=("0.0.0.0", 42424))
    t.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    t.add_argument("--print-descriptor", action="store_true",
                   help="write the descriptor bytes to stdout and exit")
    d = sub.add_parser("descriptor", help="print the descriptor bytes")
    d.add_argument("file")
    d.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    c = sub.add_parser("client", help="downloading and uploading client")
    c.add_argument("tracker", type=parse_addr)
    c.add_argument("--dir", default=".")
    c.add_argument("--listen", type=parse_addr, default=("127.0.0.1", 0))
    c.add_argument("--exit-when-done", action="store_true")
    c.add_argument("--slow-upload", type=int, default=0, metavar="BYTES_PER_SEC")
    c.add_argument("--fault", choices=["wrong", "short", "noclose", "extra"])
    c.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    args = p.parse_args(argv)
    try:
        return {"tracker": cmd_tracker, "descriptor": cmd_descriptor, "client": cmd_client}[args.cmd](args)
    except (OSError, ValueError) as e:
        log(args.cmd, "error: %s" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
