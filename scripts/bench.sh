#!/usr/bin/env bash
# Benchmark: charlie's speed against this machine's ceiling; usage() below says what it does and how.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/bench.sh [--quick] [options]

Measures how fast charlie --step 2 moves a file, against this machine's physical
ceiling measured in the same run, and prints the tables. Nothing tracked changes
unless --write-docs is given.

  scripts/bench.sh --quick           a quick look, 30 s to 1 min once built: 256 MiB,
                                     512 KiB chunks, 3 pairs (up to 5), iperf3 for 1 s,
                                     one round of the course implementations, no
                                     memory-against-size runs
  scripts/bench.sh                   the full run, 6 to 15 minutes: 1 GiB; 512 KiB,
                                     1 MiB and 2 MiB chunks; 3 pairs each (up to 9);
                                     3 rounds of the course implementations; charlie's
                                     memory on 4 GiB and on 65,535 chunks; the loads
  scripts/bench.sh --write-docs      the full run, then its tables into
                                     docs/BENCHMARKS.md (between its markers)
  scripts/bench.sh --profile         only a profile: perf record -g of charlie on a
                                     512 MiB step-2 download (Debian package linux-perf)
  scripts/bench.sh --bt-tracker      only the BitTorrent tracker: swarmlet tracker beside
                                     opentracker in one run (UDP and HTTP announces/s
                                     from 4 and 16 clients, median of 5 repeats, and
                                     peak RSS with 10,000 swarms of 50 peers), about 5
                                     minutes; with --write-docs its tables go into
                                     docs/BENCHMARKS.md (between its own markers);
                                     with --quick, 2 repeats of 2 s

Options (after --quick, they override it):
  --size N           file size; K, M, G are powers of 2 (default 1G)
  --chunks "A B"     chunk sizes (default "512K 1M 2M")
  --repeat N         pairs per chunk size (default 3)
  --max-repeat N     bound on the pairs added while the ratios' spread is wide (default 9)
  --iperf-secs N     seconds of each iperf3 measurement (default 2)
  --anchor-repeat N  rounds of the course implementations side by side; 0 skips (default 3)
  --big-size N|0     charlie's memory on a file this large too (default 4 x --size; 0 skips)
  --write-docs       write the tables into docs/BENCHMARKS.md
  --keep             keep the temporary root on /dev/shm
  --bin DIR          alice, bob, tracker, charlie, create_chunks from DIR (another build,
                     e.g. an older commit's); the measuring tool is always this tree's
  -h, --help         this text

A pair is one ceiling measurement and, right after it, one charlie run (and one
charlie --no-merge run). The ceiling is the lower of loopback TCP as iperf3 measures
it (127.0.0.1 only, bounded by --iperf-secs) and one plain copy of the same file into
the same tmpfs. Each pair gives a ratio; the table shows the median of the pair ratios
(min-max), and when their spread is wider than 15 % of the median, more pairs are run,
up to --max-repeat. A pair whose charlie beat its ceiling is flagged.

Needs iperf3 (Debian package iperf3; installed when missing if run as root) and, for
the course implementations, python3. Works in a temporary root on /dev/shm, on free
loopback ports; starts only its own processes and stops them by pid. Raw result lines:
target/bench-results.txt.
USAGE
}

size=1G
repeat=3
max_repeat=9
chunks="512K 1M 2M"
big=""
iperf_secs=2
anchor_repeat=3
loads=1
docs=0
keep=0
profile=0
bt_tracker=0
quick=0
other_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; size=256M; chunks=512K; repeat=3; max_repeat=5; iperf_secs=1; anchor_repeat=1
             big=0; shift ;;
    --size) size=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --max-repeat) max_repeat=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    --big-size) big=$2; shift 2 ;;
    --iperf-secs) iperf_secs=$2; shift 2 ;;
    --anchor-repeat) anchor_repeat=$2; shift 2 ;;
    --write-docs) docs=1; shift ;;
    --profile) profile=1; shift ;;
    --bt-tracker) bt_tracker=1; shift ;;
    --keep) keep=1; shift ;;
    --bin) other_bin=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
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
[ "$max_repeat" -ge "$repeat" ] || max_repeat=$repeat
[ "$iperf_secs" -ge 1 ] && [ "$iperf_secs" -le 30 ] ||
  { echo "bench.sh: --iperf-secs must be 1 to 30" >&2; exit 2; }

