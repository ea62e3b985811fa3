"""The HTTP door: a lean HTTP/1.1 server for `/announce` and `/scrape`.

Built on `Protocol` rather than `twisted.web` because this is the hot path,
and `twisted.web`'s general machinery costs several times the CPU per request
of this parser (the README's performance section has today's figures). It speaks just enough HTTP: GET and HEAD, HTTP/1.0 and 1.1, keep-alive and
`Connection: close`, pipelined requests answered in order, strict limits on
the request head, and timeouts for idle connections and half-sent requests.
"""
from __future__ import annotations

import hashlib
from time import perf_counter
from typing import Dict, List, Optional

import attr
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from tracker.addresses import in_networks, normalise_ip, pack_ip
from tracker.core import (
    DOOR_HTTP, EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED, MAX_COUNTER, NO_KEY,
    AnnounceRequest, TrackerCore, TrackerError,
)
from tracker.doors.fastwrite import (
    CLOSE_IN_READ_BY_DEFAULT, can_close_in_read, send_and_close, send_now, supports_send_now,
)
from tracker.doors.admission import LimitedConnections
from tracker.histogram import REQUEST_BUCKETS_S, REQUEST_SAMPLE_EVERY, Histogram
from tracker.limits import RATE_LIMITED, RATE_LIMITED_MESSAGE
from tracker.doors.timeouts import TimedConnections
from tracker.doors.query import parse_announce_query, parse_query, unquote, unquote_cached
from tracker.doors.responses import (
    announce_trailer, encode_announce_compact, encode_announce_dicts,
    encode_failure, encode_scrape,
)

log = Logger()

EVENTS: Dict[bytes, int] = {
    b"": EVENT_NONE,
    b"started": EVENT_STARTED,
    b"completed": EVENT_COMPLETED,
    b"stopped": EVENT_STOPPED,
    # BEP 21 partial seeds send "paused"; it is a regular update here.
    b"paused": EVENT_NONE,
}

REASONS = {
    200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 505: b"HTTP Version Not Supported",
}

_HEX_DIGITS = b"0123456789abcdefABCDEF"

# `_reply`'s answer to a GET over HTTP/1.1 keep-alive, the common case.
_OK_KEEP_ALIVE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"

# A numwant of more digits than fit this is read as this (then capped by the core).
MANY = 10 ** 9

# Longer digit strings cannot be counters (and are not worth converting).
MAX_COUNTER_DIGITS = len(str(MAX_COUNTER))


@attr.s(slots=True, frozen=True)
class HTTPDoorSettings:
    """Limits and per-deployment choices of the HTTP door."""

    allow_ip_param = attr.ib(default=False)
    tracker_id = attr.ib(default=None)  # type: Optional[bytes]
    warning_message = attr.ib(default=None)  # type: Optional[bytes]
    max_request_line = attr.ib(default=8192)
    max_header_bytes = attr.ib(default=16384)
    max_headers = attr.ib(default=64)
    idle_timeout_s = attr.ib(default=30.0)
    request_timeout_s = attr.ib(default=10.0)
    # Reverse proxies whose client-address header is believed, and that header.
    trusted_proxies = attr.ib(default=())
    proxy_header = attr.ib(default=b"x-forwarded-for")


