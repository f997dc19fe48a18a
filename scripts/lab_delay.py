#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE queue for a fixed time, then lets it go.

The LAN lab's --delay: this kernel has no netem qdisc (nor fq, for timestamp pacing),
so the lab sends the bridge's frames to netfilter queue 0 with an nftables rule and this
program, running in the lab's switch namespace, gives each one its ACCEPT verdict DELAY
milliseconds after it arrived. Packets leave in the order they came (a constant delay
keeps the queue in arrival order), so a delay never reorders the LAN.

It speaks nfnetlink_queue directly over a netlink socket (Python's standard library
only), asks for packet metadata only (never the payload), and exits on SIGTERM or
SIGINT. Usage: lab_delay.py DELAY_MS [QUEUE_NUM]
"""

import collections
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
# Packets the kernel may hold for us at once. At 1 Gbit/s and 100 ms that is ~8,000
# full-size frames; beyond this the kernel drops, which the lab would see as loss.
QUEUE_MAXLEN = 65536
# Netlink receive buffer: bursts of packet notices must not overflow it (an overflow
# loses notices, and their packets would wait for ever).
RCVBUF = 8 << 20


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg, queue, attrs, flags=NLM_F_REQUEST):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def configure(sock, queue):
    for attrs in (
        [attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))],
        [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META) + b"\0\0\0")],
        [attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))],
    ):
        sock.send(message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK))
        reply = sock.recv(65536)
        kind = struct.unpack_from("=H", reply, 4)[0]
        if kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", reply, 16)[0]
            if err != 0:
                raise OSError(-err, "configuring NFQUEUE %d: %s" % (queue, os.strerror(-err)))


def packet_ids(data):
    """The packet ids in a buffer of netlink messages (other messages are skipped)."""
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            return
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20  # after nlmsghdr (16) and nfgenmsg (4)
            while a + 4 <= off + length:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, a + 4)[0]
                a += (alen + 3) & ~3
        off += (length + 3) & ~3


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    delay = int(sys.argv[1]) / 1000.0
    queue = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind((0, 0))
    configure(sock, queue)
    print("lab_delay: holding queue %d for %d ms" % (queue, delay * 1000), file=sys.stderr, flush=True)
    held = collections.deque()  # (release time, packet id), in arrival order
    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = held.popleft()
            verdict = attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))
            sock.send(message(NFQNL_MSG_VERDICT, queue, [verdict]))
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if ready:
            data = sock.recv(1 << 20)
            t = time.monotonic() + delay
            held.extend((t, pid) for pid in packet_ids(data))


if __name__ == "__main__":
    main()
