#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/seed-*, from the
# test vectors of docs/PROTOCOL.md and the course's INI layouts.
# Idempotent; nothing binary is committed (fuzz/corpus is git-ignored).
# Usage: fuzz/seeds.sh            (run from anywhere)
set -euo pipefail
cd "$(dirname "$0")"

# bytes HEX... : the bytes of hex digits (spaces ignored) on stdout.
bytes() {
    local hex
    hex=$(printf '%s' "$*" | tr -d ' \n')
    if (( ${#hex} % 2 )); then echo "odd hex: $hex" >&2; exit 1; fi
    # printf's own \x escapes; the format has no % since it holds hex digits only.
    # shellcheck disable=SC2059
    printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')"
}
# seed TARGET NAME : stdin into corpus/TARGET/seed-NAME.
seed() {
    mkdir -p "corpus/$1"
    cat > "corpus/$1/seed-$2"
}
hex_of() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
sha1_of() { printf '%s' "$1" | sha1sum | cut -c1-40; }
u16() { printf '%04x' "$1"; }
u32() { printf '%08x' "$1"; }

# --- The spec's test vectors -------------------------------------------------------
H=$(sha1_of abc)                    # a9993e36...: any 20 bytes will do
ALICE="7f000001 1f41 0000"          # 127.0.0.1:8001 + 2 padding bytes
BOB="7f000001 1f42 0000"            # 127.0.0.1:8002
declare -A V
V[discover]="01 00 0000 00000002"
V[get_file_info]="01 02 0000 00000002"
V[get_chunk]="01 04 0000 00000007 $H"
V[error_not_found]="01 06 0000 00000003 0002 0000"
V[error_invalid_request]="01 06 0000 00000003 0001 0000"
TRACKER_BODY="7f000001 1f40 0007 $(hex_of tracker) 00"
V[tracker_info]="01 01 0000 00000006 $TRACKER_BODY"
# CHUNK of "hello": 20 + 4 + 5 + 3 padding = 32-byte body, 40 bytes = 10 words.
V[chunk_hello]="01 05 0000 0000000a $(sha1_of hello) 00000005 $(hex_of hello) 000000"
V[chunk_empty]="01 05 0000 00000008 $(sha1_of '') 00000000"
# FILE_INFO "test.bin", 7 chunks split as create_chunks does (3 alice, 2 both, 2 bob):
# 9 (chunk, peer) pairs, 8+4+8+7*24+9*8 = 260 bytes, msg_length 65.
FI_BODY="0007 0008 $(hex_of test.bin)"
for k in 1 2 3 4 5 6 7; do
    case $k in
        1|2|3) FI_BODY+=" $(sha1_of "chunk$k") 0001 0000 $ALICE" ;;
        4|5) FI_BODY+=" $(sha1_of "chunk$k") 0002 0000 $ALICE $BOB" ;;
        *) FI_BODY+=" $(sha1_of "chunk$k") 0001 0000 $BOB" ;;
    esac
done
V[file_info]="01 03 0000 $(u32 65) $FI_BODY"
[[ $(bytes "${V[file_info]}" | wc -c) == 260 ]] || { echo "FILE_INFO vector is not 260 bytes" >&2; exit 1; }
# The same FILE_INFO as one tracker sends it: labelled type 5.
V[file_info_as_type5]="01 05 0000 $(u32 65) $FI_BODY"
# A CHUNK header announcing 524,288 content bytes (msg_length 131080), body missing.
V[chunk_header_512k]="01 05 0000 00020008"

ALL=""
for name in "${!V[@]}"; do
    bytes "${V[$name]}" | seed decode "$name"
    ALL+=" ${V[$name]}"
done

# read_message: a 4-byte word (limit << 1 | tolerance) before a stream of messages.
STREAM="${V[discover]} ${V[get_chunk]} ${V[error_not_found]} ${V[tracker_info]} ${V[chunk_hello]} ${V[file_info]}"
bytes "$(u32 $(( (1 << 20) << 1 ))) $STREAM" | seed read_message strict-1mib
bytes "$(u32 $(( (300 << 1) | 1 ))) ${V[file_info_as_type5]} ${V[get_file_info]}" | seed read_message tolerant-300
bytes "$(u32 $(( 64 << 1 ))) ${V[discover]} ${V[file_info]}" | seed read_message over-limit
bytes "$(u32 $(( 4096 << 1 ))) ${V[chunk_header_512k]}" | seed read_message truncated

# chunk_reply: a u16 max_content before a stream of replies.
bytes "$(u16 4096) ${V[chunk_hello]} ${V[error_not_found]} ${V[chunk_empty]}" | seed chunk_reply replies
bytes "$(u16 5) ${V[chunk_hello]}" | seed chunk_reply exact-limit
bytes "$(u16 4) ${V[chunk_hello]}" | seed chunk_reply over-limit
bytes "$(u16 4096) ${V[get_file_info]} ${V[chunk_header_512k]}" | seed chunk_reply unexpected

# file_info / tracker_info: bodies only (the targets add the header); file_info's first
# byte picks strict type 3 (even) or tolerant type 5 (odd).
bytes "00 $FI_BODY" | seed file_info test-bin
bytes "01 $FI_BODY" | seed file_info test-bin-type5
bytes "00 0000 0000" | seed file_info empty
bytes "$TRACKER_BODY" | seed tracker_info tracker
bytes "c0a80001 2328 0000" | seed tracker_info no-name

# --- INI files, in the course's layout --------------------------------------------
seed peers_ini course <<'INI'
[tracker]
ip_address = 127.0.0.1
port_number = 8000

[alice]
ip_address = 127.0.0.1
port_number = 8001

[bob]
ip_address = 127.0.0.1
port_number = 8002
INI
printf '[tracker]\r\nip_address=10.0.0.1\r\nport_number: 9000\r\n; comment\r\n[charlie]\r\nip_address = 192.168.1.20 \r\nport_number = 65535\r\n' \
    | seed peers_ini crlf-colon

{
    printf '[description]\nfilename = test.bin\nchunks_count = 7\n\n[chunks]\n'
    for k in 1 2 3 4 5 6 7; do printf '%d = %s\n' $((k - 1)) "$(sha1_of "chunk$k")"; done
    printf '\n[chunks_peers]\n'
    for k in 1 2 3 4 5 6 7; do
        case $k in 1|2|3) p=alice ;; 4|5) p="alice, bob" ;; *) p=bob ;; esac
        printf '%d = %s\n' $((k - 1)) "$p"
    done
} | seed file_ini course
printf '# made by hand\n[description]\nfilename: my file.bin\nchunks_count = 1\n[chunks]\n0 = %s\n[chunks_peers]\n0 = bob,alice,\n' \
    "$(sha1_of x | tr a-f A-F)" | seed file_ini by-hand

# --- Chunk hashes as text ---------------------------------------------------------
printf '%s' "$H" | seed hash_text hex
printf '%s.bin' "$H" | seed hash_text file-name
printf '%s.bin' "$H" | tr a-f A-F | seed hash_text upper-file-name

echo "seeds written under $(pwd)/corpus/"
