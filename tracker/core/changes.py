"""The change log: what changed since the store last wrote, as plain values.

The core, the line door and the admin API record into it (a dict assignment,
no I/O, no SQL); a consumer (the SQLite writer today, a replicator later)
takes the log every flush interval and turns the batch into its own writes
off the reactor thread. Nothing in a batch refers to a live object: a swarm's
content row is copied when it changes.

A peer's row is kept by key, so a peer that announces ten times between two
flushes is written once, with its latest state. Pending rows are packed
(a 40-byte key and a short bytes value per peer, not a tuple of seven
objects): under a flood of new peers the store falls behind and these wait
by the hundred thousand (see `PeerRows`).

With `coarsen_last_seen(R)`, the core does not record a re-announce that
moves only a peer's last-seen time (its byte counters and bytes left may move
too, but not whether it seeds) while the time stays in the same R-second
bucket as the peer's previous one: the stored time then lags the true one by
less than R, which restore allows for (see SQLiteStore.restore). Nothing is
kept per peer for this: the core compares the old time with the new.
"""
from __future__ import annotations

import struct
from collections.abc import MutableMapping, MutableSet
from typing import Dict, Iterator, List, Optional, Tuple, Union

import attr

PeerKey = Tuple[bytes, bytes]  # (info_hash, peer_id)
# What the store keeps of a peer: (ip, port, left, uploaded, downloaded, last_seen, door)
PeerRow = Tuple[str, int, int, int, int, float, str]
# A swarm's content row: (first_seen, completed, name, size)
ContentRow = Tuple[float, int, Optional[str], Optional[int]]
# (minute, swarms, peers, seeders, leechers, announces)
TotalsTuple = Tuple[int, int, int, int, int, int]

_frozen = attr.s(slots=True, frozen=True)

# A pending peer's key is info_hash + peer_id (info hashes are 20 bytes).
HASH_WIDTH = 20
# A pending peer's row: port, left, uploaded, downloaded, last seen, the
# length of the address text; then the address and the door, as ASCII.
_PEER_ROW = struct.Struct("<HQQQdB")
# A content row with no name or size (a new swarm's): first seen, completed.
_CONTENT_ROW = struct.Struct("<dq")


# -- the kinds of change ---------------------------------------------------------------
# Each record's fields are in the order the batch keeps them as tuples, so a
# consumer that writes in bulk can use the tuples (see ChangeBatch) and any
# other consumer the records.


@_frozen
class PeerUpserted:
    """A peer joined or announced: its whole row, latest state."""
    info_hash = attr.ib()  # type: bytes
    peer_id = attr.ib()  # type: bytes
    ip = attr.ib()  # type: str
    port = attr.ib()  # type: int
    left = attr.ib()  # type: int
    uploaded = attr.ib()  # type: int
    downloaded = attr.ib()  # type: int
    last_seen = attr.ib()  # type: float
    door = attr.ib()  # type: str


@_frozen
class PeerSeen:
    """Only a peer's last-seen time changed (a CDN node's entry pinned or unpinned)."""
    info_hash = attr.ib()  # type: bytes
    peer_id = attr.ib()  # type: bytes
    last_seen = attr.ib()  # type: float


@_frozen
class PeerRemoved:
    info_hash = attr.ib()  # type: bytes
    peer_id = attr.ib()  # type: bytes


@_frozen
class ContentDescribed:
    """A swarm's content row: created, completed count or name/size changed."""
    info_hash = attr.ib()  # type: bytes
    first_seen = attr.ib()  # type: float
    completed = attr.ib()  # type: int
    name = attr.ib()  # type: Optional[str]
    size = attr.ib()  # type: Optional[int]


@_frozen
class Completion:
    """A peer completed content (counted once per peer and content)."""
    info_hash = attr.ib()  # type: bytes
    peer_id = attr.ib()  # type: bytes
    completed_at = attr.ib()  # type: float


@_frozen
class NodeSeen:
    node_id = attr.ib()  # type: str
    ip = attr.ib()  # type: str
    port = attr.ib()  # type: int
    region = attr.ib()  # type: Optional[str]
    seen_at = attr.ib()  # type: float


@_frozen
class MinuteTotals:
    minute = attr.ib()  # type: int
    swarms = attr.ib()  # type: int
    peers = attr.ib()  # type: int
    seeders = attr.ib()  # type: int
    leechers = attr.ib()  # type: int
    announces = attr.ib()  # type: int


# The operator's changes (admin API): rare, kept in the order they were made.


@_frozen
class AccessRuleAdded:
    list_name = attr.ib()  # type: str  # "allow" or "deny"
    info_hash = attr.ib()  # type: bytes
    note = attr.ib()  # type: Optional[str]
    added_at = attr.ib()  # type: float


