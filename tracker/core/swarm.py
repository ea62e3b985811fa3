"""Swarms and peer records: the in-memory state the tracker coordinates."""
from __future__ import annotations

import random
import socket
from typing import Dict, List, Optional, Set

# Event codes use BEP 15's numbering so the UDP door maps them directly.
EVENT_NONE = 0
EVENT_COMPLETED = 1
EVENT_STARTED = 2
EVENT_STOPPED = 3

# The door a peer came in by.
DOOR_HTTP = "http"
DOOR_UDP = "udp"
DOOR_LINE = "line"


def compact_address(ip: str, port: int) -> bytes:
    """The BEP 23 / BEP 7 compact form: 4 or 16 address bytes, then the port."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return socket.inet_pton(family, ip) + port.to_bytes(2, "big")


class PeerRecord:
    """One peer in one swarm. `compact` is encoded once, when the address changes."""

    __slots__ = (
        "peer_id", "ip", "port", "compact", "left", "uploaded", "downloaded",
        "last_seen", "door", "slot",
    )

    def __init__(self, peer_id: bytes, ip: str, port: int, compact: bytes,
                 left: int, uploaded: int, downloaded: int, last_seen: float,
                 door: str) -> None:
        self.peer_id = peer_id
        self.ip = ip
        self.port = port
        self.compact = compact
        self.left = left
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.last_seen = last_seen
        self.door = door
        # Position in the swarm's seeder or leecher list (for O(1) removal).
        self.slot = -1

    @property
    def is_seeder(self) -> bool:
        return self.left == 0

    @property
    def is_ipv6(self) -> bool:
        return len(self.compact) == 18

    def __repr__(self) -> str:
        return "PeerRecord(%r, %s:%d, left=%d)" % (self.peer_id, self.ip, self.port, self.left)


class Swarm:
    """The peers of one piece of content, split into seeders and leechers.

    Both lists are kept dense (removal swaps the last element into the gap)
    so that a uniform random sample is a handful of index look-ups.
    """

    __slots__ = ("info_hash", "peers", "seeders", "leechers", "completed", "completed_by",
                 "first_seen", "name", "size")

    def __init__(self, info_hash: bytes, first_seen: float = 0.0) -> None:
        self.info_hash = info_hash
        self.first_seen = first_seen
        # Metadata that line-protocol nodes may give (HAVE name=... size=...).
        self.name: Optional[str] = None
        self.size: Optional[int] = None
        self.peers: Dict[bytes, PeerRecord] = {}
        self.seeders: List[PeerRecord] = []
        self.leechers: List[PeerRecord] = []
        self.completed = 0
        # Peer ids that have been counted as completed, so each counts once.
        self.completed_by: Set[bytes] = set()

    def __len__(self) -> int:
        return len(self.peers)

    def add(self, peer: PeerRecord) -> None:
        self.peers[peer.peer_id] = peer
        self._attach(peer)

    def remove(self, peer: PeerRecord) -> None:
        del self.peers[peer.peer_id]
        self._detach(peer)

    def set_left(self, peer: PeerRecord, left: int) -> None:
        """Update `left`, moving the peer between seeders and leechers if needed."""
        if (left == 0) != (peer.left == 0):
            self._detach(peer)
            peer.left = left
            self._attach(peer)
        else:
            peer.left = left

    def mark_completed(self, peer_id: bytes) -> bool:
        """Count a completion once per peer id; True if it was counted now."""
        if peer_id in self.completed_by:
            return False
        self.completed_by.add(peer_id)
        self.completed += 1
        return True

    def _attach(self, peer: PeerRecord) -> None:
        pool = self.seeders if peer.left == 0 else self.leechers
        peer.slot = len(pool)
        pool.append(peer)

    def _detach(self, peer: PeerRecord) -> None:
        pool = self.seeders if peer.left == 0 else self.leechers
        last = pool.pop()
        if last is not peer:
            pool[peer.slot] = last
            last.slot = peer.slot
        peer.slot = -1

    def select(self, requester: Optional[PeerRecord], numwant: int,
               rng: random.Random) -> List[PeerRecord]:
        """Up to `numwant` peers for `requester`: a uniform random sample, never
        the requester itself, and no seeders when the requester is a seeder."""
        if numwant <= 0:
            return []
        leechers = self.leechers
        seeders = [] if requester is not None and requester.left == 0 else self.seeders
        n_seeders = len(seeders)
        total = n_seeders + len(leechers)
        if total <= numwant + 1:
            chosen = seeders + leechers
            if requester is not None and requester.slot >= 0:
                try:
                    chosen.remove(requester)
                except ValueError:
                    pass
            return chosen[:numwant]
        # Draw one extra so that dropping the requester still leaves numwant.
        out = []
        for i in rng.sample(range(total), numwant + 1):
            peer = seeders[i] if i < n_seeders else leechers[i - n_seeders]
            if peer is not requester:
                out.append(peer)
        del out[numwant:]
        return out
