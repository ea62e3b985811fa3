"""The change log: what changed since the store last wrote, as plain values.

The core, the line door and the admin API record into it (a dict assignment,
no I/O, no SQL); a consumer (the SQLite writer today, a replicator later)
takes the log every flush interval and turns the batch into its own writes
off the reactor thread. Nothing in a batch refers to a live object: a swarm's
content row is copied when it changes.

Peer and content changes are written as packed records, in order, into two
bytearrays per batch (see ChangeBatch); a consumer reading `batch.peers` and
the like gets them as dicts, the latest state per key.

With `coarsen_last_seen(R)`, the core does not record a re-announce that
moves only a peer's last-seen time (its byte counters and bytes left may move
too, but not whether it seeds) while the time stays in the same R-second
bucket as the peer's previous one: the stored time then lags the true one by
less than R, which restore allows for (see SQLiteStore.restore). Nothing is
kept per peer for this: the core compares the old time with the new.
"""
from __future__ import annotations

import struct
import sys
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

import attr

PeerKey = Tuple[bytes, bytes]  # (info_hash, peer_id)
# What the store keeps of a peer: (ip, port, left, uploaded, downloaded, last_seen, door)
PeerRow = Tuple[str, int, int, int, int, float, str]
# A swarm's content row: (first_seen, completed, name, size)
ContentRow = Tuple[float, int, Optional[str], Optional[int]]
# (minute, swarms, peers, seeders, leechers, announces)
TotalsTuple = Tuple[int, int, int, int, int, int]

_frozen = attr.s(slots=True, frozen=True)

# Records of a batch's peer log (ChangeBatch.peer_log), each a kind byte then:
UPSERT, SEEN, REMOVED = 1, 2, 3
# An UPSERT of a new swarm's first peer that stands for the swarm's content row
# as well (first seen = this last seen, no completion, name or size): a flood of
# new swarms waits at about 90 bytes a swarm instead of 140.
FIRST = 4
# info_hash, peer_id, port, left, uploaded, downloaded, last seen, then the
# lengths of the address and the door, which follow as ASCII;
_UPSERT = struct.Struct("<B20s20sHQQQdBB")
_SEEN_REC = struct.Struct("<B20s20sd")  # info_hash, peer_id, last seen
_REMOVED_REC = struct.Struct("<B20s20s")  # info_hash, peer_id
# A content log's record: info_hash, first seen, completed, size, the length
# of the name (UTF-8, which follows); these stand for None:
_CONTENT_REC = struct.Struct("<20sdqqI")
NO_SIZE = -1
NO_NAME = 0xFFFFFFFF
# CPython keeps a batch's records packed (as small objects they would fragment
# memory the core could not reuse); PyPy, where packing is slow on the
# announce path and whose moving collector does not fragment, as tuples in a list.
PACKED = sys.implementation.name == "cpython"


def new_log():
    return bytearray() if PACKED else []


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


class _Views:
    """A batch's peer and content changes as dicts and a set, latest state
    per key (what ChangeBatch's `peers`, `seen`, `removed`, `content` give)."""

    __slots__ = ("peers", "seen", "removed", "content")

    def __init__(self) -> None:
        self.peers: Dict[PeerKey, PeerRow] = {}
        self.seen: Dict[PeerKey, float] = {}
        self.removed: Set[PeerKey] = set()
        self.content: Dict[bytes, ContentRow] = {}

    def replay(self, peer_log: bytes, content_log: bytes) -> None:
        peers, seen, removed = self.peers, self.seen, self.removed
        for kind, key, value in peer_records(peer_log):
            if kind == UPSERT or kind == FIRST:
                if kind == FIRST:
                    self.content[key[0]] = (value[5], 0, None, None)
                peers[key] = value
                seen.pop(key, None)
                removed.discard(key)
            elif kind == SEEN:
                row = peers.get(key)
                if row is not None:
                    peers[key] = row[:5] + (value,) + row[6:]
                else:
                    seen[key] = value
            else:
                peers.pop(key, None)
                seen.pop(key, None)
                removed.add(key)
        for info_hash, row in content_records(content_log):
            self.content[info_hash] = row


