"""Applying what another instance published to this one's core, without echo.

Nothing applied here goes to the core's change log: the core's `changes` is
set aside while a batch is applied, so a remote change is never published
again (no echo) and never written as this instance's own row. Completions,
content rows and operator changes do go to this instance's store (through
`store`, the log the store takes from), so its database stays whole.

The rules (docs/cluster.md, consistency model):
- a peer's state is the one with the latest announce time (last writer wins);
- a copy keeps its origin's last-seen time, so the time to live runs everywhere;
- a removal applies to a copy not refreshed since; a removal that may be only
  the origin's expiry (the copy is within `ttl - margin` of expiring here as
  well) is left to this instance's own expiry, which never drops it early;
- a completion counts once per peer (the swarm's completion fingerprints);
- an entry pinned at +inf (a CDN node connected somewhere) is unpinned or
  removed only by the instance whose pin it holds: a node that moved to this
  instance keeps its entries when its old instance lets its session go.
"""
from __future__ import annotations

import bisect
import contextlib
from array import array
from typing import Dict, Iterator, Optional, Set, Tuple

from tracker.core import ChangeLog, TrackerCore
from tracker.core import changes as ch
from tracker.core.access import MODE_ALLOW
from tracker.core.swarm import DOOR_NAMES, Swarm
from tracker.cluster.codec import SEEDER_FLAG

INFINITY = float("inf")
PeerKey = Tuple[bytes, bytes]


def _refused(access, info_hash: bytes) -> bool:
    """Content this instance does not track (the same rules as AccessPolicy.check)."""
    if access.mode == MODE_ALLOW:
        return info_hash not in access.allowed
    return info_hash in access.denied


@contextlib.contextmanager
def unrecorded(core: TrackerCore) -> Iterator[None]:
    """Change the core without recording it in its change log."""
    saved = core.changes
    core.changes = None
    try:
        yield
    finally:
        core.changes = saved