class _Refused(Exception):
    """An HTTP-level error: answered with this status, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _word(params: Dict[bytes, bytes], name: bytes) -> Optional[bytes]:
    """A short ASCII parameter (a number or a word) as bytes, unescaped only
    if it must be; None when absent."""
    value = params.get(name)
    if value is not None and b"%" in value:
        value = unquote(value)
    return value


def owner_key(raw: Optional[bytes]) -> int:
    """BEP 3's `key` as the core's 32-bit owner key (0: none). Clients send a
    random number, mostly as up to 8 hex digits (libtorrent sends the same
    number in its UDP announces, so both read alike); any other text is hashed."""
    if not raw:
        return NO_KEY
    if len(raw) <= 8 and not raw.translate(None, _HEX_DIGITS):
        return int(raw, 16)
    return int.from_bytes(hashlib.blake2s(raw, digest_size=4).digest(), "big")


def _counter(value: Optional[bytes], name: bytes) -> int:
    """A counter that is not plain digits: unescaped, then read or refused
    (None: absent, allowed only for those with a default, read in place)."""
    if value is None:
        raise TrackerError("missing_" + name.decode(), "missing %s" % name.decode())
    if b"%" in value:
        value = unquote(value)
    if not value.isdigit() or len(value) > MAX_COUNTER_DIGITS:
        raise TrackerError("invalid_counter", "%s must be a non-negative integer" % name.decode())
    return int(value)


def _port(raw: bytes) -> bytes:
    """A port that is not plain digits: unescaped, then checked."""
    port = unquote(raw) if b"%" in raw else raw
    if not port.isdigit() or len(port) > 5:
        raise TrackerError("invalid_port", "port must be between 1 and 65535")
    return port


def _event(raw: bytes) -> int:
    """An event that is not one of the plain words: unescaped, then looked up."""
    event = EVENTS.get(unquote(raw))
    if event is None:
        raise TrackerError("invalid_event", "unknown event: use started, completed or stopped")
    return event


def _numwant(raw: bytes) -> Optional[int]:
    """A numwant that is not up to nine plain digits (None: the default)."""
    if b"%" in raw:
        raw = unquote(raw)
    if raw == b"-1":
        return None
    if not raw.isdigit():
        raise TrackerError("invalid_numwant", "numwant must be a non-negative integer")
    # Any size asks for as many as the tracker gives: the core caps it.
    return int(raw) if len(raw) <= 9 else MANY


class HTTPTrackerProtocol(Protocol):
    """One client connection. Requests are parsed from a byte buffer; replies to
    all requests found in one read are written together."""

    factory: "HTTPTrackerFactory"

    def __init__(self) -> None:
        self._buffer = b""
        self._request_started = 0.0
        self.last_active = 0.0
        self._closing = False

    def connectionMade(self) -> None:
        factory = self.factory
        self.core = factory.core
        self.settings = factory.settings
        self.peer_ip = normalise_ip(self.transport.getPeer().host)
        self.external_ip = pack_ip(self.peer_ip)
        self.last_active = factory.now
        self._send_now = supports_send_now(self.transport)
        self._close_in_read = factory.close_in_read and can_close_in_read(self.transport)
        self.behind_proxy = bool(self.settings.trusted_proxies) and in_networks(
            self.peer_ip, self.settings.trusted_proxies)
        self._forwarded: Optional[bytes] = None
        self._paused = False
        self._closing_since = 0.0
        factory.connections.add(self)
        # Flow control: a client that sends requests but does not read the
        # replies fills our send buffer; the transport then pauses us and we
        # stop reading its requests until it catches up.
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason=None) -> None:
        self.factory.connections.discard(self)
        self.factory.connection_released(self.peer_ip)

    # -- flow control (IPushProducer) --------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._closing:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._paused = False

    # -- framing ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        # Latency, one read in REQUEST_SAMPLE_EVERY: from the read to its replies
        # handed to the transport, for every request answered in it (they are
        # written together).
        factory = self.factory
        factory.until_sample -= 1
        started = 0.0
        if not factory.until_sample:
            factory.until_sample = REQUEST_SAMPLE_EVERY
            started = perf_counter()
        now = factory.now
        self.last_active = now
        buf = self._buffer + data if self._buffer else data
        if not self._buffer:
            self._request_started = now
        out: List[bytes] = []
        settings = self.settings
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            buf = buf[end + 4:]
            try:
                keep_alive = self._handle(head, out)
            except _Refused as refusal:
                out.append(self._status_reply(refusal.status, refusal.message))
                keep_alive = False
            except Exception:
                # A bug, not bad input: log it once, answer, and keep serving others.
                log.failure("unexpected error answering {peer}", peer=self.peer_ip)
                out.append(self._status_reply(500, "internal error"))
                keep_alive = False
            if not keep_alive:
                self._close(out, in_read=True)
                if started:
                    factory.latency.observe_many(perf_counter() - started, len(out))
                return
            self._request_started = now
        if buf:
            refusal = self._oversized(buf, settings)
            if refusal is not None:
                out.append(self._status_reply(refusal.status, refusal.message))
                self._close(out, in_read=True)
                return
        self._buffer = buf
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            if self._send_now:
                send_now(self.transport, data)
            else:
                self.transport.write(data)
            if started:
                factory.latency.observe_many(perf_counter() - started, len(out))

    def _oversized(self, buf: bytes, settings: HTTPDoorSettings) -> Optional[_Refused]:
        """Refuse a partial head that has already grown past the limits."""
        line_end = buf.find(b"\r\n")
        if line_end < 0:
            if len(buf) > settings.max_request_line:
                return _Refused(414, "request line too long")
        elif line_end > settings.max_request_line:
            return _Refused(414, "request line too long")
        elif len(buf) - line_end > settings.max_header_bytes:
            return _Refused(431, "request headers too large")
        return None

    def _close(self, out: List[bytes], in_read: bool = False) -> None:
        """Send what is left and close; `in_read`: called from `dataReceived`,
        where a plain TCP connection can end as the read returns."""
        self._closing = True
        self._closing_since = self.factory.now
        self._buffer = b""
        data = b"".join(out) if out else b""
        if in_read and data and self._close_in_read and send_and_close(self.transport, data):
            return
        if data:
            self.transport.write(data)
        self.transport.loseConnection()

    def check_timeout(self, now: float) -> None:
        """Called by the factory's timer: close idle and too-slow connections.

        A client that does not read what is left to send would keep a polite
        close waiting forever: a connection paused on its unread replies is
        aborted instead, and so is one still closing an idle timeout later."""
        settings = self.settings
        if self._closing:
            if now - self._closing_since >= settings.idle_timeout_s:
                self.transport.abortConnection()
            return
        if self._paused and now - self.last_active >= settings.idle_timeout_s:
            self._closing = True
            self.transport.abortConnection()
        elif self._buffer:
            if now - self._request_started >= settings.request_timeout_s:
                self._close([self._status_reply(408, "request not completed in time")])
        elif now - self.last_active >= settings.idle_timeout_s:
            self._closing = True
            self._closing_since = now
            self.transport.loseConnection()

    # -- one request --------------------------------------------------------

    def _handle(self, head: bytes, out: List[bytes]) -> bool:
        """Answer one request head into `out`; return whether to keep the connection."""
        line_end = head.find(b"\r\n")
        if line_end < 0:
            request_line = head
            header_lines = b""
        else:
            request_line = head[:line_end]
            header_lines = head[line_end + 2:]
        settings = self.settings
        if len(request_line) > settings.max_request_line:
            raise _Refused(414, "request line too long")
        if len(header_lines) > settings.max_header_bytes:
            raise _Refused(431, "request headers too large")
        parts = request_line.split(b" ")
        if len(parts) != 3:
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        if version == b"HTTP/1.1":
            keep_alive = True
        elif version == b"HTTP/1.0":
            keep_alive = False
        elif version.startswith(b"HTTP/") and version[5:6].isdigit():
            raise _Refused(505, "only HTTP/1.0 and HTTP/1.1 are served")
        else:
            raise _Refused(400, "malformed request line")

        has_body = False
        self._forwarded = None
        if header_lines:
            lines = header_lines.split(b"\r\n")
            if len(lines) > settings.max_headers:
                raise _Refused(431, "too many request headers")
            for line in lines:
                colon = line.find(b":")
                if colon <= 0 or line[colon - 1] in b" \t":
                    raise _Refused(400, "malformed header line")
                name = line[:colon].lower()
                if name == b"connection":
                    tokens = line[colon + 1:].lower()
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens:
                        keep_alive = True
                elif name == b"content-length":
                    length = line[colon + 1:].strip()
                    if not length.isdigit():
                        raise _Refused(400, "bad Content-Length")
                    has_body = int(length) > 0
                elif name == b"transfer-encoding":
                    has_body = True
                elif self.behind_proxy and name == settings.proxy_header:
                    self._forwarded = line[colon + 1:].strip()

        if method != b"GET" and method != b"HEAD":
            raise _Refused(405, "only GET and HEAD are served")
        if has_body:
            raise _Refused(400, "a tracker request has no body")

        if target.startswith(b"http://") or target.startswith(b"https://"):
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash >= 0 else b"/"
        path, _, query = target.partition(b"?")
        if path == b"/announce" or path == b"/announce/":
            body = self._announce(query)
        elif path == b"/scrape" or path == b"/scrape/":
            body = self._scrape(query)
        else:
            out.append(self._reply(404, b"text/plain", b"not a tracker path: use /announce or /scrape\n",
                                   method, version, keep_alive))
            return keep_alive
        if keep_alive and version == b"HTTP/1.1" and method == b"GET":
            out.append(_OK_KEEP_ALIVE % (len(body), body))  # the common reply, in one piece
        else:
            out.append(self._reply(200, b"text/plain", body, method, version, keep_alive))
        return keep_alive

    def _reply(self, status: int, content_type: bytes, body: bytes, method: bytes,
               version: bytes, keep_alive: bool) -> bytes:
        if keep_alive:
            connection = b"Connection: keep-alive\r\n" if version == b"HTTP/1.0" else b""
        else:
            connection = b"Connection: close\r\n"
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status, REASONS[status], content_type, len(body), connection)
        return head if method == b"HEAD" else head + body

    def _status_reply(self, status: int, message: str) -> bytes:
        body = message.encode("utf-8") + b"\n"
        extra = b"Allow: GET, HEAD\r\n" if status == 405 else b""
        return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s" % (
            status, REASONS[status], len(body), extra, body)

    # -- tracker requests ---------------------------------------------------

    def _announce(self, query: bytes) -> bytes:
        # The hot path: plain (unescaped) digits are read in place; anything
        # else goes through the helpers, which unescape and explain refusals.
        core = self.core
        try:
            params = parse_announce_query(query)
            get = params.get
            info_hash = get(b"info_hash")
            if info_hash is None:
                raise TrackerError("missing_info_hash", "missing info_hash")
            peer_id = get(b"peer_id")
            if peer_id is None:
                raise TrackerError("missing_peer_id", "missing peer_id")
            port = get(b"port")
            if port is None:
                raise TrackerError("missing_port", "missing port")
            if not port.isdigit() or len(port) > 5:
                port = _port(port)
            event = EVENTS.get(get(b"event", b""))
            if event is None:
                event = _event(get(b"event"))
            numwant = get(b"numwant")
            if numwant is not None:
                numwant = int(numwant) if numwant.isdigit() and len(numwant) <= 9 else _numwant(numwant)
            ip = self.peer_ip
            external_ip = self.external_ip
            if self._forwarded is not None:
                ip, external_ip = self._client_behind_proxy(self._forwarded)
            # By the address the request came from, not a declared `ip`.
            self._check_rate(ip)
            source_ip = ""
            if self.settings.allow_ip_param and b"ip" in params:
                source_ip = ip
                ip, external_ip = self._declared_ip(unquote(params[b"ip"]))
            uploaded = get(b"uploaded", b"0")
            downloaded = get(b"downloaded", b"0")
            left = get(b"left")
            request = AnnounceRequest(
                unquote_cached(info_hash), unquote_cached(peer_id), ip, int(port),
                int(uploaded) if uploaded.isdigit() and len(uploaded) <= MAX_COUNTER_DIGITS
                else _counter(uploaded, b"uploaded"),
                int(downloaded) if downloaded.isdigit() and len(downloaded) <= MAX_COUNTER_DIGITS
                else _counter(downloaded, b"downloaded"),
                int(left) if left is not None and left.isdigit() and len(left) <= MAX_COUNTER_DIGITS
                else _counter(left, b"left"),
                event, numwant, DOOR_HTTP, source_ip=source_ip)
            if get(b"compact") == b"0":
                request.compact = False
            if b"key" in params:
                request.key = owner_key(unquote(params[b"key"]))
            result = core.announce(request, self.factory.clock.seconds())
        except TrackerError as error:
            core.stats.count_failure(error.code, DOOR_HTTP)
            return encode_failure(error.message)
        if not request.compact:
            settings = self.settings
            return encode_announce_dicts(result, external_ip, _word(params, b"no_peer_id") == b"1",
                                         settings.tracker_id, settings.warning_message)
        return encode_announce_compact(result, external_ip, self.factory.announce_trailer)

    def _client_behind_proxy(self, value: bytes):
        """The client's address from X-Forwarded-For (the nearest address that is
        not one of our proxies) or X-Real-IP."""
        candidates = [v.strip() for v in value.split(b",")][::-1]
        for candidate in candidates:
            try:
                ip = normalise_ip(candidate.decode("ascii"))
                packed = pack_ip(ip)
            except (UnicodeDecodeError, OSError, ValueError):
                raise TrackerError("bad_proxy_header", "the proxy sent an unreadable client address")
            if not in_networks(ip, self.settings.trusted_proxies) or candidate is candidates[-1]:
                return ip, packed
        raise TrackerError("bad_proxy_header", "the proxy sent no client address")

    def _declared_ip(self, raw: bytes):
        try:
            ip = normalise_ip(raw.decode("ascii"))
            return ip, pack_ip(ip)
        except (UnicodeDecodeError, OSError, ValueError):
            raise TrackerError("invalid_ip", "ip must be an IPv4 or IPv6 address")

    def _check_rate(self, ip: str) -> None:
        limiter = self.factory.rate_limiter
        if limiter is not None and not limiter.allow(ip, self.factory.now):
            raise TrackerError(RATE_LIMITED, RATE_LIMITED_MESSAGE)

    def _scrape(self, query: bytes) -> bytes:
        core = self.core
        try:
            self._check_rate(self.peer_ip if self._forwarded is None
                             else self._client_behind_proxy(self._forwarded)[0])
            _, info_hashes = parse_query(query)
            files = core.scrape(info_hashes, DOOR_HTTP)
        except TrackerError as error:
            core.stats.count_failure(error.code, DOOR_HTTP)
            return encode_failure(error.message)
        return encode_scrape(files, core.settings.min_interval_s)


class HTTPTrackerFactory(LimitedConnections, TimedConnections, Factory):
    """Shared state of the HTTP door: the core, the settings, open connections,
    and a coarse clock (`now`) advanced by `tick` for the timeouts."""

    protocol = HTTPTrackerProtocol
    noisy = False  # no log line per listening port start/stop

    def __init__(self, core: TrackerCore, clock: IReactorTime,
                 settings: Optional[HTTPDoorSettings] = None) -> None:
        self.core = core
        self.clock = clock
        self.settings = settings or HTTPDoorSettings()
        self.start_timing(clock)
        # Request latencies for /metrics (tracker_request_seconds{door="http"}).
        self.latency = Histogram(REQUEST_BUCKETS_S)
        self.until_sample = REQUEST_SAMPLE_EVERY  # reads until the next one timed
        self.announce_trailer = announce_trailer(self.settings.tracker_id,
                                                 self.settings.warning_message)

    # Requests per second per client address (None: no limit); the service sets it.
    rate_limiter = None
    # End a closing connection within its last read (see tracker/doors/fastwrite.py).
    close_in_read = CLOSE_IN_READ_BY_DEFAULT

    def refusal_message(self, text: str) -> bytes:
        body = text.encode("utf-8") + b"\n"
        return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
