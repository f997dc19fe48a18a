# The BitTorrent part of the LAN lab (scripts/lab.sh --bt), sourced by lab.sh once the
# namespaces and the LAN exist: it uses lab.sh's roles, ip, lab, bindir, pids, sw,
# size, cut, cut_after, ns, in_ns and die. See lab.sh --help.

# Every peer listens here; peer1's is also the torrents' tracker.
bt_port=6881
# How long the lab waits for the swarm (and later the restarted peer) to finish.
bt_deadline_s=300

# bt_start ROLE: starts ROLE's `swarmlet peer` in its namespace, logs in $lab/ROLE.*.
bt_start() {
  local r=$1 n
  n=$(ns "$r")
  RUST_LOG=${RUST_LOG:-info} ip netns exec "$n" "$bindir/swarmlet" peer --dir "$lab/$r" \
    --listen "0.0.0.0:$bt_port" >>"$lab/$r.out" 2>>"$lab/$r.log" &
  pids+=($!)
  bt_pid[$r]=$!
}

# bt_wait_listening ROLE: until ROLE's port accepts, seen from peer1's host.
bt_wait_listening() {
  for _ in $(seq 1 200); do
    if in_ns peer1 bash -c "exec 3<>/dev/tcp/${ip[$1]}/$bt_port" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "$1's swarmlet peer does not listen on ${ip[$1]}:$bt_port (see $lab/$1.log)"
}

# bt_done ROLE: true when ROLE holds both files identical to peer1's.
bt_done() {
  local f
  for f in "${bt_files[@]}"; do
    cmp -s "$lab/peer1/data/$f" "$lab/$1/data/$f" || return 1
  done
}

# bt_held ROLE: bytes ROLE's data files have on disk (verified pieces are written with
# positioned writes into sparse files, so allocated blocks grow with the download).
bt_held() {
  local f total=0
  for f in "${bt_files[@]}"; do
    if [ -e "$lab/$1/data/$f" ]; then total=$((total + $(stat -c '%b * %B' "$lab/$1/data/$f"))); fi
  done
  echo "$total"
}

# bt_wait_done ROLE...: until every ROLE is done, or dies after bt_deadline_s.
bt_wait_done() {
  local end r left
  end=$((SECONDS + bt_deadline_s))
  while :; do
    left=()
    for r in "$@"; do bt_done "$r" || left+=("$r"); done
    [ "${#left[@]}" = 0 ] && return 0
    for r in "${left[@]}"; do
      kill -0 "${bt_pid[$r]}" 2>/dev/null || die "$r's swarmlet peer exited before it was done (see $lab/$r.log)"
    done
    [ "$SECONDS" -lt "$end" ] || die "not done after ${bt_deadline_s}s: ${left[*]} (see $lab/*.log)"
    sleep 0.2
  done
}

bt_lab() {
  declare -gA bt_pid
  bt_files=(one.bin two.bin)
  local r f start took others=() stop_rc=0
  for r in "${roles[@]}"; do mkdir -p "$lab/$r/torrents" "$lab/$r/data"; done
  echo "== making two random files ($size and $((size + 4321)) bytes) on peer1"
  head -c "$size" /dev/urandom >"$lab/peer1/data/one.bin"
  head -c "$((size + 4321))" /dev/urandom >"$lab/peer1/data/two.bin"
  for f in "${bt_files[@]}"; do
    "$bindir/swarmlet" create "$lab/peer1/data/$f" -o "$lab/${f%.bin}.torrent" \
      -t "http://${ip[peer1]}:$bt_port/announce" --piece-length 65536 2>>"$lab/create.log" >/dev/null \
      || die "swarmlet create $f failed: $(cat "$lab/create.log")"
    for r in "${roles[@]}"; do cp "$lab/${f%.bin}.torrent" "$lab/$r/torrents/"; done
  done
  echo "   two torrents announcing to peer1's built-in tracker http://${ip[peer1]}:$bt_port/announce"

  echo "== starting swarmlet peer on every host"
  start=$SECONDS
  bt_start peer1
  bt_wait_listening peer1
  for r in "${roles[@]:1}"; do bt_start "$r"; done
  for r in "${roles[@]:1}"; do bt_wait_listening "$r"; done

  for r in "${roles[@]:1}"; do [ "$r" = "$cut" ] || others+=("$r"); done
  if [ -n "$cut" ]; then
    local want held=0 total
    total=$((2 * size + 4321))
    want=$(( ${cut_after:-$(( total / 4 / 1024 ))} * 1024 ))
    for _ in $(seq 1 6000); do
      held=$(bt_held "$cut")
      [ "$held" -ge "$want" ] && break
      kill -0 "${bt_pid[$cut]}" 2>/dev/null || die "$cut's swarmlet peer exited (see $lab/$cut.log)"
      sleep 0.01
    done
    bt_done "$cut" && die "$cut finished before it could be cut off (try a larger --size or a lower --rate)"
    ip -n "$sw" link set "p-$cut" down
    kill -KILL "${bt_pid[$cut]}"
    wait "${bt_pid[$cut]}" 2>/dev/null || true
    echo "   cut $cut off the LAN and killed it (SIGKILL) holding $((held / 1024)) of $((total / 1024)) KiB"
  fi

  bt_wait_done "${others[@]}"
  took=$((SECONDS - start))
  echo "== ${#others[@]} downloading peers hold both files, identical to peer1's (${took}s)"

  if [ -n "$cut" ]; then
    ip -n "$sw" link set "p-$cut" up
    echo "== $cut back on the LAN, restarted"
    start=$SECONDS
    bt_start "$cut"
    bt_wait_done "$cut"
    echo "   $cut done from its resume records ($((SECONDS - start))s)"
  fi

  echo "== stopping every peer (SIGTERM)"
  for r in "${roles[@]}"; do kill -TERM "${bt_pid[$r]}"; done
  for r in "${roles[@]}"; do
    local rc=0
    for _ in $(seq 1 100); do kill -0 "${bt_pid[$r]}" 2>/dev/null || break; sleep 0.1; done
    kill -0 "${bt_pid[$r]}" 2>/dev/null && die "$r did not stop within 10 s of SIGTERM"
    wait "${bt_pid[$r]}" || rc=$?
    if [ "$rc" != 0 ]; then echo "   $r exited with $rc (see $lab/$r.log)"; stop_rc=1; fi
  done
  [ "$stop_rc" = 0 ] || die "a peer did not stop cleanly"
  for r in "${roles[@]}"; do bt_done "$r" || die "$r's files changed after the stop"; done
  echo "== lab complete: 2 torrents identical on ${#roles[@]} hosts, every peer stopped cleanly"
}
