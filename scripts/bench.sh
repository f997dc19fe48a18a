#!/usr/bin/env bash
# Benchmark: charlie's speed against this machine's ceiling; usage() below says what it does and how.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench.sh [--size 1G] [--repeat 3] [--chunks "512K 1M 2M"]
                        [--big-size 4G|0] [--no-docs] [--keep] [--bin DIR]
Sizes take K, M, G (powers of 2). --big-size defaults to 4 x --size; 0 skips it.
--bin DIR takes alice, bob, tracker, charlie and create_chunks from DIR (another
build, e.g. an older commit's, to compare); the measuring tool is always this tree's.

Benchmark: how fast charlie moves a file, against this machine's ceiling measured in
the same run. Builds the release binaries, makes a random file in a temporary root on
tmpfs (/dev/shm, so the disk does not decide), and for each chunk size starts alice,
bob and the tracker on free loopback ports, then REPEAT times measures side by side:
the ceiling (`bench sink`: the file over one loopback TCP connection into a file on
the same tmpfs, once before and once after each charlie run), one core's SHA-1 rate,
and `charlie --step 2` (wall, CPU, peak RSS by wait4; the peers' CPU and peak RSS from
/proc). Then: charlie's peak RSS on the file and on one 4 times larger, the tracker
under 32 GET_FILE_INFO clients (65,535 chunks), one peer under 50 downloaders, and
step-3 discovery latency. Prints the tables (median, min-max, ratios) and writes them
into docs/BENCHMARKS.md between its markers (raw lines: target/bench-results.txt).
USAGE
}

