"""Swarms and their peers, packed: the in-memory state the tracker coordinates.

A million peers must fit in little memory, so a peer is not an object. Each
swarm keeps one `PeerPool` per address family, and a pool keeps its peers as
fixed-width records in two parallel buffers:

    recs   bytearray   33 bytes a peer: peer id (20), door code (1), last seen
                       (8, a double; +inf while a CDN node pins it), owner key (4)
    addrs  bytearray    6 bytes a peer (IPv4) or 18 (IPv6): BEP 23 / BEP 7 compact form

Two buffers rather than one per field: each buffer is an object of about 60
bytes. A swarm of one peer (most swarms) has no pool at all: it keeps that
peer inline as one `bytes` object (`Swarm.solo`), and makes a pool when a
second peer comes.

Seeders occupy positions [0, seeders) and leechers [seeders, len). A new peer
goes to a random position of its part (the peer it displaces moves to the
end), and a removed peer's place is taken by the last of its part, so each
part stays in uniformly random order. A random sample is then a window at a
random start: one to three slices of `addrs`, already in the wire format.

Finding a peer by id scans `recs` with `bytearray.find` (well under a
microsecond for a hundred peers); a pool of more than `INDEX_AT` peers keeps
a dict from id to position as well.

An entry belongs to whoever created it: it may be changed from the address it
has, or by an announce carrying the same owner key (BEP 3's `key`, BEP 15's
key field) as the last one that set it. Key 0 means "no key".

What the tracker does not need to answer requests (uploaded, downloaded,
left, the address as text) is not kept here: the change log carries it to
the store, and `PeerView` rebuilds the text form when someone asks.
"""
from __future__ import annotations

import bisect
import hashlib
import random
import struct
from array import array
from typing import Dict, Iterator, List, Optional, Tuple

from tracker.addresses import address_text

# Event codes use BEP 15's numbering so the UDP door maps them directly.
EVENT_NONE = 0
EVENT_COMPLETED = 1
EVENT_STARTED = 2
EVENT_STOPPED = 3

# The door a peer came in by, and its one-byte code in a pool.
DOOR_HTTP = "http"
DOOR_UDP = "udp"
DOOR_LINE = "line"
DOOR_NAMES = (DOOR_HTTP, DOOR_UDP, DOOR_LINE)
DOOR_CODES = {name: code for code, name in enumerate(DOOR_NAMES)}

ID_WIDTH = 20
# A record: the peer id, then these fields (little-endian, no padding).
RECORD = 33
_DOOR_AT = ID_WIDTH
_SEEN_AT = ID_WIDTH + 1
_KEY_AT = ID_WIDTH + 9
_DOOR_SEEN = struct.Struct("<Bd")
_SEEN = struct.Struct("<d")
_KEY = struct.Struct("<I")
_TAIL = struct.Struct("<BdI")  # door, seen, key: a record after its id
NO_KEY = 0
# A pool this large keeps an id -> position dict; it drops it below half that.
INDEX_AT = 128
# A swarm's one peer held inline (`Swarm.solo`), one bytes object: the
# record's fields at the record's offsets (the door byte also carries
# SOLO_SEEDER), the swarm's first-seen time, then the compact address.
_SOLO = struct.Struct("<20sBdId")
SOLO_FIRST_AT = RECORD
SOLO_ADDR_AT = _SOLO.size
SOLO_SEEDER = 0x80
# Swarm._more when it says nothing but that the solo peer holds the first-seen time.
_NO_MORE = [0, None, None, None, None]


def _rare_field(at: int, empty, doc: str) -> property:
    """A Swarm field kept at `at` of its `_more` list: `empty` while there is no
    list, and setting `empty` then makes none."""
    def get(swarm):
        more = swarm._more
        return more[at] if more is not None else empty

    def put(swarm, value) -> None:
        if value != empty or swarm._more is not None:
            swarm._set_more(at, value)
    return property(get, put, doc=doc)


def completion_key(peer_id: bytes) -> int:
    """A 64-bit fingerprint of a peer id (a collision among a swarm's
    completions is about one chance in 2^64 / n)."""
    return int.from_bytes(hashlib.blake2b(peer_id, digest_size=8).digest(), "big")


