"""The WebSocket door: browsers (WebTorrent) as peers (docs/websocket.md).

A lean `Protocol` drives the sans-IO `wsproto` connection (the handshake,
frames, ping/pong, close codes); tracker.ws.protocol parses and formats the
JSON messages; the session registry (tracker/sessions.py, grace period 0)
binds each peer id to its socket, so a closed socket leaves all its swarms
at once; tracker.core.browsers keeps the browser peers of each swarm, apart
from the IP:port peers, because only a browser can use a browser peer.

Relaying is the tracker's job here: an announce's WebRTC offers go to random
other browser peers of the swarm, one each, and an answer goes back to the
peer that made the offer, only from a peer the offer was sent to.
"""
from __future__ import annotations

from time import perf_counter
from typing import Dict, List, Optional, Tuple

import attr
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Message, Ping, RejectConnection,
    RejectData, Request, TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from tracker.addresses import in_networks, normalise_ip, pack_ip
from tracker.core import EVENT_COMPLETED, EVENT_STOPPED, TrackerCore, TrackerError
from tracker.core.browsers import DOOR_WS, BrowserPeers
from tracker.doors.fastwrite import send_now, supports_send_now
from tracker.doors.admission import LimitedConnections
from tracker.doors.timeouts import TimedConnections
from tracker.histogram import REQUEST_BUCKETS_S, Histogram
from tracker.limits import RATE_LIMITED, RATE_LIMITED_MESSAGE
from tracker.sessions import Session, SessionRefused, SessionRegistry
from tracker.ws.protocol import (
    ANNOUNCE, MAX_OFFERS, Announce, Scrape, WsError, format_announce, format_answer,
    format_failure, format_offer, format_scrape, parse_message,
)

log = Logger()

# Close codes (RFC 6455, 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001     # idle for too long
CLOSE_UNSUPPORTED = 1003    # a binary message: the protocol is JSON text
CLOSE_POLICY = 1008         # a peer id taken over, a limit of the socket
CLOSE_TOO_BIG = 1009        # a message past --ws-max-message
CLOSE_INTERNAL = 1011

NOT_WEBSOCKET = (b"This is a WebTorrent tracker's WebSocket port: use a ws:// or wss:// "
                 b"announce URL.\n")

OfferKey = Tuple[bytes, bytes, str, bytes]  # info hash, offerer, offer id, answerer


@attr.s(slots=True, frozen=True)
class WsDoorSettings:
    """Limits and choices of the WebSocket door."""

    # Seconds between a browser's announces (each brings fresh offers).
    interval_s = attr.ib(default=120)
    max_message = attr.ib(default=64 * 1024)   # characters of one message
    max_offers = attr.ib(default=MAX_OFFERS)   # offers in one announce
    # (peer id, swarm) entries one socket may hold, and peer ids on one socket
    # (a page's WebTorrent clients share one socket per tracker).
    max_swarms = attr.ib(default=100)
    max_peer_ids = attr.ib(default=8)
    # Offers forwarded to one socket and not answered yet (older ones are forgotten).
    max_pending_offers = attr.ib(default=256)
    # Silence before a ping, and before the socket is closed; a socket that
    # reads nothing of ours for idle_timeout_s is aborted.
    idle_timeout_s = attr.ib(default=300.0)
    handshake_timeout_s = attr.ib(default=10.0)
    trusted_proxies = attr.ib(default=())
    proxy_header = attr.ib(default=b"x-forwarded-for")


class WsStats:
    """The door's figures for /metrics."""

    __slots__ = ("open", "offers_relayed", "answers_relayed", "offers_dropped", "cut_off")

    def __init__(self) -> None:
        self.open = 0
        self.offers_relayed = 0
        self.answers_relayed = 0
        self.offers_dropped = 0   # not sent: the socket they were for is not reading
        self.cut_off = 0          # sockets aborted for reading nothing


