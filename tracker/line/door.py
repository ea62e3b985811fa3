"""The line door: the CDN nodes' plain-text protocol (docs/line-protocol.md).

A `LineReceiver` that parses a line (tracker.line.protocol), calls the core or
the session registry (tracker.sessions: node sessions, their entries and their
grace period), and formats the reply. It holds only what belongs to a
connection: its subscriptions and the events waiting to be sent.
"""
from __future__ import annotations

import hashlib
import hmac
from time import perf_counter
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

import attr
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from tracker.addresses import address_words, compact_address, normalise_ip
from tracker.doors.admission import LimitedConnections
from tracker.doors.fastwrite import send_now, supports_send_now
from tracker.doors.timeouts import TimedConnections
from tracker.histogram import REQUEST_BUCKETS_S, Histogram
from tracker.core import DOOR_LINE, PeerView, TrackerCore, TrackerError
from tracker.line.protocol import (
    MAX_NAME, MAX_NUMWANT, PONG, LineError, format_event, format_hello, format_ok, format_peer,
    format_peers, format_resync, format_scrape, format_stats, parse_hash_and_options, parse_hello,
    parse_number, parse_options, parse_scrape_hashes, split_command,
)
from tracker.sessions import DEFAULT_MAX_ENTRIES, Session, SessionRefused, SessionRegistry

log = Logger()

ACCESS_REFUSALS = {"content_not_allowed", "content_denied", "address_banned"}
# The tracker's own bounds (--max-peers, --max-swarms, --max-write-backlog):
# nothing wrong with the command, try again later.
CAPACITY_REFUSALS = {"peer_limit", "swarm_limit", "write_backlog"}
# The failure reason of an ERR code, for the refusals given no more precise one
# (tracker_failures_total{door="line",reason}).
CODE_REASONS = {400: "bad_command", 401: "bad_token", 403: "forbidden", 404: "unknown_command",
                408: "idle", 409: "replaced", 413: "line_too_long", 415: "not_utf8",
                500: "internal_error"}


def failure_reason(error: LineError) -> str:
    """A refusal's reason label: the one given, else its code's (LineError
    defaults to `line_<code>`, which would repeat the door in the reason)."""
    if error.reason == "line_%d" % error.code:
        return CODE_REASONS.get(error.code, str(error.code))
    return error.reason
# Who may register a node id (docs/line-protocol.md, "Node identity").
AUTH_OPEN, AUTH_TOKEN = "open", "token"


def default_auth(tokens: Dict[str, str]) -> str:
    """`--line-auth` when not given: tokens configured at start (never those the
    admin API adds later) mean every node needs one."""
    return AUTH_TOKEN if tokens else AUTH_OPEN


@attr.s(slots=True, frozen=True)
class LineDoorSettings:
    grace_s = attr.ib(default=60.0)
    idle_timeout_s = attr.ib(default=300.0)
    max_line = attr.ib(default=4096)
    # node id -> secret, from the command line or config file.
    tokens = attr.ib(factory=dict)
    # AUTH_TOKEN: every node needs a valid token. AUTH_OPEN: any id, but an id
    # with a token (configured or set through the admin API) needs it, and an
    # id is bound to the address it first registered from while its entries live.
    auth = attr.ib(validator=attr.validators.in_((AUTH_OPEN, AUTH_TOKEN)))
    # Honour HELLO ip= without a token (the tracker's --allow-ip-param).
    allow_ip_param = attr.ib(default=False)
    max_subscriptions = attr.ib(default=1024)
    # Event bytes held for a connection (while its client is not reading, on
    # top of the 64 KiB send buffer) before they are coalesced into one
    # `* RESYNC <info_hash>` per swarm: a burst never queues without bound.
    max_event_backlog = attr.ib(default=1 << 20)
    # A connection that reads nothing for this long while events wait for it
    # is dropped (one that reads at all is never cut off).
    stall_timeout_s = attr.ib(default=60.0)
    # Entries one node may hold (HAVE and WANT); used when the factory builds
    # its own session registry.
    max_entries = attr.ib(default=DEFAULT_MAX_ENTRIES)

    @auth.default
    def _auth(self) -> str:
        return default_auth(self.tokens)


