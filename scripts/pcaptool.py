#!/usr/bin/env python3
"""Rewrite legacy pcap captures for the decode tests (no dependencies beyond the standard library).

Subcommands (input and output are legacy pcap files with Ethernet II link type):
  null IN OUT                 re-encapsulate as BSD loopback (LINKTYPE_NULL, AF_INET in host order)
  raw IN OUT                  strip the link layer (LINKTYPE_RAW)
  midstream IN OUT PORT       drop everything before the first WebSocket frame after the 101
                              response on PORT (a capture that starts after the handshake)
  cut IN OUT MIN_LEN          end the capture in the middle of the first TCP segment of at least
                              MIN_LEN payload bytes (keep the first half of its packet's records)
  reorder IN OUT PORT         on the client->server direction of PORT: swap two data segments,
                              repeat one at once (retransmission) and one after it was ACKed
                              (spurious retransmission)
  ipfrag IN OUT MTU           split every IPv4 packet longer than MTU into IP fragments (DF
                              cleared, the fragments of every other split datagram sent in
                              reverse order), as a link with a small MTU would
  anomalies OUT               synthesize a Socket.IO-over-WebSocket conversation in which every
                              frame breaks one rule (for the anomaly and --strict tests)
  bench OUT MEGABYTES         synthesize a capture of small Socket.IO chat frames over several
                              connections (for the performance benchmark; not committed)
"""
import struct
import sys

LINKTYPE_ETHERNET = 1
LINKTYPE_NULL = 0
LINKTYPE_RAW = 101


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        sys.exit(f"{path}: not a little-endian legacy pcap file (use dumpcap -P)")
    _, _, _, _, snaplen, linktype = struct.unpack("<HHiIII", data[4:24])
    records, off = [], 24
    while off + 16 <= len(data):
        ts_sec, ts_frac, caplen, origlen = struct.unpack("<IIII", data[off : off + 16])
        records.append([ts_sec, ts_frac, data[off + 16 : off + 16 + caplen], origlen])
        off += 16 + caplen
    return magic, snaplen, linktype, records


def write_pcap(path, magic, snaplen, linktype, records):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for ts_sec, ts_frac, pkt, origlen in records:
            f.write(struct.pack("<IIII", ts_sec, ts_frac, len(pkt), origlen))
            f.write(pkt)


def tcp_of(pkt):
    """(src port, dst port, seq, ack, flags, payload) of an Ethernet/IPv4/TCP packet, or None."""
    if len(pkt) < 34 or pkt[12:14] != b"\x08\x00":
        return None
    ihl = (pkt[14] & 0x0F) * 4
    total = struct.unpack(">H", pkt[16:18])[0]
    if pkt[23] != 6:
        return None
    t = 14 + ihl
    sport, dport, seq, ack, off_flags = struct.unpack(">HHIIH", pkt[t : t + 14])
    doff = (off_flags >> 12) * 4
    payload = pkt[t + doff : 14 + total]
    return sport, dport, seq, ack, off_flags & 0x1FF, payload


def cmd_null(src, dst):
    magic, snaplen, lt, recs = read_pcap(src)
    assert lt == LINKTYPE_ETHERNET
    out = [[a, b, struct.pack("<I", 2) + p[14:], o - 10] for a, b, p, o in recs if p[12:14] == b"\x08\x00"]
    write_pcap(dst, magic, snaplen, LINKTYPE_NULL, out)


def cmd_raw(src, dst):
    magic, snaplen, lt, recs = read_pcap(src)
    assert lt == LINKTYPE_ETHERNET
    out = [[a, b, p[14:], o - 14] for a, b, p, o in recs if p[12:14] in (b"\x08\x00", b"\x86\xdd")]
    write_pcap(dst, magic, snaplen, LINKTYPE_RAW, out)


def cmd_midstream(src, dst, port):
    port = int(port)
    magic, snaplen, lt, recs = read_pcap(src)
    start = None
    seen_101 = False
    for i, r in enumerate(recs):
        t = tcp_of(r[2])
        if not t or not t[5]:
            continue
        if t[0] == port and t[5].startswith(b"HTTP/1.1 101"):
            seen_101 = True
            continue
        if seen_101 and not t[5].startswith(b"HTTP/"):
            start = i
            break
    if start is None:
        sys.exit("no WebSocket frame after a 101 response")
    write_pcap(dst, magic, snaplen, lt, recs[start:])


def cmd_cut(src, dst, min_len):
    magic, snaplen, lt, recs = read_pcap(src)
    for i, r in enumerate(recs):
        t = tcp_of(r[2])
        if t and len(t[5]) >= int(min_len):
            write_pcap(dst, magic, snaplen, lt, recs[: i + 1])
            return
    sys.exit(f"no segment with {min_len} payload bytes")