@_frozen
class AccessRuleRemoved:
    list_name = attr.ib()  # type: str
    info_hash = attr.ib()  # type: bytes


@_frozen
class ModeSet:
    mode = attr.ib()  # type: str


@_frozen
class BanAdded:
    cidr = attr.ib()  # type: str
    note = attr.ib()  # type: Optional[str]
    added_at = attr.ib()  # type: float


@_frozen
class BanRemoved:
    cidr = attr.ib()  # type: str


@_frozen
class NodeTokenSet:
    node_id = attr.ib()  # type: str
    token = attr.ib()  # type: str
    created_at = attr.ib()  # type: float


@_frozen
class NodeTokenRemoved:
    node_id = attr.ib()  # type: str


OperatorChange = Union[AccessRuleAdded, AccessRuleRemoved, ModeSet, BanAdded, BanRemoved,
                       NodeTokenSet, NodeTokenRemoved]
OPERATOR_CHANGES = (AccessRuleAdded, AccessRuleRemoved, ModeSet, BanAdded, BanRemoved,
                    NodeTokenSet, NodeTokenRemoved)
Change = Union[PeerUpserted, PeerSeen, PeerRemoved, ContentDescribed, Completion, NodeSeen,
               MinuteTotals, OperatorChange]


def _key(key: PeerKey) -> bytes:
    return key[0] + key[1]


def _split(packed_key: bytes) -> PeerKey:
    return packed_key[:HASH_WIDTH], packed_key[HASH_WIDTH:]


def pack_peer_row(row: PeerRow) -> bytes:
    ip, port, left, uploaded, downloaded, last_seen, door = row
    address = ip.encode("ascii")
    return (_PEER_ROW.pack(port, left, uploaded, downloaded, last_seen, len(address)) + address
            + door.encode("ascii"))


def unpack_peer_row(value: bytes) -> PeerRow:
    port, left, uploaded, downloaded, last_seen, width = _PEER_ROW.unpack_from(value)
    at = _PEER_ROW.size
    return (value[at:at + width].decode("ascii"), port, left, uploaded, downloaded, last_seen,
            value[at + width:].decode("ascii"))


def with_last_seen(value: bytes, last_seen: float) -> bytes:
    """A packed peer row with another last-seen time."""
    port, left, uploaded, downloaded, _, width = _PEER_ROW.unpack_from(value)
    return (_PEER_ROW.pack(port, left, uploaded, downloaded, last_seen, width)
            + value[_PEER_ROW.size:])


class PeerRows(MutableMapping):
    """Pending peer rows, key (info_hash, peer_id) -> PeerRow, read and
    written as such, but held as two bytes objects per peer (about 210 bytes
    with the dict's share, against about 420 for a tuple key and a row of
    seven objects): a flood of new peers can leave hundreds of thousands
    waiting for a store that falls behind."""

    __slots__ = ("packed",)

    def __init__(self, rows=()) -> None:
        self.packed: Dict[bytes, bytes] = {}  # info_hash + peer_id -> pack_peer_row(row)
        if rows:
            self.update(rows)

    def put(self, info_hash: bytes, peer_id: bytes, row: PeerRow) -> bytes:
        """Set a row (the hot path's way); returns the packed key."""
        key = info_hash + peer_id
        self.packed[key] = pack_peer_row(row)
        return key

    def __setitem__(self, key: PeerKey, row: PeerRow) -> None:
        self.packed[_key(key)] = pack_peer_row(row)

    def __getitem__(self, key: PeerKey) -> PeerRow:
        return unpack_peer_row(self.packed[_key(key)])

    def __delitem__(self, key: PeerKey) -> None:
        del self.packed[_key(key)]

    def __contains__(self, key) -> bool:
        return _key(key) in self.packed

    def __iter__(self) -> Iterator[PeerKey]:
        return map(_split, self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    def items(self) -> Iterator[Tuple[PeerKey, PeerRow]]:  # type: ignore[override]
        for key, value in self.packed.items():
            yield _split(key), unpack_peer_row(value)

    def sql_rows(self) -> Iterator[tuple]:
        """Each pending peer as PeerUpserted's fields, made as they are read."""
        for key, value in self.packed.items():
            yield (key[:HASH_WIDTH], key[HASH_WIDTH:]) + unpack_peer_row(value)


class PeerTimes(MutableMapping):
    """Pending last-seen times, (info_hash, peer_id) -> time, keyed packed."""

    __slots__ = ("packed",)

    def __init__(self, times=()) -> None:
        self.packed: Dict[bytes, float] = {}
        if times:
            self.update(times)

    def __setitem__(self, key: PeerKey, last_seen: float) -> None:
        self.packed[_key(key)] = last_seen

    def __getitem__(self, key: PeerKey) -> float:
        return self.packed[_key(key)]

    def __delitem__(self, key: PeerKey) -> None:
        del self.packed[_key(key)]

    def __contains__(self, key) -> bool:
        return _key(key) in self.packed

    def __iter__(self) -> Iterator[PeerKey]:
        return map(_split, self.packed)

    def __len__(self) -> int:
        return len(self.packed)


class PeerKeys(MutableSet):
    """Pending removals, a set of (info_hash, peer_id) kept as packed keys: an
    expiry sweep of a million peers leaves a million of them at once."""

    __slots__ = ("packed",)

    def __init__(self, keys=()) -> None:
        self.packed = set(map(_key, keys))

    def add(self, key: PeerKey) -> None:
        self.packed.add(_key(key))

    def discard(self, key: PeerKey) -> None:
        self.packed.discard(_key(key))

    def __contains__(self, key) -> bool:
        return _key(key) in self.packed

    def __iter__(self) -> Iterator[PeerKey]:
        return map(_split, self.packed)

    def __len__(self) -> int:
        return len(self.packed)


class ContentRows(MutableMapping):
    """Pending content rows, info_hash -> ContentRow; a row with no name or
    size (every new swarm's) is held packed in 16 bytes, the key being the
    swarm's own info hash object."""

    __slots__ = ("packed",)

    def __init__(self, rows=()) -> None:
        self.packed: Dict[bytes, Union[bytes, ContentRow]] = {}
        if rows:
            self.update(rows)

    def set(self, info_hash: bytes, first_seen: float, completed: int, name: Optional[str],
            size: Optional[int]) -> None:
        if name is None and size is None:
            self.packed[info_hash] = _CONTENT_ROW.pack(first_seen, completed)
        else:
            self.packed[info_hash] = (first_seen, completed, name, size)

    def __setitem__(self, info_hash: bytes, row: ContentRow) -> None:
        self.set(info_hash, *row)

    def __getitem__(self, info_hash: bytes) -> ContentRow:
        row = self.packed[info_hash]
        if isinstance(row, bytes):
            return _CONTENT_ROW.unpack(row) + (None, None)
        return row

    def __delitem__(self, info_hash: bytes) -> None:
        del self.packed[info_hash]

    def __contains__(self, info_hash) -> bool:
        return info_hash in self.packed

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)