class PeerView:
    """A snapshot of one peer, made on demand (events, PEERS, the admin API).

    It is a copy: changing the swarm afterwards does not change it."""

    __slots__ = ("peer_id", "compact", "seeder", "last_seen", "door")

    def __init__(self, peer_id: bytes, compact: bytes, seeder: bool, last_seen: float,
                 door: str) -> None:
        self.peer_id = peer_id
        self.compact = compact
        self.seeder = seeder
        self.last_seen = last_seen
        self.door = door

    @property
    def ip(self) -> str:
        return address_text(self.compact)[0]

    @property
    def port(self) -> int:
        return address_text(self.compact)[1]

    @property
    def is_ipv6(self) -> bool:
        return len(self.compact) == 18

    def __repr__(self) -> str:
        return "PeerView(%r, %s:%d, %s, door=%s)" % (
            self.peer_id, self.ip, self.port, "seeder" if self.seeder else "leecher", self.door)


class PeerPool:
    """The peers of one swarm and one address family, as packed records."""

    __slots__ = ("addr_width", "recs", "addrs", "seeders", "index")

    def __init__(self, addr_width: int) -> None:
        # Bytes of one compact address: 6 in the IPv4 pool, 18 in the IPv6 one.
        self.addr_width = addr_width
        self.recs = bytearray()
        self.addrs = bytearray()
        self.seeders = 0
        self.index: Optional[Dict[bytes, int]] = None

    def __len__(self) -> int:
        return len(self.recs) // RECORD

    @property
    def family(self) -> int:
        """4 or 6, as in `AnnounceRequest.family`."""
        return 4 if self.addr_width == 6 else 6

    def find(self, peer_id: bytes) -> int:
        """The position of a peer, or -1."""
        index = self.index
        if index is not None:
            return index.get(peer_id, -1)
        recs = self.recs
        at = recs.find(peer_id)
        while at > 0 and at % RECORD:
            # Matched across two fields or records: look on.
            at = recs.find(peer_id, at + 1)
        return at // RECORD if at >= 0 else -1

    # -- reading one peer ---------------------------------------------------------------

    def peer_id(self, pos: int) -> bytes:
        return bytes(self.recs[pos * RECORD:pos * RECORD + ID_WIDTH])

    def compact(self, pos: int) -> bytes:
        w = self.addr_width
        return bytes(self.addrs[pos * w:(pos + 1) * w])

    def seen(self, pos: int) -> float:
        return _SEEN.unpack_from(self.recs, pos * RECORD + _SEEN_AT)[0]

    def door(self, pos: int) -> int:
        return self.recs[pos * RECORD + _DOOR_AT]

    def key(self, pos: int) -> int:
        return _KEY.unpack_from(self.recs, pos * RECORD + _KEY_AT)[0]

    def view(self, pos: int) -> PeerView:
        return PeerView(self.peer_id(pos), self.compact(pos), pos < self.seeders,
                        self.seen(pos), DOOR_NAMES[self.door(pos)])

    def owned_by(self, pos: int, packed_ip: bytes, key: int) -> bool:
        """May an announce from address `packed_ip` (4 or 16 bytes; any port)
        with owner key `key` change the entry at `pos`? Yes from the entry's
        own address, or with the entry's key (a client whose address changed)."""
        w = self.addr_width
        if len(packed_ip) + 2 == w and self.addrs.startswith(packed_ip, pos * w):
            return True
        return key != NO_KEY and key == self.key(pos)

    # -- changing --------------------------------------------------------------------------

    def add(self, peer_id: bytes, compact: bytes, seen: float, door: int, seeder: bool,
            rng: random.Random, key: int = NO_KEY) -> int:
        """Put a new peer at a random position of its part; returns the position."""
        pos = self.append(peer_id, compact, seen, door, seeder, key)
        # Swap it with a random member of its part (itself included).
        lo, hi = (0, self.seeders) if seeder else (self.seeders, len(self))
        target = lo + int(rng.random() * (hi - lo))
        self._swap(pos, target)
        return target

    def append(self, peer_id: bytes, compact: bytes, seen: float, door: int,
               seeder: bool, key: int = NO_KEY) -> int:
        """Add a peer known not to be in the pool yet at the end of its part,
        without shuffling; returns its position. Only `add` keeps the parts in
        random order, which sampling by window relies on."""
        recs = self.recs
        end = len(recs) // RECORD
        recs += peer_id
        recs += _TAIL.pack(door, seen, key)
        self.addrs += compact
        if self.index is not None:
            self.index[peer_id] = end
        elif end + 1 > INDEX_AT:
            self._build_index()
        if not seeder:
            return end
        # The first leecher moves to the end; the new seeder takes its place.
        boundary = self.seeders
        self._swap(end, boundary)
        self.seeders = boundary + 1
        return boundary

    def refresh(self, pos: int, compact: bytes, seen: float, door: int, seeder: bool,
                key: int, rng: random.Random) -> int:
        """Apply a re-announce (already found to come from the owner) to the
        entry at `pos`: address, seeder or leecher, last seen, door, and the
        owner key when one is given. Returns the entry's position."""
        w = self.addr_width
        if self.addrs[pos * w:(pos + 1) * w] != compact:
            self.addrs[pos * w:(pos + 1) * w] = compact
        if (pos < self.seeders) != seeder:
            pos = self.set_seeder(pos, seeder, rng)
        at = pos * RECORD
        _DOOR_SEEN.pack_into(self.recs, at + _DOOR_AT, door, seen)
        if key != NO_KEY:
            _KEY.pack_into(self.recs, at + _KEY_AT, key)
        return pos

    def only_seen_moves(self, pos: int, compact: bytes, seen: float, door: int, seeder: bool,
                        bucket_s: float) -> bool:
        """Whether `refresh` with these values would change nothing the store
        keeps but the last-seen time, and that within one `bucket_s`-second
        bucket (ChangeLog.coarsen_last_seen). Asked before the refresh."""
        recs = self.recs
        at = pos * RECORD
        return (recs[at + _DOOR_AT] == door and (pos < self.seeders) == seeder
                and _SEEN.unpack_from(recs, at + _SEEN_AT)[0] // bucket_s == seen // bucket_s
                and self.addrs.startswith(compact, pos * self.addr_width))

    def set_seen(self, pos: int, seen: float) -> None:
        _SEEN.pack_into(self.recs, pos * RECORD + _SEEN_AT, seen)

    def remove(self, pos: int) -> None:
        last = len(self) - 1
        removed_id = self.peer_id(pos) if self.index is not None else b""
        if pos < self.seeders:
            boundary = self.seeders - 1
            if pos != boundary:
                self._move(boundary, pos)
            if boundary != last:
                self._move(last, boundary)
            self.seeders = boundary
        elif pos != last:
            self._move(last, pos)
        del self.recs[-RECORD:]
        del self.addrs[-self.addr_width:]
        index = self.index
        if index is not None:
            del index[removed_id]
            if last < INDEX_AT // 2:
                self.index = None

    def set_seeder(self, pos: int, seeder: bool, rng: random.Random) -> int:
        """Move a peer between the seeder and leecher parts; returns its new position."""
        boundary = self.seeders
        if seeder and pos >= boundary:
            self._swap(pos, boundary)
            self.seeders = boundary + 1
            target = int(rng.random() * (boundary + 1))
            self._swap(boundary, target)
            return target
        if not seeder and pos < boundary:
            boundary -= 1
            self._swap(pos, boundary)
            self.seeders = boundary
            target = boundary + int(rng.random() * (len(self) - boundary))
            self._swap(boundary, target)
            return target
        return pos

    def _move(self, src: int, dst: int) -> None:
        """Copy record `src` over record `dst` (whose peer is going away)."""
        w = self.addr_width
        recs = self.recs
        moved = recs[src * RECORD:(src + 1) * RECORD]
        recs[dst * RECORD:(dst + 1) * RECORD] = moved
        self.addrs[dst * w:(dst + 1) * w] = self.addrs[src * w:(src + 1) * w]
        if self.index is not None:
            self.index[bytes(moved[:ID_WIDTH])] = dst

    def _swap(self, a: int, b: int) -> None:
        if a == b:
            return
        w = self.addr_width
        recs, addrs = self.recs, self.addrs
        ra, rb = slice(a * RECORD, (a + 1) * RECORD), slice(b * RECORD, (b + 1) * RECORD)
        rec_a, rec_b = recs[ra], recs[rb]
        recs[ra], recs[rb] = rec_b, rec_a
        aa, ab = slice(a * w, (a + 1) * w), slice(b * w, (b + 1) * w)
        addrs[aa], addrs[ab] = addrs[ab], addrs[aa]
        if self.index is not None:
            self.index[bytes(rec_a[:ID_WIDTH])] = b
            self.index[bytes(rec_b[:ID_WIDTH])] = a

    def _build_index(self) -> None:
        recs = self.recs
        self.index = {bytes(recs[i:i + ID_WIDTH]): i // RECORD
                      for i in range(0, len(recs), RECORD)}

    # -- sampling ----------------------------------------------------------------------

    def compact_reply(self, numwant: int, seeder: bool, skip: int,
                      rng: random.Random) -> Tuple[int, int, bytes]:
        """(seeders, leechers, peers) for a requester of this pool alone: up to
        `numwant` compact addresses, a random window, never position `skip`
        (-1: none), no seeders for a seeder."""
        seeders = self.seeders
        total = len(self.recs) // RECORD
        return seeders, total - seeders, self.compact_of(
            self.window(seeders if seeder else 0, total, numwant, skip, rng))

    def window(self, lo: int, hi: int, count: int, skip: int,
               rng: random.Random) -> List[Tuple[int, int]]:
        """Position ranges holding `count` peers of [lo, hi) without `skip`
        (-1: none): all of them when there are no more, else a window at a
        random start that wraps round. At most four ranges.

        The window is laid over the range with `skip` taken out, so every
        other peer is in it with the same chance, count / (peers - 1)."""
        if lo <= skip < hi:
            size = hi - lo - 1
        else:
            size = hi - lo
            skip = -1
        if count <= 0 or size <= 0:
            return []
        if count >= size:
            if skip < 0:
                return [(lo, hi)]
            start, end = 0, size
        else:
            start = int(rng.random() * size)
            if start >= size:
                start = size - 1
            end = start + count
            if skip < 0:
                start += lo
                end += lo
                return [(start, end)] if end <= hi else [(start, hi), (lo, end - size)]
        # Virtual positions [start, end) round [0, size), then back to real ones.
        virtual = [(start, end)] if end <= size else [(start, size), (0, end - size)]
        cut = skip - lo
        out = []
        for a, b in virtual:
            if b <= cut:
                out.append((lo + a, lo + b))
            elif a >= cut:
                out.append((lo + a + 1, lo + b + 1))
            else:
                out.append((lo + a, skip))
                out.append((skip + 1, lo + b + 1))
        return out

    def compact_of(self, ranges: List[Tuple[int, int]]) -> bytes:
        w = self.addr_width
        addrs = self.addrs
        if len(ranges) == 1:
            a, b = ranges[0]
            return bytes(addrs[a * w:b * w])
        if len(ranges) == 2:
            (a, b), (c, d) = ranges
            return b"".join((addrs[a * w:b * w], addrs[c * w:d * w]))
        return b"".join([addrs[a * w:b * w] for a, b in ranges])

    def views_of(self, ranges: List[Tuple[int, int]]) -> List[PeerView]:
        w = self.addr_width
        seeders = self.seeders
        recs = self.recs
        addrs = self.addrs
        out: List[PeerView] = []
        for a, b in ranges:
            for pos in range(a, b):
                at = pos * RECORD
                door, seen = _DOOR_SEEN.unpack_from(recs, at + _DOOR_AT)
                out.append(PeerView(bytes(recs[at:at + ID_WIDTH]),
                                    bytes(addrs[pos * w:(pos + 1) * w]), pos < seeders,
                                    seen, DOOR_NAMES[door]))
        return out