def cmd_reorder(src, dst, port):
    port = int(port)
    magic, snaplen, lt, recs = read_pcap(src)
    # Client -> server data segments after the handshake, of the first connection that has 4.
    by_client = {}
    for i, r in enumerate(recs):
        t = tcp_of(r[2])
        if t and t[1] == port and t[5] and not t[5].startswith(b"GET "):
            by_client.setdefault(t[0], []).append(i)
    data_idx = next((v for v in by_client.values() if len(v) >= 4), [])
    if len(data_idx) < 4:
        sys.exit("need at least 4 client data segments")
    a, b, c, d = data_idx[0], data_idx[1], data_idx[2], data_idx[3]
    out = [list(r) for r in recs]
    # 1. Swap the contents of segments a and b, keeping the timestamps in order: b arrives first
    #    ("previous segment not captured"), then a fills the hole (out of order).
    out[a][2:], out[b][2:] = recs[b][2:], recs[a][2:]
    # 2. Spurious retransmission: segment d again at the very end, long after it was ACKed.
    last = recs[-1]
    out.append(later(last, recs[d]))
    # 3. Retransmission: segment c again right after itself (before the peer's ACK).
    out.insert(c + 1, later(recs[c], recs[c]))
    write_pcap(dst, magic, snaplen, lt, out)


