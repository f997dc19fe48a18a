#!/usr/bin/env bash
# Measures a bvTorrent swarm on loopback (see usage).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bvtorrent_swarm.sh [--size MIB] [--clients N]

Measures a bvTorrent swarm on this machine, on loopback, with the data in /dev/shm:
bvtorrent-tracker serving a random file (1 MiB chunks), one seeding bvtorrent-client
and N leeching clients (default 4) started together. Prints, per leecher, its time and
MB/s (the file's size over its wall time), the swarm's total rate (N × size over the
time until the last leecher is done), chunks each leecher uploaded to the others, and
the peak RSS of every process (GNU time). Builds the release binaries first.

  --size MIB     the file's size (default 256)
  --clients N    leechers (default 4)
  -h, --help     this text
USAGE
}
size=256 clients=4
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bvtorrent_swarm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ -x /usr/bin/time ] || { echo "bvtorrent_swarm.sh: needs GNU time (Debian package time)" >&2; exit 1; }
command -v bc >/dev/null || { echo "bvtorrent_swarm.sh: needs bc (Debian package bc)" >&2; exit 1; }
echo "== building (release)"
cargo build --release -q
bin="$here/target/release"
source "$here/scripts/common.sh"
pids=()
# Each long-running program runs under GNU time (for its peak RSS): signal the program,
# the time process's child, by its parent's pid, so that time reports and exits.
stop_started() {
  local p
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
root=$(mktemp -d /dev/shm/swarmlet-bv.XXXXXX)
trap 'stop_started; rm -rf "$root"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$root/seed"
head -c "$((size * 1024 * 1024))" /dev/urandom > "$root/seed/swarm.bin"
port=$(free_port)
/usr/bin/time -f "%M" -o "$root/tracker.rss" "$bin/bvtorrent-tracker" --listen "127.0.0.1:$port" \
  "$root/seed/swarm.bin" 2>"$root/tracker.log" & pids+=($!)
wait_port "$port"
/usr/bin/time -f "%M" -o "$root/seed.rss" "$bin/bvtorrent-client" --dir "$root/seed" \
  --listen 127.0.0.1:0 "127.0.0.1:$port" >/dev/null 2>"$root/seed.log" & pids+=($!)
sleep 1
start=$(date +%s.%N)
leech=()
for i in $(seq 1 "$clients"); do
  mkdir -p "$root/c$i"
  ( /usr/bin/time -f "%M" -o "$root/c$i.rss" "$bin/bvtorrent-client" --dir "$root/c$i" \
      --listen 127.0.0.1:0 --exit-when-done "127.0.0.1:$port" >"$root/c$i.out" 2>"$root/c$i.log"
    date +%s.%N > "$root/c$i.end" ) & leech+=($!)
done
for p in "${leech[@]}"; do wait "$p"; done
last=0
echo "== $clients leechers, $size MiB, 1 MiB chunks, one seed, loopback, /dev/shm"
for i in $(seq 1 "$clients"); do
  cmp -s "$root/seed/swarm.bin" "$root/c$i/swarm.bin" || { echo "c$i: file differs" >&2; exit 1; }
  end=$(cat "$root/c$i.end")
  t=$(echo "$end - $start" | bc -l)
  up=$(sed -n 's/.*, \([0-9]*\) uploaded$/\1/p' "$root/c$i.out")
  printf "c%d: %6.2f s  %7.1f MB/s  uploaded %s chunks  peak RSS %s KiB\n" "$i" "$t" \
    "$(echo "$size * 1.048576 / $t" | bc -l)" "$up" "$(tail -1 "$root/c$i.rss")"
  last=$(echo "if ($t > $last) $t else $last" | bc -l)
done
stop_started
sleep 0.5
printf "swarm: %d × %d MiB in %.2f s: %.1f MB/s in total\n" "$clients" "$size" "$last" \
  "$(echo "$clients * $size * 1.048576 / $last" | bc -l)"
echo "seed peak RSS $(tail -1 "$root/seed.rss" 2>/dev/null) KiB, tracker peak RSS $(tail -1 "$root/tracker.rss" 2>/dev/null) KiB"
