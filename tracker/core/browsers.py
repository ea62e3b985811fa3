"""Browser (WebSocket) peers of the swarms: who is there, seeding or not, and
a random choice of them to forward WebRTC offers to.

A browser cannot dial an IP:port peer, nor an IP:port peer a browser, so
these peers are not in the swarms' `PeerPool`s (which hand out addresses):
they are kept here, per info hash, and only the WebSocket door hands them
out. They count in every door's `complete` / `incomplete` and scrape
(`TrackerCore.browser_swarms` is this table), their completions count in the swarm's
`downloaded`, and the core's swarm watchers (line-protocol SUBSCRIBE) see
them join and leave with `door=ws`.

`BrowserPeers` is the session registry's peer store for the WebSocket door
(tracker/sessions.py: `announce`, `pin`, `remove_peer`): a browser's entry
lives exactly as long as its socket, so nothing here expires or is persisted.
"""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Tuple

from tracker.addresses import pack_ip
from tracker.core.errors import TrackerError
from tracker.core.swarm import EVENT_COMPLETED, PeerView, Swarm

DOOR_WS = "ws"
FOREVER = float("inf")


class BrowserSwarm:
    """The browser peers of one swarm: (peer id, compact address) entries,
    seeders at [0, seeders) and leechers after, and where each peer id is.
    The address (port 0) is kept only to describe the peer to watchers."""

    __slots__ = ("entries", "where", "seeders")

    def __init__(self) -> None:
        self.entries: List[Tuple[bytes, bytes]] = []
        self.where: Dict[bytes, int] = {}
        self.seeders = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, peer_id: bytes) -> bool:
        return peer_id in self.where

    def is_seeder(self, peer_id: bytes) -> bool:
        return self.where[peer_id] < self.seeders

    def _put(self, pos: int, entry: Tuple[bytes, bytes]) -> None:
        self.entries[pos] = entry
        self.where[entry[0]] = pos

    def _swap(self, a: int, b: int) -> None:
        if a != b:
            first, second = self.entries[a], self.entries[b]
            self._put(a, second)
            self._put(b, first)

    def add(self, peer_id: bytes, compact: bytes, seeder: bool) -> None:
        self.entries.append((peer_id, compact))
        self.where[peer_id] = len(self.entries) - 1
        if seeder:
            self._swap(len(self.entries) - 1, self.seeders)
            self.seeders += 1

    def set_seeder(self, peer_id: bytes, seeder: bool) -> None:
        pos = self.where[peer_id]
        if seeder and pos >= self.seeders:
            self._swap(pos, self.seeders)
            self.seeders += 1
        elif not seeder and pos < self.seeders:
            self._swap(pos, self.seeders - 1)
            self.seeders -= 1

    def remove(self, peer_id: bytes) -> Tuple[bytes, bool]:
        """Take a peer out; returns its address and whether it seeded."""
        pos = self.where.pop(peer_id)
        entries = self.entries
        compact = entries[pos][1]
        seeder = pos < self.seeders
        if seeder:
            # The last seeder fills the gap; the gap moves to the seeders' end.
            last_seeder = self.seeders - 1
            if pos != last_seeder:
                self._put(pos, entries[last_seeder])
            pos = last_seeder
            self.seeders -= 1
        last = len(entries) - 1
        if pos != last:
            self._put(pos, entries[last])
        entries.pop()
        return compact, seeder

    def sample(self, count: int, requester: Optional[bytes], leechers_only: bool,
               rng: random.Random) -> List[bytes]:
        """Up to `count` distinct peer ids at random, never `requester`;
        leechers only when asked (a seeder's offers are useless to a seeder)."""
        lo = self.seeders if leechers_only else 0
        hi = len(self.entries)
        if count <= 0 or hi <= lo:
            return []
        if hi - lo <= count + 1:
            positions = list(range(lo, hi))
            rng.shuffle(positions)
        else:
            positions = rng.sample(range(lo, hi), count + 1)
        entries = self.entries
        chosen = [entries[p][0] for p in positions if entries[p][0] != requester]
        return chosen[:count]


