#!/usr/bin/env bash
# The main job: the whole course system on this machine (usage() says what it does).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/demo.sh [--size BYTES] [--chunk-size BYTES] [--keep]

Runs the whole system on this machine: builds the release binaries (the first build
takes about 2 minutes), makes a random file, splits it into chunks, starts alice, bob
and the tracker in a temporary root on free loopback ports, runs charlie steps 1, 2 and
3, checks the downloaded file after each; then the bvTorrent part: bvtorrent-tracker
serving the same file, one seeding bvtorrent-client and two leechers started together,
both files checked; then the BitTorrent part: swarmlet create makes a torrent of the
same file, swarmlet tracker serves it on 127.0.0.1 (HTTP and UDP), one swarmlet seed
and two swarmlet download leechers meet only through that tracker, both files checked.
It stops what it started, by pid, also on failure or Ctrl-C.

Step 3 broadcasts DISCOVER_TRACKER to 255.255.255.255:9000, which must never leave this
machine: as root, the demo re-runs itself inside a private network namespace
(unshare -n, lo up, default route via lo) where the broadcast reaches only lo. Without
root it runs steps 1 and 2 on the host's loopback and says step 3 is skipped.

  --size BYTES        size of the random file (default 20 MiB + 12345)
  --chunk-size BYTES  chunk size (default 524288)
  --keep              keep the temporary root (files, chunks, logs) afterwards
  -h, --help          this text
USAGE
}

args=("$@")  # kept whole for the re-run inside a namespace
size=$((20 * 1024 * 1024 + 12345))
chunk=524288
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --chunk-size) chunk=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="$here/target/release"
if [ "${SWARMLET_DEMO_NETNS:-}" != 1 ]; then
  # cargo's own progress shows; a first build from scratch takes about 2 minutes.
  echo "== building (release; the first build takes about 2 minutes)"
  cargo build --release
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null; then
    echo "== re-running inside a private network namespace (unshare -n) for step 3"
    export SWARMLET_DEMO_NETNS=1
    exec unshare -n bash -c 'ip link set lo up && ip route add default dev lo && exec bash "$0" "$@"' \
      "$0" "${args[@]}"
  fi
fi
if [ "${SWARMLET_DEMO_NETNS:-}" = 1 ]; then
  steps="1 2 3"
  tracker_udp=()
else
  steps="1 2"
  # Not in a private namespace: the tracker must not listen on the real interfaces.
  tracker_udp=(--no-udp)
  echo "== step 3 will be skipped: it broadcasts, which is only done inside a private" \
    "network namespace, and making one needs root (and unshare, ip)"
fi