class RemoteApplier:
    """Applies decoded records to `core`; counts what it did."""

    def __init__(self, core: TrackerCore, store: Optional[ChangeLog], margin_s: float) -> None:
        self.core = core
        self.store = store
        # A removal of a copy this close to its own expiry is left to the expiry.
        self.margin_s = margin_s
        # Copies pinned at +inf (CDN nodes connected elsewhere), by origin:
        # if that origin dies they must start to age (see unpin_origin).
        self.pinned: Dict[str, Set[PeerKey]] = {}
        # This instance's own pinned entries another instance dropped: published again.
        self.reassert: Set[PeerKey] = set()
        self.applied = 0
        self.ignored = 0

    def _swarm(self, info_hash: bytes, first_seen: float) -> Swarm:
        core = self.core
        swarm = core.swarms.get(info_hash)
        if swarm is None:
            swarm = core.swarms[info_hash] = Swarm(info_hash, first_seen)
        return swarm

    def upsert(self, origin: str, info_hash: bytes, peer_id: bytes, seen: float, flags: int,
               compact: bytes) -> bool:
        """A peer's state from `origin`; False when this instance has a newer one."""
        core = self.core
        if core.access.active and _refused(core.access, info_hash):
            self.ignored += 1
            return False
        door = flags & ~SEEDER_FLAG
        if door >= len(DOOR_NAMES):
            door = 0
        if not core.put_replica(info_hash, peer_id, compact, seen, door, bool(flags & SEEDER_FLAG)):
            self.ignored += 1
            return False
        self._track_pin(origin, (info_hash, peer_id), seen)
        self.applied += 1
        return True

    def local_changes(self, batch) -> None:
        """This instance's own batch: an entry it announced or pinned itself is
        no longer another instance's pin (a CDN node that moved here)."""
        if not self.pinned:
            return
        for keys in self.pinned.values():
            if keys:
                keys.difference_update(batch.peers)
                keys.difference_update(batch.seen)

    def _pinned_elsewhere(self, key: PeerKey) -> None:
        """`origin` wanted to unpin or remove an entry pinned by another: if the
        pin is this instance's own (the node is connected here), say so again
        (`reassert`, published next tick), so `origin` gets the entry back."""
        if not any(key in keys for keys in self.pinned.values()):
            self.reassert.add(key)

    def _pinned_by(self, origin: str, key: PeerKey) -> bool:
        keys = self.pinned.get(origin)
        return keys is not None and key in keys

    def _track_pin(self, origin: str, key: PeerKey, seen: float) -> None:
        if seen == INFINITY:
            self.pinned.setdefault(origin, set()).add(key)
        elif self.pinned:
            keys = self.pinned.get(origin)
            if keys is not None:
                keys.discard(key)

    def seen(self, origin: str, info_hash: bytes, peer_id: bytes, seen: float) -> None:
        """Only the last-seen time: a refresh, or a CDN node's entry pinned or
        unpinned at its origin (an unpin lowers the time, and is applied)."""
        core = self.core
        current = core.replica_seen(info_hash, peer_id)
        if current is None:
            return
        if current == INFINITY and not self._pinned_by(origin, (info_hash, peer_id)):
            self._pinned_elsewhere((info_hash, peer_id))  # not `origin`'s to unpin
            return
        if seen > current or current == INFINITY:
            core.set_replica_seen(info_hash, peer_id, seen)
            self._track_pin(origin, (info_hash, peer_id), seen)
            self.applied += 1

    def removed(self, origin: str, info_hash: bytes, peer_id: bytes, at: float) -> None:
        current = self.core.replica_seen(info_hash, peer_id)
        if current is None:
            return
        if current == INFINITY and not self._pinned_by(origin, (info_hash, peer_id)):
            self.ignored += 1  # a CDN node's entry that moved here (or elsewhere): not theirs
            self._pinned_elsewhere((info_hash, peer_id))
            return
        ttl = self.core.settings.effective_peer_ttl_s
        if current != INFINITY and (current > at or current < at - ttl + self.margin_s):
            # Announced again since, or perhaps only expired at the origin.
            self.ignored += 1
            return
        with unrecorded(self.core):
            self.core.remove_peer(info_hash, peer_id)
        keys = self.pinned.get(origin)
        if keys:
            keys.discard((info_hash, peer_id))
        self.applied += 1

    def completed(self, info_hash: bytes, peer_id: bytes, at: float) -> None:
        swarm = self._swarm(info_hash, at)
        if swarm.mark_completed(peer_id):
            self.applied += 1
            if self.store is not None:
                self.store.completed(swarm, peer_id, at)

    def completed_key(self, info_hash: bytes, key: int) -> bool:
        """A completion known only by its fingerprint (the snapshot); counted once."""
        swarm = self._swarm(info_hash, 0.0)
        done = swarm.completed_by
        if done is None:
            done = swarm.completed_by = array("Q")
        at = bisect.bisect_left(done, key)
        if at < len(done) and done[at] == key:
            return False
        done.insert(at, key)
        swarm.completed += 1
        return True

    def content(self, info_hash: bytes, first_seen: float, name: Optional[str],
                size: Optional[int]) -> None:
        swarm = self._swarm(info_hash, first_seen)
        if first_seen < swarm.first_seen or not swarm.first_seen:  # 0: made for a completion
            swarm.first_seen = first_seen
        if name is not None:
            swarm.name = name
        if size is not None:
            swarm.size = size
        if self.store is not None:
            self.store.content_changed(swarm)

    def operator(self, change: ch.OperatorChange) -> None:
        """An access rule, ban, mode or node token set at another instance."""
        core = self.core
        access = core.access
        with unrecorded(core):
            if isinstance(change, ch.AccessRuleAdded):
                access.add(change.list_name, change.info_hash)
                if change.list_name == "deny":
                    core.drop_swarm(change.info_hash)
            elif isinstance(change, ch.AccessRuleRemoved):
                access.remove(change.list_name, change.info_hash)
                if change.list_name == "allow" and access.mode == MODE_ALLOW:
                    core.drop_swarm(change.info_hash)
            elif isinstance(change, ch.ModeSet):
                access.set_mode(change.mode)
                if change.mode == MODE_ALLOW:
                    for info_hash in [h for h in core.swarms if h not in access.allowed]:
                        core.drop_swarm(info_hash)
            elif isinstance(change, ch.BanAdded):
                access.ban(change.cidr)
            elif isinstance(change, ch.BanRemoved):
                access.unban(change.cidr)
            elif isinstance(change, ch.NodeTokenSet):
                access.node_tokens[change.node_id] = change.token
            elif isinstance(change, ch.NodeTokenRemoved):
                access.node_tokens.pop(change.node_id, None)
        if self.store is not None:
            self.store.operator_changed(change)
        self.applied += 1

    def unpin_origin(self, origin: str, since: float) -> int:
        """`origin` stopped beating: its pinned copies age from `since` (the
        grace period of a CDN node whose instance died). Returns how many."""
        count = 0
        core = self.core
        for info_hash, peer_id in self.pinned.pop(origin, ()):
            if core.replica_seen(info_hash, peer_id) == INFINITY:
                core.set_replica_seen(info_hash, peer_id, since)
                count += 1
        return count
