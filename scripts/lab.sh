#!/usr/bin/env bash
# The LAN lab, every role on its own host; usage() below says what it does and how.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/lab.sh [options]
  --peers N          peers on the LAN: alice, bob, then peer3..peerN (default 2)
  --size BYTES       size of the random file (default 8 MiB + 12345)
  --chunk-size BYTES chunk size (default 524288)
  --steps LIST       charlie steps to run, comma-separated (default 1,2,3)
  --loss PCT         drop PCT% (integer 0-100) of the frames crossing the LAN, both
                     ways, with an nftables rule on the bridge (numgen random)
  --rate MBIT        limit each peer's uplink to MBIT Mbit/s (tc tbf)
  --delay MS         hold every IPv4 packet crossing the LAN for MS ms (a round trip
                     takes 2 x MS). This kernel has no netem qdisc (nor nft's queue
                     expression), so an iptables NFQUEUE rule in the switch namespace
                     (bridged packets pass its FORWARD chain) hands packets to
                     scripts/lab_delay.py, which releases each one MS ms later, in
                     order (needs iptables and python3)
  --cut NAME         cut peer NAME off the LAN (its bridge port goes down, like a pulled
                     cable) during the last step, once charlie holds --cut-after
                     chunks; every chunk is then put on every peer so the others can
                     finish the download
  --cut-after N      chunks charlie must hold before the cut (default: a quarter)
  --timeout-ms MS    charlie's --timeout-ms: how soon a silent peer is given up
                     (default 2000, so that a cut peer is noticed quickly)
  --bin DIR          use the binaries in DIR instead of building them (release)
  --keep             keep the lab's files (logs, chunks) instead of deleting them

Needs root (namespaces, veth, bridge). Never touches the host's own interfaces,
routes or firewall: every link, address, route, qdisc and nftables or iptables rule is
created inside the lab's own namespaces (`ip -n NS ...`, `ip netns exec NS ...`), and
deleting the namespaces deletes all of them. Only a SIGKILL can leave some behind:
`ip netns list` shows them as swl<pid>-*, and `ip netns del NAME` removes each.

The LAN lab: every role on its own host. Creates one network namespace per role
(tracker, alice, bob, charlie, and more peers when asked) plus one "switch" namespace
holding a bridge; each role's eth0 is a veth into that bridge, with an address of
10.41.7.0/24. Writes a peers.ini for that LAN, runs the real binaries inside the
namespaces, runs charlie steps 1, 2 and 3 (step 3 finds the tracker by broadcast to
255.255.255.255:9000 on the lab LAN, with no configuration file), checks the file
after each, and removes everything it created on exit (trap), also on failure or
Ctrl-C.
USAGE
}

peers=2
size=$((8 * 1024 * 1024 + 12345))
chunk=524288
steps=1,2,3
loss=0
rate=
delay=
cut=
cut_after=
timeout_ms=2000
bindir=
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --chunk-size) chunk=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --loss) loss=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --cut) cut=$2; shift 2 ;;
    --cut-after) cut_after=$2; shift 2 ;;
    --timeout-ms) timeout_ms=$2; shift 2 ;;
    --bin) bindir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "lab.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "lab.sh: $*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$peers" && [ "$peers" -ge 2 ] && [ "$peers" -le 50 ] || die "--peers must be 2..50"
is_uint "$loss" && [ "$loss" -le 100 ] || die "--loss must be an integer percentage 0..100"
if [ -n "$rate" ]; then is_uint "$rate" && [ "$rate" -ge 1 ] || die "--rate must be a whole number of Mbit/s"; fi
[ -z "$cut_after" ] || is_uint "$cut_after" || die "--cut-after must be a number of chunks"
if [ -n "$delay" ]; then
  is_uint "$delay" && [ "$delay" -ge 1 ] && [ "$delay" -le 10000 ] || die "--delay must be 1..10000 ms"
