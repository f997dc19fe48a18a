#!/usr/bin/env python3
"""An independent implementation of the course protocol, written from
the course's protocol text alone (as another group would; our own description of it is
docs/PROTOCOL.md), with Python's standard
library only. tests/interop.rs runs it against our Rust programs in both directions.

  course.py peer NAME --root DIR [--port P]
  course.py tracker --root DIR [--name N] [--quirk-two-datagrams] [--quirk-type5]
                    [--only-limited-broadcast] [--no-udp]
  course.py charlie --step 1|2|3 --root DIR [--tracker-name N]

--pedantic (any subcommand) also checks what the spec only asks senders to do: zero
reserved and padding bytes, and no request sent before the previous reply was read. A
breach is logged as a line starting with "VIOLATION"; charlie then fails.

Every socket has a timeout and every loop a bound; servers run until they are killed.
"""
import argparse
import configparser
import hashlib
import os
import socket
import struct
import sys
import threading
import time

DISCOVER_TRACKER, TRACKER_INFO, GET_FILE_INFO, FILE_INFO, GET_CHUNK, CHUNK, ERROR = range(7)
TYPE_NAMES = ["DISCOVER_TRACKER", "TRACKER_INFO", "GET_FILE_INFO", "FILE_INFO",
              "GET_CHUNK", "CHUNK", "ERROR"]
INVALID_MESSAGE_FORMAT, INVALID_REQUEST, CHUNK_NOT_FOUND = range(3)
ERROR_NAMES = ["INVALID_MESSAGE_FORMAT", "INVALID_REQUEST", "CHUNK_NOT_FOUND"]
FIXED_WORDS = {DISCOVER_TRACKER: 2, GET_FILE_INFO: 2, GET_CHUNK: 7, ERROR: 3}
MAX_REQUEST = 64 * 1024          # servers: no request of ours is longer
MAX_REPLY = 80 * 1024 * 1024     # charlie: a chunk of up to 64 MiB, or a big FILE_INFO
MAX_REQUESTS_PER_CONNECTION = 1_000_000
TIMEOUT = 5.0                    # charlie's sockets
IDLE = 30.0                      # servers: close a connection idle this long
PEDANTIC = False
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value


class ProtocolError(Exception):
    pass


def log(msg):
    print(f"[{PROGRAM}] {msg}", file=sys.stderr, flush=True)


def violation(msg):
    log(f"VIOLATION: {msg}")
    if PROGRAM == "charlie":
        raise ProtocolError(msg)


# ---------------------------------------------------------------- encoding


def pad(n):
    return b"\0" * (-n % 4)


