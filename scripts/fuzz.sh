#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of network or file input (fuzz/fuzz_targets/).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   Builds all targets, generates the seed corpus (fuzz/seeds.sh), then runs each target
#   (all of them unless named) for SECONDS (default 60), one after another. Prints the
#   executions and the verdict of each; exits 1 if any target crashed (its reproducer is
#   in fuzz/artifacts/<target>/, its log in fuzz/target/logs/<target>.log).
#   Replay a crash: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
#
# The recipe, on the stable toolchain only:
#   - cargo-fuzz (crates.io) drives libFuzzer through the libfuzzer-sys crate, which builds
#     libFuzzer from C++ source: it needs a C++ compiler (Debian's g++).
#   - cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...). RUSTC_BOOTSTRAP=1
#     makes the stable rustc accept them; the AddressSanitizer runtime already ships in
#     stable's rust-std for x86_64-unknown-linux-gnu. No nightly toolchain is needed.
#   - Targets build in release mode with debug assertions, so integer overflow panics.
set -euo pipefail

secs=${1:-60}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift || true
cd "$(dirname "$0")/.."
root=$(pwd)

export RUSTC_BOOTSTRAP=1

# --- What it needs ---------------------------------------------------------------------
need_apt=()
command -v c++ >/dev/null || need_apt+=(g++)
command -v sha1sum >/dev/null || need_apt+=(coreutils)
if ((${#need_apt[@]})); then
    echo "== apt-get install ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz --version '^0.13'
fi

# --- Build and seed ------------------------------------------------------------------
echo "== building fuzz targets ($(cargo fuzz --version), $(rustc --version))"
cargo fuzz build
fuzz/seeds.sh
logs=$root/fuzz/target/logs
mkdir -p "$logs"

if (($# == 0)); then
    mapfile -t targets < <(cargo fuzz list)
else
    targets=("$@")
fi

# --- Run -----------------------------------------------------------------------------
declare -A execs verdict
crashed=0
for t in "${targets[@]}"; do
    dict=()
    case $t in
        peers_ini | file_ini) dict=(-dict="$root/fuzz/dict/ini.dict") ;;
        http_announce) dict=(-dict="$root/fuzz/dict/http.dict") ;;
        bv_lines) dict=(-dict="$root/fuzz/dict/bv.dict") ;;
    esac
    echo "== $t: fuzzing for ${secs}s"
    mkdir -p "fuzz/artifacts/$t"
    status=0
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb also bounds single mallocs.
    cargo fuzz run "$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$logs/$t.log" 2>&1 || status=$?
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    if [[ -z $n ]]; then
        # A crash ends libFuzzer before the final stats: take the last status line.
        n=$(grep -oE '^#[0-9]+' "$logs/$t.log" | tail -1 | tr -d '#')
    fi
    execs[$t]=${n:-0}
    if ((status == 0)); then
        verdict[$t]=ok
    else
        crashed=1
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$logs/$t.log" | tail -1 | cut -d' ' -f5)
        verdict[$t]="CRASHED (exit $status${artifact:+, reproducer $artifact}; log $logs/$t.log)"
        grep -m1 -E 'panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer' -A3 "$logs/$t.log" || true
    fi
    echo "   ${execs[$t]} executions: ${verdict[$t]}"
done

echo
echo "== summary (${secs}s each)"
for t in "${targets[@]}"; do
    printf '%-14s %12s execs  %s\n' "$t" "${execs[$t]}" "${verdict[$t]}"
done
exit "$crashed"