fi
[[ $steps =~ ^[123](,[123])*$ ]] || die "--steps must be a comma-separated list of 1, 2, 3"
[ "$(id -u)" = 0 ] || die "needs root: it creates network namespaces, veth pairs and a bridge (try sudo)"
# needs PROGRAM PACKAGE [WHY]: stops with the program and its Debian package when missing.
needs() { command -v "$1" >/dev/null || die "${3:+$3 }needs the program $1 (Debian package $2): apt-get install $2, or run scripts/test.sh as root"; }
needs ip iproute2; needs tc iproute2
if [ "$loss" -gt 0 ]; then needs nft nftables --loss; fi
if [ -n "$delay" ]; then needs python3 python3 --delay; needs iptables iptables --delay; fi

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bindir" ]; then
  echo "== building (release; the first build takes about 2 minutes)"
  (cd "$here" && cargo build --release)
  bindir="$here/target/release"
fi
bindir=$(cd "$bindir" && pwd)
for b in alice bob peer tracker charlie create_chunks check_file; do
  [ -x "$bindir/$b" ] || die "no $b binary in $bindir"
done

# Names: unique per run (the pid), so that labs running at once never meet.
prefix="swl$$"
subnet=10.41.7
sw="$prefix-sw"
roles=(tracker alice bob)
for i in $(seq 3 "$peers"); do roles+=("peer$i"); done
roles+=(charlie)
declare -A ip
ip[tracker]=$subnet.1
ip[charlie]=$subnet.100
ip[alice]=$subnet.11
ip[bob]=$subnet.12
for i in $(seq 3 "$peers"); do ip[peer$i]=$subnet.$((10 + i)); done
peer_names=(); for r in "${roles[@]}"; do case $r in tracker|charlie) ;; *) peer_names+=("$r") ;; esac; done
if [ -n "$cut" ]; then
  printf '%s\n' "${peer_names[@]}" | grep -qx -- "$cut" || die "--cut $cut: not a peer of this lab (${peer_names[*]})"
fi

