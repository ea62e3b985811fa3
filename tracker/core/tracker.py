"""The tracker core: announce, scrape and expiry over in-memory swarms.

No network imports and no clock: every call that needs the time is given `now`.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Protocol, Set

import attr

from tracker.core.changes import ChangeLog

if TYPE_CHECKING:
    from tracker.core.access import AccessPolicy
from tracker.core.swarm import (
    EVENT_COMPLETED, EVENT_STOPPED, PeerRecord, Swarm, compact_address,
)

MINUTE = 60


class TrackerError(Exception):
    """A request the tracker refuses. `code` is stable (for counters and
    metrics); `message` is what a client shows its user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attr.s(slots=True, frozen=True)
class TrackerSettings:
    """The knobs of the core; the service builds this from the options."""

    interval_s = attr.ib(default=30 * MINUTE)
    min_interval_s = attr.ib(default=15 * MINUTE)
    # None means twice the announce interval.
    peer_ttl_s = attr.ib(default=None)
    default_numwant = attr.ib(default=50)
    max_numwant = attr.ib(default=200)
    max_scrape_hashes = attr.ib(default=100)

    @property
    def effective_peer_ttl_s(self) -> int:
        return self.peer_ttl_s if self.peer_ttl_s is not None else 2 * self.interval_s


@attr.s(slots=True)
class AnnounceRequest:
    """One announce, whatever door it came in by, already parsed."""

    info_hash = attr.ib()  # type: bytes
    peer_id = attr.ib()  # type: bytes
    ip = attr.ib()  # type: str
    port = attr.ib()  # type: int
    uploaded = attr.ib(default=0)  # type: int
    downloaded = attr.ib(default=0)  # type: int
    left = attr.ib(default=0)  # type: int
    event = attr.ib(default=0)  # type: int
    numwant = attr.ib(default=None)  # type: Optional[int]
    door = attr.ib(default="http")  # type: str
    # BEP 41 URL data of a UDP announce (path and query of the announce URL),
    # carried for features such as passkeys; the core does not read it yet.
    url_data = attr.ib(default=b"")  # type: bytes


@attr.s(slots=True)
class AnnounceResult:
    complete = attr.ib()  # type: int
    incomplete = attr.ib()  # type: int
    peers = attr.ib()  # type: List[PeerRecord]
    interval_s = attr.ib()  # type: int
    min_interval_s = attr.ib()  # type: int


@attr.s(slots=True, frozen=True)
class ScrapeEntry:
    complete = attr.ib()  # type: int
    downloaded = attr.ib()  # type: int
    incomplete = attr.ib()  # type: int


