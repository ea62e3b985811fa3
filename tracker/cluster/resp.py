"""A small Redis client speaking RESP2: a Twisted protocol and a blocking one for start-up.

Why not a library: the replicator needs bytes in, bytes out, pipelining and
a reconnecting connection, nothing else. txredisapi (Twisted-native, pure
Python, installs on PyPy) decodes replies as text and turns numeric-looking
strings into numbers unless told otherwise, and redis-py would need a thread
that competes with the reactor for the interpreter lock. RESP2 is a few
dozen lines; see docs/cluster.md.
"""
from __future__ import annotations

import socket
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

# The longest reply line or bulk string accepted (a stream read of 1000
# batches fits well below).
MAX_BULK = 512 * 1024 * 1024


class RedisError(Exception):
    """An error reply (-ERR ...) or a broken reply stream."""


_INCOMPLETE = object()


class ReplyParser:
    """Feeds bytes, yields whole replies: bytes, int, None, list, or RedisError."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> List[Any]:
        self._buf += data
        replies = []
        while True:
            start = self._pos
            reply = self._parse()
            if reply is _INCOMPLETE:
                self._pos = start
                break
            replies.append(reply)
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        return replies

    def _line(self) -> Any:
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            return _INCOMPLETE
        line = bytes(self._buf[self._pos:end])
        self._pos = end + 2
        return line

    def _parse(self) -> Any:
        line = self._line()
        if line is _INCOMPLETE:
            return _INCOMPLETE
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if size > MAX_BULK:
                raise RedisError("bulk reply of %d bytes" % size)
            if len(self._buf) < self._pos + size + 2:
                return _INCOMPLETE
            value = bytes(self._buf[self._pos:self._pos + size])
            self._pos += size + 2
            return value
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            items = []
            for _ in range(count):
                item = self._parse()
                if item is _INCOMPLETE:
                    return _INCOMPLETE
                items.append(item)
            return items
        raise RedisError("unexpected reply byte %r" % kind)


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, float):
        return repr(value).encode("ascii")
    return str(value).encode("ascii")


def encode_command(args: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class RedisProtocol(Protocol):
    """Commands in, Deferreds out, in order; a lost connection fails every waiting one."""

    def __init__(self) -> None:
        self._parser = ReplyParser()
        self._waiting: Deque[Deferred] = deque()
        self.lost: Deferred = Deferred()

    def command(self, *args: Any) -> Deferred:
        return self.pipeline([args])[0]

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> List[Deferred]:
        """Send all commands in one write; one Deferred per command."""
        if self.transport is None:
            raise ConnectionError("not connected to Redis")
        self.transport.write(b"".join(encode_command(c) for c in commands))
        out = [Deferred() for _ in commands]
        self._waiting.extend(out)
        return out

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except (RedisError, ValueError) as e:
            self._fail_all(Failure(RedisError("bad reply from Redis: %s" % e)))
            self.transport.abortConnection()
            return
        for reply in replies:
            if not self._waiting:
                break
            d = self._waiting.popleft()
            if isinstance(reply, RedisError):
                d.errback(reply)
            else:
                d.callback(reply)

    def connectionLost(self, reason: Failure) -> None:
        self._fail_all(reason)
        self.transport = None
        lost, self.lost = self.lost, Deferred()
        lost.callback(None)

    def _fail_all(self, reason: Failure) -> None:
        while self._waiting:
            self._waiting.popleft().errback(reason)


class BlockingRedis:
    """The same commands over a plain socket, for start-up (before the reactor
    serves anything) and for tests."""

    def __init__(self, host: str, port: int, db: int = 0, timeout_s: float = 5.0,
                 wrap: Optional[Callable[[socket.socket], socket.socket]] = None,
                 hello: Sequence[Sequence[Any]] = ()) -> None:
        """`wrap` turns the connected socket into a TLS one (rediss://); `hello` are
        the commands every new connection starts with (AUTH)."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            self._sock = wrap(sock) if wrap is not None else sock
        except Exception:
            sock.close()
            raise
        self._parser = ReplyParser()
        self._pending: Deque[Any] = deque()
        try:
            for command in hello:
                self.command(*command)
            if db:
                self.command("SELECT", db)
        except Exception:
            self.close()
            raise

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> List[Any]:
        """Results in order; an error reply is returned as a RedisError value."""
        self._sock.sendall(b"".join(encode_command(c) for c in commands))
        results: List[Any] = []
        while len(results) < len(commands):
            data = self._sock.recv(1 << 20)
            if not data:
                raise ConnectionError("Redis closed the connection")
            results.extend(self._parser.feed(data))
        return results

    def command(self, *args: Any) -> Any:
        result = self.pipeline([args])[0]
        if isinstance(result, RedisError):
            raise result
        return result

    def close(self) -> None:
        self._sock.close()
