#!/usr/bin/env bash
# One seeder, one leecher, on loopback, data on /dev/shm: swarmlet -> swarmlet,
# libtorrent -> swarmlet and swarmlet -> libtorrent, pair after pair, REPEAT rounds.
# Prints per pair the leecher's MB/s and each end's peak RSS and CPU seconds.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench_bt.sh [--size N] [--repeat N]

Measures BitTorrent transfers between one seeder and one leecher on loopback, with the
data on /dev/shm so that no disk decides: swarmlet -> swarmlet, libtorrent -> swarmlet
and swarmlet -> libtorrent, one pair after the other, --repeat rounds. For each pair
and round it prints the leecher's rate (from spawn to exit) and both ends' peak RSS
and CPU seconds (GNU time). libtorrent runs from Python (python3-libtorrent) with DHT,
LSD, UPnP, NAT-PMP and uTP off, on 127.0.0.1 only. Every process is stopped by its pid.

  --size N     file size in MiB (default 1024)
  --repeat N   rounds (default 3)
  -h, --help   this text

The rest of the BitTorrent benchmark (rqbit and aria2 pairs, the swarm effect, create,
scale) is not written yet; scripts/bench.sh --bt-tracker measures the tracker.
EOF
}

size_mib=1024
repeat=3
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
lt_peer="$here/tests/reference/lt_peer.py"
for need in "$py:python3-libtorrent" "/usr/bin/time:time"; do
  [ -x "${need%%:*}" ] || { echo "missing ${need%%:*} (Debian package ${need##*:})" >&2; exit 1; }
done
"$py" -c 'import libtorrent' 2>/dev/null || { echo "missing python3-libtorrent" >&2; exit 1; }

echo "== building (release)" >&2
(cd "$here" && cargo build --release --quiet --bin swarmlet)
swarmlet="$here/target/release/swarmlet"

work=$(mktemp -d /dev/shm/swarmlet-bt-bench.XXXXXX)
pids=()
# Stops a process started under GNU time: the program itself (time's child, by pid),
# so that time reports on it, then time.
stop_timed() {
  kill -TERM $(ps -o pid= --ppid "$1") 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do stop_timed "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/seed"
head -c $((size_mib << 20)) /dev/urandom > "$work/seed/data.bin"
"$swarmlet" create "$work/seed/data.bin" -o "$work/data.torrent" --no-date >/dev/null 2>&1
bytes=$((size_mib << 20))

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a seeder of kind $1 under GNU time (into $2); sets seed_pid and seed_port.
start_seed() {
  local kind=$1 tfile=$2
  if [ "$kind" = swarmlet ]; then
    seed_port=$(free_port)
    /usr/bin/time -f '%M %U %S' -o "$tfile" "$swarmlet" seed "$work/data.torrent" \
      -d "$work/seed" --listen "127.0.0.1:$seed_port" > "$work/seed.out" 2>&1 &
    seed_pid=$!
    for _ in $(seq 600); do
      grep -q "seeding" "$work/seed.out" 2>/dev/null && break
      sleep 0.05
    done
  else
    /usr/bin/time -f '%M %U %S' -o "$tfile" "$py" "$lt_peer" seed "$work/data.torrent" \
      "$work/seed" > "$work/seed.out" 2>&1 &
    seed_pid=$!
    for _ in $(seq 600); do
      seed_port=$(sed -n 's/^port //p' "$work/seed.out" 2>/dev/null)
      [ -n "$seed_port" ] && break
      sleep 0.05
    done
  fi
  pids+=("$seed_pid")
  [ -n "$seed_port" ] || { cat "$work/seed.out" >&2; echo "the $kind seed did not start" >&2; exit 1; }
}

# Runs a leecher of kind $1 against 127.0.0.1:$seed_port under GNU time (into $2).
leech() {
  local kind=$1 tfile=$2
  rm -rf "$work/leech"; mkdir -p "$work/leech"
  if [ "$kind" = swarmlet ]; then
    /usr/bin/time -f '%M %U %S' -o "$tfile" "$swarmlet" download "$work/data.torrent" \
      -o "$work/leech" --listen "127.0.0.1:$(free_port)" --peer "127.0.0.1:$seed_port" \
      > "$work/leech.out" 2>&1
  else
    /usr/bin/time -f '%M %U %S' -o "$tfile" "$py" "$lt_peer" leech "$work/data.torrent" \
      "$work/leech" "127.0.0.1:$seed_port" > "$work/leech.out" 2>&1
  fi
  cmp -s "$work/seed/data.bin" "$work/leech/data.bin" \
    || { cat "$work/leech.out" >&2; echo "$kind leecher: file differs" >&2; exit 1; }
}

echo "pair round MB/s seed_rss_MiB seed_cpu_s leech_rss_MiB leech_cpu_s"
for round in $(seq "$repeat"); do
  for pair in swarmlet:swarmlet libtorrent:swarmlet swarmlet:libtorrent; do
    s=${pair%%:*}; l=${pair##*:}
    start_seed "$s" "$work/seed.time"
    t0=$(date +%s%N)
    leech "$l" "$work/leech.time"
    t1=$(date +%s%N)
    stop_timed "$seed_pid"
    pids=()
    read -r lrss lu ls < "$work/leech.time"
    read -r srss su ss < <(grep -E '^[0-9]+ ' "$work/seed.time" | tail -1)
    awk -v p="$s->$l" -v r="$round" -v b="$bytes" -v ns=$((t1 - t0)) \
      -v srss="$srss" -v su="$su" -v ss="$ss" -v lrss="$lrss" -v lu="$lu" -v ls="$ls" \
      'BEGIN { printf "%s %d %.1f %.1f %.2f %.1f %.2f\n", p, r, b / (ns / 1e9) / 1e6,
               srss / 1024, su + ss, lrss / 1024, lu + ls }'
  done
done
