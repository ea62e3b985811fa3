"""Seed inputs for each harness: well-formed requests the fuzzer mutates from.

The first byte of each input steers the harness (see harnesses.py)."""
from __future__ import annotations

import struct
from typing import Dict, List
from urllib.parse import quote_from_bytes

SEED_HASH = bytes(range(1, 21))
PEER_ID = b"-FZ0001-000000000001"


def http_seeds() -> List[bytes]:
    h, p = quote_from_bytes(SEED_HASH).encode(), quote_from_bytes(PEER_ID).encode()
    announce = b"/announce?info_hash=%s&peer_id=%s&port=6881&uploaded=0&downloaded=0&left=10" % (h, p)
    requests = [
        b"GET %s&compact=1&numwant=5 HTTP/1.1\r\nHost: t\r\n\r\n" % announce,
        b"GET %s&event=started&compact=0 HTTP/1.0\r\n\r\n" % announce,
        b"GET %s&event=stopped HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % announce,
        b"GET /scrape?info_hash=%s&info_hash=%s HTTP/1.1\r\nHost: t\r\n\r\n" % (h, h),
        b"HEAD /scrape?info_hash=%s HTTP/1.1\r\n\r\nGET /scrape HTTP/1.1\r\n\r\n" % h,
        b"GET %s HTTP/1.1\r\nX-Forwarded-For: 10.9.9.9\r\n\r\nGET %s&numwant=1 HTTP/1.1\r\n\r\n"
        % (announce, announce),
        b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    ]
    return [bytes([steer]) + r for steer, r in zip((0, 17, 32, 64, 96, 128, 3), requests)]


def udp_seeds() -> List[bytes]:
    from_client = struct.pack(">QII", 0x41727101980, 0, 1)
    announce = struct.pack(">8sII20s20sQQQIIIiH", b"\0" * 8, 1, 2, SEED_HASH, PEER_ID,
                           0, 10, 0, 2, 0, 0, -1, 6881)
    scrape = struct.pack(">8sII", b"\0" * 8, 2, 3) + SEED_HASH * 2
    return [b"\x00" + from_client, b"\x01" + announce, b"\x03" + announce + b"\x02\x05/ann\x00",
            b"\x01" + scrape, b"\x05" + announce + b"\xff\xff" + scrape, b"\x02" + from_client]


def line_seeds() -> List[bytes]:
    h = SEED_HASH.hex().encode()
    sessions = [
        b"HELLO node=edge-1 port=8080 region=eu\nHAVE %s size=10 name=a.mp4\nPEERS %s\nQUIT\n" % (h, h),
        b"HELLO node=edge-2\r\nWANT %s\r\nSCRAPE %s %s\r\nSTATS\r\nPING\r\n" % (h, h, h),
        b"HELLO node=edge-3 port=9000\nHAVE %s\nDONE %s\nDROP %s\nSUBSCRIBE %s\nUNSUBSCRIBE %s\n"
        % (h, h, h, h, h),
        b"PEERS %s numwant=3\nBOGUS\n\n" % h,
    ]
    return [bytes([steer]) + s for steer, s in zip((0, 9, 130, 24), sessions)]


SEEDS: Dict[str, List[bytes]] = {"http": http_seeds(), "udp": udp_seeds(), "line": line_seeds()}
