"""A client of the CDN line protocol, for node programs and the `tracker-line` CLI.

`LineClient` sends commands and matches replies in order (events, the lines
starting with `*`, go to a callback). `NodeClientFactory` keeps a node
registered: it reconnects with back-off and, after every connection, sends its
HELLO and then again every HAVE, WANT and SUBSCRIBE it holds.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from tracker.line.protocol import (
    ERROR, EVENT, PART, LineError, format_command, is_multiline, reply_kind,
)

__all__ = ["LineClient", "LineError", "NodeClientFactory"]

log = Logger()


class LineClient(LineReceiver):
    """Pipelines commands; each `command()` Deferred fires with its reply lines
    (without `END`), or fails with `LineError` (tracker.line.protocol) for an
    `ERR` reply."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, on_event: Optional[Callable[[str], None]] = None) -> None:
        self.on_event = on_event
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
        if not self._pending:
            log.warn("unexpected line from the tracker: {line}", line=text)
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
        for d, _, _ in pending:
            d.errback(ConnectionLost("connection to the tracker lost"))


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

    def buildProtocol(self, addr) -> LineClient:
        client = LineClient(self.on_event)
        client.factory = self
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

        replies[0].addCallbacks(hello_done, lambda f: log.error(
            "HELLO refused: {e}", e=f.getErrorMessage()))

    def clientConnectionLost(self, connector, reason) -> None:
        self.client = None
        super().clientConnectionLost(connector, reason)

    def when_registered(self) -> Deferred:
        """Fires with the LineClient once HELLO has been accepted."""
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
