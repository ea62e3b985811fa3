"""The fuzz harnesses: bytes into each door through Twisted's test transports.

A harness is built once (a core, a clock, a door) and then takes one input at a
time (`one_input(data)`), as atheris calls it. It raises when an exception
escapes the door, when the door logs an unexpected error (a traceback it caught
itself), or when a reply is malformed (see checks.py). The first byte of an
input steers the harness (how to cut the rest into reads, which address, whether
to prove the address first), so the fuzzer can find those choices too.
"""
from __future__ import annotations

import struct
from typing import Callable, Dict, List

from .checks import MalformedReply, check_http_replies, check_line_output, check_udp_reply

RESET_EVERY = 5000  # inputs between fresh cores: memory stays flat over long runs
CHUNKS = (1, 3, 7, 64, 1 << 30)


class DoorLoggedFailure(AssertionError):
    """The door caught an exception and logged it: a bug the input found."""


class FailureWatch:
    """Collects what the tracker logs with a traceback (log.failure)."""

    def __init__(self) -> None:
        from twisted.logger import globalLogPublisher
        self.failures: List[str] = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event: Dict) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.failures.append(failure.getTraceback())

    def raise_any(self) -> None:
        if self.failures:
            text, self.failures = self.failures[0], []
            raise DoorLoggedFailure(text)


def connection_done():
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure
    return Failure(ConnectionDone())


def pieces(data: bytes, size: int) -> List[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


class Harness:
    """Shared by the three: the failure watch and a core renewed every RESET_EVERY inputs."""

    def __init__(self) -> None:
        self.watch = FailureWatch()
        self.inputs = 0
        self.reset()

    def reset(self) -> None:
        from twisted.internet.task import Clock
        from tracker.core import TrackerCore
        self.clock = Clock()
        self.core = TrackerCore()
        self.build()

    def build(self) -> None:
        raise NotImplementedError

    def one_input(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs % RESET_EVERY == 0:
            self.reset()
        if not data:
            return
        self.feed(data[0], data[1:])
        self.watch.raise_any()

    def feed(self, steer: int, data: bytes) -> None:
        raise NotImplementedError


class HTTPHarness(Harness):
    """Bytes into HTTPTrackerFactory's protocol over StringTransport, in reads of a
    steered size; then the clock runs past every timeout."""

    def build(self) -> None:
        from tracker.doors.http import HTTPTrackerFactory
        self.factory = HTTPTrackerFactory(self.core, self.clock)

    def feed(self, steer: int, data: bytes) -> None:
        from twisted.internet.address import IPv4Address, IPv6Address
        from twisted.internet.testing import StringTransport
        address = (IPv6Address("TCP", "2001:db8::%x" % (steer & 15), 50000) if steer & 16
                   else IPv4Address("TCP", "10.0.0.%d" % (steer & 15), 50000))
        transport = StringTransport(peerAddress=address)
        protocol = self.factory.buildProtocol(address)
        protocol.makeConnection(transport)
        for piece in pieces(data, CHUNKS[(steer >> 5) % len(CHUNKS)]):
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
        self.clock.advance(60)  # idle and request timeouts
        check_http_replies(transport.value())
        protocol.connectionLost(connection_done())


class UDPHarness(Harness):
    """Datagrams into UDPTrackerProtocol over FakeDatagramTransport. With the steer's
    low bit set, the first 8 bytes become a connection id the door issued to this
    address (a fuzzer cannot forge the MAC); `\\xff\\xff` splits an input into datagrams."""

    def build(self) -> None:
        from twisted.internet.testing import FakeDatagramTransport
        from tracker.doors.udp import UDPTrackerProtocol
        self.transport = FakeDatagramTransport()
        self.door = UDPTrackerProtocol(self.core, self.clock)
        self.door.makeConnection(self.transport)

    def connection_id(self, addr) -> bytes:
        from tracker.doors.udp import PROTOCOL_ID
        request = PROTOCOL_ID + struct.pack(">II", 0, 7)
        reply = self.send(request, addr, proved=False)
        if reply is None or len(reply) != 16:
            raise MalformedReply("no connect reply: %r" % (reply,))
        return reply[8:16]

    def send(self, datagram: bytes, addr, proved: bool):
        before = len(self.transport.written)
        self.door.datagramReceived(datagram, addr)
        written = self.transport.written[before:]
        if len(written) > 1:
            raise MalformedReply("%d replies to one datagram" % len(written))
        if not written:
            return None
        reply, to = written[0]
        if to != addr:
            raise MalformedReply("reply sent to %r, not %r" % (to, addr))
        check_udp_reply(reply, datagram, proved)
        return reply

    def feed(self, steer: int, data: bytes) -> None:
        addr = ("2001:db8::%x" % (steer >> 4), 6881) if steer & 2 else ("10.0.1.%d" % (steer >> 4), 6881)
        proved = bool(steer & 1)
        connection_id = self.connection_id(addr) if proved else b""
        for datagram in data.split(b"\xff\xff")[:16]:
            if proved:
                datagram = connection_id + datagram[8:]
            self.send(datagram, addr, proved)
        if steer & 4:
            self.clock.advance(400)  # past the connection id's age


def line_door():
    """The line door's factory and settings."""
    from tracker.line.door import LineDoorSettings, LineTrackerFactory
    return LineTrackerFactory, LineDoorSettings


class LineHarness(Harness):
    """Bytes into the line door's protocol over StringTransport, in reads of a steered
    size; a second connection, subscribed to the seeds' swarm, gets the events the
    first one causes, and its output is checked too."""

    def build(self) -> None:
        from .seeds import SEED_HASH
        factory_class, settings_class = line_door()
        self.settings = settings_class(grace_s=5, idle_timeout_s=30)
        self.factory = factory_class(self.core, self.clock, self.settings)
        self.watcher, self.watcher_transport = self.connect("10.0.3.1")
        self.watcher.dataReceived(b"HELLO node=watcher\nSUBSCRIBE %s\n" % SEED_HASH.hex().encode())
        check_line_output(self.watcher_transport.value(), self.settings.max_line)
        self.watcher_transport.clear()

    def connect(self, host: str):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport
        address = IPv4Address("TCP", host, 40000)
        transport = StringTransport(peerAddress=address)
        protocol = self.factory.buildProtocol(address)
        protocol.makeConnection(transport)
        return protocol, transport

    def feed(self, steer: int, data: bytes) -> None:
        protocol, transport = self.connect("10.0.2.%d" % (steer & 7))
        for piece in pieces(data, CHUNKS[(steer >> 3) % len(CHUNKS)]):
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
        self.clock.advance(0)  # the end of the reactor turn: events go out
        check_line_output(transport.value(), self.settings.max_line)
        protocol.connectionLost(connection_done())
        self.clock.advance(60 if steer & 128 else 0)  # past the grace period, or not
        check_line_output(self.watcher_transport.value(), self.settings.max_line)
        self.watcher_transport.clear()
        self.watcher.resumeProducing()  # as the reactor would once the buffer drained


HARNESSES: Dict[str, Callable[[], Harness]] = {
    "http": HTTPHarness, "udp": UDPHarness, "line": LineHarness}