def message(msg_type, body=b""):
    assert len(body) % 4 == 0
    return struct.pack(">BBHI", 1, msg_type, 0, (8 + len(body)) // 4) + body


def error(code):
    return message(ERROR, struct.pack(">HH", code, 0))


def tracker_info(ip, port, name):
    raw = name.encode()
    return message(TRACKER_INFO, socket.inet_aton(ip) + struct.pack(">HH", port, len(raw))
                   + raw + pad(len(raw)))


def file_info(filename, chunks, msg_type=FILE_INFO):
    """chunks: [(20-byte hash, [(ip, port), ...]), ...] in file order."""
    raw = filename.encode()
    body = [struct.pack(">HH", len(chunks), len(raw)), raw, pad(len(raw))]
    for digest, peers in chunks:
        body.append(digest + struct.pack(">HH", len(peers), 0))
        body += [socket.inet_aton(ip) + struct.pack(">HH", port, 0) for ip, port in peers]
    return message(msg_type, b"".join(body))


def chunk(digest, data):
    return message(CHUNK, digest + struct.pack(">I", len(data)) + data + pad(len(data)))


# ---------------------------------------------------------------- decoding


def check_zero(what, raw):
    if PEDANTIC and any(raw):
        violation(f"non-zero {what}: {raw.hex()}")


def parse_header(head):
    version, msg_type, reserved, words = struct.unpack(">BBHI", head)
    if version != 1 or msg_type > 6 or words < 2:
        raise ProtocolError(f"bad header {head.hex()}")
    check_zero("reserved header bytes", head[2:4])
    return msg_type, words * 4


def parse(data, allow_type5_file_info=False):
    """One whole message (header included) -> (msg_type, fields). Strict about lengths."""
    if len(data) < 8:
        raise ProtocolError(f"{len(data)}-byte message")
    msg_type, length = parse_header(data[:8])
    if length != len(data):
        raise ProtocolError(f"header says {length} bytes, got {len(data)}")
    body = data[8:]
    if msg_type in FIXED_WORDS and FIXED_WORDS[msg_type] * 4 != length:
        raise ProtocolError(f"{TYPE_NAMES[msg_type]} of {length} bytes")
    if msg_type == TRACKER_INFO:
        if len(body) < 8:
            raise ProtocolError("short TRACKER_INFO")
        port, n = struct.unpack(">HH", body[4:8])
        if 8 + n + (-n % 4) != len(body):
            raise ProtocolError(f"TRACKER_INFO name of {n} bytes in a {len(body)}-byte body")
        check_zero("TRACKER_INFO padding", body[8 + n:])
        return msg_type, (socket.inet_ntoa(body[:4]), port, body[8:8 + n].decode())
    if msg_type == FILE_INFO or (msg_type == CHUNK and allow_type5_file_info):
        return FILE_INFO, parse_file_info(body)
    if msg_type == CHUNK:
        if len(body) < 24:
            raise ProtocolError("short CHUNK")
        (n,) = struct.unpack(">I", body[20:24])
        if 24 + n + (-n % 4) != len(body):
            raise ProtocolError(f"CHUNK content of {n} bytes in a {len(body)}-byte body")
        check_zero("CHUNK padding", body[24 + n:])
        return msg_type, (body[:20], body[24:24 + n])
    if msg_type == GET_CHUNK:
        return msg_type, body
    if msg_type == ERROR:
        check_zero("ERROR padding", body[2:])
        return msg_type, struct.unpack(">H", body[:2])[0]
    return msg_type, None


def parse_file_info(body):
    if len(body) < 4:
        raise ProtocolError("short FILE_INFO")
    count, n = struct.unpack(">HH", body[:4])
    filename = body[4:4 + n].decode()
    at = 4 + n + (-n % 4)
    check_zero("FILE_INFO filename padding", body[4 + n:at])
    chunks = []
    for _ in range(count):
        if at + 24 > len(body):
            raise ProtocolError("FILE_INFO ends inside a chunk record")
        digest = body[at:at + 20]
        (peers_count,) = struct.unpack(">H", body[at + 20:at + 22])
        check_zero("FILE_INFO chunk padding", body[at + 22:at + 24])
        at += 24
        if at + 8 * peers_count > len(body):
            raise ProtocolError("FILE_INFO ends inside a peer list")
        peers = []
        for _ in range(peers_count):
            ip, (port,) = socket.inet_ntoa(body[at:at + 4]), struct.unpack(">H", body[at + 4:at + 6])
            check_zero("FILE_INFO peer padding", body[at + 6:at + 8])
            peers.append((ip, port))
            at += 8
        chunks.append((digest, peers))
    if at != len(body):
        raise ProtocolError(f"FILE_INFO has {len(body) - at} bytes after its last chunk")
    return filename, chunks


def recv_exact(sock, n, eof_ok=False):
    """n bytes from sock; None on a clean EOF before the first byte if eof_ok."""
    parts, got = [], 0
    while got < n:
        part = sock.recv(min(n - got, 1 << 20))
        if not part:
            if eof_ok and got == 0:
                return None
            raise ProtocolError(f"connection closed after {got} of {n} bytes")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_message(sock, limit, eof_ok=False):
    head = recv_exact(sock, 8, eof_ok)
    if head is None:
        return None
    _, length = parse_header(head)
    if length > limit:
        raise ProtocolError(f"{length}-byte message, more than {limit}")
    return head + recv_exact(sock, length - 8)


# ---------------------------------------------------------------- config files


def read_ini(path):
    ini = configparser.ConfigParser()
    if not ini.read(path):
        raise SystemExit(f"cannot read {path}")
    return ini


def peers_ini(root):
    ini = read_ini(os.path.join(root, "config", "peers.ini"))
    return {s: (ini[s]["ip_address"], int(ini[s]["port_number"])) for s in ini.sections()}


def file_ini(root):
    ini = read_ini(os.path.join(root, "config", "file.ini"))
    count = int(ini["description"]["chunks_count"])
    chunks = [(bytes.fromhex(ini["chunks"][str(i)]),
               [p.strip() for p in ini["chunks_peers"][str(i)].split(",") if p.strip()])
              for i in range(count)]
    return ini["description"]["filename"], chunks


def resolve(chunks, addresses):
    """[(hash, [names])] -> [(hash, [(ip, port)])], naming unknown peers."""
    for _, names in chunks:
        for n in names:
            if n not in addresses:
                raise SystemExit(f"peer {n!r} of file.ini is not in peers.ini")
    return [(h, [addresses[n] for n in names]) for h, names in chunks]


# ---------------------------------------------------------------- servers


def serve_tcp(addr, answer):
    """Accepts forever; one thread per connection, each answering requests in turn."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(addr)
    listener.listen(64)
    log(f"listening on {addr[0]}:{addr[1]}")
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=connection, args=(conn, peer, answer), daemon=True).start()


def connection(conn, peer, answer):
    requests = 0
    with conn:
        conn.settimeout(IDLE)
        try:
            while requests < MAX_REQUESTS_PER_CONNECTION:
                try:
                    request = read_message(conn, MAX_REQUEST, eof_ok=True)
                    if request is None:
                        break
                    msg_type, fields = parse(request)
                except ProtocolError as e:
                    log(f"{peer[0]}:{peer[1]}: malformed request ({e}): ERROR 0, closing")
                    conn.sendall(error(INVALID_MESSAGE_FORMAT))
                    break
                requests += 1
                reply = answer(msg_type, fields)
                if PEDANTIC and pipelined(conn):
                    violation(f"{peer[0]}:{peer[1]} sent its next request before reading "
                              f"the reply to request {requests}")
                conn.sendall(reply)
        except (OSError, ProtocolError) as e:
            log(f"{peer[0]}:{peer[1]}: {e}")
    log(f"connection from {peer[0]}:{peer[1]} closed after {requests} requests")


def pipelined(conn):
    """Whether more bytes are already waiting (a client that did not wait for the reply)."""
    conn.settimeout(0)
    try:
        return len(conn.recv(1, socket.MSG_PEEK)) > 0
    except BlockingIOError:
        return False
    finally:
        conn.settimeout(IDLE)


def peer_main(args):
    addr = peers_ini(args.root)[args.name]
    if args.port is not None:
        addr = (addr[0], args.port)
    directory = os.path.join(args.root, "chunks", args.name)

    def answer(msg_type, body):
        if msg_type != GET_CHUNK:
            return error(INVALID_REQUEST)
        path = os.path.join(directory, body.hex() + ".bin")
        if not os.path.isfile(path):
            log(f"chunk {body.hex()} not found")
            return error(CHUNK_NOT_FOUND)
        with open(path, "rb") as f:
            data = f.read()
        log(f"sent chunk {body.hex()} ({len(data)} bytes)")
        return chunk(body, data)

    serve_tcp(addr, answer)


def tracker_main(args):
    addresses = peers_ini(args.root)
    tcp = addresses["tracker"] if args.port is None else (addresses["tracker"][0], args.port)
    resolve(file_ini(args.root)[1], addresses)    # refuse to start on unknown peers

    def answer(msg_type, fields):
        if msg_type != GET_FILE_INFO:
            return error(INVALID_REQUEST)
        filename, chunks = file_ini(args.root)   # read again: file.ini may have changed
        log(f"sending FILE_INFO for {filename} ({len(chunks)} chunks)")
        return file_info(filename, resolve(chunks, addresses),
                         CHUNK if args.quirk_type5 else FILE_INFO)

    if not args.no_udp:
        threading.Thread(target=serve_udp, args=(args, tcp), daemon=True).start()
    serve_tcp(tcp, answer)


def serve_udp(args, tcp):
    """Answers DISCOVER_TRACKER on 0.0.0.0:9000; IP_PKTINFO tells each datagram's
    destination, which --only-limited-broadcast needs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(("0.0.0.0", args.udp_port))
    info = tracker_info(tcp[0], tcp[1], args.name)
    log(f"answering DISCOVER_TRACKER on UDP {args.udp_port} as {args.name!r}")
    while True:
        data, ancillary, _, sender = sock.recvmsg(65536, socket.CMSG_SPACE(12))
        to = next((socket.inet_ntoa(d[8:12]) for level, kind, d in ancillary
                   if level == socket.IPPROTO_IP and kind == IP_PKTINFO), "?")
        if args.only_limited_broadcast and to != "255.255.255.255":
            log(f"ignoring a datagram from {sender[0]}:{sender[1]} sent to {to}")
            continue
        try:
            msg_type, _ = parse(data)
            reply = info if msg_type == DISCOVER_TRACKER else error(INVALID_REQUEST)
            if msg_type == ERROR:
                continue                  # never answer an ERROR (no ping-pong)
        except ProtocolError:
            reply = error(INVALID_MESSAGE_FORMAT)
        log(f"answering a {len(data)}-byte datagram from {sender[0]}:{sender[1]} to {to}")
        if args.quirk_two_datagrams and len(reply) > 8:
            sock.sendto(reply[:8], sender)
            time.sleep(0.02)
            sock.sendto(reply[8:], sender)
        else:
            sock.sendto(reply, sender)


# ---------------------------------------------------------------- charlie


def exchange(sock, request, expect_file_info=False):
    sock.sendall(request)
    return parse(read_message(sock, MAX_REPLY), allow_type5_file_info=expect_file_info)


def get_file_info(addr):
    with socket.create_connection(addr, timeout=TIMEOUT) as sock:
        msg_type, fields = exchange(sock, message(GET_FILE_INFO), expect_file_info=True)
    if msg_type != FILE_INFO:
        raise ProtocolError(f"tracker answered {TYPE_NAMES[msg_type]} {fields}")
    return fields


def discover(port, want, window=0.5, tries=3):
    """Broadcasts DISCOVER_TRACKER; the first tracker named `want` ("*": any)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
        for attempt in range(1, tries + 1):
            sock.sendto(message(DISCOVER_TRACKER), ("255.255.255.255", port))
            end, halves = time.monotonic() + window, {}
            while (left := end - time.monotonic()) > 0:
                sock.settimeout(left + (0.3 if halves else 0))  # a split reply's body
                try:
                    data, sender = sock.recvfrom(65536)
                except socket.timeout:
                    break
                if sender in halves:
                    data = halves.pop(sender) + data
                elif len(data) == 8 and struct.unpack(">I", data[4:8])[0] > 2:
                    halves[sender] = data     # a header announcing more: wait for the body
                    continue
                try:
                    msg_type, fields = parse(data)
                except ProtocolError as e:
                    log(f"ignoring a datagram from {sender}: {e}")
                    continue
                if msg_type != TRACKER_INFO:
                    log(f"ignoring {TYPE_NAMES[msg_type]} from {sender}")
                    continue
                ip, tcp_port, name = fields
                log(f"heard tracker {name!r} at {ip}:{tcp_port} (try {attempt})")
                if want in ("*", name):
                    return ip, tcp_port
    raise SystemExit(f"no tracker named {want!r} answered on UDP {port} in {tries} tries")


def download(plan, out_dir):
    """Fetches every chunk, one connection per peer kept for the whole download."""
    connections, dead = {}, set()
    for index, (digest, sources) in enumerate(plan):
        rotated = sources[index % len(sources):] + sources[:index % len(sources)] if sources else []
        for addr in rotated:
            if addr in dead:
                continue
            try:
                if addr not in connections:
                    connections[addr] = socket.create_connection(addr, timeout=TIMEOUT)
                msg_type, fields = exchange(connections[addr], message(GET_CHUNK, digest))
            except (OSError, ProtocolError) as e:
                log(f"chunk {index}: peer {addr[0]}:{addr[1]} failed ({e}); not asking it again")
                dead.add(addr)
                if addr in connections:
                    connections.pop(addr).close()
                continue
            if msg_type == ERROR:
                log(f"chunk {index}: {addr[0]}:{addr[1]} answered "
                    f"{ERROR_NAMES[fields] if fields < 3 else fields}")
                continue
            if msg_type != CHUNK or fields[0] != digest:
                log(f"chunk {index}: {addr[0]}:{addr[1]} answered {TYPE_NAMES[msg_type]} "
                    "for another chunk; not asking it again")
                dead.add(addr)
                connections.pop(addr).close()
                continue
            if hashlib.sha1(fields[1]).digest() != digest:
                log(f"chunk {index}: data from {addr[0]}:{addr[1]} does not match its SHA-1")
                continue
            with open(os.path.join(out_dir, digest.hex() + ".bin"), "wb") as f:
                f.write(fields[1])
            log(f"chunk {index} ({len(fields[1])} bytes) from {addr[0]}:{addr[1]}")
            break
        else:
            raise SystemExit(f"chunk {index} ({digest.hex()}): no peer sent it")
    for sock in connections.values():
        sock.close()


def charlie_main(args):
    root = args.root
    if args.step == 1:
        filename, names = file_ini(root)
        plan = resolve(names, peers_ini(root))
    else:
        if args.step == 2:
            tracker = peers_ini(root)["tracker"]
        else:
            with open("/proc/self/net/dev") as f:    # this network namespace's links
                links = {line.split(":")[0].strip() for line in f.readlines()[2:]}
            if links != {"lo"}:
                raise SystemExit(f"step 3 broadcasts: run it only where lo is the only "
                                 f"link (a private network namespace), not with {links}")
            tracker = discover(args.discover_port, args.tracker_name)
        filename, plan = get_file_info(tracker)
    if not filename or "/" in filename or filename in (".", ".."):
        raise SystemExit(f"unsafe file name {filename!r}")
    out_dir = os.path.join(root, "chunks", "charlie")
    os.makedirs(out_dir, exist_ok=True)
    download(plan, out_dir)
    size = 0
    with open(os.path.join(out_dir, filename), "wb") as out:    # merge_chunks
        for digest, _ in plan:
            with open(os.path.join(out_dir, digest.hex() + ".bin"), "rb") as f:
                data = f.read()
            out.write(data)
            size += len(data)
    print(f"downloaded {filename}: {len(plan)} chunks, {size} bytes")


def main():
    global PROGRAM, PEDANTIC
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pedantic", action="store_true")
    sub = parser.add_subparsers(dest="program", required=True)
    p = sub.add_parser("peer")
    p.add_argument("name")
    t = sub.add_parser("tracker")
    t.add_argument("--name", default="pytracker")
    t.add_argument("--udp-port", type=int, default=9000)
    for flag in ["--quirk-two-datagrams", "--quirk-type5", "--only-limited-broadcast",
                 "--no-udp"]:
        t.add_argument(flag, action="store_true")
    c = sub.add_parser("charlie")
    c.add_argument("--step", type=int, choices=[1, 2, 3], required=True)
    c.add_argument("--tracker-name", default="tracker", help='"*" takes any tracker')
    c.add_argument("--discover-port", type=int, default=9000)
    for s in (p, t, c):
        s.add_argument("--root", default=".")
        s.add_argument("--pedantic", action="store_true", default=argparse.SUPPRESS)
    for s in (p, t):
        s.add_argument("--port", type=int)
    args = parser.parse_args()
    PROGRAM, PEDANTIC = (args.name if args.program == "peer" else args.program), args.pedantic
    try:
        {"peer": peer_main, "tracker": tracker_main, "charlie": charlie_main}[args.program](args)
    except (OSError, ProtocolError) as e:
        log(f"failed: {e}")
        sys.exit(1)


PROGRAM = "course.py"
if __name__ == "__main__":
    main()
