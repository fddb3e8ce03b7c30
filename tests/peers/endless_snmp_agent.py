"""An SNMPv2c agent whose interface walk never ends.

Answers GET with a sysName and sysUpTime, and every GETBULK with the next
max-repetitions rows of each requested column, forever (ifIndex 1, 2, 3, …
with no end of table). Enough BER for that, nothing more. Prints the port it
listens on, then serves until killed.
"""
import socket
import sys


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + head + body


def read(buf, at):
    tag = buf[at]
    n = buf[at + 1]
    at += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[at:at + k], "big")
        at += k
    return tag, buf[at:at + n], at + n


def integer(v):
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def oid_decode(b):
    out = [b[0] // 40, b[0] % 40]
    v = 0
    for x in b[1:]:
        v = (v << 7) | (x & 0x7F)
        if not x & 0x80:
            out.append(v)
            v = 0
    return out


def oid_encode(o):
    body = bytes([o[0] * 40 + o[1]])
    for v in o[2:]:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, body)


# ifTable and ifXTable entries: a column is one more component, then ifIndex.
TABLES = [[1, 3, 6, 1, 2, 1, 2, 2, 1], [1, 3, 6, 1, 2, 1, 31, 1, 1, 1]]


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    print(s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        _, msg, _ = read(data, 0)
        _, version, at = read(msg, 0)
        _, community, at = read(msg, at)
        pdu_tag, pdu, _ = read(msg, at)
        _, req_id, at = read(pdu, 0)
        _, nonrep, at = read(pdu, at)
        _, reps, at = read(pdu, at)
        _, vbl, _ = read(pdu, at)
        oids = []
        at = 0
        while at < len(vbl):
            _, vb, at = read(vbl, at)
            _, o, _ = read(vb, 0)
            oids.append(oid_decode(o))
        out = b""
        if pdu_tag == 0xA0:  # GET: sysName, sysUpTime
            for o in oids:
                value = tlv(0x43, (12345).to_bytes(4, "big")) if o[-2] == 3 else tlv(0x04, b"endless")
                out += tlv(0x30, oid_encode(o) + value)
        else:  # GETBULK: the next rows of every column, forever
            r = int.from_bytes(reps, "big")
            for k in range(r):
                for o in oids:
                    width = next((len(t) + 1 for t in TABLES if o[: len(t)] == t), None)
                    if width is None:
                        out += tlv(0x30, oid_encode(o) + tlv(0x82, b""))  # endOfMibView
                        continue
                    base, last = o[:width], (o[width] if len(o) > width else 0)
                    nxt = base + [last + 1 + k]
                    out += tlv(0x30, oid_encode(nxt) + tlv(0x04, b"interface name %d" % (last + 1 + k)))
        resp = tlv(0xA2, tlv(0x02, req_id) + integer(0) + integer(0) + tlv(0x30, out))
        s.sendto(tlv(0x30, tlv(0x02, version) + tlv(0x04, community) + resp), peer)


main()
