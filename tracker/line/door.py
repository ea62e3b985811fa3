"""The line door: the CDN nodes' plain-text protocol (docs/line-protocol.md).

A `LineReceiver` that parses a line, calls the same core as HTTP and UDP, and
writes the reply. Node sessions outlive their connections for a grace period
so a node that reconnects loses nothing.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Callable, Dict, List, Optional, Set, Tuple

import attr
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from tracker.core import (
    DOOR_LINE, EVENT_COMPLETED, EVENT_STARTED, AnnounceRequest, PeerView, TrackerCore,
    TrackerError, compact_address,
)
from tracker.core.swarm import address_words
from tracker.doors.http import normalise_ip
from tracker.line.protocol import (
    MAX_NAME, MAX_NUMWANT, PONG, LineError, format_event, format_hello, format_ok, format_peer,
    format_peers, format_scrape, format_stats, parse_hash_and_options, parse_hello,
    parse_number, parse_options, parse_scrape_hashes, split_command,
)

log = Logger()

FOREVER = float("inf")
ACCESS_REFUSALS = {"content_not_allowed", "content_denied", "address_banned"}


@attr.s(slots=True, frozen=True)
class LineDoorSettings:
    grace_s = attr.ib(default=60.0)
    idle_timeout_s = attr.ib(default=300.0)
    max_line = attr.ib(default=4096)
    # node id -> secret; empty means tokens are not required.
    tokens = attr.ib(factory=dict)
    max_subscriptions = attr.ib(default=1024)
    # Event bytes a connection may leave unread (on top of the 64 KiB send
    # buffer) before it is cut off: a subscriber that stops reading must not
    # make the tracker hold its events without end.
    max_event_backlog = attr.ib(default=1 << 20)


def node_peer_id(node_id: str) -> bytes:
    """The 20-byte peer id a node has in its swarms (stable across reconnects)."""
    return b"-CDN000-" + hashlib.sha1(node_id.encode("utf-8")).digest()[:12]


class NodeSession:
    """A registered node: its address, region and entries. It survives its
    connection for the grace period."""

    def __init__(self, node_id: str, ip: str, port: int, region: Optional[str]) -> None:
        self.node_id = node_id
        self.peer_id = node_peer_id(node_id)
        self.ip = ip
        self.port = port
        self.region = region
        self.entries: Dict[bytes, int] = {}  # info_hash -> left (0: seeds it)
        self.connection: Optional["LineTrackerProtocol"] = None
        self.grace: Optional[IDelayedCall] = None


class LineTrackerProtocol(LineReceiver):
    delimiter = b"\n"
    factory: "LineTrackerFactory"

    def __init__(self) -> None:
        self.session: Optional[NodeSession] = None
        self.subscriptions: Set[bytes] = set()
        self.last_active = 0.0
        self._errors = 0
        self._closing = False
        self._events: List[Tuple[bool, str]] = []
        # Event bytes written while the transport is paused (its buffer full).
        self._event_backlog = 0

    # -- connection ---------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.MAX_LENGTH = factory.settings.max_line
        self.peer_ip = normalise_ip(self.transport.getPeer().host)
        self.last_active = factory.now
        factory.connections.add(self)
        # Flow control: when the client does not read its replies and our
        # send buffer fills, the transport pauses us and we stop reading.
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason=None) -> None:
        factory = self.factory
        factory.connections.discard(self)
        for info_hash in self.subscriptions:
            factory.core.unwatch(info_hash, self)
        self.subscriptions.clear()
        self._events = []
        if self.session is not None and self.session.connection is self:
            factory.detach(self.session)
        self.session = None

    def send(self, text: str) -> None:
        self.transport.write(text.encode("utf-8") + b"\n")

    # -- lines ------------------------------------------------------------------------

    def close(self) -> None:
        """Close after the replies already written; read no further lines."""
        self._closing = True
        self.transport.loseConnection()

    def lineReceived(self, raw: bytes) -> None:
        if self._closing:
            return
        self.last_active = self.factory.now
        try:
            command = split_command(raw)
            if command is None:
                return
            name, args = command
            handler = COMMANDS.get(name)
            if handler is None:
                raise LineError(404, "unknown command %s" % name[:40])
            if self.session is None and name not in BEFORE_HELLO:
                raise LineError(403, "say HELLO first")
            handler(self, args)
        except LineError as error:
            self._refuse(error)
        except TrackerError as error:
            self._refuse(LineError(403 if error.code in ACCESS_REFUSALS else 400, error.message))
        except Exception:
            log.failure("unexpected error answering {line!r} from {peer}", line=raw[:200],
                        peer=self.peer_ip)
            self._refuse(LineError(500, "internal error (logged)"))

    def _refuse(self, error: LineError) -> None:
        self._errors += 1
        # The first error of a connection is worth a line in the log; a flood is not.
        emit = log.info if self._errors == 1 else log.debug
        emit("line client {peer} refused: {code} {message}", peer=self.peer_ip, code=error.code,
             message=error.message)
        self.factory.core.stats.count_failure(error.reason)
        self.send(error.line())
        if error.close:
            self.close()

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(LineError(413, "line too long (limit %d bytes)" % self.MAX_LENGTH, close=True))
        self.clearLineBuffer()

    # -- events -------------------------------------------------------------------------

    def swarm_changed(self, info_hash: bytes, peer: PeerView, joined: bool) -> None:
        session = self.session
        if session is not None and peer.peer_id == session.peer_id:
            return  # a node is not told about its own entries
        line = format_event(joined, info_hash, self.factory.describe_peer(peer))
        # Events raised in one reactor turn go out together at its end, peers of
        # this node's region first (the sort is stable: otherwise in order).
        region = session.region if session is not None else None
        node = self.factory.node_by_peer_id.get(peer.peer_id) if region else None
        nearby = node is not None and node.region == region
        if not self._events:
            self.factory.events_pending(self)
        self._events.append((not nearby, line))

    def send_events(self) -> None:
        events, self._events = self._events, []
        events.sort(key=lambda event: event[0])
        if events and not self._closing:
            data = ("\n".join(line for _, line in events) + "\n").encode("utf-8")
            if self.paused:
                self._event_backlog += len(data)
                if self._event_backlog > self.factory.settings.max_event_backlog:
                    self._cut_off_slow_reader()
                    return
            self.transport.write(data)

    def _cut_off_slow_reader(self) -> None:
        """Abort a connection whose client has left too many events unread
        (closing politely would wait for it to read them)."""
        log.info("line client {peer} cut off: more than {limit} bytes of events unread",
                 peer=self.peer_ip, limit=self.factory.settings.max_event_backlog)
        self.factory.core.stats.count_failure("line_slow_reader")
        self._closing = True
        self.transport.abortConnection()

    def resumeProducing(self) -> None:
        self._event_backlog = 0
        super().resumeProducing()

    # -- commands -----------------------------------------------------------------------

    def do_hello(self, args: List[str]) -> None:
        if self.session is not None:
            raise LineError(400, "already registered as %s" % self.session.node_id)
        hello = parse_hello(args)
        node_id = hello.node_id
        access = self.factory.core.access
        if access.bans and access.is_banned(self.peer_ip):
            raise LineError(403, "your address is banned from this tracker", close=True)
        # Tokens from the settings and those the admin gave (which win).
        tokens = dict(self.factory.settings.tokens, **access.node_tokens)
        if tokens:
            expected = tokens.get(node_id)
            given = hello.token or ""
            if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
                raise LineError(401, "wrong or missing token for node %s" % node_id, close=True)
        ip = normalise_ip(hello.ip if hello.ip is not None else self.peer_ip)
        try:
            compact_address(ip, hello.port)
        except (OSError, ValueError, UnicodeEncodeError):
            raise LineError(400, "ip must be an IPv4 or IPv6 address")
        self.session, kept = self.factory.attach(self, node_id, ip, hello.port, hello.region)
        self.send(format_hello(node_id, kept))

    def do_have(self, args: List[str]) -> None:
        info_hash, options = parse_hash_and_options(args, ("size", "name"))
        size = parse_number(options, "size", 0, 2 ** 63 - 1)
        name = options.get("name")
        if name is not None and len(name) > MAX_NAME:
            raise LineError(400, "name is longer than %d characters" % MAX_NAME)
        factory = self.factory
        factory.set_entry(self.session, info_hash, left=0)  # refused content raises here
        factory.core.describe(info_hash, name, size, factory.clock.seconds())
        self.send(format_ok("HAVE", info_hash.hex()))

    def do_want(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.set_entry(self.session, info_hash, left=1)
        self.send(format_ok("WANT", info_hash.hex()))

    def do_done(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.set_entry(self.session, info_hash, left=0, completed=True)
        self.send(format_ok("DONE", info_hash.hex()))

    def do_drop(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.drop_entry(self.session, info_hash)
        self.send(format_ok("DROP", info_hash.hex()))

    def do_peers(self, args: List[str]) -> None:
        info_hash, options = parse_hash_and_options(args, ("numwant",))
        factory = self.factory
        numwant = parse_number(options, "numwant", 0, MAX_NUMWANT)
        if numwant is None:
            numwant = factory.core.settings.default_numwant
        numwant = min(numwant, factory.core.settings.max_numwant)
        peers = factory.peers_for(self.session, info_hash, numwant)
        self.transport.write(format_peers([factory.describe_peer(p) for p in peers]).encode("utf-8"))

    def do_scrape(self, args: List[str]) -> None:
        hashes = parse_scrape_hashes(args)
        files = self.factory.core.scrape(hashes, DOOR_LINE)
        self.transport.write(format_scrape(
            (h, files[h].complete, files[h].incomplete, files[h].downloaded) for h in hashes
        ).encode("utf-8"))

    def do_subscribe(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        if info_hash not in self.subscriptions:
            if len(self.subscriptions) >= self.factory.settings.max_subscriptions:
                raise LineError(400, "at most %d subscriptions per connection"
                                % self.factory.settings.max_subscriptions)
            self.subscriptions.add(info_hash)
            self.factory.core.watch(info_hash, self)
        self.send(format_ok("SUBSCRIBE", info_hash.hex()))

    def do_unsubscribe(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        if info_hash in self.subscriptions:
            self.subscriptions.discard(info_hash)
            self.factory.core.unwatch(info_hash, self)
        self.send(format_ok("UNSUBSCRIBE", info_hash.hex()))

    def do_stats(self, args: List[str]) -> None:
        parse_options(args, ())
        figures = self.factory.core.totals()
        figures.update(nodes=self.factory.connected_nodes(), connections=len(self.factory.connections))
        self.send(format_stats(figures))

    def do_ping(self, args: List[str]) -> None:
        self.send(PONG)

    def do_quit(self, args: List[str]) -> None:
        self.send(format_ok("BYE"))
        self.close()

    # -- timeouts ---------------------------------------------------------------------------

    def check_timeout(self, now: float) -> None:
        if not self._closing and now - self.last_active >= self.factory.settings.idle_timeout_s:
            self.send("ERR 408 idle for too long")
            self.close()


COMMANDS: Dict[str, Callable[[LineTrackerProtocol, List[str]], None]] = {
    "HELLO": LineTrackerProtocol.do_hello,
    "HAVE": LineTrackerProtocol.do_have,
    "WANT": LineTrackerProtocol.do_want,
    "DONE": LineTrackerProtocol.do_done,
    "DROP": LineTrackerProtocol.do_drop,
    "PEERS": LineTrackerProtocol.do_peers,
    "SCRAPE": LineTrackerProtocol.do_scrape,
    "SUBSCRIBE": LineTrackerProtocol.do_subscribe,
    "UNSUBSCRIBE": LineTrackerProtocol.do_unsubscribe,
    "STATS": LineTrackerProtocol.do_stats,
    "PING": LineTrackerProtocol.do_ping,
    "QUIT": LineTrackerProtocol.do_quit,
}
BEFORE_HELLO = {"HELLO", "PING", "STATS", "SCRAPE", "QUIT"}


class LineTrackerFactory(Factory):
    """Node sessions, their entries in the swarms, and the connections."""

    protocol = LineTrackerProtocol
    noisy = False

    def __init__(self, core: TrackerCore, clock: IReactorTime,
                 settings: Optional[LineDoorSettings] = None) -> None:
        self.core = core
        self.clock = clock
        self.settings = settings or LineDoorSettings()
        self.nodes: Dict[str, NodeSession] = {}
        self.node_by_peer_id: Dict[bytes, NodeSession] = {}
        # info_hash -> the nodes with an entry in that swarm (for region-first PEERS).
        self.swarm_nodes: Dict[bytes, Set[NodeSession]] = {}
        self.connections: Set[LineTrackerProtocol] = set()
        self.now = clock.seconds()
        # Connections with events waiting for the end of this reactor turn.
        self._with_events: List[LineTrackerProtocol] = []
        self._events_call: Optional[IDelayedCall] = None

    def tick(self) -> None:
        self.now = now = self.clock.seconds()
        for connection in list(self.connections):
            connection.check_timeout(now)

    def events_pending(self, connection: LineTrackerProtocol) -> None:
        self._with_events.append(connection)
        if self._events_call is None:
            self._events_call = self.clock.callLater(0, self._send_events)

    def _send_events(self) -> None:
        self._events_call = None
        connections, self._with_events = self._with_events, []
        for connection in connections:
            connection.send_events()

    def connected_nodes(self) -> int:
        return sum(1 for s in self.nodes.values() if s.connection is not None)

    # -- sessions -------------------------------------------------------------------------

    def attach(self, connection: LineTrackerProtocol, node_id: str, ip: str, port: int,
               region: Optional[str]) -> Tuple[NodeSession, int]:
        """Register `connection` as `node_id`; return the session and how many
        entries it kept from an earlier connection."""
        session = self.nodes.get(node_id)
        if session is None:
            session = self.nodes[node_id] = NodeSession(node_id, ip, port, region)
            self.node_by_peer_id[session.peer_id] = session
        else:
            if session.grace is not None and session.grace.active():
                session.grace.cancel()
            session.grace = None
            previous = session.connection
            if previous is not None and previous is not connection:
                previous.session = None
                previous._refuse(LineError(409, "replaced by a new connection of node %s" % node_id,
                                           close=True))
            moved = (session.ip, session.port) != (ip, port)
            session.ip, session.port, session.region = ip, port, region
            for info_hash, left in list(session.entries.items()):
                if moved:
                    self._announce(session, info_hash, left, completed=False)
                self.core.pin(info_hash, session.peer_id, FOREVER)
        session.connection = connection
        if self.core.changes is not None:
            self.core.changes.node_seen(node_id, ip, port, region, self.clock.seconds())
        return session, len(session.entries)

    def detach(self, session: NodeSession) -> None:
        """The node's connection closed: keep its entries for the grace period."""
        session.connection = None
        now = self.clock.seconds()
        if self.core.changes is not None:
            self.core.changes.node_seen(session.node_id, session.ip, session.port, session.region, now)
        for info_hash in session.entries:
            self.core.pin(info_hash, session.peer_id, now)
        session.grace = self.clock.callLater(self.settings.grace_s, self._grace_over, session)

    def _grace_over(self, session: NodeSession) -> None:
        session.grace = None
        if session.connection is not None:
            return
        for info_hash in list(session.entries):
            self.drop_entry(session, info_hash)
        self.nodes.pop(session.node_id, None)
        self.node_by_peer_id.pop(session.peer_id, None)
        log.info("node {node} did not come back within {grace_s} s: its entries left their swarms",
                 node=session.node_id, grace_s=self.settings.grace_s)

    # -- entries ------------------------------------------------------------------------

    def _announce(self, session: NodeSession, info_hash: bytes, left: int, completed: bool) -> None:
        event = EVENT_COMPLETED if completed else EVENT_STARTED
        self.core.announce(AnnounceRequest(info_hash, session.peer_id, session.ip, session.port,
                                           0, 0, left, event, 0, DOOR_LINE), self.clock.seconds())

    def set_entry(self, session: NodeSession, info_hash: bytes, left: int,
                  completed: bool = False) -> None:
        if left:
            swarm = self.core.swarms.get(info_hash)
            if swarm is not None and swarm.size:
                left = swarm.size
        self._announce(session, info_hash, left, completed)
        self.core.pin(info_hash, session.peer_id, FOREVER)
        session.entries[info_hash] = left
        self.swarm_nodes.setdefault(info_hash, set()).add(session)

    def drop_entry(self, session: NodeSession, info_hash: bytes) -> None:
        session.entries.pop(info_hash, None)
        nodes = self.swarm_nodes.get(info_hash)
        if nodes is not None:
            nodes.discard(session)
            if not nodes:
                del self.swarm_nodes[info_hash]
        self.core.remove_peer(info_hash, session.peer_id)

    # -- answers ------------------------------------------------------------------------

    def peers_for(self, session: NodeSession, info_hash: bytes, numwant: int) -> List[PeerView]:
        """Same-region nodes first, then a random sample of everyone else."""
        if numwant <= 0:
            return []
        swarm = self.core.swarms.get(info_hash)
        if swarm is None:
            return []
        me = swarm.get(session.peer_id)
        seeder = me is not None and me.seeder
        first: List[PeerView] = []
        if session.region:
            for node in self.swarm_nodes.get(info_hash, ()):
                if node is session or node.region != session.region:
                    continue
                peer = swarm.get(node.peer_id)
                if peer is not None and not (seeder and peer.seeder):
                    first.append(peer)
                    if len(first) == numwant:
                        return first
        chosen = {p.peer_id for p in first}
        rest = [p for p in self.core.peers(info_hash, numwant + len(first), session.peer_id, seeder)
                if p.peer_id not in chosen]
        return first + rest[:numwant - len(first)]

    def describe_peer(self, peer: PeerView) -> str:
        node = self.node_by_peer_id.get(peer.peer_id) if peer.door == DOOR_LINE else None
        if node is None:
            return format_peer(address_words(peer.compact), peer.seeder, peer.door)
        return format_peer(address_words(peer.compact), peer.seeder, peer.door, node.node_id,
                           node.region)