class ChangeBatch:
    """One flush worth of changes.

    `iter(batch)` gives every change as a typed value, in an order that is
    safe to apply one by one: a peer key appears in at most one of upserted,
    seen and removed (the latest state wins), and the operator's changes come
    in the order they were made. Consumers that write in bulk may read the
    same values as tuples in the records' field order instead:

    - `peers`: key -> row, `key + row` being a PeerUpserted's fields
    - `seen`: key -> last_seen (PeerSeen), `removed`: keys (PeerRemoved)
    - `content`: info_hash -> (first_seen, completed, name, size) (ContentDescribed)
    - `completions`, `totals`: Completion and MinuteTotals fields
    - `nodes`: node_id -> (ip, port, region, seen_at) (NodeSeen)
    - `operator`: the operator's changes, as records

    `peers`, `seen`, `removed` and `content` hold their entries packed (see
    PeerRows) but read and write like the dict or set they stand for; a
    consumer may also put plain dicts and sets there.
    """

    __slots__ = ("peers", "seen", "removed", "content", "completions", "totals", "nodes",
                 "operator")

    def __init__(self) -> None:
        self.peers: MutableMapping = PeerRows()
        self.seen: MutableMapping = PeerTimes()
        self.removed: MutableSet = PeerKeys()
        self.content: MutableMapping = ContentRows()
        self.completions: List[Tuple[bytes, bytes, float]] = []
        self.totals: List[TotalsTuple] = []
        self.nodes: Dict[str, Tuple[str, int, Optional[str], float]] = {}
        self.operator: List[OperatorChange] = []

    def __len__(self) -> int:
        return (len(self.peers) + len(self.seen) + len(self.removed) + len(self.content)
                + len(self.completions) + len(self.totals) + len(self.nodes) + len(self.operator))

    def __iter__(self) -> Iterator[Change]:
        for info_hash, content in self.content.items():
            yield ContentDescribed(info_hash, *content)
        for key, row in self.peers.items():
            yield PeerUpserted(*key, *row)
        for (info_hash, peer_id), last_seen in self.seen.items():
            yield PeerSeen(info_hash, peer_id, last_seen)
        for key in self.removed:
            yield PeerRemoved(*key)
        for completion in self.completions:
            yield Completion(*completion)
        for node_id, node in self.nodes.items():
            yield NodeSeen(node_id, *node)
        for row in self.totals:
            yield MinuteTotals(*row)
        yield from self.operator