# Installs Debian package $1 (for program $2) when the program is missing: as root with
# apt-get; otherwise names the package and stops.
need() {
  command -v "$2" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing $1 (for $2)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null; }
  fi
  command -v "$2" >/dev/null 2>&1 ||
    { echo "bench.sh: $2 is missing: apt-get install $1 (as root), then run again" >&2; exit 1; }
}
# Replaces what is between the lines $2 and $3 of file $1 (made if missing) with the
# text in file $4.
write_between() {
  local doc=$1 begin=$2 end=$3 text=$4 tmp
  if [ ! -f "$doc" ]; then printf '# Benchmarks\n' > "$doc"; fi
  if ! grep -qF -- "$begin" "$doc"; then printf '\n%s\n%s\n' "$begin" "$end" >> "$doc"; fi
  tmp=$(mktemp)
  awk -v b="$begin" -v e="$end" -v t="$text" '
    $0 == b { print; while ((getline l < t) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$doc" > "$tmp"
  cp "$tmp" "$doc"
  rm -f "$tmp"
}

# --- The BitTorrent tracker against opentracker (--bt-tracker): its own short run -------
if [ "$bt_tracker" = 1 ]; then
  need opentracker opentracker
  need python3 python3
  here=$(cd "$(dirname "$0")/.." && pwd)
  cd "$here"
  echo "== building swarmlet (release)"
  cargo build --release --bin swarmlet
  target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  target=${target:-"$here/target"}
  swarmlet=${other_bin:-"$target/release"}/swarmlet
  if [ "$quick" = 1 ]; then reps=(--repeat 2 --seconds 2); else reps=(--repeat 5 --seconds 3); fi
  echo "== swarmlet tracker beside opentracker on 127.0.0.1, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  tables=$(mktemp)
  trap 'rm -f "$tables"' EXIT
  # The script starts both trackers itself, ends them by pid, and prints the tables.
  {
    echo "Run of $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores, load average" \
      "$(cut -d' ' -f1-3 /proc/loadavg) at the start; \`${swarmlet#"$here"/}\` built with" \
      "\`cargo build --release\`; opentracker $(dpkg-query -W -f '${Version}' opentracker 2>/dev/null || echo '(version unknown)')."
    echo
    python3 "$here/scripts/bench_tracker.py" --swarmlet "$swarmlet" "${reps[@]}"
  } > "$tables"
  echo
  cat "$tables"
  if [ "$docs" = 1 ]; then
    write_between "$here/docs/BENCHMARKS.md" '<!-- bench-tracker:begin -->' \
      '<!-- bench-tracker:end -->' "$tables"
    echo "== wrote the tracker tables into docs/BENCHMARKS.md"
  fi
  exit 0
fi

if [ "$profile" = 1 ]; then need linux-perf perf; else need iperf3 iperf3; fi
iperf3=$(command -v iperf3 || echo iperf3)

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
# Runs a charlie --step 2 under wait4 in root $1 (the rest: its command line, after
# `charlie`'s own program); sets $usage (bench exec line) and $dl (the engine's own
# download time, from our charlie's summary line; empty for another charlie).
run_client() {
  local r=$1 out; shift
  rm -rf "$r/chunks/charlie"
  out=$("$tool" exec -- "$@" --step 2 --root "$r" 2>>"$r/charlie.log")
  usage=$(grep '^exec ' <<<"$out")
  [ "$(field code "$usage")" = 0 ] ||
    { echo "charlie failed: $*: $out" >&2; tail -5 "$r/charlie.log" >&2; exit 1; }
  dl=$(sed -n 's/.* bytes in \([0-9.]*\) s .*/\1/p' <<<"$out")
}
run_charlie() { run_client "$root" "$bin/charlie" "$@"; }
# One measurement of the physical ceiling: sets $iperf_mbps and $copy_mbps.
measure_ceiling() {
  iperf_mbps=$(field mbps "$("$tool" iperf3 --secs "$iperf_secs" --program "$iperf3")")
  copy_mbps=$(field mbps "$("$tool" copy "$1" "$work/copy.out")")
}

if [ "$profile" = 1 ]; then
  # --- Only a profile: where charlie's time goes ----------------------------------------
  psize=$(bytes "${PROFILE_SIZE:-512M}")
  new_root "$work/profile"
  "$tool" make-file "$root/files/bench.bin" --size "$psize" >/dev/null
  "$bin/create_chunks" bench.bin --root "$root" --chunk-size "$(bytes "${chunks%% *}")" 2>/dev/null
  start_servers
  echo "== perf record -g: charlie --step 2, $psize bytes, ${chunks%% *} chunks"
  perf record -q -g -o "$work/perf.data" -- "$bin/charlie" --step 2 --root "$root" \
    2>>"$root/charlie.log" >/dev/null
  stop_all
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 \
    --stdio -g none 2>/dev/null | grep -v '^$' > "$target/bench-profile.txt"
  perf report -i "$work/perf.data" --children --sort symbol --percent-limit 3 \
    --stdio -g none 2>/dev/null | grep -v '^$' > "$target/bench-profile-children.txt"
  sed -n '1,60p' "$target/bench-profile.txt"
  echo "== self time above; with children: target/bench-profile-children.txt"
  exit 0
fi

if [ -n "$other_bin" ]; then
  build="programs from $other_bin"
else
  build="commit $(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)"
fi
python=$(command -v /usr/bin/python3 || command -v python3 || true)
reference="$here/tests/reference/course.py"
[ -n "$python" ] && [ -f "$reference" ] || anchor_repeat=0
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
sha=$(grep -q -w sha_ni /proc/cpuinfo && echo "SHA-NI" || echo "no SHA-NI")
echo "machine date=$(date -u +%Y-%m-%dT%H:%MZ) host=\"$(uname -n)\" cores=$(nproc) \
cpu=\"$cpu_model, $sha\" kernel=$(uname -r) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) \
load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" size=$size repeat=$repeat max_repeat=$max_repeat \
fs=\"tmpfs $shm\" build=\"$build\" iperf3=\"$("$iperf3" --version | head -1 | cut -d' ' -f1-2) -t $iperf_secs\" \
python=\"course.py on $(${python:-false} --version 2>&1 || echo 'no python')\"" >> "$results"

# --- Charlie against the ceiling, per chunk size --------------------------------------
new_root "$work/main"
main=$root
echo "== making a random file of $size bytes"
"$tool" make-file "$root/files/bench.bin" --size "$size" >/dev/null
first=1
for c in $chunks; do
  chunk=$(bytes "$c")
  echo "== chunks of $chunk bytes: pairs of (ceiling, charlie)"
  "$bin/create_chunks" bench.bin --root "$root" --chunk-size "$chunk" 2>/dev/null
  start_servers
  rep=0
  while :; do
    rep=$((rep + 1))
    measure_ceiling "$root/files/bench.bin"
    sha1=$("$tool" sha1 "$root/files/bench.bin")
    a0=$("$tool" proc "$pid_alice"); b0=$("$tool" proc "$pid_bob")
    run_charlie
    a1=$("$tool" proc "$pid_alice"); b1=$("$tool" proc "$pid_bob")
    if [ "$rep" = 1 ]; then
      "$bin/check_file" --root "$root" >/dev/null || { echo "charlie's file differs" >&2; exit 1; }
    fi
    merged=$usage merged_dl=$dl
    # The same download without the merged copy: what writing every byte twice costs.
    run_charlie --no-merge
    nomerge=$usage nomerge_dl=$dl
    usage=$merged dl=$merged_dl
    echo "charlie chunk=$chunk rep=$rep bytes=$size wall=$(field wall "$usage") dl=$dl \
user=$(field user "$usage") sys=$(field sys "$usage") maxrss_kib=$(field maxrss_kib "$usage") \
alice_cpu=$(awk "BEGIN {print $(field cpu "$a1") - $(field cpu "$a0")}") \
bob_cpu=$(awk "BEGIN {print $(field cpu "$b1") - $(field cpu "$b0")}") \
nm_wall=$(field wall "$nomerge") nm_dl=$nomerge_dl iperf_mbps=$iperf_mbps copy_mbps=$copy_mbps \
sha1_mbps=$(field mbps "$sha1")" >> "$results"
    sp=$("$tool" spread "$results" --chunk "$chunk")
    echo "   pair $rep: iperf3 $iperf_mbps MB/s, copy $copy_mbps MB/s; charlie \
$(field wall "$usage") s (--no-merge $(field wall "$nomerge") s), RSS $(field maxrss_kib "$usage") KiB; \
ratios so far $(field median "$sp") ($(field min "$sp")-$(field max "$sp"))"
    [ "$rep" -ge "$repeat" ] || continue
    if [ "$(field wide "$sp")" = 1 ] && [ "$rep" -lt "$max_repeat" ]; then
      echo "   spread $(field range "$sp") of the median is wide: one more pair"
      continue
    fi
    break
  done
  echo "peers chunk=$chunk alice_hwm_kib=$(field hwm_kib "$("$tool" proc "$pid_alice")") \
bob_hwm_kib=$(field hwm_kib "$("$tool" proc "$pid_bob")")" >> "$results"
  if [ "$first" = 1 ]; then
    first=0
    if [ "$loads" = 1 ]; then
      echo "== one peer, 50 concurrent downloaders ($chunk-byte chunks)"
      idle=$("$tool" proc "$pid_alice" --reset-peak)
      load=$("$tool" peer-load "127.0.0.1:$port_a" --chunks-dir "$root/chunks/alice" \
        --clients 50 --per-client 64 --watch "$pid_alice")
      echo "$load clients=50 chunk=$chunk idle_hwm_kib=$(field rss_kib "$idle")" >> "$results"
      echo "   $load"
    fi
    echo "== step-3 discovery (UDP $port_u)"
    for _ in $(seq 1 "$repeat"); do
      disc=$("$tool" discover --target "127.0.0.1:$port_u" --expect "127.0.0.1:$port_t" --wait-ms 1000)
      echo "$disc" >> "$results"
      echo "   $disc"
    done
    if [ "$anchor_repeat" -gt 0 ]; then
      # The course's reference implementation on the same file, same chunks: its peers
      # and tracker in a root of their own (own ports, the same chunk directories).
      echo "== the course implementations side by side ($anchor_repeat round(s))"
      main_ports="$port_t $port_a $port_b"
      new_root "$work/py"
      py=$root
      cp "$main/config/file.ini" "$py/config/"
      ln -s "$main/chunks/alice" "$py/chunks/alice"
      ln -s "$main/chunks/bob" "$py/chunks/bob"
      start py_alice "$python" "$reference" peer alice --root "$py"
      start py_bob "$python" "$reference" peer bob --root "$py"
      start py_tracker "$python" "$reference" tracker --no-udp --root "$py"
      wait_port "$port_a"; wait_port "$port_b"; wait_port "$port_t"
      root=$main
      for round in $(seq 1 "$anchor_repeat"); do
        measure_ceiling "$main/files/bench.bin"
        line="   round $round: ceiling $iperf_mbps / $copy_mbps MB/s;"
        for combo in "swarmlet swarmlet" "course.py swarmlet" "swarmlet course.py" "course.py course.py"; do
          read -r client servers <<<"$combo"
          r=$([ "$servers" = swarmlet ] && echo "$main" || echo "$py")
          if [ "$client" = swarmlet ]; then
            run_client "$r" "$bin/charlie"
          else
            run_client "$r" "$python" "$reference" charlie
          fi
          if [ "$round" = 1 ]; then
            cmp -s "$r/chunks/charlie/bench.bin" "$main/files/bench.bin" ||
              { echo "$client charlie from $servers peers: the file differs" >&2; exit 1; }
          fi
          echo "anchor rep=$round chunk=$chunk bytes=$size client=$client servers=$servers \
wall=$(field wall "$usage") user=$(field user "$usage") sys=$(field sys "$usage") \
maxrss_kib=$(field maxrss_kib "$usage") iperf_mbps=$iperf_mbps copy_mbps=$copy_mbps" >> "$results"
          rm -rf "$r/chunks/charlie"
          line="$line $client/$servers $(field wall "$usage") s"
        done
        echo "$line"
      done
      read -r port_t port_a port_b <<<"$main_ports"
    fi
  fi
  stop_all
  root=$main
done
rm -rf "$work/main" "$work/py"

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
  printf '%s\n' "$tables" > "$work/tables.md"
  write_between "$here/docs/BENCHMARKS.md" '<!-- bench:begin -->' '<!-- bench:end -->' \
    "$work/tables.md"
  echo "== wrote docs/BENCHMARKS.md (raw results in target/bench-results.txt)"
fi