class TrackerStats:
    """Counters a door or the admin API reads: requests per door, failures by code."""

    __slots__ = ("announces", "scrapes", "failures", "expired_peers")

    def __init__(self) -> None:
        self.announces: Dict[str, int] = {}
        self.scrapes: Dict[str, int] = {}
        self.failures: Dict[str, int] = {}
        self.expired_peers = 0

    def count_failure(self, code: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1


MAX_COUNTER = 2 ** 63 - 1


class SwarmWatcher(Protocol):
    """Told when a peer joins or leaves a watched swarm, whatever door it used."""

    def swarm_changed(self, info_hash: bytes, peer: PeerRecord, joined: bool) -> None: ...


# Stands in for a seeder that asks for peers without being in the swarm.
_SEEDER_PROBE = PeerRecord(b"", "0.0.0.0", 0, b"", 0, 0, 0, 0.0, "")


class TrackerCore:
    """Every swarm, keyed by 20-byte info hash, and the operations on them."""

    def __init__(self, settings: Optional[TrackerSettings] = None,
                 rng: Optional[random.Random] = None,
                 changes: Optional[ChangeLog] = None,
                 access: Optional["AccessPolicy"] = None) -> None:
        self.settings = settings or TrackerSettings()
        if access is None:
            from tracker.core.access import AccessPolicy
            access = AccessPolicy()
        self.access = access
        # Where changes are recorded for the store (None: nothing is persisted).
        self.changes = changes
        self.swarms: Dict[bytes, Swarm] = {}
        self.peer_count = 0
        self.stats = TrackerStats()
        self._rng = rng or random.Random()
        self._scrape_zero = ScrapeEntry(0, 0, 0)
        # Swarm watchers (the line door's SUBSCRIBE): info_hash -> listeners.
        self._watchers: Dict[bytes, Set[SwarmWatcher]] = {}

    # -- announce -----------------------------------------------------------

    def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult:
        """Record the peer's state and return peers for it.

        Raises TrackerError, before changing anything, for a request that
        cannot be right."""
        if len(req.info_hash) != 20:
            raise TrackerError("invalid_info_hash", "info_hash must be 20 bytes")
        if len(req.peer_id) != 20:
            raise TrackerError("invalid_peer_id", "peer_id must be 20 bytes")
        if not 0 < req.port < 65536:
            raise TrackerError("invalid_port", "port must be between 1 and 65535")
        if not (0 <= req.left <= MAX_COUNTER and 0 <= req.uploaded <= MAX_COUNTER
                and 0 <= req.downloaded <= MAX_COUNTER):
            raise TrackerError("invalid_counter", "left, uploaded and downloaded must be 0 to 2^63-1")
        if self.access.active:
            self.access.check(req.info_hash, req.ip)
        settings = self.settings
        numwant = req.numwant
        if numwant is None or numwant < 0:
            numwant = settings.default_numwant
        elif numwant > settings.max_numwant:
            numwant = settings.max_numwant

        stats = self.stats
        stats.announces[req.door] = stats.announces.get(req.door, 0) + 1
        swarm = self.swarms.get(req.info_hash)
        if req.event == EVENT_STOPPED:
            if swarm is None:
                return AnnounceResult(0, 0, [], settings.interval_s, settings.min_interval_s)
            peer = swarm.peers.get(req.peer_id)
            if peer is not None:
                self._remove(swarm, peer)
            return AnnounceResult(len(swarm.seeders), len(swarm.leechers), [],
                                  settings.interval_s, settings.min_interval_s)

        changes = self.changes
        if swarm is None:
            swarm = self.swarms[req.info_hash] = Swarm(req.info_hash, now)
            peer = None
            if changes is not None:
                changes.content_changed(swarm)
        else:
            peer = swarm.peers.get(req.peer_id)
        if peer is None:
            peer = PeerRecord(req.peer_id, req.ip, req.port, compact_address(req.ip, req.port),
                              req.left, req.uploaded, req.downloaded, now, req.door)
            swarm.add(peer)
            self.peer_count += 1
            if self._watchers:
                self._notify(req.info_hash, peer, True)
        else:
            if peer.port != req.port or peer.ip != req.ip:
                peer.ip = req.ip
                peer.port = req.port
                peer.compact = compact_address(req.ip, req.port)
            if peer.left != req.left:
                swarm.set_left(peer, req.left)
            peer.uploaded = req.uploaded
            peer.downloaded = req.downloaded
            peer.last_seen = now
            peer.door = req.door
        if req.event == EVENT_COMPLETED and swarm.mark_completed(req.peer_id) and changes is not None:
            changes.completed(swarm, req.peer_id, now)
        if changes is not None:
            changes.peer_updated(req.info_hash, peer)
        return AnnounceResult(len(swarm.seeders), len(swarm.leechers),
                              swarm.select(peer, numwant, self._rng),
                              settings.interval_s, settings.min_interval_s)

    def _remove(self, swarm: Swarm, peer: PeerRecord) -> None:
        swarm.remove(peer)
        self.peer_count -= 1
        if self.changes is not None:
            self.changes.peer_removed(swarm.info_hash, peer.peer_id)
        if self._watchers:
            self._notify(swarm.info_hash, peer, False)

    def remove_peer(self, info_hash: bytes, peer_id: bytes) -> bool:
        """Take a peer out of a swarm (a node dropping content, or its grace
        period ending); True if it was there."""
        swarm = self.swarms.get(info_hash)
        peer = swarm.peers.get(peer_id) if swarm is not None else None
        if peer is None:
            return False
        self._remove(swarm, peer)
        return True

    def drop_swarm(self, info_hash: bytes) -> int:
        """Remove every peer of a swarm (content just refused); returns how many."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return 0
        peers = list(swarm.peers.values())
        for peer in peers:
            self._remove(swarm, peer)
        if not swarm.completed:
            del self.swarms[info_hash]
        return len(peers)

    def pin(self, info_hash: bytes, peer_id: bytes, until: float) -> None:
        """Set a peer's last-seen time: the line door pins its nodes' entries at
        infinity while they are connected (no re-announcing needed) and back
        to the disconnect time when they leave."""
        swarm = self.swarms.get(info_hash)
        peer = swarm.peers.get(peer_id) if swarm is not None else None
        if peer is not None:
            peer.last_seen = until
            if self.changes is not None:
                self.changes.peer_updated(info_hash, peer)

    def peers(self, info_hash: bytes, numwant: int, requester_id: Optional[bytes] = None,
              seeder: bool = False) -> List[PeerRecord]:
        """A sample of a swarm's peers without announcing (the line door's PEERS)."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return []
        requester = swarm.peers.get(requester_id) if requester_id is not None else None
        if requester is None and seeder:
            # A seeder that is not in the swarm still gets no seeders.
            return swarm.select(_SEEDER_PROBE, numwant, self._rng)
        return swarm.select(requester, numwant, self._rng)

    # -- watching swarms ------------------------------------------------------

    def watch(self, info_hash: bytes, watcher: "SwarmWatcher") -> None:
        self._watchers.setdefault(info_hash, set()).add(watcher)

    def unwatch(self, info_hash: bytes, watcher: "SwarmWatcher") -> None:
        watchers = self._watchers.get(info_hash)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[info_hash]

    def _notify(self, info_hash: bytes, peer: PeerRecord, joined: bool) -> None:
        watchers = self._watchers.get(info_hash)
        if watchers:
            for watcher in list(watchers):
                watcher.swarm_changed(info_hash, peer, joined)

    # -- scrape -------------------------------------------------------------

    def scrape(self, info_hashes: Iterable[bytes], door: str = "http") -> Dict[bytes, ScrapeEntry]:
        """Seeders, completions and leechers per hash; unknown hashes give zeros."""
        hashes = list(info_hashes)
        if not hashes:
            raise TrackerError("full_scrape_refused", "scrape needs at least one info_hash")
        if len(hashes) > self.settings.max_scrape_hashes:
            raise TrackerError("too_many_hashes", "at most %d info_hash values per scrape"
                               % self.settings.max_scrape_hashes)
        for h in hashes:
            if len(h) != 20:
                raise TrackerError("invalid_info_hash", "info_hash must be 20 bytes")
        self.stats.scrapes[door] = self.stats.scrapes.get(door, 0) + 1
        out = {}
        for h in hashes:
            swarm = self.swarms.get(h)
            if swarm is None:
                out[h] = self._scrape_zero
            else:
                out[h] = ScrapeEntry(len(swarm.seeders), swarm.completed, len(swarm.leechers))
        return out

    # -- expiry -------------------------------------------------------------

    def expire(self, now: float, budget: int) -> Iterator[int]:
        """Remove peers not heard from within the time to live, in slices.

        A generator: it yields (the number of peers removed so far) after
        examining every `budget` peers, so the caller can hand the thread back
        between slices. Swarms left empty with no completions are dropped."""
        cutoff = now - self.settings.effective_peer_ttl_s
        examined = 0
        removed = 0
        for info_hash in list(self.swarms):
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            for peer in list(swarm.peers.values()):
                examined += 1
                if peer.last_seen < cutoff and swarm.peers.get(peer.peer_id) is peer:
                    self._remove(swarm, peer)
                    removed += 1
                if examined >= budget:
                    examined = 0
                    yield removed
            if not swarm.peers and not swarm.completed and self.swarms.get(info_hash) is swarm:
                del self.swarms[info_hash]
        self.stats.expired_peers += removed
        yield removed

    # -- restoring from the store ----------------------------------------------

    def restore_swarm(self, info_hash: bytes, first_seen: float, completed: int,
                      name: Optional[str] = None, size: Optional[int] = None) -> Swarm:
        """Recreate a swarm at start-up (nothing is recorded as changed)."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm(info_hash, first_seen)
        swarm.completed = completed
        swarm.name = name
        swarm.size = size
        return swarm

    def describe(self, info_hash: bytes, name: Optional[str], size: Optional[int],
                 now: float) -> Swarm:
        """Record content metadata (a node's HAVE name=... size=...)."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm(info_hash, now)
        changed = False
        if name is not None and swarm.name != name:
            swarm.name, changed = name, True
        if size is not None and swarm.size != size:
            swarm.size, changed = size, True
        if changed and self.changes is not None:
            self.changes.content_changed(swarm)
        return swarm

    def restore_peer(self, swarm: Swarm, peer: PeerRecord) -> None:
        if peer.peer_id not in swarm.peers:
            swarm.add(peer)
            self.peer_count += 1

    # -- figures --------------------------------------------------------------

    def totals(self) -> Dict[str, int]:
        seeders = leechers = 0
        for swarm in self.swarms.values():
            seeders += len(swarm.seeders)
            leechers += len(swarm.leechers)
        return {"swarms": len(self.swarms), "peers": self.peer_count,
                "seeders": seeders, "leechers": leechers}