lab=$(mktemp -d /tmp/swarmlet-lab.XXXXXX)
root="$lab/root"
created=()   # namespaces this run created, deleted on exit
pids=()      # processes this run started, killed by pid on exit
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${created[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "== kept $lab"; else rm -rf "$lab"; fi
  echo "== removed namespaces ${prefix}-*"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "== lab $prefix in $lab"

ns() { echo "$prefix-$1"; }
in_ns() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }
# Starts a program in a role's namespace in the background, stderr to LOG. `ip netns
# exec` execs the program, so $! is the program's own pid: the one cleanup kills.
spawn_in() { local n log=$2; n=$(ns "$1"); shift 2; ip netns exec "$n" "$@" 2>"$log" & pids+=($!); }

# The switch: a namespace holding only a bridge.
ip netns add "$sw"; created+=("$sw")
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
ip -n "$sw" link set lo up
for r in "${roles[@]}"; do
  n=$(ns "$r")
  ip netns add "$n"; created+=("$n")
  # Created inside the switch namespace, its peer end moved straight into the role's:
  # the pair never exists in the host's namespace.
  ip -n "$sw" link add "p-$r" type veth peer name eth0 netns "$n"
  ip -n "$sw" link set "p-$r" master br0 up
  ip -n "$n" link set lo up
  ip -n "$n" addr add "${ip[$r]}/24" dev eth0
  ip -n "$n" link set eth0 up
  # The default route makes 255.255.255.255 leave through the LAN.
  ip -n "$n" route add default dev eth0
  printf '   %-8s %-12s netns %s\n' "$r" "${ip[$r]}" "$n"
done
if [ "$loss" -gt 0 ]; then
  # One rule on the bridge drops frames at random, whichever hosts they go between.
  ip netns exec "$sw" nft -f - <<NFT
table bridge swarmlet_lab {
  chain forward {
    type filter hook forward priority 0; policy accept;
    numgen random mod 100 < $loss counter drop
  }
}
NFT
  echo "   LAN drops $loss% of frames (nftables on the bridge)"
fi
if [ -n "$delay" ]; then
  # Bridged IPv4 packets go through the switch namespace's iptables FORWARD chain only
  # if br_netfilter says so there (the kernel's default); the lab reads it, never sets it.
  [ "$(ip netns exec "$sw" sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)" = 1 ] \
    || die "--delay needs net.bridge.bridge-nf-call-iptables = 1 in the lab's namespaces"
  # The delayer binds queue 0 before the rule exists: a queued packet with no listener
  # would be dropped.
  spawn_in sw "$lab/delay.log" python3 "$here/scripts/lab_delay.py" "$delay" 0
  for _ in $(seq 1 100); do grep -q holding "$lab/delay.log" 2>/dev/null && break; sleep 0.05; done
  grep -q holding "$lab/delay.log" || die "lab_delay.py did not start: $(cat "$lab/delay.log")"
  ip netns exec "$sw" iptables -A FORWARD -j NFQUEUE --queue-num 0
  echo "   LAN holds every IPv4 packet $delay ms (iptables NFQUEUE + lab_delay.py)"
fi
if [ -n "$rate" ]; then
  for r in "${peer_names[@]}"; do
    tc -n "$(ns "$r")" qdisc add dev eth0 root tbf rate "${rate}mbit" burst 64kb latency 100ms
  done
  echo "   each peer's uplink limited to $rate Mbit/s (tbf)"
fi

# The course root, shared by the roles' programs through the filesystem.
mkdir -p "$root/config" "$root/files" "$root/chunks"
{
  echo "[tracker]"; echo "ip_address = ${ip[tracker]}"; echo "port_number = 8000"
  port=8001
  for r in "${peer_names[@]}"; do
    echo; echo "[$r]"; echo "ip_address = ${ip[$r]}"; echo "port_number = $port"
    port=$((port + 1))
  done
} > "$root/config/peers.ini"
peer_port() { awk -v s="[$1]" '$0==s{f=1;next} /^\[/{f=0} f&&$1=="port_number"{print $3}' "$root/config/peers.ini"; }

echo "== making a random file of $size bytes and splitting it"
head -c "$size" /dev/urandom > "$root/files/lab.bin"
"$bindir/create_chunks" lab.bin --root "$root" --chunk-size "$chunk" \
  --peers "$(IFS=,; echo "${peer_names[*]}")" 2>"$lab/create_chunks.log"
nchunks=$(awk -F' *= *' '$1=="chunks_count"{print $2}' "$root/config/file.ini")
if [ -n "$cut" ]; then
  # Every chunk on every peer, and file.ini saying so: whoever is cut, the others can
  # serve the whole file.
  for r in "${peer_names[@]}"; do
    for o in "${peer_names[@]}"; do cp -n "$root/chunks/$o"/*.bin "$root/chunks/$r/" 2>/dev/null || true; done
  done
  all=$(IFS=,; echo "${peer_names[*]}" | sed 's/,/, /g')
  awk -v all="$all" '/^\[/{s=$0} s=="[chunks_peers]" && /=/{sub(/=.*/, "= " all)} {print}' \
    "$root/config/file.ini" > "$root/config/file.ini.new"
  mv "$root/config/file.ini.new" "$root/config/file.ini"
  echo "   $nchunks chunks, every one on every peer (for --cut)"
else
  echo "   $nchunks chunks"
fi

wait_port() { # role ip port: waits from charlie's host until something accepts there
  for _ in $(seq 1 200); do
    if in_ns charlie bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "nothing listening on $1:$2 (see $lab/*.log)"
}

echo "== starting the tracker and the peers, each on its own host"
for r in "${peer_names[@]}"; do
  case $r in
    alice|bob) RUST_LOG=${RUST_LOG:-debug} spawn_in "$r" "$lab/$r.log" "$bindir/$r" --root "$root" ;;
    *) RUST_LOG=${RUST_LOG:-debug} spawn_in "$r" "$lab/$r.log" "$bindir/peer" --name "$r" --root "$root" ;;
  esac
done
# Bound to 0.0.0.0: the tracker must announce the address charlie reaches it at.
spawn_in tracker "$lab/tracker.log" "$bindir/tracker" --root "$root" --bind 0.0.0.0
wait_port "${ip[tracker]}" 8000
for r in "${peer_names[@]}"; do wait_port "${ip[$r]}" "$(peer_port "$r")"; done

