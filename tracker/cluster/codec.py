"""What instances write to Redis: a change batch as bytes, and snapshot rows.

A batch goes into the shared stream as one entry with three fields: `o`, the
instance it came from; `t`, when it was published (its clock); `d`, the peer
changes packed as records; `x`, the rare ones (content, operator changes) as
JSON. Only what another instance needs to answer requests is carried: the
compact address, seeder or leecher, last seen and door, not byte counters.

    U key(40) seen(<d) flags(B) width(B) compact   peer joined or changed
    S key(40) seen(<d)                             only its last-seen time
    R key(40)                                      peer left (at the entry's t)
    C key(40) at(<d)                               peer completed the content

key is info_hash + peer_id; flags is the door code, plus 0x80 for a seeder.
A snapshot row (field key, per-shard hash) is seen(<d) flags(B) compact.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Dict, Iterator, List, Optional, Tuple

import attr

from tracker.core import changes as ch
from tracker.core.swarm import DOOR_CODES

SEEDER_FLAG = 0x80
_SEEN_FLAGS = struct.Struct("<dB")
_TIME = struct.Struct("<d")
KEY_WIDTH = 40

# Operator changes by name, for the JSON part.
_OPERATOR = {cls.__name__: cls for cls in ch.OPERATOR_CHANGES}


def peer_flags(door: str, seeder: bool) -> int:
    return DOOR_CODES.get(door, 0) | (SEEDER_FLAG if seeder else 0)


def encode_peers(batch: ch.ChangeBatch, compact_of) -> bytes:
    """The peer part of a batch. `compact_of(ip, port)` gives the compact address."""
    out = bytearray()
    pack = _SEEN_FLAGS.pack
    for key, row in batch.peers.items():
        ip, port, left, _up, _down, last_seen, door = row
        compact = compact_of(ip, port)
        out += b"U"
        out += key[0]
        out += key[1]
        out += pack(last_seen, peer_flags(door, left == 0))
        out.append(len(compact))
        out += compact
    for key, last_seen in batch.seen.items():
        out += b"S" + key[0] + key[1] + _TIME.pack(last_seen)
    for key in batch.removed:
        out += b"R" + key[0] + key[1]
    for info_hash, peer_id, at in batch.completions:
        out += b"C" + info_hash + peer_id + _TIME.pack(at)
    return bytes(out)


def decode_peers(data: bytes) -> Iterator[Tuple[bytes, bytes, bytes, Any]]:
    """(kind, info_hash, peer_id, detail): detail is (seen, flags, compact) for
    U, a time for S and C, None for R. Raises ValueError on a damaged record."""
    pos, end = 0, len(data)
    while pos < end:
        if pos + 41 > end:
            raise ValueError("truncated record")
        kind = data[pos:pos + 1]
        info_hash = data[pos + 1:pos + 21]
        peer_id = data[pos + 21:pos + 41]
        pos += 41
        if kind == b"U":
            if pos + 10 > end:
                raise ValueError("truncated record")
            seen, flags = _SEEN_FLAGS.unpack_from(data, pos)
            width = data[pos + 9]
            compact = data[pos + 10:pos + 10 + width]
            if width not in (6, 18) or len(compact) != width:
                raise ValueError("damaged peer record")
            pos += 10 + width
            yield kind, info_hash, peer_id, (seen, flags, compact)
        elif kind in (b"S", b"C"):
            if pos + 8 > end:
                raise ValueError("truncated record")
            (at,) = _TIME.unpack_from(data, pos)
            pos += 8
            yield kind, info_hash, peer_id, at
        elif kind == b"R":
            yield kind, info_hash, peer_id, None
        else:
            raise ValueError("unknown record kind %r" % kind)


def snapshot_row(seen: float, flags: int, compact: bytes) -> bytes:
    return _SEEN_FLAGS.pack(seen, flags) + compact


def parse_snapshot_row(value: bytes) -> Tuple[float, int, bytes]:
    compact = value[9:]
    if len(compact) not in (6, 18):
        raise ValueError("damaged snapshot row")
    seen, flags = _SEEN_FLAGS.unpack_from(value, 0)
    return seen, flags, compact


# -- the rare part, as JSON ------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def encode_rare(batch: ch.ChangeBatch) -> Optional[bytes]:
    """Content rows and operator changes, or None when the batch has neither."""
    items: List[List[Any]] = []
    for info_hash, (first_seen, _completed, name, size) in batch.content.items():
        # The completed count is not sent: each instance counts completions
        # once per peer from the C records.
        items.append(["content", info_hash.hex(), first_seen, name, size])
    for change in batch.operator:
        items.append([type(change).__name__] + [_jsonable(v) for v in attr.astuple(change)])
    if not items:
        return None
    return json.dumps(items).encode("utf-8")


def decode_rare(data: bytes) -> List[Any]:
    """ContentDescribed-like tuples ("content", info_hash, first_seen, name, size)
    and operator change records, in order. Raises ValueError when damaged."""
    out: List[Any] = []
    for item in json.loads(data.decode("utf-8")):
        name, fields = item[0], item[1:]
        if name == "content":
            out.append(("content", bytes.fromhex(fields[0]), float(fields[1]), fields[2],
                        fields[3]))
            continue
        cls = _OPERATOR.get(name)
        if cls is None:
            raise ValueError("unknown change %r" % name)
        values: Dict[str, Any] = {}
        for field, value in zip(attr.fields(cls), fields):
            values[field.name] = bytes.fromhex(value) if field.name == "info_hash" else value
        out.append(cls(**values))
    return out
