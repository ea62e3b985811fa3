"""The tracker core: announce, scrape and expiry over in-memory swarms.

No network imports and no clock: every call that needs the time is given `now`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import random
from collections import OrderedDict
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Set, Tuple

import attr

from tracker.addresses import pack_ip
from tracker.cache import BoundedCache
from tracker.core.access import AccessPolicy
from tracker.core.changes import ChangeLog
from tracker.core.errors import TrackerError
from tracker.core.swarm import (
    DOOR_CODES, DOOR_LINE, EVENT_COMPLETED, EVENT_STOPPED, NO_KEY, PeerPool, PeerView, Swarm,
)

MINUTE = 60
# Below this many swarms, the swarm table is never rebuilt (it is small anyway).
COMPACT_FROM = 65536
# glibc's mallopt parameter, and the size from which a block gets its own mapping.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20


def fix_malloc_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc give every block of `threshold` bytes or more its own
    mapping, returned to the system when freed. By default glibc raises that
    threshold (up to 32 MiB) each time such a block is freed, and blocks under
    it then come from the heap, where they stay in RSS once freed: the old
    tables a growing swarm table leaves behind made a second flood of a
    million swarms, after the first had expired, take 32 MiB more than the
    first. False where there is no glibc `mallopt` (nothing changes)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))

NOT_OWNER = ("this peer id is announced from another address: announce from that address,"
             " or with the key it was announced with")


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
    # Memory caps: announces that would add a swarm or a peer beyond them are
    # refused (None: no cap; the service sizes them from the machine's memory).
    max_swarms = attr.ib(default=None)  # type: Optional[int]
    max_peers = attr.ib(default=None)  # type: Optional[int]
    # A new peer is refused while this many changes wait to be written to the
    # database (`TrackerCore.store_log`; None: no cap): what a crash may lose,
    # and the write-behind's memory, stay bounded when the disk is slow or failing.
    max_write_backlog = attr.ib(default=None)  # type: Optional[int]

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
    # carried for features such as passkeys (the core itself does not read it).
    url_data = attr.ib(default=b"")  # type: bytes
    # Which peers to return: 4 or 6 for one address family (UDP), 0 for both.
    family = attr.ib(default=0)  # type: int
    # False when the client wants BEP 3's list of dicts: the result then has peer_list.
    compact = attr.ib(default=True)  # type: bool
    # The client's owner key (BEP 3 `key`, BEP 15 key field) as a 32-bit number;
    # NO_KEY (0) when it sent none.
    key = attr.ib(default=NO_KEY)  # type: int
    # The address the request came from when `ip` is one the client declared
    # (--allow-ip-param); "" when `ip` is where it came from. Ownership is
    # decided from this address, never from a declared one.
    source_ip = attr.ib(default="")  # type: str


@attr.s(slots=True)
class AnnounceResult:
    """Counts and the peers chosen, in compact form: `peers` IPv4 (6 bytes
    each), `peers6` IPv6 (18 bytes each); `peer_list` only for a request that
    is not compact."""

    complete = attr.ib()  # type: int
    incomplete = attr.ib()  # type: int
    peers = attr.ib()  # type: bytes
    peers6 = attr.ib()  # type: bytes
    interval_s = attr.ib()  # type: int
    min_interval_s = attr.ib()  # type: int
    peer_list = attr.ib(default=None)  # type: Optional[List[PeerView]]


@attr.s(slots=True, frozen=True)
class ScrapeEntry:
    complete = attr.ib()  # type: int
    downloaded = attr.ib()  # type: int
    incomplete = attr.ib()  # type: int


class TrackerStats:
    """Counters a door or the admin API reads: requests per door, failures by
    door and reason (the core raises TrackerError with a reason; the door
    that answered it counts it, so the core need not know doors)."""

    __slots__ = ("announces", "scrapes", "failures", "expired_peers", "idle_swarms_dropped")

    def __init__(self) -> None:
        self.announces: Dict[str, int] = {}
        self.scrapes: Dict[str, int] = {}
        self.failures: Dict[Tuple[str, str], int] = {}  # (door, reason) -> count
        self.expired_peers = 0
        # Swarms without peers dropped from memory, the idle table being full.
        self.idle_swarms_dropped = 0

    def count_failure(self, reason: str, door: str) -> None:
        key = (door, reason)
        self.failures[key] = self.failures.get(key, 0) + 1

    def failures_by_door(self) -> Dict[str, Dict[str, int]]:
        """{door: {reason: count}}, for JSON."""
        out: Dict[str, Dict[str, int]] = {}
        for (door, reason), count in self.failures.items():
            out.setdefault(door, {})[reason] = count
        return out


# The largest byte count (uploaded, downloaded, left) any door accepts: SQLite's
# signed 64-bit integer, where the store keeps it.
MAX_COUNTER = 2 ** 63 - 1


def check_request(req: AnnounceRequest) -> None:
    """Raise TrackerError for an announce that cannot be right, whatever the state."""
    if len(req.info_hash) != 20:
        raise TrackerError("invalid_info_hash", "info_hash must be 20 bytes")
    if len(req.peer_id) != 20:
        raise TrackerError("invalid_peer_id", "peer_id must be 20 bytes")
    if not 0 < req.port < 65536:
        raise TrackerError("invalid_port", "port must be between 1 and 65535")
    if not (0 <= req.left <= MAX_COUNTER and 0 <= req.uploaded <= MAX_COUNTER
            and 0 <= req.downloaded <= MAX_COUNTER):
        raise TrackerError("invalid_counter", "left, uploaded and downloaded must be 0 to 2^63-1")


class SwarmWatcher(Protocol):
    """Told when a peer joins or leaves a watched swarm, whatever door it used."""

    def swarm_changed(self, info_hash: bytes, peer: PeerView, joined: bool) -> None: ...


class TrackerCore:
    """Every swarm, keyed by 20-byte info hash, and the operations on them."""

    def __init__(self, settings: Optional[TrackerSettings] = None,
                 rng: Optional[random.Random] = None,
                 changes: Optional[ChangeLog] = None,
                 access: Optional[AccessPolicy] = None) -> None:
        self.settings = settings or TrackerSettings()
        self.access = access if access is not None else AccessPolicy()
        # Where changes are recorded for the store (None: nothing is persisted).
        self.changes = changes
        # The log the database writer takes from (this one, or the replicator's
        # feed with --redis); its length is the write backlog (max_write_backlog).
        self.store_log = None
        self.swarms: Dict[bytes, Swarm] = {}
        self.peer_count = 0
        self.stats = TrackerStats()
        self._rng = rng or random.Random()
        self._scrape_zero = ScrapeEntry(0, 0, 0)
        # Swarm watchers (the line door's SUBSCRIBE): info_hash -> listeners.
        self._watchers: Dict[bytes, Set[SwarmWatcher]] = {}
        # The swarms' browser peers (WebSocket door), kept by tracker/core/browsers.py
        # apart from the pools: info_hash -> BrowserSwarm. They count in every
        # door's replies and scrapes, but only browsers are handed them.
        self.browser_swarms: Dict[bytes, Any] = {}
        # Packed addresses of the IP strings seen lately.
        self._packed_ips = BoundedCache()
        # The most swarms held since `swarms` was last rebuilt (see _compact_swarms).
        self._swarms_high = 0
        # Swarms kept with no peer for their completion count (scrape's
        # "downloaded"), longest idle first: not counted by --max-swarms, and
        # no more of them than it allows (see _keep_idle).
        self.idle_swarms: "OrderedDict[bytes, None]" = OrderedDict()

    def packed_ip(self, ip: str) -> bytes:
        """The 4 or 16 bytes of an address, remembered per IP."""
        packed = self._packed_ips.get(ip)
        if packed is None:
            packed = self._packed_ips.put(ip, pack_ip(ip))
        return packed

    def compact_address(self, ip: str, port: int) -> bytes:
        """BEP 23 / BEP 7 compact form."""
        return self.packed_ip(ip) + port.to_bytes(2, "big")

    # -- announce -----------------------------------------------------------

    def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult:
        """Record the peer's state and return peers for it.

        Raises TrackerError, before changing anything, for a request that
        cannot be right or is not allowed."""
        check_request(req)
        if self.access.active:
            self.access.check(req.info_hash, req.ip)
        swarm = self.swarms.get(req.info_hash)
        packed = self.packed_ip(req.ip)
        compact = packed + req.port.to_bytes(2, "big")
        # The swarm's only peer, held inline (no pool, no position).
        solo = False
        if swarm is not None:
            # Only the entry's owner may change it. CDN nodes' entries are the
            # line door's, which checks a node's identity itself.
            inline = swarm.solo
            if inline is None:
                pool, pos = swarm.find_pooled(req.peer_id)
                if (pool is not None and req.door != DOOR_LINE and not pool.owned_by(
                        pos, self.packed_ip(req.source_ip) if req.source_ip else packed,
                        req.key)):
                    raise TrackerError("peer_not_owner", NOT_OWNER)
            elif inline.startswith(req.peer_id):
                pool, pos, solo = None, -1, True
                if req.door != DOOR_LINE and not swarm.solo_owned_by(
                        self.packed_ip(req.source_ip) if req.source_ip else packed, req.key):
                    raise TrackerError("peer_not_owner", NOT_OWNER)
            else:
                pool, pos = None, -1
        else:
            pool, pos = None, -1
        if pool is None and not solo and req.event != EVENT_STOPPED:
            self._check_room(swarm is None)
        stats = self.stats
        stats.announces[req.door] = stats.announces.get(req.door, 0) + 1
        if req.event == EVENT_STOPPED:
            if solo:
                self._remove_solo(swarm)
            return self._with_browsers(req.info_hash, self._stop(swarm, pool, pos))

        seeder = req.left == 0
        door = DOOR_CODES[req.door]
        changes = self.changes
        quiet = (changes is not None and changes.seen_resolution_s
                 and self._only_seen_moves(swarm, pool, pos, solo, compact, now, door, seeder))
        if solo:
            if swarm.refresh_solo(compact, now, door, seeder, req.key):
                self._joined_solo(swarm)  # moved family: told as a join, as from a pool
        elif pool is None or pool.addr_width != len(compact):
            swarm, pool, pos = self._join(req, swarm, pool, pos, compact, seeder, now)
        else:
            pos = pool.refresh(pos, compact, now, door, seeder, req.key, self._rng)
        if req.event == EVENT_COMPLETED and swarm.mark_completed(req.peer_id) and changes is not None:
            changes.completed(swarm, req.peer_id, now)
        if quiet:
            changes.coalesced += 1
        elif changes is not None:
            changes.peer_updated(req.info_hash, req.peer_id, (
                req.ip, req.port, req.left, req.uploaded, req.downloaded, now, req.door))

        settings = self.settings
        if pool is None:
            # The swarm's only peer: no one to hand it.
            result = AnnounceResult(int(seeder), int(not seeder), b"", b"",
                                    settings.interval_s, settings.min_interval_s)
            return self._with_browsers(req.info_hash, result) if self.browser_swarms else result
        numwant = req.numwant
        if numwant is None or numwant < 0:
            numwant = settings.default_numwant
        elif numwant > settings.max_numwant:
            numwant = settings.max_numwant
        if swarm._v6 is None and req.family != 6 and req.compact:
            # One pool (IPv4 only), compact: the common case.
            complete, incomplete, peers = pool.compact_reply(numwant, seeder, pos, self._rng)
            result = AnnounceResult(complete, incomplete, peers, b"",
                                    settings.interval_s, settings.min_interval_s)
            return self._with_browsers(req.info_hash, result) if self.browser_swarms else result
        return self._with_browsers(req.info_hash,
                                   self._sample_reply(req, swarm, pool, pos, seeder, numwant))

    def _only_seen_moves(self, swarm: Optional[Swarm], pool: Optional[PeerPool], pos: int,
                         solo: bool, compact: bytes, now: float, door: int, seeder: bool) -> bool:
        """Whether a known peer's re-announce (asked before it is applied)
        changes nothing the store keeps but the last-seen time, within the
        change log's bucket (ChangeLog.coarsen_last_seen): the stored time
        stays within one bucket of the true one without it."""
        bucket_s = self.changes.seen_resolution_s
        if solo:
            return swarm.solo_only_seen_moves(compact, now, door, seeder, bucket_s)
        if pool is None or pool.addr_width != len(compact):
            return False  # a new peer, or one moving family
        return pool.only_seen_moves(pos, compact, now, door, seeder, bucket_s)

    def _with_browsers(self, info_hash: bytes, result: AnnounceResult) -> AnnounceResult:
        """Count the swarm's browser peers in a reply (they are not in its pools)."""
        browsers = self.browser_swarms.get(info_hash)
        if browsers is not None:
            result.complete += browsers.seeders
            result.incomplete += len(browsers) - browsers.seeders
        return result

    def _check_room(self, new_swarm: bool) -> None:
        """Refuse a new peer (and a new swarm) beyond the memory caps."""
        settings = self.settings
        if settings.max_peers is not None and self.peer_count >= settings.max_peers:
            raise TrackerError("peer_limit", "this tracker holds as many peers as it may"
                                             " (--max-peers): try again later")
        if (new_swarm and settings.max_swarms is not None
                and len(self.swarms) - len(self.idle_swarms) >= settings.max_swarms):
            raise TrackerError("swarm_limit", "this tracker tracks as many torrents as it may"
                                              " (--max-swarms): try again later")
        store_log = self.store_log
        if (store_log is not None and settings.max_write_backlog is not None
                and len(store_log) >= settings.max_write_backlog):
            raise TrackerError("write_backlog", "this tracker is behind with writing its "
                                                "database: try again later")

    def _join(self, req: AnnounceRequest, swarm: Optional[Swarm], pool: Optional[PeerPool],
              pos: int, compact: bytes, seeder: bool, now: float):
        """Add the announcing peer to its pool: a new peer, perhaps of a new
        swarm, or one that moved to the other address family. Returns
        (swarm, pool, position)."""
        if pool is not None:
            # Moved family: the entry leaves its old pool (and comes back below).
            pool.remove(pos)
            self.peer_count -= 1
        if swarm is None or not len(swarm):
            # The swarm's only peer: held inline, without a pool.
            new = swarm is None
            if new:
                swarm = self.swarms[req.info_hash] = Swarm(req.info_hash, None)
            elif self.idle_swarms:
                self.idle_swarms.pop(req.info_hash, None)
            swarm.set_solo(req.peer_id, compact, now, DOOR_CODES[req.door], seeder, req.key,
                           now if new else None)
            if new and self.changes is not None:
                self.changes.content_changed(swarm)
            self.peer_count += 1
            self._joined_solo(swarm)
            return swarm, None, -1
        pool = swarm.pool_for(compact)
        pos = pool.add(req.peer_id, compact, now, DOOR_CODES[req.door], seeder, self._rng,
                       req.key)
        self.peer_count += 1
        if self._watchers and req.info_hash in self._watchers:
            self._notify(req.info_hash, pool.view(pos), True)
        return swarm, pool, pos

    def _joined_solo(self, swarm: Swarm) -> None:
        if self._watchers and swarm.info_hash in self._watchers:
            self._notify(swarm.info_hash, swarm.solo_view(), True)

    def _remove_solo(self, swarm: Swarm) -> None:
        watchers = self._watchers
        peer = swarm.solo_view() if watchers and swarm.info_hash in watchers else None
        peer_id = swarm.drop_solo()
        self.peer_count -= 1
        if self.changes is not None:
            self.changes.peer_removed(swarm.info_hash, peer_id)
        if peer is not None:
            self._notify(swarm.info_hash, peer, False)

    def _stop(self, swarm: Optional[Swarm], pool: Optional[PeerPool], pos: int) -> AnnounceResult:
        """event=stopped: the peer leaves; the reply has counts and no peers."""
        settings = self.settings
        if swarm is None:
            return AnnounceResult(0, 0, b"", b"", settings.interval_s, settings.min_interval_s)
        if pool is not None:
            self._remove(swarm, pool, pos)
        complete = swarm.seeders
        return AnnounceResult(complete, len(swarm) - complete, b"", b"",
                              settings.interval_s, settings.min_interval_s)

    def _sample_reply(self, req: AnnounceRequest, swarm: Swarm, pool: PeerPool, pos: int,
                      seeder: bool, numwant: int) -> AnnounceResult:
        """The reply from both pools, from one family, or as BEP 3 dicts."""
        settings = self.settings
        complete = swarm.seeders
        result = AnnounceResult(complete, len(swarm) - complete, b"", b"",
                                settings.interval_s, settings.min_interval_s)
        for chosen, ranges in swarm.sample(numwant, pool, pos, seeder, req.family, self._rng):
            if not req.compact:
                result.peer_list = (result.peer_list or []) + chosen.views_of(ranges)
            elif chosen.addr_width == 6:
                result.peers = chosen.compact_of(ranges)
            else:
                result.peers6 = chosen.compact_of(ranges)
        return result

    def _remove(self, swarm: Swarm, pool: PeerPool, pos: int) -> None:
        watchers = self._watchers
        peer = pool.view(pos) if watchers and swarm.info_hash in watchers else None
        peer_id = pool.peer_id(pos)
        pool.remove(pos)
        self.peer_count -= 1
        if self.changes is not None:
            self.changes.peer_removed(swarm.info_hash, peer_id)
        if peer is not None:
            self._notify(swarm.info_hash, peer, False)

    def remove_peer(self, info_hash: bytes, peer_id: bytes) -> bool:
        """Take a peer out of a swarm (a node dropping content, or its grace
        period ending); True if it was there."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return False
        if swarm.solo is not None and swarm.solo.startswith(peer_id):
            self._remove_solo(swarm)
            return True
        pool, pos = swarm.locate(peer_id)
        if pool is None:
            return False
        self._remove(swarm, pool, pos)
        return True

    def drop_swarm(self, info_hash: bytes) -> int:
        """Remove every peer of a swarm (content just refused); returns how many."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return 0
        count = 0
        for pool in swarm.pools():
            while len(pool):
                self._remove(swarm, pool, len(pool) - 1)
                count += 1
        if not swarm.completed:
            del self.swarms[info_hash]
        elif not len(swarm):
            self._keep_idle(info_hash)
        return count

    def pin(self, info_hash: bytes, peer_id: bytes, until: float) -> None:
        """Set a peer's last-seen time: the line door pins its nodes' entries at
        infinity while they are connected (no re-announcing needed) and back
        to the disconnect time when they leave."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return
        if swarm.solo is not None and swarm.solo.startswith(peer_id):
            swarm.set_solo_seen(until)
            if self.changes is not None:
                self.changes.peer_seen(info_hash, peer_id, until)
            return
        pool, pos = swarm.locate(peer_id)
        if pool is not None:
            pool.set_seen(pos, until)
            if self.changes is not None:
                self.changes.peer_seen(info_hash, peer_id, until)

    def peers(self, info_hash: bytes, numwant: int, requester_id: Optional[bytes] = None,
              seeder: bool = False) -> List[PeerView]:
        """A sample of a swarm's peers without announcing (the line door's PEERS).
        A requester in the swarm is left out; a seeder gets no seeders."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return []
        solo = swarm.solo
        if solo is not None:
            if numwant <= 0 or (requester_id is not None and solo.startswith(requester_id)):
                return []
            view = swarm.solo_view()
            return [] if seeder and view.seeder else [view]
        pool, pos = swarm.locate(requester_id) if requester_id is not None else (None, -1)
        if pool is not None:
            seeder = pos < pool.seeders
        out: List[PeerView] = []
        for chosen, ranges in swarm.sample(numwant, pool, pos, seeder, 0, self._rng):
            out.extend(chosen.views_of(ranges))
        return out

    # -- watching swarms ------------------------------------------------------

    def watch(self, info_hash: bytes, watcher: "SwarmWatcher") -> None:
        self._watchers.setdefault(info_hash, set()).add(watcher)

    def unwatch(self, info_hash: bytes, watcher: "SwarmWatcher") -> None:
        watchers = self._watchers.get(info_hash)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[info_hash]

    def _notify(self, info_hash: bytes, peer: PeerView, joined: bool) -> None:
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
                seeders = swarm.seeders
                out[h] = ScrapeEntry(seeders, swarm.completed, len(swarm) - seeders)
            browsers = self.browser_swarms.get(h)
            if browsers is not None:  # browser peers count here too
                entry = out[h]
                out[h] = ScrapeEntry(entry.complete + browsers.seeders, entry.downloaded,
                                     entry.incomplete + len(browsers) - browsers.seeders)
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
        self._swarms_high = max(self._swarms_high, len(self.swarms))
        for info_hash in list(self.swarms):
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            if swarm.solo is not None:
                if swarm.solo_seen() < cutoff:
                    self._remove_solo(swarm)
                    removed += 1
                examined += 1
                if examined >= budget:
                    examined = 0
                    yield removed
            for pool in [p for p in (swarm._v4, swarm._v6) if p is not None]:
                # From the end down: a removal moves a later peer into the gap,
                # and every later peer has been looked at already.
                pos = len(pool) - 1
                while pos >= 0:
                    if pool.seen(pos) < cutoff:
                        self._remove(swarm, pool, pos)
                        removed += 1
                    examined += 1
                    pos -= 1
                    if examined >= budget:
                        examined = 0
                        yield removed
                        if self.swarms.get(info_hash) is not swarm:
                            break
                        pos = min(pos, len(pool) - 1)
            if self.swarms.get(info_hash) is not swarm:
                continue
            if not len(swarm):
                if not swarm.completed:
                    del self.swarms[info_hash]
                else:
                    self._keep_idle(info_hash)
                continue
            if self.idle_swarms:  # a peer came in another way (tracker/cluster)
                self.idle_swarms.pop(info_hash, None)
            if swarm.solo is None and len(swarm) == 1:
                swarm.demote()  # its last peer goes back inline; the pool is freed
        self.stats.expired_peers += removed
        self._compact_swarms()
        yield removed

    def _keep_idle(self, info_hash: bytes) -> None:
        """Keep a swarm left without peers for its completion count, outside
        --max-swarms (a flood of event=completed for random hashes would
        otherwise fill the cap for good once its peers expire). Past as many
        idle swarms as --max-swarms, the longest idle is dropped from memory:
        its count stays in the database (which keeps the larger count if the
        swarm comes back) and is restored at the next start."""
        idle = self.idle_swarms
        idle[info_hash] = None
        cap = self.settings.max_swarms
        while cap is not None and len(idle) > cap:
            oldest, _ = idle.popitem(last=False)
            swarm = self.swarms.get(oldest)
            if swarm is not None and not len(swarm):
                del self.swarms[oldest]
                self.stats.idle_swarms_dropped += 1

    def _compact_swarms(self) -> None:
        """Rebuild `swarms` when it holds a quarter of what it once did: a dict
        never shrinks when keys are deleted, so after a flood of swarms has
        expired its table (40 MiB for a million) would stay. Rebuilt in place:
        others hold `core.swarms` itself."""
        swarms = self.swarms
        if self._swarms_high < COMPACT_FROM or len(swarms) * 4 > self._swarms_high:
            return
        live = dict(swarms)
        swarms.clear()
        swarms.update(live)
        self._swarms_high = len(swarms)

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
        if completed:  # idle until a peer is restored into it (see restore_peer)
            self.idle_swarms[info_hash] = None
        return swarm

    def describe_content(self, info_hash: bytes, name: Optional[str], size: Optional[int],
                         now: float) -> Swarm:
        """Set a swarm's content metadata (a node's HAVE name=... size=...),
        creating the swarm if needed; records the change if there is one."""
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

    def restore_peer(self, swarm: Swarm, peer_id: bytes, ip: str, port: int, left: int,
                     last_seen: float, door: str) -> None:
        """Put back a peer read from the store (nothing is recorded as changed).
        The store's rows are unique per swarm and peer id, and restoring runs
        before any request: the peer is added without looking for it. It goes
        to a random place of its part: the rows come in peer id order, and
        BEP 20 peer ids start with the client's name, so appending them would
        hand out windows of one client."""
        compact = self.compact_address(ip, port)
        self.peer_count += 1
        if self.idle_swarms:
            self.idle_swarms.pop(swarm.info_hash, None)
        if not len(swarm):
            # Alone in its swarm: held inline, with the swarm's first-seen time.
            swarm.set_solo(peer_id, compact, last_seen, DOOR_CODES.get(door, 0), left == 0,
                           NO_KEY, swarm.first_seen)
            return
        swarm.pool_for(compact).add(peer_id, compact, last_seen, DOOR_CODES.get(door, 0),
                                    left == 0, self._rng)

    # -- copies of other instances' peers (--redis, tracker/cluster/apply.py) ----
    # Applied as given, never recorded (the caller holds `unrecorded`), and
    # without promoting a swarm's inline peer into a pool.

    def replica_seen(self, info_hash: bytes, peer_id: bytes) -> Optional[float]:
        """The last-seen time this instance holds for a peer, or None."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return None
        solo = swarm.solo
        if solo is not None:
            return swarm.solo_seen() if solo.startswith(peer_id) else None
        pool, pos = swarm.find_pooled(peer_id)
        return pool.seen(pos) if pool is not None else None

    def set_replica_seen(self, info_hash: bytes, peer_id: bytes, seen: float) -> None:
        """Set a held peer's last-seen time (a refresh, a pin or an unpin)."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return
        solo = swarm.solo
        if solo is not None:
            if solo.startswith(peer_id):
                swarm.set_solo_seen(seen)
            return
        pool, pos = swarm.find_pooled(peer_id)
        if pool is not None:
            pool.set_seen(pos, seen)

    def put_replica(self, info_hash: bytes, peer_id: bytes, compact: bytes, seen: float,
                    door: int, seeder: bool) -> bool:
        """A peer's state from another instance: its entry here updated (the
        owner key this instance may hold for it kept), or added as an announce
        adds one (inline when alone in its swarm; watchers told). False, and
        nothing changed, when this instance holds a newer state of it."""
        held = self.replica_seen(info_hash, peer_id)
        if held is not None:
            if held > seen:
                return False
            swarm = self.swarms[info_hash]
            if swarm.solo is not None:
                swarm.refresh_solo(compact, seen, door, seeder, NO_KEY)
                return True
            pool, pos = swarm.find_pooled(peer_id)
            if pool.addr_width == len(compact):
                pool.refresh(pos, compact, seen, door, seeder, NO_KEY, self._rng)
                return True
            self.remove_peer(info_hash, peer_id)  # moved family: out, and in below
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm(info_hash, seen)
        elif self.idle_swarms:
            self.idle_swarms.pop(info_hash, None)
        self.peer_count += 1
        if not len(swarm):
            swarm.set_solo(peer_id, compact, seen, door, seeder, NO_KEY)
            self._joined_solo(swarm)
            return True
        pool = swarm.pool_for(compact)
        pos = pool.add(peer_id, compact, seen, door, seeder, self._rng)
        if self._watchers and info_hash in self._watchers:
            self._notify(info_hash, pool.view(pos), True)
        return True

    # -- figures --------------------------------------------------------------

    def totals(self) -> Dict[str, int]:
        seeders = leechers = 0
        for swarm in self.swarms.values():
            count = swarm.seeders
            seeders += count
            leechers += len(swarm) - count
        return {"swarms": len(self.swarms), "peers": self.peer_count,
                "seeders": seeders, "leechers": leechers}
