"""The change log: what changed since the store last wrote, as plain values.

The core, the line door and the admin API record into it (a dict assignment,
no I/O, no SQL); a consumer (the SQLite writer today, a replicator later)
takes the log every flush interval and turns the batch into its own writes
off the reactor thread. Nothing in a batch refers to a live object: a swarm's
content row is copied when it changes.

A peer's row is kept by key, so a peer that announces ten times between two
flushes is written once, with its latest state. With `coarsen_last_seen(R)`,
a re-announce that moves only the peer's last-seen time (and its byte
counters) is not written again within the same R-second window as a row
already handed over: the stored time then lags the true one by less than R,
which restore allows for (see SQLiteStore.restore).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

import attr

PeerKey = Tuple[bytes, bytes]  # (info_hash, peer_id)
# What the store keeps of a peer: (ip, port, left, uploaded, downloaded, last_seen, door)
PeerRow = Tuple[str, int, int, int, int, float, str]
# A swarm's content row: (first_seen, completed, name, size)
ContentRow = Tuple[float, int, Optional[str], Optional[int]]
# (minute, swarms, peers, seeders, leechers, announces)
TotalsTuple = Tuple[int, int, int, int, int, int]

_frozen = attr.s(slots=True, frozen=True)

# Peers remembered per last-seen window (their latest row, about 250 bytes
# each); past this, the others' re-announces are simply written again.
RECENT_MAX = 200_000


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
    """

    __slots__ = ("peers", "seen", "removed", "content", "completions", "totals", "nodes",
                 "operator")

    def __init__(self) -> None:
        self.peers: Dict[PeerKey, PeerRow] = {}
        self.seen: Dict[PeerKey, float] = {}
        self.removed: Set[PeerKey] = set()
        self.content: Dict[bytes, ContentRow] = {}
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
        self.seen_resolution_s = 0.0
        # Within the current window: hash(key) -> the row recorded for that
        # peer (the row is kept anyway until the batch is written).
        self._recent: Dict[int, PeerRow] = {}
        self._window_ends = float("-inf")
        self.coalesced = 0  # re-announces not written again (for the figures)

    def __len__(self) -> int:
        return len(self._batch)

    def coarsen_last_seen(self, resolution_s: float) -> None:
        """Write a peer whose re-announce changes only its last-seen time at
        most once per `resolution_s` window (0: write every change)."""
        self.seen_resolution_s = resolution_s
        self._recent = {}
        self._window_ends = float("-inf")

    def _new_window(self, now: float) -> Dict[int, PeerRow]:
        """Start remembering afresh, at a window's end."""
        resolution = self.seen_resolution_s
        self._window_ends = (now // resolution + 1) * resolution
        self._recent = {}
        return self._recent

    def forget_recent(self) -> None:
        """Write the next update of every peer, whatever the window says (the
        consumer lost what it had been given)."""
        self._recent = {}

    def peer_updated(self, info_hash: bytes, peer_id: bytes, row: PeerRow) -> None:
        key = (info_hash, peer_id)
        if self.seen_resolution_s:
            recent = self._recent
            if row[5] >= self._window_ends:
                recent = self._new_window(row[5])
            fingerprint = hash(key)
            if len(recent) < RECENT_MAX:
                old = recent.setdefault(fingerprint, row)
            else:  # full: peers not remembered are written every time
                old = recent.get(fingerprint, row)
            if old is not row:
                # Same address, bytes left and door: only the clock (and counters) moved.
                if old[1] == row[1] and old[0] == row[0] and old[2] == row[2] and old[6] == row[6]:
                    self.coalesced += 1
                    return
                recent[fingerprint] = row
        batch = self._batch
        batch.peers[key] = row
        if batch.removed:
            batch.removed.discard(key)
        if batch.seen:
            batch.seen.pop(key, None)

    def peer_seen(self, info_hash: bytes, peer_id: bytes, last_seen: float) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        if self._recent:
            self._recent.pop(hash(key), None)
        row = batch.peers.get(key)
        if row is not None:
            batch.peers[key] = row[:5] + (last_seen,) + row[6:]
        else:
            batch.seen[key] = last_seen

    def peer_removed(self, info_hash: bytes, peer_id: bytes) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        if self._recent:
            self._recent.pop(hash(key), None)
        batch.peers.pop(key, None)
        batch.seen.pop(key, None)
        batch.removed.add(key)

    def content_changed(self, swarm) -> None:
        """A swarm was created or its content row changed: copy the row now."""
        self._batch.content[swarm.info_hash] = (swarm.first_seen, swarm.completed, swarm.name,
                                                swarm.size)

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
