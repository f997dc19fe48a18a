# Helpers shared by demo.sh and bench.sh (source it; it defines functions only): loopback
# ports, probed with bash's /dev/tcp so nothing but 127.0.0.1 is ever contacted, and the
# stopping of the servers a script started.

# A loopback port nothing listens on, below the kernel's ephemeral range: the benchmark
# opens thousands of outgoing connections, and a server port picked among their local
# ports could be taken by one of them.
read -r _eph_low _ < /proc/sys/net/ipv4/ip_local_port_range
_port_low=10000
_port_span=$(( _eph_low > _port_low + 1000 ? _eph_low - _port_low : 20000 ))
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((_port_low + RANDOM % _port_span))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2; return 1
}

# Waits up to 30 s until something accepts on 127.0.0.1:PORT (a tracker reads all of
# file.ini before it listens); on failure shows the last lines of $root/*.log.
wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listening on port $1; server logs:" >&2
  tail -n 3 "${root:-.}"/*.log >&2 || true
  return 1
}

# Stops the processes whose pids are in the array `pids` (the ones this script started,
# and only those), then waits for them so that none outlives the script.
stop_started() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