class Swarm:
    """The peers of one piece of content: one peer held inline (`solo`), or an
    IPv4 pool and an IPv6 pool, made when a peer of that family comes; and the
    completion count.

    Most swarms have one peer (and a flood of random info hashes makes a
    million of them), so a swarm of one peer keeps it as a single `bytes`
    object: its record, the swarm's first-seen time, its compact address (see
    `SOLO_*`). A second peer turns it into a pool; the expiry sweep turns a
    pool of one back. Every method that hands out a pool (`v4`, `v6`,
    `pools`, `pool_for`, `locate`, `sample`) first turns a solo peer into a
    pool, so callers outside the core never see the solo form.

    Rarely used fields (name, size, completions) live in one side list, made
    when the first of them is set; so does the first-seen time, except while
    the solo peer holds it. Five slots: PyPy stores up to five in the object
    itself, and a sixth costs it 64 bytes more."""

    __slots__ = ("info_hash", "solo", "_v4", "_v6", "_more")

    def __init__(self, info_hash: bytes, first_seen: Optional[float] = 0.0) -> None:
        """`first_seen` None: the caller makes the solo peer at once, with the time."""
        self.info_hash = info_hash
        self.solo: Optional[bytes] = None
        self._v4: Optional[PeerPool] = None
        self._v6: Optional[PeerPool] = None
        # [completed, completed_by, name, size, first_seen] (first_seen None
        # while the solo peer holds it), or None while that is all it would say.
        self._more: Optional[list] = None if first_seen is None else [0, None, None, None,
                                                                       first_seen]

    # -- the rarely used fields ---------------------------------------------------------

    def _set_more(self, at: int, value) -> None:
        more = self._more
        if more is None:
            more = self._more = [0, None, None, None, None]
        more[at] = value

    def _unpin_first_seen(self) -> None:
        """The solo peer is going: the first-seen time it held moves to the list."""
        more = self._more
        if more is None or more[4] is None:
            self._set_more(4, _SEEN.unpack_from(self.solo, SOLO_FIRST_AT)[0])

    # Kept in `_more` (made on the first value that is not the empty one).
    completed = _rare_field(0, 0, "Completions counted (once per peer).")
    completed_by = _rare_field(1, None, """Who has been counted as completed, so each
        peer counts once: 64-bit fingerprints of their peer ids, sorted (8 bytes a
        completion). None until the first completion: most swarms never see one.""")
    name = _rare_field(2, None, "Metadata that line-protocol nodes may give (HAVE name=...).")
    size = _rare_field(3, None, "Metadata that line-protocol nodes may give (HAVE size=...).")

    @property
    def first_seen(self) -> float:
        more = self._more
        if more is not None and more[4] is not None:
            return more[4]
        return _SEEN.unpack_from(self.solo, SOLO_FIRST_AT)[0]

    @first_seen.setter
    def first_seen(self, value: float) -> None:
        self._set_more(4, value)

    # -- the solo peer ------------------------------------------------------------------

    def set_solo(self, peer_id: bytes, compact: bytes, seen: float, door: int, seeder: bool,
                 key: int, first_seen: Optional[float] = None) -> None:
        """Make (or replace) the swarm's one peer, held inline. The swarm must
        have no peer in a pool. `first_seen` given: the solo peer holds the
        swarm's first-seen time (and the float is not kept)."""
        if first_seen is None:
            first_seen = self.first_seen
        else:
            more = self._more
            if more is not None:
                more[4] = None
                if more == _NO_MORE:
                    self._more = None
        self.solo = _SOLO.pack(peer_id, door | SOLO_SEEDER if seeder else door, seen, key,
                               first_seen) + compact
        self._v4 = self._v6 = None

    def refresh_solo(self, compact: bytes, seen: float, door: int, seeder: bool,
                     key: int) -> bool:
        """`PeerPool.refresh` for the solo peer; True if it changed family."""
        solo = self.solo
        if key == NO_KEY:
            key = _KEY.unpack_from(solo, _KEY_AT)[0]
        self.set_solo(solo[:ID_WIDTH], compact, seen, door, seeder, key)
        return len(solo) - SOLO_ADDR_AT != len(compact)

    def solo_only_seen_moves(self, compact: bytes, seen: float, door: int, seeder: bool,
                             bucket_s: float) -> bool:
        """`PeerPool.only_seen_moves` for the solo peer."""
        solo = self.solo
        return (solo[_DOOR_AT] == (door | SOLO_SEEDER if seeder else door)
                and _SEEN.unpack_from(solo, _SEEN_AT)[0] // bucket_s == seen // bucket_s
                and len(solo) - SOLO_ADDR_AT == len(compact) and solo.endswith(compact))

    def set_solo_seen(self, seen: float) -> None:
        solo = self.solo
        self.solo = solo[:_SEEN_AT] + _SEEN.pack(seen) + solo[_SEEN_AT + 8:]

    def solo_seen(self) -> float:
        return _SEEN.unpack_from(self.solo, _SEEN_AT)[0]

    def promote(self) -> None:
        """Move the solo peer, if any, into a pool of its family."""
        solo = self.solo
        if solo is None:
            return
        peer_id, flags, seen, key, _first_seen = _SOLO.unpack_from(solo)
        self._unpin_first_seen()
        self.solo = None
        compact = solo[SOLO_ADDR_AT:]
        pool = PeerPool(len(compact))
        pool.append(peer_id, compact, seen, flags & ~SOLO_SEEDER, bool(flags & SOLO_SEEDER), key)
        if len(compact) == 6:
            self._v4 = pool
        else:
            self._v6 = pool

    def demote(self) -> bool:
        """Hold a swarm's only peer inline again (freeing its pool); False
        when the swarm has not exactly one peer."""
        if self.solo is not None or len(self) != 1:
            return False
        pool = self._v4 if self._v4 is not None and len(self._v4) else self._v6
        recs = pool.recs
        door, seen, key = _TAIL.unpack_from(recs, ID_WIDTH)
        first_seen = self.first_seen
        self._v4 = self._v6 = None
        self.set_solo(bytes(recs[:ID_WIDTH]), bytes(pool.addrs), seen, door,
                      pool.seeders == 1, key, first_seen)
        return True

    def drop_solo(self) -> bytes:
        """Take the solo peer out (the swarm is then empty); returns its peer id."""
        solo = self.solo
        self._unpin_first_seen()
        self.solo = None
        return solo[:ID_WIDTH]

    def solo_view(self) -> PeerView:
        solo = self.solo
        peer_id, flags, seen, _key, _first = _SOLO.unpack_from(solo)
        return PeerView(peer_id, solo[SOLO_ADDR_AT:], bool(flags & SOLO_SEEDER), seen,
                        DOOR_NAMES[flags & ~SOLO_SEEDER])

    def solo_owned_by(self, packed_ip: bytes, key: int) -> bool:
        """`PeerPool.owned_by` for the solo peer."""
        solo = self.solo
        if len(packed_ip) + 2 + SOLO_ADDR_AT == len(solo) and solo.startswith(
                packed_ip, SOLO_ADDR_AT):
            return True
        return key != NO_KEY and key == _KEY.unpack_from(solo, _KEY_AT)[0]

    # -- counts -------------------------------------------------------------------------

    def __len__(self) -> int:
        if self.solo is not None:
            return 1
        v4, v6 = self._v4, self._v6
        return (len(v4) if v4 is not None else 0) + (len(v6) if v6 is not None else 0)

    def __bool__(self) -> bool:
        return True

    @property
    def seeders(self) -> int:
        solo = self.solo
        if solo is not None:
            return 1 if solo[_DOOR_AT] & SOLO_SEEDER else 0
        v4, v6 = self._v4, self._v6
        return (v4.seeders if v4 is not None else 0) + (v6.seeders if v6 is not None else 0)

    @property
    def leechers(self) -> int:
        return len(self) - self.seeders

    # -- pools --------------------------------------------------------------------------

    @property
    def v4(self) -> PeerPool:
        """The IPv4 pool (made if there is none)."""
        self.promote()
        if self._v4 is None:
            self._v4 = PeerPool(6)
        return self._v4

    @property
    def v6(self) -> Optional[PeerPool]:
        """The IPv6 pool, None until an IPv6 peer has come."""
        self.promote()
        return self._v6

    def pools(self) -> List[PeerPool]:
        self.promote()
        return [pool for pool in (self._v4, self._v6) if pool is not None]

    def pool_for(self, compact: bytes) -> PeerPool:
        self.promote()
        if len(compact) == 6:
            if self._v4 is None:
                self._v4 = PeerPool(6)
            return self._v4
        if self._v6 is None:
            self._v6 = PeerPool(18)
        return self._v6

    def locate(self, peer_id: bytes) -> Tuple[Optional[PeerPool], int]:
        """(pool, position) of a peer, or (None, -1)."""
        if self.solo is not None:
            if not self.solo.startswith(peer_id):
                return None, -1
            self.promote()
        return self.find_pooled(peer_id)

    def find_pooled(self, peer_id: bytes) -> Tuple[Optional[PeerPool], int]:
        """`locate` for a swarm without a solo peer (the announce path checks that first)."""
        v4 = self._v4
        if v4 is not None:
            pos = v4.find(peer_id)
            if pos >= 0:
                return v4, pos
        v6 = self._v6
        if v6 is not None:
            pos = v6.find(peer_id)
            if pos >= 0:
                return v6, pos
        return None, -1

    def get(self, peer_id: bytes) -> Optional[PeerView]:
        solo = self.solo
        if solo is not None:
            return self.solo_view() if solo.startswith(peer_id) else None
        pool, pos = self.locate(peer_id)
        return pool.view(pos) if pool is not None else None

    def __contains__(self, peer_id: bytes) -> bool:
        solo = self.solo
        if solo is not None:
            return solo.startswith(peer_id)
        return self.locate(peer_id)[0] is not None

    def views(self) -> Iterator[PeerView]:
        if self.solo is not None:
            yield self.solo_view()
            return
        for pool in (self._v4, self._v6):
            if pool is not None:
                yield from pool.views_of([(0, len(pool))])

    def remember_completion(self, peer_id: bytes) -> bool:
        """Note that `peer_id` completed (without counting it); False if known."""
        done = self.completed_by
        if done is None:
            done = self.completed_by = array("Q")
        key = completion_key(peer_id)
        at = bisect.bisect_left(done, key)
        if at < len(done) and done[at] == key:
            return False
        done.insert(at, key)
        return True

    def mark_completed(self, peer_id: bytes) -> bool:
        """Count a completion once per peer id; True if it was counted now."""
        if not self.remember_completion(peer_id):
            return False
        self.completed += 1
        return True

    def sample(self, numwant: int, requester: Optional[PeerPool], requester_pos: int,
               seeder: bool, family: int, rng: random.Random
               ) -> List[Tuple[PeerPool, List[Tuple[int, int]]]]:
        """Up to `numwant` peers: a random sample, never the requester, no
        seeders for a seeder. `family` 4 or 6 takes that family only, 0 both
        (split between them in proportion). Returns (pool, ranges) pairs."""
        if numwant <= 0:
            return []
        picks = []
        for pool in self.pools():
            if family and pool.addr_width != (6 if family == 4 else 18):
                continue
            lo = pool.seeders if seeder else 0
            hi = len(pool)
            skip = requester_pos if requester is pool else -1
            available = hi - lo - (lo <= skip < hi)
            if available > 0:
                picks.append([pool, lo, hi, skip, available])
        if len(picks) == 2:
            total = picks[0][4] + picks[1][4]
            if total > numwant:
                first = int(numwant * picks[0][4] / total + rng.random())
                first = max(numwant - picks[1][4], min(first, picks[0][4]))
                picks[0][4] = first
                picks[1][4] = numwant - first
        elif picks and picks[0][4] > numwant:
            picks[0][4] = numwant
        return [(pool, pool.window(lo, hi, count, skip, rng))
                for pool, lo, hi, skip, count in picks]
