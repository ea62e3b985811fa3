"""A client of the CDN line protocol, for node programs and the `tracker-line` CLI.

`LineClient` sends commands and matches replies in order (events, the lines
starting with `*`, go to a callback). `NodeClientFactory` keeps a node
registered: it reconnects with back-off and, after every connection, sends its
HELLO and then again every HAVE, WANT and SUBSCRIBE it holds. A HELLO the
tracker refuses for good (401 wrong token, 403, 409 id registered elsewhere)
stops the reconnecting and fails `when_registered()` with the LineError.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from tracker.line.protocol import (
    ERROR, EVENT, PART, LineError, PeerLine, format_command, is_multiline, parse_peer_line,
    parse_scrape_line, reply_kind,
)

__all__ = ["LineClient", "LineError", "NodeClientFactory", "PeerLine"]

log = Logger()

# HELLO refusals that the same HELLO would get again: wrong token, ip= not
# allowed, node id registered from another address.
FATAL_HELLO_CODES = (401, 403, 409)
# The line a connection gets when a newer one registers its node id (tracker/sessions.py).
REPLACED_NOTICE = "ERR 409 replaced by a new connection"


class LineClient(LineReceiver):
    """Pipelines commands; each `command()` Deferred fires with its reply lines
    (without `END`), or fails with `LineError` (tracker.line.protocol) for an
    `ERR` reply."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, on_event: Optional[Callable[[str], None]] = None) -> None:
        self.on_event = on_event
        # Called with the LineError when another connection took this node id over.
        self.on_replaced: Optional[Callable[[LineError], None]] = None
        self._pending: Deque[Tuple[Deferred, bool, List[str]]] = deque()
        self.connected_deferred: Deferred = Deferred()

    def connectionMade(self) -> None:
        d, self.connected_deferred = self.connected_deferred, Deferred()
        d.callback(self)

    def command(self, line: str) -> Deferred:
        if not self.connected:
            return fail(ConnectionLost("not connected"))
        d: Deferred = Deferred()
        self._pending.append((d, is_multiline(line), []))
        self.sendLine(line.encode("utf-8"))
        return d

    def lineReceived(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        kind = reply_kind(text)
        if kind == EVENT:
            if self.on_event is not None:
                self.on_event(text)
            return
        if not self._pending and not text.startswith(REPLACED_NOTICE):
            log.warn("unexpected line from the tracker: {line}", line=text)
            return
        if kind == ERROR and text.startswith(REPLACED_NOTICE):
            # Not a reply: the tracker closes this connection because another
            # connection registered the same node id.
            self._fail_pending(LineError.from_line(text))
            if self.on_replaced is not None:
                self.on_replaced(LineError.from_line(text))
            return
        d, multiline, lines = self._pending[0]
        if kind == ERROR:
            self._pending.popleft()
            d.errback(LineError.from_line(text))
        elif multiline and kind == PART:
            lines.append(text)
        else:
            self._pending.popleft()
            d.callback(lines if multiline else [text])

    def connectionLost(self, reason=None) -> None:
        self.connected = 0
        pending, self._pending = self._pending, deque()
        # Say why (a TLS certificate the client does not trust ends here too).
        why = _reason_text(reason)
        for d, _, _ in pending:
            d.errback(ConnectionLost("connection to the tracker lost" + (": " + why if why else "")))

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, deque()
        for d, _, _ in pending:
            d.errback(error)


def _reason_text(reason) -> str:
    if reason is None:
        return ""
    value = reason.value
    args = getattr(value, "args", ())
    # pyOpenSSL errors carry [(library, function, reason), ...].
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return "TLS: " + ", ".join(str(item[-1]) for item in args[0])
    if reason.check(ConnectionDone):
        return ""
    return reason.getErrorMessage()


class NodeClientFactory(ReconnectingClientFactory):
    """Keeps one node registered with the tracker, across reconnects."""

    maxDelay = 30

    def __init__(self, node_id: str, port: Optional[int] = None, ip: Optional[str] = None,
                 region: Optional[str] = None, token: Optional[str] = None,
                 on_event: Optional[Callable[[str], None]] = None) -> None:
        self.hello = format_command("HELLO", node=node_id, port=port, ip=ip, region=region,
                                    token=token)
        self.on_event = on_event
        self.entries: Dict[str, str] = {}  # hex hash -> the command that registered it
        self.subscriptions: Set[str] = set()
        self.client: Optional[LineClient] = None
        self._ready: List[Deferred] = []
        # Set when the tracker refused HELLO for good: no more reconnecting.
        self.refused: Optional[LineError] = None

    def connect(self, reactor, host: str, port: int, tls=None):
        """Start connecting (and reconnecting) to `host`:`port`; `tls`: client TLS
        options for a door on an ssl: endpoint (tracker.tls.client_options)."""
        if tls is None:
            return reactor.connectTCP(host, port, self)
        return reactor.connectSSL(host, port, self, tls)

    def buildProtocol(self, addr) -> LineClient:
        client = LineClient(self.on_event)
        client.factory = self
        client.on_replaced = self._replaced
        client.connected_deferred.addCallback(self._registered)
        return client

    def _registered(self, client: LineClient) -> None:
        self.resetDelay()
        self.client = client
        replies = [client.command(self.hello)]
        replies += [client.command(line) for line in self.entries.values()]
        replies += [client.command("SUBSCRIBE " + h) for h in sorted(self.subscriptions)]
        for d in replies[1:]:
            d.addErrback(lambda f: log.warn("re-registering failed: {e}", e=f.getErrorMessage()))

        def hello_done(reply):
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(client)
            return reply

        replies[0].addCallbacks(hello_done, self._hello_refused, errbackArgs=(client,))

    def _hello_refused(self, failure, client: LineClient) -> None:
        error = failure.value
        log.error("HELLO refused: {e}", e=failure.getErrorMessage())
        if not isinstance(error, LineError) or error.code not in FATAL_HELLO_CODES:
            return  # something passing (the connection dropped): reconnecting may help
        # Trying again would be refused again, once a second for ever: stop and tell.
        self._give_up(error, client)

    def _replaced(self, error: LineError) -> None:
        """Another connection took this node id over: reconnecting would take it
        back and forth for ever, so this one stops."""
        log.error("node taken over by another connection, not reconnecting: {e}", e=error.message)
        self._give_up(error, self.client)

    def _give_up(self, error: LineError, client: Optional[LineClient]) -> None:
        self.refused = error
        self.stopTrying()
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(error)
        if client is not None and client.transport is not None:
            client.transport.loseConnection()

    def clientConnectionLost(self, connector, reason) -> None:
        self.client = None
        super().clientConnectionLost(connector, reason)

    def when_registered(self) -> Deferred:
        """Fires with the LineClient once HELLO has been accepted; fails with the
        LineError if the tracker refused the node for good."""
        if self.refused is not None:
            return fail(self.refused)
        d: Deferred = Deferred()
        self._ready.append(d)
        return d

    def _send(self, line: str) -> Deferred:
        if self.client is None:
            return fail(ConnectionLost("not connected; it is sent again after reconnecting"))
        return self.client.command(line)

    def have(self, info_hash: str, size: Optional[int] = None, name: Optional[str] = None) -> Deferred:
        line = format_command("HAVE", info_hash, size=size, name=name)
        self.entries[info_hash] = line
        return self._send(line)

    def want(self, info_hash: str) -> Deferred:
        self.entries[info_hash] = "WANT " + info_hash
        return self._send("WANT " + info_hash)

    def done(self, info_hash: str) -> Deferred:
        self.entries[info_hash] = "HAVE " + info_hash
        return self._send("DONE " + info_hash)

    def drop(self, info_hash: str) -> Deferred:
        self.entries.pop(info_hash, None)
        return self._send("DROP " + info_hash)

    def subscribe(self, info_hash: str) -> Deferred:
        self.subscriptions.add(info_hash)
        return self._send("SUBSCRIBE " + info_hash)

    def peers(self, info_hash: str, numwant: Optional[int] = None) -> Deferred:
        """Who has the content: fires with a list of PeerLine (ip, port, seeder, door,
        node, region)."""
        d = self._send(format_command("PEERS", info_hash, numwant=numwant))
        return d.addCallback(lambda lines: [parse_peer_line(line) for line in lines])

    def scrape(self, *info_hashes: str) -> Deferred:
        """Fires with {info_hash (hex): (seeders, leechers, completed)}."""
        d = self._send("SCRAPE " + " ".join(info_hashes))

        def figures(lines: List[str]) -> Dict[str, Tuple[int, int, int]]:
            rows = [parse_scrape_line(line) for line in lines]
            return {row[0].hex(): (row[1], row[2], row[3]) for row in rows}
        return d.addCallback(figures)