def peer_records(log: bytes) -> Iterator[Tuple[int, PeerKey, Any]]:
    """(kind, key, row or last-seen time or None) for each record of a peer log, in order."""
    if type(log) is list:  # PyPy: (kind, info_hash, peer_id, value)
        for kind, info_hash, peer_id, value in log:
            yield kind, (info_hash, peer_id), value
        return
    at, end = 0, len(log)
    while at < end:
        kind = log[at]
        if kind == UPSERT or kind == FIRST:
            (_, info_hash, peer_id, port, left, up, down, seen, ip_len,
             door_len) = _UPSERT.unpack_from(log, at)
            at += _UPSERT.size
            ip = log[at:at + ip_len].decode("ascii")
            at += ip_len
            door = log[at:at + door_len].decode("ascii")
            at += door_len
            yield kind, (info_hash, peer_id), (ip, port, left, up, down, seen, door)
        elif kind == SEEN:
            _, info_hash, peer_id, seen = _SEEN_REC.unpack_from(log, at)
            at += _SEEN_REC.size
            yield kind, (info_hash, peer_id), seen
        else:
            _, info_hash, peer_id = _REMOVED_REC.unpack_from(log, at)
            at += _REMOVED_REC.size
            yield kind, (info_hash, peer_id), None


def content_records(log: bytes) -> Iterator[Tuple[bytes, ContentRow]]:
    if type(log) is list:  # PyPy: (info_hash, row)
        yield from log
        return
    at, end = 0, len(log)
    while at < end:
        info_hash, first_seen, completed, size, name_len = _CONTENT_REC.unpack_from(log, at)
        at += _CONTENT_REC.size
        name = None
        if name_len != NO_NAME:
            name = log[at:at + name_len].decode("utf-8")
            at += name_len
        yield info_hash, (first_seen, completed, name, None if size == NO_SIZE else size)


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

    The change log writes peer and content changes as packed records, in
    order, into two bytearrays (`peer_log`, `content_log`): a flood of new
    peers can leave hundreds of thousands waiting for a store that falls
    behind, and as records they take about 90 bytes a new swarm, in two
    blocks that go back to the system whole once written (as small objects
    they took about 400 and 160 bytes, and left the memory they had
    fragmented). A writer may replay the records in order (`peer_records`,
    `content_records`); reading or setting `peers`, `seen`, `removed` or
    `content` turns them into dicts and a set for good.
    """

    __slots__ = ("peer_log", "peer_changes", "content_log", "content_changes", "_views",
                 "completions", "totals", "nodes", "operator")

    def __init__(self) -> None:
        self.peer_log = new_log()
        self.peer_changes = 0
        self.content_log = new_log()
        self.content_changes = 0
        self._views: Optional[_Views] = None
        self.completions: List[Tuple[bytes, bytes, float]] = []
        self.totals: List[TotalsTuple] = []
        self.nodes: Dict[str, Tuple[str, int, Optional[str], float]] = {}
        self.operator: List[OperatorChange] = []

    @property
    def packed(self) -> bool:
        """Whether the peer and content changes are still records (not dicts)."""
        return self._views is None

    def views(self) -> _Views:
        views = self._views
        if views is None:
            views = self._views = _Views()
            views.replay(self.peer_log, self.content_log)
            self.peer_log, self.content_log = new_log(), new_log()
            self.peer_changes = self.content_changes = 0
        return views

    peers = property(lambda self: self.views().peers,
                     lambda self, value: setattr(self.views(), "peers", value))
    seen = property(lambda self: self.views().seen,
                    lambda self, value: setattr(self.views(), "seen", value))
    removed = property(lambda self: self.views().removed,
                       lambda self, value: setattr(self.views(), "removed", value))
    content = property(lambda self: self.views().content,
                       lambda self, value: setattr(self.views(), "content", value))

    def __len__(self) -> int:
        views = self._views
        if views is None:
            changes = self.peer_changes + self.content_changes
        else:
            changes = len(views.peers) + len(views.seen) + len(views.removed) + len(views.content)
        return (changes + len(self.completions) + len(self.totals) + len(self.nodes)
                + len(self.operator))

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
        # (info_hash, first seen, where) of a new swarm's content record at the
        # end of the content log, which its first peer's record may stand for.
        self._fresh: Optional[Tuple[bytes, float, int]] = None

    def __len__(self) -> int:
        return len(self._batch)

    def coarsen_last_seen(self, resolution_s: float) -> None:
        """Record a peer whose re-announce changes only its last-seen time at
        most once per `resolution_s` bucket of time (0: record every change)."""
        self.seen_resolution_s = resolution_s

    def forget_recent(self) -> None:
        """Kept for consumers that lost what they had been given: nothing is
        remembered per peer (the core compares buckets), so a full rewrite
        (tracker/store/service.py's record_everything) is all it takes."""

    def peer_updated(self, info_hash: bytes, peer_id: bytes, row: PeerRow) -> None:
        batch = self._batch
        if batch._views is not None:
            key = (info_hash, peer_id)
            batch.peers[key] = row
            batch.removed.discard(key)
            batch.seen.pop(key, None)
            return
        batch.peer_changes += 1
        if not PACKED:
            batch.peer_log.append((UPSERT, info_hash, peer_id, row))
            return
        ip, port, left, uploaded, downloaded, last_seen, door = row
        address = ip.encode("ascii")
        door_name = door.encode("ascii")
        kind = UPSERT
        fresh = self._fresh
        if fresh is not None:
            self._fresh = None
            if (fresh[0] == info_hash and fresh[1] == last_seen
                    and len(batch.content_log) == fresh[2] + _CONTENT_REC.size):
                del batch.content_log[fresh[2]:]  # this record stands for it
                batch.content_changes -= 1
                kind = FIRST
        batch.peer_log += _UPSERT.pack(kind, info_hash, peer_id, port, left, uploaded,
                                       downloaded, last_seen, len(address), len(door_name))
        batch.peer_log += address + door_name

    def peer_seen(self, info_hash: bytes, peer_id: bytes, last_seen: float) -> None:
        batch = self._batch
        if batch._views is None:
            batch.peer_log += (_SEEN_REC.pack(SEEN, info_hash, peer_id, last_seen) if PACKED
                               else [(SEEN, info_hash, peer_id, last_seen)])
            batch.peer_changes += 1
            return
        key = (info_hash, peer_id)
        row = batch.peers.get(key)
        if row is not None:
            batch.peers[key] = row[:5] + (last_seen,) + row[6:]
        else:
            batch.seen[key] = last_seen

    def peer_removed(self, info_hash: bytes, peer_id: bytes) -> None:
        batch = self._batch
        if batch._views is None:
            batch.peer_log += (_REMOVED_REC.pack(REMOVED, info_hash, peer_id) if PACKED
                               else [(REMOVED, info_hash, peer_id, None)])
            batch.peer_changes += 1
            return
        key = (info_hash, peer_id)
        batch.peers.pop(key, None)
        batch.seen.pop(key, None)
        batch.removed.add(key)

    def content_changed(self, swarm) -> None:
        """A swarm was created or its content row changed: copy the row now."""
        batch = self._batch
        if batch._views is not None:
            batch.content[swarm.info_hash] = (swarm.first_seen, swarm.completed, swarm.name,
                                              swarm.size)
            return
        batch.content_changes += 1
        if not PACKED:
            batch.content_log.append((swarm.info_hash, (swarm.first_seen, swarm.completed,
                                                        swarm.name, swarm.size)))
            return
        name, size = swarm.name, swarm.size
        name_bytes = b"" if name is None else name.encode("utf-8")
        self._fresh = None
        if name is None and size is None and not swarm.completed:
            self._fresh = (swarm.info_hash, swarm.first_seen, len(batch.content_log))
        batch.content_log += _CONTENT_REC.pack(
            swarm.info_hash, swarm.first_seen, swarm.completed,
            NO_SIZE if size is None else size, NO_NAME if name is None else len(name_bytes))
        if name_bytes:
            batch.content_log += name_bytes

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
        self._fresh = None
        return batch

    def give_back(self, batch: ChangeBatch) -> None:
        """Return a batch that could not be written; newer changes win."""
        current = self._batch
        self._fresh = None
        if batch.packed and current.packed:  # the older records first, then the newer
            current.peer_log[:0] = batch.peer_log
            current.content_log[:0] = batch.content_log
            current.peer_changes += batch.peer_changes
            current.content_changes += batch.content_changes
        else:
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
        self._fresh = None
        if not current:
            self._batch = batch
            return
        if batch.packed and current.packed:
            current.peer_log += batch.peer_log
            current.content_log += batch.content_log
            current.peer_changes += batch.peer_changes
            current.content_changes += batch.content_changes
        else:
            self._absorb_views(current, batch)
        current.completions.extend(batch.completions)
        current.totals.extend(batch.totals)
        current.nodes.update(batch.nodes)
        current.operator.extend(batch.operator)

    @staticmethod
    def _absorb_views(current: ChangeBatch, batch: ChangeBatch) -> None:
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