size=1G
repeat=3
chunks="512K 1M 2M"
big=""
docs=1
keep=0
other_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    --big-size) big=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    --keep) keep=1; shift ;;
    --bin) other_bin=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bytes() {
  local v=$1 n
  n=${v%[KkMmGg]}
  case "$v" in
    *[Kk]) echo $((n * 1024)) ;;
    *[Mm]) echo $((n * 1024 * 1024)) ;;
    *[Gg]) echo $((n * 1024 * 1024 * 1024)) ;;
    *) echo "$v" ;;
  esac
}
size=$(bytes "$size")
big=$([ -n "$big" ] && bytes "$big" || echo $((size * 4)))
[ "$repeat" -ge 1 ] || { echo "bench.sh: --repeat must be at least 1" >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
echo "== building (release; the first build takes about 2 minutes)"
cargo build --release
# Where cargo puts the binaries (CARGO_TARGET_DIR or .cargo/config may move target/).
target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target=${target:-"$here/target"}
tool="$target/release/bench"
bin=${other_bin:-"$target/release"}

shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || { echo "bench.sh: $shm is not writable" >&2; exit 1; }
work=$(mktemp -d "$shm/swarmlet-bench.XXXXXX")
results="$work/results.txt"
# free_port, wait_port, stop_started
source "$here/scripts/common.sh"
pids=()
cleanup() {
  stop_started
  if [ "$keep" = 1 ]; then echo "== kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a server in the background (logs to $root/NAME.log) and records its pid.
start() {
  local name=$1; shift
  "$@" 2>"$root/$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
}
# Stops the servers this script started, by pid, and forgets them.
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
field() { # field KEY LINE: the value of KEY=... in a key=value line
  sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"
}
new_root() { # new_root DIR: config/peers.ini on free ports, empty chunks/ and files/
  root=$1
  mkdir -p "$root/config" "$root/files" "$root/chunks"
  port_t=$(free_port); port_a=$(free_port); port_b=$(free_port)
  cat > "$root/config/peers.ini" <<INI
[tracker]
ip_address = 127.0.0.1
port_number = $port_t

[alice]
ip_address = 127.0.0.1
port_number = $port_a

[bob]
ip_address = 127.0.0.1
port_number = $port_b
INI
}
# A tracker that answers DISCOVER_TRACKER (step 3) binds UDP 9000 unless told otherwise:
# where it can be told, ours get a port of their own, so that a tracker another program
# runs on this machine neither stops ours from starting nor answers our probe.
if "$bin/tracker" --help 2>/dev/null | grep -q -- '--udp-port'; then
  udp_flag=1
else
  udp_flag=0
fi
start_tracker() {
  if [ "$udp_flag" = 1 ]; then
    port_u=$(free_port)
    start tracker "$bin/tracker" --root "$root" --udp-port "$port_u"
  else
    port_u=9000
    start tracker "$bin/tracker" --root "$root"
  fi
}
start_servers() {
  start alice "$bin/alice" --root "$root"
  start bob "$bin/bob" --root "$root"
  start_tracker
  wait_port "$port_a"; wait_port "$port_b"; wait_port "$port_t"
}
# Runs charlie --step 2 under wait4; sets $usage (bench exec line) and $dl (the
# engine's own download time, from charlie's summary line).
run_charlie() {
  local out
  rm -rf "$root/chunks/charlie"
  out=$("$tool" exec -- "$bin/charlie" --step 2 --root "$root" "$@" 2>>"$root/charlie.log")
  usage=$(grep '^exec ' <<<"$out")
  [ "$(field code "$usage")" = 0 ] || { echo "charlie failed: $out" >&2; tail -5 "$root/charlie.log" >&2; exit 1; }
  dl=$(sed -n 's/.* bytes in \([0-9.]*\) s .*/\1/p' <<<"$out")
}

if [ -n "$other_bin" ]; then
  build="programs from $other_bin"
else
  build="commit $(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)"
fi
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
sha=$(grep -q -w sha_ni /proc/cpuinfo && echo "SHA-NI" || echo "no SHA-NI")
echo "machine date=$(date -u +%Y-%m-%dT%H:%MZ) host=\"$(uname -n)\" cores=$(nproc) \
cpu=\"$cpu_model, $sha\" kernel=$(uname -r) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) \
load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" size=$size repeat=$repeat fs=\"tmpfs $shm\" \
build=\"$build\"" >> "$results"

# --- Charlie against the ceiling, per chunk size --------------------------------------
new_root "$work/main"
echo "== making a random file of $size bytes"
"$tool" make-file "$root/files/bench.bin" --size "$size" >/dev/null
first=1
for c in $chunks; do
  chunk=$(bytes "$c")
  echo "== chunks of $chunk bytes"
  "$bin/create_chunks" bench.bin --root "$root" --chunk-size "$chunk" 2>/dev/null
  start_servers
  for rep in $(seq 1 "$repeat"); do
    sink=$("$tool" sink "$root/files/bench.bin" "$root/sink.out")
    sha1=$("$tool" sha1 "$root/files/bench.bin")
    a0=$("$tool" proc "$pid_alice"); b0=$("$tool" proc "$pid_bob")
    run_charlie
    a1=$("$tool" proc "$pid_alice"); b1=$("$tool" proc "$pid_bob")
    # The ceiling again, right after: the machine is shared and its load drifts, so this
    # repeat's ceiling is the mean of the measurements on either side of charlie's run.
    sink2=$("$tool" sink "$root/files/bench.bin" "$root/sink.out")
    sink_mbps=$(awk "BEGIN {print ($(field mbps "$sink") + $(field mbps "$sink2")) / 2}")
    if [ "$rep" = 1 ]; then
      "$bin/check_file" --root "$root" >/dev/null || { echo "charlie's file differs" >&2; exit 1; }
    fi
    merged=$usage merged_dl=$dl
    # The same download without the merged copy: what writing every byte twice costs.
    run_charlie --no-merge
    nomerge=$usage nomerge_dl=$dl
    usage=$merged dl=$merged_dl
    line="charlie chunk=$chunk rep=$rep bytes=$size wall=$(field wall "$usage") dl=$dl \
user=$(field user "$usage") sys=$(field sys "$usage") maxrss_kib=$(field maxrss_kib "$usage") \
alice_cpu=$(awk "BEGIN {print $(field cpu "$a1") - $(field cpu "$a0")}") \
bob_cpu=$(awk "BEGIN {print $(field cpu "$b1") - $(field cpu "$b0")}") \
nm_wall=$(field wall "$nomerge") nm_dl=$nomerge_dl sink_mbps=$sink_mbps sink_before=$(field mbps "$sink") sink_after=$(field mbps "$sink2") \
sha1_mbps=$(field mbps "$sha1")"
    echo "$line" >> "$results"
    echo "   rep $rep: charlie $(field wall "$usage") s (download $dl s, --no-merge \
$(field wall "$nomerge") s), ceiling $sink_mbps MB/s \
($(field mbps "$sink") before, $(field mbps "$sink2") after), SHA-1 $(field mbps "$sha1") MB/s, \
charlie RSS $(field maxrss_kib "$usage") KiB"
  done
  echo "peers chunk=$chunk alice_hwm_kib=$(field hwm_kib "$("$tool" proc "$pid_alice")") \
bob_hwm_kib=$(field hwm_kib "$("$tool" proc "$pid_bob")")" >> "$results"
  if [ "$first" = 1 ]; then
    first=0
    echo "== one peer, 50 concurrent downloaders ($chunk-byte chunks)"
    idle=$("$tool" proc "$pid_alice" --reset-peak)
    load=$("$tool" peer-load "127.0.0.1:$port_a" --chunks-dir "$root/chunks/alice" \
      --clients 50 --per-client 64 --watch "$pid_alice")
    echo "$load clients=50 chunk=$chunk idle_hwm_kib=$(field rss_kib "$idle")" >> "$results"
    echo "   $load"
    echo "== step-3 discovery (UDP $port_u)"
    for _ in $(seq 1 "$repeat"); do
      disc=$("$tool" discover --target "127.0.0.1:$port_u" --expect "127.0.0.1:$port_t" --wait-ms 1000)
      echo "$disc" >> "$results"
      echo "   $disc"
    done
  fi
  stop_all
done
rm -rf "$work/main"

# --- Charlie's memory against file size and chunk count -------------------------------
if [ "$big" -gt 0 ]; then
  # The file, 4 times the file (both in 512 KiB chunks), and the protocol's largest chunk
  # count (65,535, in 16 KiB chunks): what charlie keeps per chunk shows in the last.
  cases=("$size 524288" "$big 524288" "$((65535 * 16384)) 16384")
  for case in "${cases[@]}"; do
    read -r s c <<<"$case"
    # files/ + alice and bob (4/3 of the file with the thirds rule) + charlie's chunks +
    # the merged copy, all on tmpfs; the original is deleted once chunked. 2 GiB spare.
    need_kib=$(( (s / 1024) * 10 / 3 + 2 * 1024 * 1024 ))
    avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    if [ "$avail_kib" -lt "$need_kib" ]; then
      echo "== skipping charlie's RSS on $s bytes: $((avail_kib / 1024)) MiB available, $((need_kib / 1024)) MiB needed"
      continue
    fi
    echo "== charlie's peak RSS on $s bytes in chunks of $c bytes"
    new_root "$work/big"
    "$tool" make-file "$root/files/bench.bin" --size "$s" >/dev/null
    "$bin/create_chunks" bench.bin --root "$root" --chunk-size "$c" 2>/dev/null
    rm "$root/files/bench.bin"
    start_servers
    run_charlie
    echo "big bytes=$s chunk=$c chunks=$(( (s + c - 1) / c )) wall=$(field wall "$usage") dl=$dl \
maxrss_kib=$(field maxrss_kib "$usage")" >> "$results"
    echo "   charlie $(field wall "$usage") s, peak RSS $(field maxrss_kib "$usage") KiB"
    stop_all
    rm -rf "$work/big"
  done
fi

# --- The tracker under load: FILE_INFO of 65,535 chunks --------------------------------
echo "== tracker, 32 concurrent clients, GET_FILE_INFO of 65,535 chunks"
new_root "$work/tracker"
"$tool" manifest "$root/config/file.ini" --chunks 65535 >/dev/null
start_tracker
wait_port "$port_t"
load=$("$tool" tracker-load "127.0.0.1:$port_t" --clients 32 --requests 20 \
  --expect-chunks 65535 --watch "$pid_tracker")
echo "$load clients=32 chunks=65535" >> "$results"
echo "   $load"
stop_all

# --- The tables ------------------------------------------------------------------------
tables=$("$tool" report "$results")
echo
echo "$tables"
cp "$results" "$target/bench-results.txt"
if [ "$docs" = 1 ]; then
  doc="$here/docs/BENCHMARKS.md"
  begin='<!-- bench:begin -->'
  end='<!-- bench:end -->'
  if [ ! -f "$doc" ] || ! grep -q "$begin" "$doc"; then
    printf '# Benchmarks\n\n%s\n%s\n' "$begin" "$end" > "$doc"
  fi
  tmp=$(mktemp "$work/doc.XXXXXX")
  printf '%s\n' "$tables" > "$work/tables.md"
  awk -v b="$begin" -v e="$end" -v t="$work/tables.md" '
    $0 == b { print; while ((getline l < t) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$doc" > "$tmp"
  cp "$tmp" "$doc"
  echo "== wrote docs/BENCHMARKS.md (raw results in target/bench-results.txt)"
fi
