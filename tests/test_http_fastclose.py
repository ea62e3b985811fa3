"""The HTTP door on the reactor's own TCP connections: replies sent at once and
a closing connection ended within the read that carried its last request
(tracker/doors/fastwrite.py), over a real socket pair, read by hand."""
from __future__ import annotations

import random
import socket

import pytest
from twisted.internet import main, tcp
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from clients import announce_target
from helpers import bdecode, peer_id
from tracker.core import TrackerCore
from tracker.doors.fastwrite import can_close_in_read, send_and_close
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory


class Connected:
    """A door connection on a real `tcp.Server` over a socket pair; `client` is the other end."""

    def __init__(self, close_in_read: bool = True) -> None:
        self.reactor = MemoryReactorClock()
        factory = HTTPTrackerFactory(TrackerCore(rng=random.Random(1)), Clock(), HTTPDoorSettings())
        factory.close_in_read = close_in_read
        server_sock, self.client = socket.socketpair()
        server_sock.setblocking(False)
        self.client.settimeout(5)
        addr = ("127.0.0.1", 40000)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", *addr))
        self.transport = tcp.Server(server_sock, self.protocol, addr, None, 1, self.reactor)
        self.protocol.makeConnection(self.transport)
        self.lost = []
        self.protocol.connectionLost = lambda reason=None: self.lost.append(reason)

    def request(self, data: bytes):
        """Send `data` from the client; let the server read it once; what doRead returned."""
        self.client.sendall(data)
        return self.transport.doRead()

    def received(self) -> bytes:
        self.client.setblocking(False)
        try:
            return self.client.recv(1 << 16)
        except BlockingIOError:
            return b""
        finally:
            self.client.setblocking(True)


@pytest.fixture
def conn():
    c = Connected()
    yield c
    c.client.close()
    if hasattr(c.transport, "socket"):  # not ended by the test
        c.transport.socket.close()


def get(target: bytes, version: bytes = b"HTTP/1.1", headers: bytes = b"") -> bytes:
    return b"GET %s %s\r\nHost: t\r\n%s\r\n" % (target, version, headers)


def test_keep_alive_reply_is_sent_at_once_and_the_connection_stays(conn):
    assert conn.request(get(announce_target(peer_id=peer_id(1)))) is None
    reply = conn.received()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"peers" in bdecode(reply.split(b"\r\n\r\n", 1)[1])
    assert conn.transport.connected and not conn.transport.disconnecting


@pytest.mark.parametrize("request_bytes", [
    get(announce_target(peer_id=peer_id(1)), headers=b"Connection: close\r\n"),
    get(announce_target(peer_id=peer_id(1)), version=b"HTTP/1.0"),
    # Pipelined: both answered, in order, then the end.
    get(b"/scrape") + get(announce_target(peer_id=peer_id(1)), headers=b"Connection: close\r\n"),
])
def test_the_last_reply_goes_out_whole_and_the_read_ends_the_connection(conn, request_bytes):
    # The reactor, given CONNECTION_DONE from doRead, ends the connection as after a drained final write.
    assert conn.request(request_bytes) is main.CONNECTION_DONE
    reply = conn.received()
    heads = reply.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(heads) == request_bytes.count(b"GET ")
    last_head, last_body = heads[-1].split(b"\r\n\r\n", 1)
    assert b"Connection: close" in last_head
    assert b"peers" in bdecode(last_body)  # the whole body is there
    # Nothing was left for a later write turn.
    assert not conn.transport.dataBuffer and not conn.transport._tempDataLen
    assert conn.reactor.getWriters() == []
    # What the reactor then does with CONNECTION_DONE from a read: an orderly end.
    conn.transport.readConnectionLost(Failure(main.CONNECTION_DONE))
    assert conn.lost and conn.lost[0].check(ConnectionDone)
    assert conn.client.recv(100) == b""  # FIN after the reply, not a reset


def test_a_refused_request_also_ends_within_the_read(conn):
    assert conn.request(b"POST /announce HTTP/1.1\r\n\r\n") is main.CONNECTION_DONE
    assert conn.received().startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")


def test_with_older_data_queued_the_close_waits_for_the_write_turn(conn):
    conn.transport.write(b"queued")  # as if the kernel had not taken an earlier reply
    assert conn.request(get(b"/scrape", headers=b"Connection: close\r\n")) is None
    assert conn.transport.disconnecting  # loseConnection: ends once the buffer drains
    assert conn.received() == b""  # nothing overtakes the queued data


def test_only_plain_reactor_connections_take_the_in_read_close():
    from twisted.internet.testing import StringTransport
    assert not can_close_in_read(StringTransport())

    class Custom(tcp.Server):
        pass
    # A subclass may have its own ideas about reading: left as it is.
    assert not can_close_in_read(Custom.__new__(Custom))


def test_send_and_close_refuses_when_data_is_queued(conn):
    conn.transport.write(b"older")
    assert not send_and_close(conn.transport, b"reply")
    assert conn.transport.close_after_read is False


def test_the_in_read_close_is_on_by_default_only_under_pypy():
    import platform
    assert HTTPTrackerFactory.close_in_read == (platform.python_implementation() == "PyPy")


def test_without_the_in_read_close_a_closing_connection_ends_on_the_write_turn():
    conn = Connected(close_in_read=False)
    try:
        assert conn.request(get(b"/scrape", headers=b"Connection: close\r\n")) is None
        assert conn.transport.disconnecting and type(conn.transport) is tcp.Server
        assert conn.received() == b""  # the reply waits in Twisted's buffer for the write turn
        assert conn.transport.doWrite() is main.CONNECTION_DONE  # drained: the reactor then closes
        assert conn.received().startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        conn.client.close()
        conn.transport.socket.close()
