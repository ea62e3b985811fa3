"""Query strings as raw bytes: `%XX` escapes decoded, everything else literal.

BitTorrent puts binary info hashes and peer ids in the query string, so it is
parsed as bytes. A literal `+` is the byte 0x2B (not a space, unlike HTML
forms), and an escape that is not two hex digits is kept as it is.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from tracker.cache import BoundedCache

_HEX_DIGITS = "0123456789abcdefABCDEF"
# Every two-hex-digit escape body, in any letter case, to its byte: one dict
# look-up per escape instead of int(..., 16) and a bytes constructor.
_ESCAPES: Dict[bytes, bytes] = {
    (a + b).encode("ascii"): bytes([int(a + b, 16)])
    for a in _HEX_DIGITS for b in _HEX_DIGITS
}


def unquote(raw: bytes) -> bytes:
    """Decode `%XX` escapes in `raw`; leave every other byte as it is."""
    if b"%" not in raw:
        return raw
    pieces = raw.split(b"%")
    out = [pieces[0]]
    escapes = _ESCAPES
    for piece in pieces[1:]:
        byte = escapes.get(piece[:2])
        if byte is None:
            out.append(b"%")
            out.append(piece)
        else:
            out.append(byte)
            out.append(piece[2:])
    return b"".join(out)


# Decoded values by their escaped form. Info hashes and peer ids repeat across
# announces (a swarm's hash on every announce, a peer's id every interval), so
# most look-ups hit.
_UNQUOTED = BoundedCache()


def unquote_cached(raw: bytes) -> bytes:
    """`unquote`, remembering recent results."""
    value = _UNQUOTED.get(raw)
    if value is None:
        value = _UNQUOTED.put(raw, unquote(raw))
    return value


def parse_announce_query(query: bytes) -> Dict[bytes, bytes]:
    """Parameters of an announce, last value of each key, values still escaped.

    The announce reads a handful of values; only those are unescaped (with
    `unquote_cached`), by the caller. Escaped keys (`info%5Fhash`) are rare
    and legal: they take the slower full parse."""
    # A plain loop: faster than dict() over a list of partitions on both runtimes.
    params = {}
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        params[key] = value
    if b"%" in b"&".join(params):
        params = {unquote(k): v for k, v in params.items()}
    return params


def parse_query(query: bytes) -> Tuple[Dict[bytes, bytes], List[bytes]]:
    """Split a query string into its parameters.

    Returns (last value of each key, every `info_hash` value in order): the
    announce reads single values, a BEP 48 scrape reads many info hashes.
    """
    params: Dict[bytes, bytes] = {}
    info_hashes: List[bytes] = []
    if not query:
        return params, info_hashes
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if b"%" in key:
            key = unquote(key)
        if b"%" in value:
            value = unquote(value)
        if key == b"info_hash":
            info_hashes.append(value)
        params[key] = value
    return params, info_hashes
