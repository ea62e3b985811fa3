"""The change log: what changed in the swarms since the store last wrote.

The core records into it on every change (a dict assignment, no I/O); the
store swaps it out every flush interval and writes the batch off the reactor
thread. A peer's row is kept by key, so a peer that announces ten times
between two flushes is written once, with its latest state.
"""
from __future__ import annotations

from typing import Dict, List, Set, Tuple

from tracker.core.swarm import Swarm

PeerKey = Tuple[bytes, bytes]  # (info_hash, peer_id)
# What the store keeps of a peer: (ip, port, left, uploaded, downloaded, last_seen, door)
PeerRow = Tuple[str, int, int, int, int, float, str]


class ChangeBatch:
    """One flush worth of changes."""

    __slots__ = ("peers", "seen", "removed", "content", "completions", "totals", "statements", "nodes")

    def __init__(self) -> None:
        self.peers: Dict[PeerKey, PeerRow] = {}
        # Peers whose last-seen time alone changed (a CDN node pinned or unpinned).
        self.seen: Dict[PeerKey, float] = {}
        self.removed: Set[PeerKey] = set()
        self.content: Dict[bytes, Swarm] = {}
        self.completions: List[Tuple[bytes, bytes, float]] = []
        # (minute, swarms, peers, seeders, leechers, announces)
        self.totals: List[Tuple[int, int, int, int, int, int]] = []
        # Rare changes (access lists, tokens, settings) as (SQL, parameters).
        self.statements: List[Tuple[str, tuple]] = []
        # CDN nodes seen: node id -> (ip, port, region, seen at)
        self.nodes: Dict[str, Tuple[str, int, object, float]] = {}

    def __len__(self) -> int:
        return (len(self.peers) + len(self.seen) + len(self.removed) + len(self.content) + len(self.completions)
                + len(self.totals) + len(self.statements) + len(self.nodes))


class ChangeLog:
    """Collects changes for the store; `take()` hands them over and starts afresh."""

    def __init__(self) -> None:
        self._batch = ChangeBatch()

    def __len__(self) -> int:
        return len(self._batch)

    def peer_updated(self, info_hash: bytes, peer_id: bytes, row: PeerRow) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        batch.peers[key] = row
        if batch.removed:
            batch.removed.discard(key)
        if batch.seen:
            batch.seen.pop(key, None)

    def peer_seen(self, info_hash: bytes, peer_id: bytes, last_seen: float) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        row = batch.peers.get(key)
        if row is not None:
            batch.peers[key] = row[:5] + (last_seen,) + row[6:]
        else:
            batch.seen[key] = last_seen

    def peer_removed(self, info_hash: bytes, peer_id: bytes) -> None:
        key = (info_hash, peer_id)
        batch = self._batch
        batch.peers.pop(key, None)
        batch.seen.pop(key, None)
        batch.removed.add(key)

    def content_changed(self, swarm: Swarm) -> None:
        self._batch.content[swarm.info_hash] = swarm

    def completed(self, swarm: Swarm, peer_id: bytes, now: float) -> None:
        self._batch.content[swarm.info_hash] = swarm
        self._batch.completions.append((swarm.info_hash, peer_id, now))

    def totals(self, row: Tuple[int, int, int, int, int, int]) -> None:
        self._batch.totals.append(row)

    def node_seen(self, node_id: str, ip: str, port: int, region, now: float) -> None:
        self._batch.nodes[node_id] = (ip, port, region, now)

    def statement(self, sql: str, parameters: tuple) -> None:
        self._batch.statements.append((sql, parameters))

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
        for info_hash, swarm in batch.content.items():
            current.content.setdefault(info_hash, swarm)
        current.completions[:0] = batch.completions
        current.totals[:0] = batch.totals
        current.statements[:0] = batch.statements
        for node_id, row in batch.nodes.items():
            current.nodes.setdefault(node_id, row)