class PushedEvent(NamedTuple):
    """One swarm change as every subscriber gets it: its line encoded once
    (LF included), its swarm, and the region of the node it is about (None
    for a BitTorrent peer: same-region peers are sent first)."""
    data: bytes
    info_hash: bytes
    region: Optional[str]


def node_peer_id(node_id: str) -> bytes:
    """The 20-byte peer id a node has in its swarms (stable across reconnects)."""
    return b"-CDN000-" + hashlib.sha1(node_id.encode("utf-8")).digest()[:12]


class LineTrackerProtocol(LineReceiver):
    """One line connection: parse a command, call the core or the session
    registry, format the reply; hold this connection's subscriptions and the
    events waiting to be sent to it."""

    delimiter = b"\n"
    factory: "LineTrackerFactory"

    def __init__(self) -> None:
        self.session: Optional[Session] = None
        self.subscriptions: Set[bytes] = set()
        self.last_active = 0.0
        self._errors = 0
        self._closing = False
        self._closing_since = 0.0
        # Events not sent yet (this reactor turn's, or held while the client is
        # not reading), shared with every other subscriber, and their bytes.
        self._events: List[PushedEvent] = []
        self._event_bytes = 0
        # Swarms whose held events passed the bound: one RESYNC each instead.
        self._resync: Dict[bytes, None] = {}
        self._flush_pending = False
        # When the transport paused us (its send buffer full), if it has.
        self._paused_at: Optional[float] = None
        self._max_event_bytes = 0
        # A plain TCP connection of the reactor's (not TLS, not a test's): events
        # may be sent without waiting for the reactor's next turn.
        self._send_now = False

    # -- connection ---------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        # One byte more than the limit for a CR before the LF: the limit is
        # checked on the line without its ending (lineReceived).
        self.max_line = factory.settings.max_line
        self._max_event_bytes = factory.settings.max_event_backlog
        self.MAX_LENGTH = self.max_line + 1
        self.peer_ip = normalise_ip(self.transport.getPeer().host)
        self.last_active = factory.now
        self._send_now = supports_send_now(self.transport)
        factory.connection_opened(self)
        # Flow control: when the client does not read its replies and our
        # send buffer fills, the transport pauses us and we stop reading.
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason=None) -> None:
        factory = self.factory
        factory.connection_closed(self)
        for info_hash in self.subscriptions:
            factory.core.unwatch(info_hash, self)
        self.subscriptions.clear()
        self._events = []
        self._resync = {}
        if self.session is not None:
            factory.sessions.detach(self.session, self)
        self.session = None

    def send(self, text: str) -> None:
        self.transport.write(text.encode("utf-8") + b"\n")

    # -- lines ------------------------------------------------------------------------

    def close(self, code: int, message: str) -> None:
        """The registry's handle: a newer connection took over this node id."""
        self.session = None
        self._refuse(LineError(code, message, close=True))

    def _close_after_replies(self) -> None:
        """Close after the replies already written; read no further lines
        (`check_timeout` aborts it if the client never reads them)."""
        self._closing = True
        self._closing_since = self.factory.now
        self.transport.loseConnection()

    def lineReceived(self, raw: bytes) -> None:
        if self._closing:
            return
        # Every command timed (far fewer than announces): to its reply written.
        started = perf_counter()
        self.last_active = self.factory.now
        self._command(raw)
        self.factory.latency.observe(perf_counter() - started)

    def _command(self, raw: bytes) -> None:
        try:
            words = split_command(raw, self.max_line)
            if words is None:
                return
            name = words[0]
            handler = COMMANDS.get(name)
            if handler is None:
                raise LineError(404, "unknown command %s" % name[:40])
            if self.session is None and name not in BEFORE_HELLO:
                raise LineError(403, "say HELLO first")
            handler(self, words[1:])
        except LineError as error:
            self._refuse(error)
        except TrackerError as error:
            status = (403 if error.code in ACCESS_REFUSALS
                      else 503 if error.code in CAPACITY_REFUSALS else 400)
            self._refuse(LineError(status, error.message, reason=error.code))
        except SessionRefused as error:
            self._refuse(LineError(error.code, error.message, reason=error.reason))
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
        self.factory.core.stats.count_failure(failure_reason(error), DOOR_LINE)
        self.send(error.line())
        if error.close:
            self._close_after_replies()

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(LineError(413, "line too long (limit %d bytes)" % self.max_line, close=True))
        self.clearLineBuffer()

    # -- events -------------------------------------------------------------------------

    def swarm_changed(self, info_hash: bytes, peer: PeerView, joined: bool) -> None:
        session = self.session
        if session is not None and peer.peer_id == session.peer_id:
            return  # a node is not told about its own entries
        if self._closing or info_hash in self._resync:
            return  # it will be told to ask PEERS for this swarm anyway
        # The event as every subscriber gets it, made once: a subscriber holds
        # a reference to it, nothing of its own. Events raised in one reactor
        # turn go out together at its end (send_events).
        event = self.factory.event_for(info_hash, peer, joined)
        self._events.append(event)
        self._event_bytes += len(event.data)
        if self._event_bytes > self._max_event_bytes:
            self._coalesce()
        if not self._flush_pending and not self.paused:
            self._flush_pending = True
            self.factory.events_pending(self)

    @property
    def unsent_event_bytes(self) -> int:
        """Bytes of events held for this connection (RESYNC lines aside)."""
        return self._event_bytes

    def _coalesce(self) -> None:
        """Too many unsent events: the swarms they are about get one RESYNC
        each (ask PEERS again) instead of a queue that grows with the burst."""
        for event in self._events:
            self._resync[event.info_hash] = None
        self._events.clear()
        self._event_bytes = 0

    def send_events(self) -> None:
        """Write the events waiting, unless the client is not reading (then
        `resumeProducing` sends them when it is)."""
        self._flush_pending = False
        events = self._events
        if self.paused or self._closing or not (events or self._resync):
            return
        if len(events) == 1 and not self._resync:
            data = events[0].data  # the common case: the very bytes every subscriber gets
        else:
            data = self._event_block(events)
        events.clear()
        self._event_bytes = 0
        if self._send_now:
            # Straight to the socket when nothing is queued before it: one
            # system call, not a turn through the reactor and two epoll_ctl
            # (tracker/doors/fastwrite.py). Pushed to 10,000 subscribers, that
            # halves the tracker's CPU time per event.
            send_now(self.transport, data)
        else:
            self.transport.write(data)

    def _event_block(self, events: List[PushedEvent]) -> bytes:
        """Several events (and RESYNC lines) as one write: RESYNCs first, then
        the events, peers of this node's region first (the sort is stable:
        otherwise in the order they happened)."""
        parts = []
        if self._resync:
            parts = [format_resync(info_hash).encode("ascii") + b"\n" for info_hash in self._resync]
            self.factory.sessions.connection_stats.resyncs += len(parts)
            self._resync = {}
        region = self.session.region if self.session is not None else None
        if region is not None and len(events) > 1:
            events.sort(key=lambda event: event.region != region)
        parts += [event.data for event in events]
        return b"".join(parts)

    def pauseProducing(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.factory.clock.seconds()
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._paused_at = None
        super().resumeProducing()  # reads the lines that waited, which may pause it again
        self.send_events()

    def _cut_off(self, why: str) -> None:
        """Abort a connection whose client reads nothing (closing politely
        would wait for it to read what is already buffered)."""
        log.info("line client {peer} cut off: {why}", peer=self.peer_ip, why=why)
        self.factory.core.stats.count_failure("slow_reader", DOOR_LINE)
        self.factory.sessions.connection_stats.cut_off += 1
        self._closing = True
        self._events, self._resync = [], {}
        self.transport.abortConnection()

    # -- commands -----------------------------------------------------------------------

    def do_hello(self, args: List[str]) -> None:
        if self.session is not None:
            raise LineError(400, "already registered as %s" % self.session.id)
        hello = parse_hello(args)
        factory = self.factory
        access = factory.core.access
        if access.bans and access.is_banned(self.peer_ip):
            raise LineError(403, "your address is banned from this tracker", close=True)
        proven = factory.check_token(hello.node_id, hello.token)
        ip = self.peer_ip if hello.ip is None else normalise_ip(hello.ip)
        try:
            compact_address(ip, hello.port)
        except (OSError, ValueError, UnicodeEncodeError):
            raise LineError(400, "ip must be an IPv4 or IPv6 address")
        if ip != self.peer_ip and not (proven or factory.settings.allow_ip_param):
            # Otherwise anyone could send BitTorrent clients to any address.
            raise LineError(403, "ip= needs a valid node token (or --allow-ip-param)",
                            reason="ip_refused")
        # A node that proved itself may take its id over from any address; one
        # that did not only from the address the id is registered from.
        self.session, kept = factory.sessions.attach(
            hello.node_id, node_peer_id(hello.node_id), self, ip, hello.port, hello.region,
            self.peer_ip, anywhere=proven)
        self.send(format_hello(hello.node_id, kept))

    def do_have(self, args: List[str]) -> None:
        info_hash, options = parse_hash_and_options(args, ("size", "name"))
        size = parse_number(options, "size", 0, 2 ** 63 - 1)
        name = options.get("name")
        if name is not None and len(name) > MAX_NAME:
            raise LineError(400, "name is longer than %d characters" % MAX_NAME)
        factory = self.factory
        factory.sessions.set_entry(self.session, info_hash, left=0)  # refused content raises here
        factory.core.describe_content(info_hash, name, size, factory.clock.seconds())
        self.send(format_ok("HAVE", info_hash.hex()))

    def do_want(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.sessions.set_entry(self.session, info_hash, left=1)
        self.send(format_ok("WANT", info_hash.hex()))

    def do_done(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.sessions.set_entry(self.session, info_hash, left=0, completed=True)
        self.send(format_ok("DONE", info_hash.hex()))

    def do_drop(self, args: List[str]) -> None:
        info_hash, _ = parse_hash_and_options(args)
        self.factory.sessions.drop_entry(self.session, info_hash)
        self.send(format_ok("DROP", info_hash.hex()))

    def do_peers(self, args: List[str]) -> None:
        info_hash, options = parse_hash_and_options(args, ("numwant",))
        factory = self.factory
        numwant = parse_number(options, "numwant", 0, MAX_NUMWANT)
        if numwant is None:
            numwant = factory.core.settings.default_numwant
        numwant = min(numwant, factory.core.settings.max_numwant)
        peers = factory.sessions.peers_for(self.session, info_hash, numwant)
        self.transport.write(format_peers([factory.describe_peer(p) for p in peers]).encode("utf-8"))

    def do_scrape(self, args: List[str]) -> None:
        hashes = parse_scrape_hashes(args)
        files = self.factory.core.scrape(hashes, DOOR_LINE)
        self.transport.write(format_scrape(
            [(h, files[h].complete, files[h].incomplete, files[h].downloaded) for h in hashes]
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
        figures.update(nodes=self.factory.sessions.connected(),
                       connections=len(self.factory.connections))
        self.send(format_stats(figures))

    def do_ping(self, args: List[str]) -> None:
        self.send(PONG)

    def do_quit(self, args: List[str]) -> None:
        self.send(format_ok("BYE"))
        self._close_after_replies()

    # -- timeouts ---------------------------------------------------------------------------

    def check_timeout(self, now: float) -> None:
        settings = self.factory.settings
        if self._closing:
            # A client that does not read its last replies would keep a
            # polite close waiting forever.
            if now - self._closing_since >= settings.idle_timeout_s:
                self.transport.abortConnection()
            return
        stalled_s = 0.0 if self._paused_at is None else now - self._paused_at
        if stalled_s >= settings.stall_timeout_s and (self._events or self._resync):
            self._cut_off("read nothing for %.0f s while events waited" % stalled_s)
        elif now - self.last_active >= settings.idle_timeout_s:
            if self.paused:
                self._cut_off("idle and not reading")
            else:
                self.send(LineError(408, "idle for too long").line())
                self._close_after_replies()


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


class LineTrackerFactory(LimitedConnections, TimedConnections, Factory):
    """The line door's connections and their end-of-turn event flush; node
    sessions live in the session registry (`sessions`)."""

    protocol = LineTrackerProtocol
    noisy = False

    def __init__(self, core: TrackerCore, clock: IReactorTime,
                 settings: Optional[LineDoorSettings] = None,
                 sessions: Optional[SessionRegistry] = None) -> None:
        self.core = core
        self.clock = clock
        self.settings = settings = settings or LineDoorSettings()
        if sessions is None:
            sessions = SessionRegistry(core, clock, settings.grace_s, settings.max_entries)
        self.sessions = sessions
        self.start_timing(clock)
        # Command latencies for /metrics (tracker_request_seconds{door="line"}).
        self.latency = Histogram(REQUEST_BUCKETS_S)
        # Connections with events waiting for the end of this reactor turn.
        self._with_events: List[LineTrackerProtocol] = []
        self._events_call: Optional[IDelayedCall] = None
        # The last swarm change turned into an event: the core tells every
        # subscriber of a swarm of the same change, so the event is made once.
        self._last_event: Optional[Tuple[PeerView, bool, bytes, PushedEvent]] = None

    def check_token(self, node_id: str, given: Optional[str]) -> bool:
        """True when `node_id` proved itself with its token; False when it has
        none and the door is open. A wrong or missing token is refused (401)."""
        # Tokens from the settings and those the admin gave (which win).
        expected = self.core.access.node_tokens.get(node_id, self.settings.tokens.get(node_id))
        if expected is None and self.settings.auth == AUTH_OPEN:
            return False
        if expected is None or given is None or not hmac.compare_digest(
                expected.encode(), given.encode()):
            raise LineError(401, "wrong or missing token for node %s" % node_id, close=True)
        return True

    def connection_opened(self, connection: LineTrackerProtocol) -> None:
        self.connections.add(connection)
        self.sessions.connection_stats.open = len(self.connections)

    def connection_closed(self, connection: LineTrackerProtocol) -> None:
        self.connections.discard(connection)
        self.sessions.connection_stats.open = len(self.connections)
        self.connection_released(connection.peer_ip)

    def refusal_message(self, text: str) -> bytes:
        return b"ERR 503 %s\n" % text.encode("utf-8")

    def events_pending(self, connection: LineTrackerProtocol) -> None:
        self._with_events.append(connection)
        if self._events_call is None:
            self._events_call = self.clock.callLater(0, self._send_events)

    def _send_events(self) -> None:
        self._events_call = None
        connections, self._with_events = self._with_events, []
        for connection in connections:
            connection.send_events()

    def event_for(self, info_hash: bytes, peer: PeerView, joined: bool) -> PushedEvent:
        """A swarm change as its subscribers get it, made once for all of them:
        the core tells every subscriber of a swarm of the same change in turn."""
        last = self._last_event
        if last is not None and last[0] is peer and last[1] == joined and last[2] == info_hash:
            return last[3]
        line, node = self.event_line(info_hash, peer, joined)
        event = PushedEvent((line + "\n").encode("utf-8"), info_hash,
                            None if node is None else node.region)
        self._last_event = (peer, joined, info_hash, event)
        return event

    def event_line(self, info_hash: bytes, peer: PeerView,
                   joined: bool) -> Tuple[str, Optional[Session]]:
        """The `* JOIN`/`* LEAVE` line of a swarm change and the node it is
        about (None for a BitTorrent peer)."""
        node = self.sessions.by_peer_id(peer.peer_id) if peer.door == DOOR_LINE else None
        return format_event(joined, info_hash, self._describe(peer, node)), node

    def describe_peer(self, peer: PeerView) -> str:
        node = self.sessions.by_peer_id(peer.peer_id) if peer.door == DOOR_LINE else None
        return self._describe(peer, node)

    @staticmethod
    def _describe(peer: PeerView, node: Optional[Session]) -> str:
        if node is None:
            return format_peer(address_words(peer.compact), peer.seeder, peer.door)
        return format_peer(address_words(peer.compact), peer.seeder, peer.door, node.id,
                           node.region)