class BrowserPeers:
    """Every swarm's browser peers, for the WebSocket door and the core's counts."""

    def __init__(self, core, rng: Optional[random.Random] = None) -> None:
        self.core = core
        # The core's own table, which its announce and scrape read for the counts.
        self.swarms: Dict[bytes, BrowserSwarm] = core.browser_swarms
        self.peer_count = 0
        self._rng = rng or random.Random()

    # -- what the core and the doors read ------------------------------------------------

    def counts(self, info_hash: bytes) -> Tuple[int, int]:
        """(seeders, leechers) among the browser peers of a swarm."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return 0, 0
        return swarm.seeders, len(swarm.entries) - swarm.seeders

    def totals(self) -> Tuple[int, int]:
        """(seeders, leechers) over all swarms."""
        seeders = sum(s.seeders for s in self.swarms.values())
        return seeders, self.peer_count - seeders

    def choose(self, info_hash: bytes, count: int, requester: bytes) -> List[bytes]:
        """Peer ids to forward `requester`'s offers to, one offer each."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return []
        seeder = requester in swarm and swarm.is_seeder(requester)
        return swarm.sample(count, requester, seeder, self._rng)

    # -- the session registry's peer store ------------------------------------------------

    def announce(self, request, now: float) -> None:
        """Add or update a browser peer (an `AnnounceRequest` of door ws;
        its port is 0). Raises TrackerError, changing nothing, for content
        or an address the access rules refuse."""
        core = self.core
        info_hash, peer_id = request.info_hash, request.peer_id
        if core.access.active:
            core.access.check(info_hash, request.ip)
        swarm = self.swarms.get(info_hash)
        if swarm is None or peer_id not in swarm:
            self._check_room(info_hash, swarm is None)
        if swarm is None:
            swarm = self.swarms[info_hash] = BrowserSwarm()
        seeder = request.left == 0
        if peer_id in swarm:
            swarm.set_seeder(peer_id, seeder)
        else:
            compact = pack_ip(request.ip) + b"\x00\x00"
            swarm.add(peer_id, compact, seeder)
            self.peer_count += 1
            self._tell_watchers(info_hash, peer_id, compact, seeder, True)
        if request.event == EVENT_COMPLETED:
            self._completed(info_hash, peer_id, now)

    def _check_room(self, info_hash: bytes, new_browser_swarm: bool) -> None:
        """--max-peers and --max-swarms count browser peers and their swarms too:
        a new browser peer past either is refused as an IP peer would be."""
        core = self.core
        settings = core.settings
        if settings.max_peers is not None and core.peer_count + self.peer_count >= settings.max_peers:
            raise TrackerError("peer_limit", "this tracker holds as many peers as it may"
                                             " (--max-peers): try again later")
        if (new_browser_swarm and settings.max_swarms is not None
                and info_hash not in core.swarms
                and len(core.swarms) + len(self.swarms) >= settings.max_swarms
                and self._distinct_swarms() >= settings.max_swarms):
            raise TrackerError("swarm_limit", "this tracker tracks as many torrents as it may"
                                              " (--max-swarms): try again later")

    def _distinct_swarms(self) -> int:
        """Swarms with IP peers or browser peers or both (counted near the cap only)."""
        ip_swarms = self.core.swarms
        return len(ip_swarms) + sum(1 for h in self.swarms if h not in ip_swarms)

    def pin(self, info_hash: bytes, peer_id: bytes, until: float) -> None:
        """Nothing to do: a browser's entry lives as long as its socket."""

    def remove_peer(self, info_hash: bytes, peer_id: bytes) -> bool:
        swarm = self.swarms.get(info_hash)
        if swarm is None or peer_id not in swarm:
            return False
        compact, seeder = swarm.remove(peer_id)
        self.peer_count -= 1
        if not swarm.entries:
            del self.swarms[info_hash]
        self._tell_watchers(info_hash, peer_id, compact, seeder, False)
        return True

    # -- shared with the core's swarms ------------------------------------------------------

    def _completed(self, info_hash: bytes, peer_id: bytes, now: float) -> None:
        """Count a browser's completion once in the swarm's `downloaded`
        (kept, and persisted, with the swarm's other completions)."""
        core = self.core
        changes = core.changes
        swarm = core.swarms.get(info_hash)
        if swarm is None:
            swarm = core.swarms[info_hash] = Swarm(info_hash, now)
            if changes is not None:
                changes.content_changed(swarm)
        if swarm.mark_completed(peer_id) and changes is not None:
            changes.completed(swarm, peer_id, now)

    def _tell_watchers(self, info_hash: bytes, peer_id: bytes, compact: bytes, seeder: bool,
                       joined: bool) -> None:
        core = self.core
        # The core's swarm watchers (line-protocol SUBSCRIBE), told as the core tells them.
        if info_hash in core._watchers:
            core._notify(info_hash, PeerView(peer_id, compact, seeder, FOREVER, DOOR_WS), joined)
