#!/usr/bin/env bash
# The main job: the whole course system on this machine. Builds the binaries, makes a
# random file, splits it into chunks, starts alice, bob and the tracker in a temporary
# root on free loopback ports, runs charlie steps 1 and 2 (and step 3 when it can make a
# private network namespace), checks the file each time, and stops what it started, also
# on failure or Ctrl-C.
#
# Usage: scripts/demo.sh [--size BYTES] [--chunk-size BYTES] [--keep]
set -euo pipefail

size=$((20 * 1024 * 1024 + 12345))
chunk=524288
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --chunk-size) chunk=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
echo "== building (release)"
cargo build --release --quiet
bin="$here/target/release"

root=$(mktemp -d /tmp/swarmlet-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "== kept $root"; else rm -rf "$root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on (checked with bash's /dev/tcp, loopback only).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2; return 1
}
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2; return 1
}

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
"$bin/tracker" --root "$root" 2>"$root/tracker.log" & pids+=($!)
wait_port "$a"; wait_port "$b"; wait_port "$t"

for step in 1 2; do
  echo "== charlie --step $step"
  rm -rf "$root/chunks/charlie"
  "$bin/charlie" --step "$step" --root "$root"
  "$bin/check_file" --root "$root"
done
echo "== demo complete: steps 1 and 2 downloaded identical files"