class WsTrackerProtocol(Protocol):
    """One browser's socket: the WebSocket framing, its peer ids' sessions,
    the offers forwarded to it, its flow control and timeouts."""

    factory: "WsTrackerFactory"

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.sessions: Dict[bytes, Session] = {}   # peer id -> its session
        self.entries = 0                           # (peer id, swarm) entries held
        # Offers forwarded to this socket, awaiting an answer (insertion order: oldest first).
        self.pending_offers: Dict[OfferKey, None] = {}
        self.open = False
        self.paused = False
        self.closing = False
        self._closing_since = 0.0
        self._paused_at = 0.0
        self._opened_at = 0.0
        self.last_active = 0.0
        self._pinged = False
        self._parts: List[str] = []
        self._size = 0

    # -- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.peer_ip = self.client_ip = normalise_ip(self.transport.getPeer().host)
        self.last_active = self._opened_at = factory.now
        factory.connection_opened(self)
        # The registry binds a peer id to one socket: this names the socket.
        self.origin = "%s#%d" % (self.peer_ip, factory.serial)
        self._send_now = supports_send_now(self.transport)
        if self._send_now:
            # Small messages to a browser often go out back to back (a reply,
            # then an answer relayed to it): without this, Nagle holds the
            # second until the first is acknowledged, 40 ms with delayed ACKs.
            self.transport.setTcpNoDelay(True)
        # Flow control: the transport pauses us when the browser does not read.
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason=None) -> None:
        self.closing = True
        self.factory.connection_closed(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = self.factory.now
        self._pinged = False
        ws = self.ws
        try:
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    self._text(event)
                elif isinstance(event, Request):
                    self._handshake(event)
                elif isinstance(event, Ping):
                    self.transport.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self._closed_by_peer(event)
                elif isinstance(event, BytesMessage):
                    self.close_ws(CLOSE_UNSUPPORTED, "binary messages are not part of the protocol")
                if self.closing:
                    return
        except RemoteProtocolError as error:
            self._broken(error)

    def _broken(self, error: RemoteProtocolError) -> None:
        """Not WebSocket, or a frame against the rules: wsproto's answer
        (HTTP 400 for a bad handshake, a close frame otherwise), then close."""
        self.factory.core.stats.count_failure("protocol_error", DOOR_WS)
        hint = error.event_hint
        try:
            if isinstance(hint, RejectConnection):
                self.transport.write(self.ws.send(RejectConnection(
                    status_code=400, headers=[(b"content-type", b"text/plain")], has_body=True))
                    + self.ws.send(RejectData(data=NOT_WEBSOCKET)))
            elif hint is not None:
                self.transport.write(self.ws.send(hint))
        except Exception:  # wsproto's state allows no reply: just close
            pass
        self._lose()

    def _handshake(self, request: Request) -> None:
        headers = {name.lower(): value for name, value in request.extra_headers}
        settings = self.factory.settings
        if settings.trusted_proxies and in_networks(self.peer_ip, settings.trusted_proxies):
            forwarded = headers.get(settings.proxy_header)
            client = forwarded_client(forwarded, settings.trusted_proxies) if forwarded else None
            if client is None:
                self.factory.core.stats.count_failure("bad_proxy_header", DOOR_WS)
                self.transport.write(self.ws.send(RejectConnection(status_code=400)))
                self._lose()
                return
            self.client_ip = client
        self.transport.write(self.ws.send(AcceptConnection()))
        self.open = True

    def _closed_by_peer(self, event: CloseConnection) -> None:
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            self.transport.write(self.ws.send(event.response()))
        self._lose()

    def _text(self, event: TextMessage) -> None:
        """Gather a message's fragments, refusing one past the size limit."""
        self._size += len(event.data)
        if self._size > self.factory.settings.max_message:
            self.factory.core.stats.count_failure("message_too_big", DOOR_WS)
            self.close_ws(CLOSE_TOO_BIG, "message longer than %d characters"
                          % self.factory.settings.max_message)
            return
        if not event.message_finished:
            self._parts.append(event.data)
            return
        if self._parts:
            self._parts.append(event.data)
            text, self._parts = "".join(self._parts), []
        else:
            text = event.data
        self._size = 0
        # Every message timed, from its last fragment read to its reply written.
        started = perf_counter()
        self.factory.message(self, text)
        self.factory.latency.observe(perf_counter() - started)

    # -- sending ------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self.open and not self.closing:
            data = self.ws.send(Message(data=text))
            if self._send_now:
                send_now(self.transport, data)  # most sockets' buffers are empty
            else:
                self.transport.write(data)

    def close_ws(self, code: int, reason: str) -> None:
        """A close frame with `code`, then the connection closes."""
        if self.closing:
            return
        if self.ws.state is ConnectionState.OPEN:
            self.transport.write(self.ws.send(CloseConnection(code=code, reason=reason[:120])))
        self._lose()

    def close(self, code: int, message: str) -> None:
        """The session registry's handle (a newer socket took a peer id over)."""
        self.close_ws(CLOSE_POLICY, message)

    def _lose(self) -> None:
        """Close after what is already written (`check_timeout` aborts the
        socket if the browser never reads it)."""
        self.closing = True
        self._closing_since = self.factory.now
        self.open = False
        self.transport.loseConnection()

    # -- offers waiting for an answer -------------------------------------------------------

    def expect_answer(self, key: OfferKey) -> None:
        pending = self.pending_offers
        if len(pending) >= self.factory.settings.max_pending_offers:
            del pending[next(iter(pending))]
        pending[key] = None

    def answered(self, key: OfferKey) -> bool:
        """Whether this socket was sent that offer (then forget it: one answer each)."""
        return self.pending_offers.pop(key, 0) is None

    # -- flow control and timeouts --------------------------------------------------------------

    def pauseProducing(self) -> None:
        """The browser reads too slowly: read nothing more from it (and send
        it no offers) until it has read what waits."""
        if not self.paused:
            self.paused = True
            self._paused_at = self.factory.now
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.closing = True

    def check_timeout(self, now: float) -> None:
        settings = self.factory.settings
        if self.closing:
            if now - self._closing_since >= settings.idle_timeout_s:
                self.transport.abortConnection()
            return
        if not self.open:
            if now - self._opened_at >= settings.handshake_timeout_s:
                self._lose()
        elif self.paused and now - self._paused_at >= settings.idle_timeout_s:
            self._cut_off()
        elif now - self.last_active >= settings.idle_timeout_s:
            self.close_ws(CLOSE_GOING_AWAY, "idle for too long")
        elif now - self.last_active >= settings.idle_timeout_s / 2 and not self._pinged:
            # A browser answers a ping by itself: a live page never times out.
            self._pinged = True
            self.transport.write(self.ws.send(Ping()))

    def _cut_off(self) -> None:
        """Abort a socket that has read nothing of ours for the idle timeout
        (closing politely would wait for it to read what is buffered)."""
        self.factory.core.stats.count_failure("slow_reader", DOOR_WS)
        self.factory.stats.cut_off += 1
        self.closing = True
        self.open = False
        self.transport.abortConnection()


def _left(request: Announce, session: Session) -> int:
    """0 for a seeder, 1 for a leecher. As in the reference server, `completed`
    makes a seeder whatever `left` says, and an announce that does not say
    (`left` null: a magnet link's client) leaves a known peer as it was."""
    if request.left == 0 or request.event == EVENT_COMPLETED:
        return 0
    if request.left is None:
        return session.entries.get(request.info_hash, 1)
    return 1


def forwarded_client(value: bytes, proxies) -> Optional[str]:
    """The client's address from X-Forwarded-For (the nearest address that is
    not one of our proxies) or X-Real-IP; None if unreadable."""
    candidates = [v.strip() for v in value.split(b",")][::-1]
    for at, candidate in enumerate(candidates):
        try:
            ip = normalise_ip(candidate.decode("ascii"))
            pack_ip(ip)  # an address, not just text
        except (UnicodeDecodeError, OSError, ValueError):
            return None
        if not in_networks(ip, proxies) or at == len(candidates) - 1:
            return ip
    return None


class WsTrackerFactory(LimitedConnections, TimedConnections, Factory):
    """The door's sockets, its browser peers and its session registry."""

    protocol = WsTrackerProtocol
    noisy = False

    def __init__(self, core: TrackerCore, clock: IReactorTime,
                 settings: Optional[WsDoorSettings] = None,
                 browsers: Optional[BrowserPeers] = None) -> None:
        self.core = core
        self.settings = settings = settings or WsDoorSettings()
        self.start_timing(clock)
        self.browsers = browsers if browsers is not None else BrowserPeers(core)
        self.sessions = SessionRegistry(core, clock, grace_s=0, max_entries=settings.max_swarms,
                                        door=DOOR_WS, kind="browser", record=False,
                                        peers=self.browsers)
        self.stats = WsStats()
        # Message latencies for /metrics (tracker_request_seconds{door="ws"}).
        self.latency = Histogram(REQUEST_BUCKETS_S)
        self._serial = 0

    @property
    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def connection_opened(self, connection: WsTrackerProtocol) -> None:
        self.connections.add(connection)
        self.stats.open = len(self.connections)

    # Announces per second per client address (None: no limit); the service
    # sets it, shared with the HTTP and UDP doors. Answers being relayed are
    # not counted: they finish a connection another browser asked for.
    rate_limiter = None

    def refusal_message(self, text: str) -> bytes:
        # Refused before the WebSocket handshake, which is HTTP.
        body = text.encode("utf-8") + b"\n"
        return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def connection_closed(self, connection: WsTrackerProtocol) -> None:
        """A closed socket leaves all its swarms at once."""
        self.connections.discard(connection)
        self.stats.open = len(self.connections)
        self.connection_released(connection.peer_ip)
        for session in connection.sessions.values():
            self.sessions.detach(session, connection)
        connection.sessions = {}
        connection.pending_offers = {}

    # -- messages -------------------------------------------------------------------------------

    def message(self, connection: WsTrackerProtocol, text: str) -> None:
        """Answer one text message; bad input gets a `failure reason`."""
        try:
            request = parse_message(text, self.settings.max_offers)
            limiter = self.rate_limiter
            if limiter is not None and not isinstance(request, Scrape) and request.answer is None \
                    and not limiter.allow(connection.client_ip, self.now):
                raise WsError(RATE_LIMITED, RATE_LIMITED_MESSAGE, ANNOUNCE, request.info_hash)
            if isinstance(request, Scrape):
                self.scrape(connection, request)
            elif request.answer is not None:
                self.relay_answer(connection, request)
            else:
                self.announce(connection, request)
        except WsError as error:
            self._refuse(connection, error)
        except TrackerError as error:  # refused by the access rules
            self._refuse(connection, WsError(error.code, error.message, ANNOUNCE,
                                             request.info_hash))
        except SessionRefused as error:
            self._refuse(connection, WsError("ws_" + error.reason, error.message, ANNOUNCE,
                                             request.info_hash))
        except Exception:
            log.failure("unexpected error answering a WebSocket message from {peer}",
                        peer=connection.client_ip)
            connection.close_ws(CLOSE_INTERNAL, "internal error (logged)")

    def _refuse(self, connection: WsTrackerProtocol, error: WsError) -> None:
        # The door is a label of its own: a `ws_` prefix of the code is not repeated.
        code = error.code
        self.core.stats.count_failure(code[3:] if code.startswith("ws_") else code, DOOR_WS)
        connection.send_text(format_failure(error))

    def announce(self, connection: WsTrackerProtocol, request: Announce) -> None:
        info_hash = request.info_hash
        session = connection.sessions.get(request.peer_id)
        if request.event == EVENT_STOPPED:
            if session is not None and info_hash in session.entries:
                self.sessions.drop_entry(session, info_hash)
                connection.entries -= 1
        else:
            if session is None:
                session = self._attach(connection, request)
            if info_hash not in session.entries and connection.entries >= self.settings.max_swarms:
                raise WsError("ws_swarm_cap", "at most %d swarms per connection"
                              % self.settings.max_swarms, ANNOUNCE, info_hash)
            new = info_hash not in session.entries
            left = _left(request, session)
            completed = request.event == EVENT_COMPLETED
            # A re-announce that changes nothing (the common case) skips the registry.
            if not new and self.core.access.active:
                self._check_again(connection, session, info_hash)
            if new or completed or session.entries[info_hash] != left:
                self.sessions.set_entry(session, info_hash, left, completed=completed)
            connection.entries += new
        stats = self.core.stats.announces   # counted once answered, as on the other doors
        stats[DOOR_WS] = stats.get(DOOR_WS, 0) + 1
        complete, incomplete = self.counts(info_hash)
        connection.send_text(format_announce(info_hash, complete, incomplete,
                                             self.settings.interval_s))
        if request.offers and request.event != EVENT_STOPPED:
            self._forward_offers(request)

    def _check_again(self, connection: WsTrackerProtocol, session: Session,
                     info_hash: bytes) -> None:
        """The access rules may have changed since the entry was made (content
        denied, the address banned): refused now, the entry leaves its swarm."""
        try:
            self.core.access.check(info_hash, session.ip)
        except TrackerError:
            self.sessions.drop_entry(session, info_hash)
            connection.entries -= 1
            raise

    def _attach(self, connection: WsTrackerProtocol, request: Announce) -> Session:
        if len(connection.sessions) >= self.settings.max_peer_ids:
            raise WsError("ws_peer_id_cap", "at most %d peer ids per connection"
                          % self.settings.max_peer_ids, ANNOUNCE, request.info_hash)
        peer_id = request.peer_id
        try:
            session, _ = self.sessions.attach(peer_id.hex(), peer_id, connection,
                                              connection.client_ip, 0, None, connection.origin)
        except SessionRefused:
            raise WsError("ws_peer_id_in_use", "this peer_id is in use on another connection",
                          ANNOUNCE, request.info_hash)
        connection.sessions[peer_id] = session
        return session

    def counts(self, info_hash: bytes) -> Tuple[int, int]:
        """(complete, incomplete) of a swarm: its IP:port peers and its browsers."""
        seeders, leechers = self.browsers.counts(info_hash)
        swarm = self.core.swarms.get(info_hash)
        if swarm is not None:
            seeders += swarm.seeders
            leechers += len(swarm) - swarm.seeders
        return seeders, leechers

    def _forward_offers(self, request: Announce) -> None:
        """Each offer to a different random browser of the swarm."""
        info_hash, offerer = request.info_hash, request.peer_id
        targets = self.browsers.choose(info_hash, len(request.offers), offerer)
        stats = self.stats
        for peer_id, offer in zip(targets, request.offers):
            session = self.sessions.by_peer_id(peer_id)
            target = session.connection if session is not None else None
            if target is None or target.closing:
                continue
            if target.paused:
                stats.offers_dropped += 1
                continue
            target.expect_answer((info_hash, offerer, offer.offer_id, peer_id))
            target.send_text(format_offer(info_hash, offerer, offer))
            stats.offers_relayed += 1

    def relay_answer(self, connection: WsTrackerProtocol, request: Announce) -> None:
        """An answer goes to the offerer, only from a peer that was sent the offer."""
        info_hash = request.info_hash
        key = (info_hash, request.to_peer_id, request.offer_id, request.peer_id)
        if request.peer_id not in connection.sessions or not connection.answered(key):
            raise WsError("ws_unexpected_answer", "no offer with this offer_id was sent to "
                          "this peer_id from to_peer_id", ANNOUNCE, info_hash)
        offerer = self.sessions.by_peer_id(request.to_peer_id)
        target = offerer.connection if offerer is not None else None
        if target is None or info_hash not in offerer.entries:
            raise WsError("ws_offerer_gone", "the peer that made this offer has left",
                          ANNOUNCE, info_hash)
        target.send_text(format_answer(info_hash, request.peer_id, request.answer,
                                       request.offer_id))
        self.stats.answers_relayed += 1

    def scrape(self, connection: WsTrackerProtocol, request: Scrape) -> None:
        try:
            files = self.core.scrape(request.info_hashes, DOOR_WS)
        except TrackerError as error:
            raise WsError(error.code, error.message, "scrape")
        rows = []
        for info_hash in request.info_hashes:
            seeders, leechers = self.counts(info_hash)
            rows.append((info_hash, seeders, leechers, files[info_hash].downloaded))
        connection.send_text(format_scrape(rows, self.core.settings.min_interval_s))
