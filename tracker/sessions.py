"""Connection-bound peers: one mechanism for every door whose peers live as long as
their connection.

A `Session` has an id (a CDN node's name; for a WebSocket door, a browser
peer), one peer id in every swarm it joins, and entries per info hash. While
its connection lives its entries are pinned in their swarms (no re-announcing,
no expiry); when the connection drops they stay for a grace period, and a new
connection that registers the same id within it gets them all back. A newer
connection of the same id takes over: the older one is closed through its
handle's `close(code, message)`. Who may take over is the caller's decision
(`anywhere`); the registry enforces that without it, an id stays bound to the
address it first registered from for as long as its entries live.

The line door uses it for nodes (tracker/line/door.py); the admin API and
/metrics read it through the methods below, never through a door.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Protocol, Set, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from tracker.core import (
    DOOR_LINE, EVENT_COMPLETED, EVENT_STARTED, AnnounceRequest, PeerView, TrackerCore,
    TrackerError,
)

log = Logger()

FOREVER = float("inf")
DEFAULT_MAX_ENTRIES = 100_000


class ConnectionHandle(Protocol):
    """What the registry needs of a door's connection: a way to close it with a
    reason (the line door answers `ERR <code> <message>`; a WebSocket door
    would send a close frame)."""

    def close(self, code: int, message: str) -> None: ...


class SessionRefused(Exception):
    """The registry refused a change; nothing was changed. `code` follows the
    line protocol's numbers, `reason` names the failure counter."""

    def __init__(self, code: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


class Session:
    """One connection-bound owner of entries. `origin` is the address its
    current (or last) connection came from; `ip`/`port` are where peers reach it."""

    __slots__ = ("id", "peer_id", "ip", "port", "region", "origin", "entries", "connection",
                 "grace")

    def __init__(self, session_id: str, peer_id: bytes, ip: str, port: int,
                 region: Optional[str], origin: str) -> None:
        self.id = session_id
        self.peer_id = peer_id
        self.ip = ip
        self.port = port
        self.region = region
        self.origin = origin
        self.entries: Dict[bytes, int] = {}  # info_hash -> left (0: it seeds it)
        self.connection: Optional[ConnectionHandle] = None
        self.grace: Optional[IDelayedCall] = None

    @property
    def connected(self) -> bool:
        return self.connection is not None


class ConnectionStats:
    """Figures of the door's connections that /metrics shows beside the sessions."""

    __slots__ = ("open", "resyncs", "cut_off")

    def __init__(self) -> None:
        self.open = 0       # connections open now (registered or not)
        self.resyncs = 0    # bursts of events coalesced into one RESYNC per swarm
        self.cut_off = 0    # connections dropped for reading nothing at all


class SessionRegistry:
    """Sessions by id and by peer id, and which sessions sit in which swarm."""

    def __init__(self, core: TrackerCore, clock: IReactorTime, grace_s: float = 60.0,
                 max_entries: int = DEFAULT_MAX_ENTRIES, door: str = DOOR_LINE,
                 kind: str = "node", record: bool = True, peers=None) -> None:
        self.core = core
        # Where the entries live: the core's swarms (IP:port peers), or for
        # browsers tracker.core.browsers.BrowserPeers (announce, pin, remove_peer).
        self.peers = peers if peers is not None else core
        self.clock = clock
        self.grace_s = grace_s
        self.max_entries = max_entries
        self.door = door
        self.kind = kind            # how refusals name a session ("node edge-1 ...")
        self.record = record        # write node records to the change log
        self.connection_stats = ConnectionStats()
        self._sessions: Dict[str, Session] = {}
        self._by_peer_id: Dict[bytes, Session] = {}
        # info_hash -> the sessions with an entry in that swarm (region-first PEERS).
        self._swarm_sessions: Dict[bytes, Set[Session]] = {}
        # With --redis, the ids other instances hold (tracker/cluster/nodes.py):
        # `elsewhere(id)`, `bound(id, origin)`, `released(id)`; None on its own.
        self.bindings = None

    # -- reading ------------------------------------------------------------------------

    def get(self, session_id: str) -> Optional[Session]:
        return self._sessions.get(session_id)

    def by_peer_id(self, peer_id: bytes) -> Optional[Session]:
        return self._by_peer_id.get(peer_id)

    def sessions(self) -> List[Session]:
        """Every session, connected or in its grace period, by id."""
        return sorted(self._sessions.values(), key=lambda s: s.id)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def connected(self) -> int:
        return sum(1 for s in self._sessions.values() if s.connection is not None)

    def entry_count(self) -> int:
        return sum(len(s.entries) for s in self._sessions.values())

    def in_swarm(self, info_hash: bytes) -> Iterator[Session]:
        return iter(self._swarm_sessions.get(info_hash, ()))

    # -- lifetime -----------------------------------------------------------------------

    def attach(self, session_id: str, peer_id: bytes, connection: ConnectionHandle, ip: str,
               port: int, region: Optional[str], origin: str,
               anywhere: bool = False) -> Tuple[Session, int]:
        """Register `connection` as `session_id`, coming from address `origin`.
        Return the session and how many entries it kept from an earlier
        connection. Without `anywhere`, an id whose entries live is refused to
        a connection from another address (SessionRefused, nothing changed).
        A session keeps the peer id it was created with: the caller derives it
        from the id (a node) or gives the one its client uses (a browser)."""
        session = self._sessions.get(session_id)
        if session is None:
            self._check_elsewhere(session_id, origin, anywhere)
            session = Session(session_id, peer_id, ip, port, region, origin)
            self._sessions[session_id] = session
            self._by_peer_id[peer_id] = session
        else:
            if not anywhere and origin != session.origin:
                raise SessionRefused(409, "%s %s is registered from another address"
                                     % (self.kind, session_id), "%s_elsewhere" % self.kind)
            self._take_back(session, connection, ip, port, region, origin)
        session.connection = connection
        self._record(session)
        if self.bindings is not None:
            self.bindings.bound(session_id, origin)
        return session, len(session.entries)

    def taken_elsewhere(self, session_id: str, instance: str) -> None:
        """Another instance (--redis) registered `session_id`: the connection here
        is the older one, closed as a second connection here would close it."""
        session = self._sessions.get(session_id)
        if session is None or session.connection is None:
            return
        connection = session.connection
        self.detach(session, connection)  # its grace period starts, as on a close
        connection.close(409, "replaced by a new connection of %s %s at instance %s"
                         % (self.kind, session_id, instance))

    def _check_elsewhere(self, session_id: str, origin: str, anywhere: bool) -> None:
        """An id registered at another instance from another address is refused
        here as it would be there (SessionRefused, nothing changed)."""
        if anywhere or self.bindings is None:
            return
        other = self.bindings.elsewhere(session_id)
        if other is not None and other != origin:
            raise SessionRefused(409, "%s %s is registered from another address"
                                 % (self.kind, session_id), "%s_elsewhere" % self.kind)

    def _take_back(self, session: Session, connection: ConnectionHandle, ip: str, port: int,
                   region: Optional[str], origin: str) -> None:
        """An id registers again: end its grace period or its older connection,
        and pin its entries again (announced afresh if its address moved)."""
        if session.grace is not None and session.grace.active():
            session.grace.cancel()
        session.grace = None
        previous = session.connection
        session.connection = None
        if previous is not None and previous is not connection:
            previous.close(409, "replaced by a new connection of %s %s" % (self.kind, session.id))
        moved = (session.ip, session.port) != (ip, port)
        session.ip, session.port, session.region, session.origin = ip, port, region, origin
        for info_hash, left in list(session.entries.items()):
            if moved:
                try:
                    self._announce(session, info_hash, left, completed=False)
                except TrackerError:
                    # Refused at the new address (content denied meanwhile, a
                    # cap reached): that entry leaves its swarm; the others,
                    # and the node's return, go on.
                    self.drop_entry(session, info_hash)
                    continue
            self.peers.pin(info_hash, session.peer_id, FOREVER)

    def detach(self, session: Session, connection: ConnectionHandle) -> None:
        """`connection` closed: if it was the session's, keep the entries for
        the grace period (unpinned: they carry the disconnect time)."""
        if session.connection is not connection:
            return  # an older connection, already replaced
        session.connection = None
        if self.grace_s <= 0:
            # No grace period (browsers): every entry leaves its swarm now.
            self._leave(session)
            return
        now = self.clock.seconds()
        self._record(session)
        for info_hash in session.entries:
            self.peers.pin(info_hash, session.peer_id, now)
        session.grace = self.clock.callLater(self.grace_s, self._grace_over, session)

    def _grace_over(self, session: Session) -> None:
        session.grace = None
        if session.connection is not None:
            return
        self._leave(session)
        log.info("{kind} {id} did not come back within {grace_s} s: its entries left their swarms",
                 kind=self.kind, id=session.id, grace_s=self.grace_s)

    def _leave(self, session: Session) -> None:
        """The session is over: its entries leave their swarms, its id is free."""
        for info_hash in list(session.entries):
            self.drop_entry(session, info_hash)
        self._sessions.pop(session.id, None)
        self._by_peer_id.pop(session.peer_id, None)
        if self.bindings is not None:
            self.bindings.released(session.id)

    def _record(self, session: Session) -> None:
        changes = self.core.changes
        if self.record and changes is not None:
            changes.node_seen(session.id, session.ip, session.port, session.region,
                              self.clock.seconds())

    # -- entries ------------------------------------------------------------------------

    def _announce(self, session: Session, info_hash: bytes, left: int, completed: bool) -> None:
        event = EVENT_COMPLETED if completed else EVENT_STARTED
        self.peers.announce(AnnounceRequest(info_hash, session.peer_id, session.ip, session.port,
                                            0, 0, left, event, 0, self.door), self.clock.seconds())

    def set_entry(self, session: Session, info_hash: bytes, left: int,
                  completed: bool = False) -> None:
        """The session holds (left=0) or wants the content; pinned while connected.
        Raises TrackerError (content refused) or SessionRefused (entry cap)."""
        if info_hash not in session.entries and len(session.entries) >= self.max_entries:
            raise SessionRefused(400, "at most %d entries per %s: DROP some first"
                                 % (self.max_entries, self.kind), "%s_entry_cap" % self.kind)
        if left:
            swarm = self.core.swarms.get(info_hash)
            if swarm is not None and swarm.size:
                left = swarm.size
        self._announce(session, info_hash, left, completed)
        self.peers.pin(info_hash, session.peer_id,
                       FOREVER if session.connection is not None else self.clock.seconds())
        session.entries[info_hash] = left
        self._swarm_sessions.setdefault(info_hash, set()).add(session)

    def drop_entry(self, session: Session, info_hash: bytes) -> None:
        session.entries.pop(info_hash, None)
        members = self._swarm_sessions.get(info_hash)
        if members is not None:
            members.discard(session)
            if not members:
                del self._swarm_sessions[info_hash]
        self.peers.remove_peer(info_hash, session.peer_id)

    # -- answers ------------------------------------------------------------------------

    def peers_for(self, session: Session, info_hash: bytes, numwant: int) -> List[PeerView]:
        """Up to `numwant` peers for `session`: sessions of its region first,
        then a random sample of everyone else (never itself; no seeders to a seeder)."""
        if numwant <= 0:
            return []
        swarm = self.core.swarms.get(info_hash)
        if swarm is None:
            return []
        me = swarm.get(session.peer_id)
        seeder = me is not None and me.seeder
        first: List[PeerView] = []
        if session.region:
            for other in self._swarm_sessions.get(info_hash, ()):
                if other is session or other.region != session.region:
                    continue
                peer = swarm.get(other.peer_id)
                if peer is not None and not (seeder and peer.seeder):
                    first.append(peer)
                    if len(first) == numwant:
                        return first
        chosen = {p.peer_id for p in first}
        rest = [p for p in self.core.peers(info_hash, numwant + len(first), session.peer_id, seeder)
                if p.peer_id not in chosen]
        return first + rest[:numwant - len(first)]
