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

# --- BitTorrent: peer wire (2 bytes of piece count, then the stream) -----------------
IH=$(sha1_of infohash)
HS="13 $(hex_of 'BitTorrent protocol') 0000000000100005 $IH $(hex_of -SW0100-abcdefghijkl)"
# 10 pieces: a 2-byte bitfield, spare bits zero.
MSGS="00000000 0000000100 0000000101 0000000102 0000000103 0000000504 00000007"
MSGS+=" 0000000305 a040 0000000d06 00000001 00004000 00004000"
MSGS+=" 0000000c07 00000002 00000003 090807 0000000d08 00000009 00000000 00000001 000000030 91ae1"
bytes "000a $HS $MSGS" | seed peer_wire handshake-and-messages
bytes "000a 0000000504 00000009 0000000302 a0 0000000314 0102 ffffffff05" | seed peer_wire bad-then-huge
bytes "0000 0000000105 0000000d06 00000000 00000000 00100000" | seed peer_wire no-pieces
bytes "8f 0123456789abcdef" | seed peer_wire mse-opening

# --- UDP tracker: requests (mode byte: bit 0 valid connection id, bit 1 IPv6) ----------
CONNECT="$(printf '%016x' 4497486125440) 00000000 00000007"
ANN="0000000000000000 00000001 00000009 $IH $(hex_of -SW0100-abcdefghijkl) $(printf '%016x' 0) $(printf '%016x' 100) $(printf '%016x' 0) 00000002 00000000 00000000 ffffffff 1ae1"
bytes "00 $CONNECT" | seed udp_tracker connect
bytes "01 $ANN" | seed udp_tracker announce
bytes "03 $ANN" | seed udp_tracker announce-v6
bytes "01 0000000000000000 00000002 0000000a $IH $(sha1_of other)" | seed udp_tracker scrape
bytes "01 0000000000000000 00000005 0000000b" | seed udp_tracker unknown-action
# ... and replies (mode byte: bit 0 IPv6 peers, bits 1-7 hashes scraped)
bytes "00 00000001 00000009 00000708 00000002 00000001 7f0000011ae1 0a0000011ae2" | seed udp_reply announce
bytes "01 00000001 00000009 00000708 00000000 00000001 00000000000000000000000000000001 1ae1" | seed udp_reply announce-v6
bytes "04 00000002 0000000a 00000001 00000005 00000002 00000000 00000000 00000000" | seed udp_reply scrape-2
bytes "00 00000003 00000009 $(hex_of 'unknown torrent')" | seed udp_reply error

# --- HTTP tracker: queries and request heads ---------------------------------------------
Q="info_hash=%12%34Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A&peer_id=-TR3000-abcdefghijkl&port=51413&uploaded=0&downloaded=0&left=100&event=started&compact=1&numwant=80"
printf '%s' "$Q" | seed http_announce announce-query
printf 'GET /announce?%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: x\r\n\r\n' "$Q" | seed http_announce announce-head
printf 'GET /announce?%s&compact=0&no_peer_id=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' "$Q" | seed http_announce dict-head
printf 'GET /scrape?info_hash=%%124Vx%%9A%%BC%%DE%%F1%%23Eg%%89%%AB%%CD%%EF%%124Vx%%9A HTTP/1.1\r\n\r\n' | seed http_announce scrape-head
printf 'GET /stats.json HTTP/1.1\r\nContent-Length: 5\r\n\r\n' | seed http_announce stats

# --- bvTorrent (selector byte: 0 descriptor, 1 client list, 2 client to tracker) -----------
D224=$(printf abcd | sha224sum | cut -c1-56)
{ printf '\x00a b.bin\n4\n2\n4,%s\n1,%s\n' "$D224" "$(printf e | sha224sum | cut -c1-56)"; } | seed bv_lines descriptor
printf '\x01\x033\n127.0.0.1:5000,101\n[::1]:5001,111\n1.2.3.4:x,000\n' | seed bv_lines client-list
printf '\x02\x035000,101\nUPDATE_MASK\n111\nCLIENT_LIST\nDISCONNECT!\n' | seed bv_lines session

echo "seeds written under $(pwd)/corpus/"
