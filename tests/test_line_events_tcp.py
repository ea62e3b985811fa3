"""The line door's pushed events on Twisted's real TCP transport.

Events go straight to the socket when nothing is queued before them
(tracker/doors/fastwrite.py). A `tcp.Server` over one end of a socket pair, on
a `MemoryReactorClock`: the transport's buffering is real, but nothing
buffered is sent unless the test calls `doWrite` (what the reactor does when
the socket is writable), so a test sees which bytes took which path."""
from __future__ import annotations

import random
import socket

import pytest
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactorClock

from helpers import announce_request, info_hash
from tracker.core import TrackerCore, TrackerSettings
from tracker.line.door import LineDoorSettings, LineTrackerFactory

H1 = info_hash(1).hex()


class _Port:
    """What `tcp.Server` asks of its listening port."""
    _realPortNumber = 6970

    def _buildAddr(self, address):
        return address


@pytest.fixture
def reactor():
    return MemoryReactorClock()


@pytest.fixture
def core():
    return TrackerCore(TrackerSettings(), rng=random.Random(5))


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def received(theirs) -> bytes:
    data = b""
    while True:
        try:
            chunk = theirs.recv(1 << 16)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def subscriber(core, reactor, ours, theirs):
    """A subscribed line connection on a real TCP transport, its replies read."""
    factory = LineTrackerFactory(core, reactor, LineDoorSettings())
    protocol = factory.buildProtocol(None)
    transport = tcp.Server(ours, protocol, ("127.0.0.1", 40000), _Port(), 1, reactor)
    protocol.makeConnection(transport)
    protocol.dataReceived(("HELLO node=watcher\nSUBSCRIBE %s\n" % H1).encode())
    transport.doWrite()  # replies go through the transport's buffer, as always
    assert received(theirs) == ("OK HELLO watcher entries=0\nOK SUBSCRIBE %s\n" % H1).encode()
    return protocol, transport


def join(core, peer):
    core.announce(announce_request(swarm=1, peer=peer, ip="192.0.2.5", port=7000 + peer), 0.0)


def joined(peer) -> bytes:
    return ("* JOIN %s 192.0.2.5 %d leecher door=http\n" % (H1, 7000 + peer)).encode()


def test_an_event_goes_out_at_the_end_of_the_turn_without_the_reactor(core, reactor, pair):
    ours, theirs = pair
    protocol, transport = subscriber(core, reactor, ours, theirs)
    join(core, 1)
    reactor.advance(0)  # the end of the turn
    assert received(theirs) == joined(1)
    assert transport not in reactor.getWriters()  # never queued for the reactor


def test_an_event_behind_a_queued_reply_waits_its_turn(core, reactor, pair):
    ours, theirs = pair
    protocol, transport = subscriber(core, reactor, ours, theirs)
    protocol.dataReceived(b"PING\n")  # a reply written in the same turn, still queued
    join(core, 1)
    reactor.advance(0)
    assert received(theirs) == b""
    transport.doWrite()
    assert received(theirs) == b"PONG\n" + joined(1)


def test_events_the_kernel_does_not_take_pause_the_connection_as_before(core, reactor, pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    protocol, transport = subscriber(core, reactor, ours, theirs)
    for peer in range(1, 2001):  # one turn: about 150 KiB of events, in one write
        join(core, peer)
    reactor.advance(0)
    assert protocol.paused  # the rest waits in the transport: flow control as before
    got = received(theirs)
    while transport in reactor.getWriters():
        transport.doWrite()
        got += received(theirs)
    assert got == b"".join(joined(peer) for peer in range(1, 2001))
    assert not protocol.paused  # drained: reading again