def cmd_ipfrag(src, dst, mtu):
    mtu = int(mtu)
    magic, snaplen, lt, recs = read_pcap(src)
    assert lt == LINKTYPE_ETHERNET
    out, split, ident = [], 0, 0x4000
    for ts_sec, ts_frac, pkt, origlen in recs:
        if pkt[12:14] != b"\x08\x00" or len(pkt) - 14 <= mtu:
            out.append([ts_sec, ts_frac, pkt, origlen])
            continue
        ihl = (pkt[14] & 0x0F) * 4
        header, payload = bytearray(pkt[14 : 14 + ihl]), pkt[14 + ihl :]
        step = (mtu - ihl) // 8 * 8
        ident += 1
        frags = []
        for off in range(0, len(payload), step):
            chunk = payload[off : off + step]
            more = off + step < len(payload)
            h = bytearray(header)
            struct.pack_into(">H", h, 2, ihl + len(chunk))
            struct.pack_into(">H", h, 4, ident)
            struct.pack_into(">H", h, 6, (0x2000 if more else 0) | (off // 8))
            struct.pack_into(">H", h, 10, 0)
            struct.pack_into(">H", h, 10, checksum(bytes(h)))
            frags.append(pkt[:14] + bytes(h) + chunk)
        if split % 2:
            frags.reverse()
        split += 1
        # Same time stamp as the packet they come from: the capture stays in time order.
        for f in frags:
            out.append([ts_sec, ts_frac, f, len(f)])
    write_pcap(dst, magic, snaplen, lt, out)


def later(when, rec):
    """A copy of record `rec` stamped one microsecond after record `when`."""
    sec, frac = when[0], when[1] + 1
    if frac >= 1_000_000:
        sec, frac = sec + 1, frac - 1_000_000
    return [sec, frac, rec[2], rec[3]]


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b)//2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth_ipv4_tcp(src, dst, sport, dport, seq, ack, flags, payload):
    tcp = struct.pack(">HHIIHHHH", sport, dport, seq, ack, (5 << 12) | flags, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
    ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
    return b"\0" * 12 + b"\x08\x00" + ip + tcp


def ws_frame(payload, opcode=1, mask=None):
    n = len(payload)
    head = bytes([0x80 | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def ws_raw(b0, payload, mask=None, length_form=None):
    """A frame with byte 0 given as is (FIN/RSV/opcode) and an optional forced length form."""
    n = len(payload)
    mbit = 0x80 if mask else 0
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    head = bytes([b0])
    if form == 7:
        head += bytes([mbit | n])
    elif form == 16:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def cmd_anomalies(dst):
    cli, srv = (10, 0, 0, 1), (10, 0, 0, 2)
    cport, sport = 40000, 3001
    seq = {0: 1000, 1: 9000}
    recs = []
    t = [1_700_000_000, 0]

    def send(direction, payload, flags=0x18, skip=0, pause_us=1000):
        seq[direction] = (seq[direction] + skip) & 0xFFFFFFFF
        if direction == 0:
            pkt = eth_ipv4_tcp(cli, srv, cport, sport, seq[0], seq[1], flags, payload)
        else:
            pkt = eth_ipv4_tcp(srv, cli, sport, cport, seq[1], seq[0], flags, payload)
        seq[direction] = (seq[direction] + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        t[1] += pause_us
        recs.append([t[0], t[1], pkt, len(pkt)])

    m = b"\x01\x02\x03\x04"
    seq[0] -= 1
    seq[1] -= 1
    send(0, b"", flags=0x02)  # SYN
    send(1, b"", flags=0x12)  # SYN, ACK
    send(0, b"", flags=0x10)
    send(0, b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 10.0.0.2:3001\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
    # RFC 6455's example key calls for s3pPLMBiTxaQ9kYGzzhZRbK+xOo=; this Accept is wrong.
    send(1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")
    send(1, ws_frame(b'0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'))
    send(0, ws_frame(b"40", mask=m))
    send(1, ws_frame(b'40{"sid":"def"}'))
    send(0, ws_frame(b'42["hi"]'))  # unmasked client frame
    send(1, ws_frame(b'42["hey"]', mask=m))  # masked server frame
    send(0, ws_raw(0x80 | 0x40 | 0x20 | 0x1, b'42["rsv"]', mask=m))  # RSV1+RSV2, nothing negotiated
    send(0, ws_frame(b'42["\xff\xfe"]', mask=m))  # invalid UTF-8
    send(0, ws_raw(0x89, b"p" * 126, mask=m))  # control frame too long
    send(0, ws_raw(0x09, b"ping", mask=m))  # fragmented control frame
    send(0, ws_raw(0x81, b'42["len"]', mask=m, length_form=16))  # non-minimal length
    send(0, ws_raw(0x83, b"??", mask=m))  # reserved opcode
    send(0, ws_frame(b"9oops", mask=m))  # Engine.IO: unknown packet type
    send(0, ws_frame(b"4x", mask=m))  # Socket.IO: unknown packet type
    send(0, ws_raw(0x80, b"more", mask=m))  # continuation without a message
    # Ten bytes never captured, then a frame: the decoder reports the gap and resynchronises.
    send(0, ws_frame(b'42["after the gap"]', mask=m), skip=10)
    # The server ACKs past the hole 300 ms later (no retransmission came): it got the bytes, the
    # capture did not.
    send(1, b"", flags=0x10, pause_us=300_000)
    # Bytes that cannot be a frame header (64-bit length with the top bit set), then a good frame.
    send(0, b"\x81\xff\x80\x00\x00\x00\x00\x00\x00\x05" + m + b"junk!")
    send(0, ws_frame(b'42["recovered"]', mask=m))
    send(0, ws_frame(struct.pack(">H", 1000) + b"bye", opcode=8, mask=m))
    send(1, ws_frame(struct.pack(">H", 1000) + b"bye", opcode=8))
    write_pcap(dst, 0xA1B2C3D4, 262144, LINKTYPE_ETHERNET, recs)


def cmd_bench(dst, megabytes):
    """Chat traffic: N connections to port 3001, clients send 42["send_message",...] masked,
    the server relays 42["receive_message",...] to the other clients; ACK-less, one frame per segment."""
    target = int(megabytes) * 1_000_000
    conns = 10
    client = [(127, 0, 0, 1), None]
    seqs = {}
    recs = []
    t = 1_700_000_000
    us = 0
    size = 24
    for c in range(conns):
        seqs[(c, 0)] = 1000 + c * 7919
        seqs[(c, 1)] = 5000 + c * 104729
    i = 0
    mask = b"\x12\x34\x56\x78"
    while size < target:
        c = i % conns
        msg = f'42["send_message",{{"room":"{c % 3}","author":"user{c}","message":"hello number {i}","time":"16:{i % 60:02d}"}}]'.encode()
        for direction in (0, 1):
            if direction == 0:
                payload = ws_frame(msg, mask=mask)
                sport, dport = 40000 + c, 3001
            else:
                payload = ws_frame(msg.replace(b"send_message", b"receive_message"))
                sport, dport = 3001, 40000 + ((c + 1) % conns)
            cid = c if direction == 0 else (c + 1) % conns
            s = seqs[(cid, direction)]
            a = seqs[(cid, 1 - direction)]
            pkt = eth_ipv4_tcp(client[0], client[0], sport, dport, s, a, 0x18, payload)
            seqs[(cid, direction)] = (s + len(payload)) & 0xFFFFFFFF
            us += 37
            recs.append([t + us // 1_000_000, us % 1_000_000, pkt, len(pkt)])
            size += 16 + len(pkt)
        i += 1
    write_pcap(dst, 0xA1B2C3D4, 262144, LINKTYPE_ETHERNET, recs)
    print(f"{dst}: {len(recs)} packets, {size} bytes")


if __name__ == "__main__":
    cmds = {
        "null": cmd_null,
        "raw": cmd_raw,
        "midstream": cmd_midstream,
        "cut": cmd_cut,
        "reorder": cmd_reorder,
        "ipfrag": cmd_ipfrag,
        "bench": cmd_bench,
        "anomalies": cmd_anomalies,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
