#!/usr/bin/env bash
# The README's test command: installs the Debian packages the tests need when they are
# missing, then runs every test file (see usage below).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/test.sh [CARGO TEST ARGUMENTS...]

Runs the whole test suite on this machine: first checks that every outside program
the tests run is installed, installing the missing Debian packages when run as root
(apt-get), or naming them and the apt-get line to run when not; then runs
`cargo test --no-fail-fast` over every test file, passing on any arguments:

  scripts/test.sh                    # everything (a few minutes)
  scripts/test.sh --test steps       # one test file
  scripts/test.sh --lib download     # one library module's unit tests

Many tests create network namespaces or mount a small tmpfs and need root.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Every Debian package the tests need: "package:program" and which tests need it. A
# package counts as installed when its program is on PATH, or at the absolute path given
# (GNU time: `time` alone is also a shell keyword; python3-libtorrent: when
# Debian's /usr/bin/python3 imports libtorrent, checked below). Add new ones here.
packages=(
  "iproute2:ip"                        # step3, lab, faults: network namespaces (ip), tc
  "iproute2:tc"                        # lab: --rate (tc tbf)
  "nftables:nft"                       # lab: --loss drops frames with an nftables rule
  "iptables:iptables"                  # lab: --delay queues packets (NFQUEUE)
  "python3:python3"                    # interop (course.py), chunk_tools, lab --delay
  "util-linux:unshare"                 # faults, chunk_tools: private mount namespace
  "mount:mount"                        # faults, chunk_tools: a small tmpfs (disk full)
  "mktorrent:mktorrent"                # BitTorrent tests: .torrent files made by others
  "transmission-cli:transmission-create" # BitTorrent interop: Transmission
  "transmission-cli:transmission-show" # BitTorrent interop: Transmission's torrent reader
  "transmission-cli:transmission-cli"  # bt_transmission, bt_tracker_clients: Transmission
  "aria2:aria2c"                       # BitTorrent interop: aria2
  "opentracker:opentracker"            # BitTorrent tests: a third-party tracker
  "iperf3:iperf3"                      # bench_tools: the loopback ceiling (also scripts/bench.sh)
  "time:/usr/bin/time"                 # bt_torrent_hostile: peak RSS of each process (GNU time)
  "python3-libtorrent:"                # BitTorrent interop: libtorrent (Debian python)
)

has_libtorrent() { /usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1; }

missing=()
for entry in "${packages[@]}"; do
  pkg=${entry%%:*} prog=${entry#*:}
  if [ -n "$prog" ]; then
    command -v "$prog" >/dev/null 2>&1 && continue
    why="program $prog not found"
  else
    has_libtorrent && continue
    why="/usr/bin/python3 -c 'import libtorrent' fails"
  fi
  case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg"); echo "test.sh: missing $pkg ($why)" ;; esac
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: error: the tests need ${#missing[@]} Debian package(s) that are not installed; as root run:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
  # python3-libtorrent is the one package whose check is not a program on PATH.
  if ! has_libtorrent; then
    echo "test.sh: error: python3-libtorrent is installed but /usr/bin/python3 cannot import libtorrent" >&2
    exit 1
  fi
fi

echo "== cargo test --no-fail-fast $*"
exec cargo test --no-fail-fast "$@"