class ChangeLog:
    """Collects changes for the store; `take()` hands them over and starts afresh."""

    def __init__(self) -> None:
        self._batch = ChangeBatch()
        # Re-announces that move only the last-seen time are recorded at most
        # once per bucket of this many seconds (0: every one); the core reads it.
        self.seen_resolution_s = 0.0
        self.coalesced = 0  # re-announces not recorded (for the figures)

    def __len__(self) -> int:
        return len(self._batch)

    def coarsen_last_seen(self, resolution_s: float) -> None:
        """Record a peer whose re-announce changes only its last-seen time at
        most once per `resolution_s` bucket of time (0: record every change)."""
        self.seen_resolution_s = resolution_s

    def forget_recent(self) -> None:
        """Kept for consumers that lost what they had been given: nothing is
        remembered per peer any more (the core compares buckets), so a full
        rewrite (tracker/store/service.py's record_everything) is enough."""

    def peer_updated(self, info_hash: bytes, peer_id: bytes, row: PeerRow) -> None:
        batch = self._batch
        peers = batch.peers
        if type(peers) is PeerRows:
            peers.put(info_hash, peer_id, row)
        else:
            peers[(info_hash, peer_id)] = row
        if batch.removed:
            batch.removed.discard((info_hash, peer_id))
        if batch.seen:
            batch.seen.pop((info_hash, peer_id), None)

    def peer_seen(self, info_hash: bytes, peer_id: bytes, last_seen: float) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        peers = batch.peers
        if type(peers) is PeerRows:
            packed_key = info_hash + peer_id
            value = peers.packed.get(packed_key)
            if value is not None:
                peers.packed[packed_key] = with_last_seen(value, last_seen)
                return
        elif key in peers:
            peers[key] = peers[key][:5] + (last_seen,) + peers[key][6:]
            return
        batch.seen[key] = last_seen

    def peer_removed(self, info_hash: bytes, peer_id: bytes) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        if batch.peers:
            batch.peers.pop(key, None)
        if batch.seen:
            batch.seen.pop(key, None)
        batch.removed.add(key)

    def content_changed(self, swarm) -> None:
        """A swarm was created or its content row changed: copy the row now."""
        content = self._batch.content
        if type(content) is ContentRows:
            content.set(swarm.info_hash, swarm.first_seen, swarm.completed, swarm.name, swarm.size)
        else:
            content[swarm.info_hash] = (swarm.first_seen, swarm.completed, swarm.name, swarm.size)

    def completed(self, swarm, peer_id: bytes, now: float) -> None:
        self.content_changed(swarm)
        self._batch.completions.append((swarm.info_hash, peer_id, now))

    def totals(self, row: TotalsTuple) -> None:
        self._batch.totals.append(tuple(row))

    def node_seen(self, node_id: str, ip: str, port: int, region, now: float) -> None:
        self._batch.nodes[node_id] = (ip, port, region, now)

    def operator_changed(self, change: OperatorChange) -> None:
        """An access rule, ban, node token or mode set by the operator."""
        if not isinstance(change, OPERATOR_CHANGES):
            raise TypeError("not an operator change: %r" % (change,))
        self._batch.operator.append(change)

    def take(self) -> ChangeBatch:
        batch = self._batch
        self._batch = ChangeBatch()
        return batch

    def give_back(self, batch: ChangeBatch) -> None:
        """Return a batch that could not be written; newer changes win."""
        current = self._batch
        for key, peer in batch.peers.items():
            if key not in current.peers and key not in current.removed:
                current.peers[key] = peer
        for key, seen in batch.seen.items():
            if key not in current.peers and key not in current.removed:
                current.seen.setdefault(key, seen)
        for key in batch.removed:
            if key not in current.peers and key not in current.seen:
                current.removed.add(key)
        for info_hash, content in batch.content.items():
            current.content.setdefault(info_hash, content)
        current.completions[:0] = batch.completions
        current.totals[:0] = batch.totals
        current.operator[:0] = batch.operator
        for node_id, row in batch.nodes.items():
            current.nodes.setdefault(node_id, row)

    def absorb(self, batch: ChangeBatch) -> None:
        """Add a batch taken later than what this log holds (its changes win):
        a second consumer hands each batch on to this log (tracker/cluster)."""
        current = self._batch
        if not current:
            self._batch = batch
            return
        for key, row in batch.peers.items():
            current.peers[key] = row
            current.seen.pop(key, None)
            current.removed.discard(key)
        for key, seen in batch.seen.items():
            row = current.peers.get(key)
            if row is not None:
                current.peers[key] = row[:5] + (seen,) + row[6:]
            else:
                current.seen[key] = seen
        for key in batch.removed:
            current.peers.pop(key, None)
            current.seen.pop(key, None)
            current.removed.add(key)
        current.content.update(batch.content)
        current.completions.extend(batch.completions)
        current.totals.extend(batch.totals)
        current.nodes.update(batch.nodes)
        current.operator.extend(batch.operator)
