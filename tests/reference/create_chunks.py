#!/usr/bin/env python3
"""The course's create_chunks, written from the spec's "Files on disk" section with
Python's own configparser and hashlib, as the course's helper script does it. The tests
run it beside ours and compare the chunk files and config/file.ini byte for byte.

Usage: create_chunks.py ROOT NAME [CHUNK_SIZE]
"""
import configparser
import hashlib
import math
import os
import shutil
import sys

root, name = sys.argv[1], sys.argv[2]
chunk_size = int(sys.argv[3]) if len(sys.argv) > 3 else 524288
peers = ["alice", "bob", "charlie"]

# Empties the three chunk directories first.
for peer in peers:
    d = os.path.join(root, "chunks", peer)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

size = os.path.getsize(os.path.join(root, "files", name))
n = math.ceil(size / chunk_size)
ini = configparser.ConfigParser()
ini["description"] = {"filename": name, "chunks_count": str(n)}
ini["chunks"] = {}
ini["chunks_peers"] = {}
with open(os.path.join(root, "files", name), "rb") as f:
    for k in range(1, n + 1):
        data = f.read(chunk_size)
        digest = hashlib.sha1(data).hexdigest()
        if k <= math.ceil(n / 3):
            holders = ["alice"]
        elif k <= math.ceil(2 * n / 3):
            holders = ["alice", "bob"]
        else:
            holders = ["bob"]
        for peer in holders:
            with open(os.path.join(root, "chunks", peer, digest + ".bin"), "wb") as out:
                out.write(data)
        ini["chunks"][str(k - 1)] = digest
        ini["chunks_peers"][str(k - 1)] = ", ".join(holders)
with open(os.path.join(root, "config", "file.ini"), "w") as out:
    ini.write(out)
