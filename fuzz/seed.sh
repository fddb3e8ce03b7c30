#!/usr/bin/env bash
# Seeds the fuzz corpora from ../shared/corpus (never copied into the repo):
# every capture for read_capture, and each capture's datagrams, framed as
# decode_messages expects, for decode_messages.
set -euo pipefail
cd "$(dirname "$0")"
src="${SPILLWAY_CORPUS:-../../shared/corpus}"
mkdir -p corpus/read_capture corpus/decode_messages
find "$src" -name '*.pcap' | while read -r f; do cp "$f" "corpus/read_capture/$(basename "$f")"; done
python3 - "$src" <<'PY'
import sys, struct, pathlib, hashlib
src = pathlib.Path(sys.argv[1])
def datagrams(b):
    # Classic pcap, Ethernet or raw IPv4; enough for seeding.
    if b[:4] not in (b'\xd4\xc3\xb2\xa1', b'\xa1\xb2\xc3\xd4'): return
    le = b[:4] == b'\xd4\xc3\xb2\xa1'; e = '<' if le else '>'
    link = struct.unpack(e + 'I', b[20:24])[0]; i = 24
    while i + 16 <= len(b):
        incl = struct.unpack(e + 'I', b[i+8:i+12])[0]; pkt = b[i+16:i+16+incl]; i += 16 + incl
        ip = pkt[14:] if link == 1 else pkt
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17: continue
        ihl = (ip[0] & 15) * 4
        yield ip[ihl+8:]
for f in src.rglob('*.pcap'):
    msgs = list(datagrams(f.read_bytes()))[:8]
    if not msgs: continue
    framed = b''.join(bytes([1]) + struct.pack('>H', len(m)) + m for m in msgs)
    out = pathlib.Path('corpus/decode_messages') / hashlib.sha1(framed).hexdigest()
    out.write_bytes(framed)
PY