# The wait for charlie's progress runs on builtins only (no sleep, find or $(...)): when
# a Ctrl-C lands just as a short-lived foreground child exits normally, bash takes it
# that the child handled the signal and drops it (bash's "wait and cooperative exit"),
# so a loop forking every 10 ms could now and then ignore a Ctrl-C.
exec {nap_fd}<> <(:)   # a pipe nobody writes to: `read -t` on it is a builtin sleep
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }
hex40=$(printf '[0-9a-f]%.0s' {1..40})
# Sets $have to the verified chunks charlie holds: files named by a 40-hex-digit SHA-1
# (not the merged file).
# Chunks charlie holds in $1: chunk files, and what its partial file lab.bin.part-<S>
# has allocated (each verified chunk is written there once; holes take no blocks).
count_chunks() {
  local f
  have=0
  for f in "$1"/$hex40.bin; do
    if [ -e "$f" ]; then have=$((have + 1)); fi
  done
  for f in "$1"/lab.bin.part-*; do
    if [ -e "$f" ]; then have=$((have + $(stat -c '%b * %B' "$f") / chunk)); fi
  done
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

last_step=${steps##*,}
for step in ${steps//,/ }; do
  # Steps 1 and 2 read the lab's config/; step 3 runs in a root holding nothing at all.
  if [ "$step" = 3 ]; then croot="$lab/charlie3"; mkdir -p "$croot"; else croot="$root"; fi
  rm -rf "$croot/chunks/charlie"
  echo "== charlie --step $step on ${ip[charlie]}"
  args=(--step "$step" --root "$croot" --timeout-ms "$timeout_ms")
  start=$(now_ms)
  if [ -n "$cut" ] && [ "$step" = "$last_step" ]; then
    spawn_in charlie "$lab/charlie-$step.log" "$bindir/charlie" "${args[@]}"
    cpid=${pids[-1]}
    want=${cut_after:-$(( (nchunks + 3) / 4 ))}
    have=0
    for ((i = 0; i < 6000; i++)); do
      count_chunks "$croot/chunks/charlie"
      if [ "$have" -ge "$want" ] || ! kill -0 "$cpid" 2>/dev/null; then break; fi
      nap 0.01
    done
    kill -0 "$cpid" 2>/dev/null || die "charlie finished before $cut could be cut off (had $have chunks; try a larger --size or a lower --rate)"
    ip -n "$sw" link set "p-$cut" down
    echo "   cut $cut off the LAN after charlie had $have of $nchunks chunks"
    rc=0; wait "$cpid" || rc=$?
    cat "$lab/charlie-$step.log" >&2
    [ "$rc" = 0 ] || die "charlie --step $step failed (exit $rc) after $cut was cut off"
  else
    rc=0
    in_ns charlie "$bindir/charlie" "${args[@]}" 2>"$lab/charlie-$step.log" || rc=$?
    cat "$lab/charlie-$step.log" >&2
    [ "$rc" = 0 ] || die "charlie --step $step failed (exit $rc)"
  fi
  took=$(( $(now_ms) - start ))
  cmp -s "$root/files/lab.bin" "$croot/chunks/charlie/lab.bin" \
    || die "step $step: chunks/charlie/lab.bin differs from files/lab.bin"
  echo "== step $step: file identical ($took ms)"
  if [ "$step" = 3 ]; then
    grep -E 'heard tracker|using tracker' "$lab/charlie-$step.log" | sed 's/^/   /' || true
  fi
done
if [ "$loss" -gt 0 ]; then
  dropped=$(ip netns exec "$sw" nft list chain bridge swarmlet_lab forward \
    | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
  echo "== the LAN dropped ${dropped:-?} frames"
fi
if [ -n "$cut" ]; then
  served=$(grep -c 'sent chunk' "$lab/$cut.log" || true)
  echo "== $cut served $served chunks in the last step's run before the cut (debug log)"
fi
echo "== lab complete: steps ${steps} downloaded identical files across ${#roles[@]} hosts"