root=$(mktemp -d /tmp/swarmlet-demo.XXXXXX)
# free_port, wait_port, stop_started
source "$here/scripts/common.sh"
pids=()
cleanup() {
  stop_started
  if [ "$keep" = 1 ]; then echo "== kept $root"; else rm -rf "$root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


mkdir -p "$root/config" "$root/files" "$root/chunks"
t=$(free_port); a=$(free_port); b=$(free_port)
cat > "$root/config/peers.ini" <<INI
[tracker]
ip_address = 127.0.0.1
port_number = $t

[alice]
ip_address = 127.0.0.1
port_number = $a

[bob]
ip_address = 127.0.0.1
port_number = $b
INI

echo "== making a random file of $size bytes in $root/files"
head -c "$size" /dev/urandom > "$root/files/demo.bin"
"$bin/create_chunks" demo.bin --root "$root" --chunk-size "$chunk"

echo "== starting alice :$a, bob :$b, tracker :$t (logs in $root/*.log)"
"$bin/alice" --root "$root" 2>"$root/alice.log" & pids+=($!)
"$bin/bob" --root "$root" 2>"$root/bob.log" & pids+=($!)
"$bin/tracker" --root "$root" "${tracker_udp[@]}" 2>"$root/tracker.log" & pids+=($!)
wait_port "$a"; wait_port "$b"; wait_port "$t"

for step in $steps; do
  echo "== charlie --step $step"
  rm -rf "$root/chunks/charlie"
  "$bin/charlie" --step "$step" --root "$root"
  "$bin/check_file" --root "$root"
done
echo "== course: steps ${steps// /, } downloaded identical files"

echo "== bvTorrent: bvtorrent-tracker, one seed and two leechers (64 KiB chunks)"
bv="$root/bv"
mkdir -p "$bv/seed" "$bv/leech1" "$bv/leech2"
cp "$root/files/demo.bin" "$bv/seed/"
bt=$(free_port)
"$bin/bvtorrent-tracker" --listen "127.0.0.1:$bt" --chunk-size 65536 "$bv/seed/demo.bin" \
  2>"$root/bvtorrent-tracker.log" & pids+=($!)
wait_port "$bt"
"$bin/bvtorrent-client" --dir "$bv/seed" --listen 127.0.0.1:0 "127.0.0.1:$bt" \
  2>"$root/bv-seed.log" >/dev/null & pids+=($!)
leechers=()
for l in leech1 leech2; do
  "$bin/bvtorrent-client" --dir "$bv/$l" --listen 127.0.0.1:0 --exit-when-done "127.0.0.1:$bt" \
    2>"$root/bv-$l.log" & leechers+=($!)
done
for p in "${leechers[@]}"; do wait "$p"; done
for l in leech1 leech2; do
  cmp "$root/files/demo.bin" "$bv/$l/demo.bin"
done
echo "== bvTorrent: both leechers' files are identical to the seed's"

echo "== BitTorrent: swarmlet create, swarmlet tracker, one swarmlet seed, two swarmlet download"
btd="$root/bt"
mkdir -p "$btd/seed" "$btd/leech1" "$btd/leech2"
cp "$root/files/demo.bin" "$btd/seed/"
tp=$(free_port)
"$bin/swarmlet" create "$btd/seed/demo.bin" -t "http://127.0.0.1:$tp/announce" \
  -o "$btd/demo.torrent" >/dev/null
echo "   torrent $btd/demo.torrent announcing to http://127.0.0.1:$tp/announce"
"$bin/swarmlet" tracker --listen "127.0.0.1:$tp" 2>"$root/bt-tracker.log" & pids+=($!)
wait_port "$tp"
echo "   swarmlet tracker on 127.0.0.1:$tp (HTTP and UDP), pid ${pids[-1]}"
sp=$(free_port)
"$bin/swarmlet" seed "$btd/demo.torrent" --dir "$btd/seed" --listen "127.0.0.1:$sp" \
  >"$root/bt-seed.out" 2>"$root/bt-seed.log" & pids+=($!)
wait_port "$sp"
echo "   swarmlet seed on 127.0.0.1:$sp, pid ${pids[-1]}"
# The seed dials nobody: wait (bounded) until its first announce is answered, so that
# the leechers' first announce already names it.
for _ in $(seq 1 100); do
  grep -q "tracker http://127.0.0.1:$tp/announce" "$root/bt-seed.log" && break
  sleep 0.1
done
leechers=()
for l in leech1 leech2; do
  lp=$(free_port)
  "$bin/swarmlet" download "$btd/demo.torrent" --dir "$btd/$l" --listen "127.0.0.1:$lp" \
    >"$root/bt-$l.out" 2>"$root/bt-$l.log" & leechers+=($!)
  echo "   swarmlet download into $btd/$l, listening on 127.0.0.1:$lp, pid ${leechers[-1]}"
done
for p in "${leechers[@]}"; do wait "$p"; done
for l in leech1 leech2; do
  cmp "$root/files/demo.bin" "$btd/$l/demo.bin"
  echo "   $l: $(tail -1 "$root/bt-$l.out")"
done
echo "== BitTorrent: both leechers' files are identical to the seed's (cmp)"
echo "== demo complete"
