"""Bencoded bodies of the HTTP tracker's replies.

The compact announce reply is the hot path and is written by hand (keys in
bencode's sorted order); every other shape goes through the `bencode.py`
codec. Tests check that the hand-written form equals the codec's.
"""
from __future__ import annotations

from typing import Dict, Optional

import bencode

from tracker.core import AnnounceResult, ScrapeEntry


def bencode_string(value: bytes) -> bytes:
    return b"%d:%s" % (len(value), value)


def announce_trailer(tracker_id: Optional[bytes], warning: Optional[bytes]) -> bytes:
    """The optional keys that sort after `peers6`, encoded once at start-up."""
    out = b""
    if tracker_id:
        out += b"10:tracker id" + bencode_string(tracker_id)
    if warning:
        out += b"15:warning message" + bencode_string(warning)
    return out


def encode_announce_compact(result: AnnounceResult, external_ip: bytes,
                            trailer: bytes = b"") -> bytes:
    """BEP 23 compact peers (IPv4) and BEP 7 `peers6` (IPv6), plus BEP 24's
    `external ip`. `trailer` comes from `announce_trailer`."""
    peers = result.peers
    v6 = result.peers6
    head = (b"d8:completei%de11:external ip%d:%s10:incompletei%de8:intervali%de"
            b"12:min intervali%de5:peers%d:" % (
                result.complete, len(external_ip), external_ip, result.incomplete,
                result.interval_s, result.min_interval_s, len(peers)))
    if v6:
        return b"".join((head, peers, b"6:peers6%d:" % len(v6), v6, trailer, b"e"))
    return b"".join((head, peers, trailer, b"e"))


def encode_announce_dicts(result: AnnounceResult, external_ip: bytes, no_peer_id: bool,
                          tracker_id: Optional[bytes], warning: Optional[bytes]) -> bytes:
    """BEP 3's original form: `peers` as a list of dicts with ip, peer id and port."""
    peers = []
    for peer in result.peer_list or ():
        entry = {b"ip": peer.ip.encode("ascii"), b"port": peer.port}
        if not no_peer_id:
            entry[b"peer id"] = peer.peer_id
        peers.append(entry)
    body = {
        b"complete": result.complete,
        b"incomplete": result.incomplete,
        b"interval": result.interval_s,
        b"min interval": result.min_interval_s,
        b"external ip": external_ip,
        b"peers": peers,
    }
    if tracker_id:
        body[b"tracker id"] = tracker_id
    if warning:
        body[b"warning message"] = warning
    return bencode.encode(body)


def encode_scrape(files: Dict[bytes, ScrapeEntry], min_interval_s: int) -> bytes:
    """BEP 48: `files` keyed by the raw 20-byte info hash."""
    return bencode.encode({
        b"files": {
            info_hash: {b"complete": e.complete, b"downloaded": e.downloaded,
                        b"incomplete": e.incomplete}
            for info_hash, e in files.items()
        },
        b"flags": {b"min_request_interval": min_interval_s},
    })


def encode_failure(message: str) -> bytes:
    return bencode.encode({b"failure reason": message.encode("utf-8")})

