"""Admission and flow control at the doors: connection caps shared by the HTTP
and line doors, an HTTP client that does not read its replies, and the
per-address allowance of announces and scrapes (HTTP and UDP)."""
from __future__ import annotations

import random

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport

from clients import Client, UDPClient, announce_target, q
from helpers import bdecode, info_hash, peer_id
from tracker.core import TrackerCore, TrackerSettings
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory
from tracker.doors.udp import UDPTrackerProtocol
from tracker.limits import (
    REFUSED_PER_ADDRESS, REFUSED_TOTAL, AnnounceRateLimiter, ConnectionLimiter,
)
from tracker.line.door import LineTrackerFactory


def make_http(limiter=None, clock=None):
    core = TrackerCore(TrackerSettings(), rng=random.Random(1))
    factory = HTTPTrackerFactory(core, clock or Clock(), HTTPDoorSettings(idle_timeout_s=30))
    factory.limiter = limiter
    return factory


def connect(factory, host):
    address = IPv4Address("TCP", host, 50000)
    transport = StringTransport(peerAddress=address)
    protocol = factory.buildProtocol(address)
    protocol.makeConnection(transport)
    return protocol, transport


def test_http_connection_past_the_per_address_cap_gets_503_and_is_closed():
    limiter = ConnectionLimiter(max_total=100, max_per_address=2)
    factory = make_http(limiter)
    connect(factory, "10.0.0.1")
    connect(factory, "10.0.0.1")
    _, transport = connect(factory, "10.0.0.1")
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"too many connections from your address" in transport.value()
    assert transport.disconnecting
    assert limiter.refused[REFUSED_PER_ADDRESS] == 1
    # Another address still gets in and is served.
    client = Client(factory, "10.0.0.2")
    assert b"interval" in client.announce()


def test_closing_a_connection_frees_its_place():
    limiter = ConnectionLimiter(max_total=1, max_per_address=1)
    factory = make_http(limiter)
    protocol, _ = connect(factory, "10.0.0.1")
    _, refused = connect(factory, "10.0.0.9")
    assert refused.value().startswith(b"HTTP/1.1 503 ") and limiter.refused[REFUSED_TOTAL] == 1
    protocol.connectionLost(None)
    assert limiter.open == 0
    _, transport = connect(factory, "10.0.0.9")
    assert not transport.disconnecting and limiter.open == 1


def test_line_connection_past_the_cap_gets_an_err_line():
    core = TrackerCore(TrackerSettings(), rng=random.Random(1))
    limiter = ConnectionLimiter(max_total=100, max_per_address=1)
    factory = LineTrackerFactory(core, Clock())
    factory.limiter = limiter
    first, _ = connect(factory, "10.0.0.1")
    _, transport = connect(factory, "10.0.0.1")
    assert transport.value() == b"ERR 503 too many connections from your address\n"
    assert transport.disconnecting
    first.connectionLost(None)
    assert limiter.open == 0


def test_http_and_line_doors_share_one_limiter():
    limiter = ConnectionLimiter(max_total=2, max_per_address=10)
    core = TrackerCore(TrackerSettings(), rng=random.Random(1))
    http = HTTPTrackerFactory(core, Clock(), HTTPDoorSettings())
    line = LineTrackerFactory(core, Clock())
    http.limiter = line.limiter = limiter
    connect(http, "10.0.0.1")
    connect(line, "10.0.0.2")
    _, transport = connect(http, "10.0.0.3")
    assert transport.value().startswith(b"HTTP/1.1 503 ")


def test_http_door_is_its_transports_streaming_producer():
    # The transport pauses its producer when its send buffer fills (a client
    # that sends requests but does not read the replies); the door then stops
    # reading that client's requests until it catches up.
    factory = make_http()
    protocol, transport = connect(factory, "10.0.0.1")
    assert transport.producer is protocol and transport.streaming
    protocol.pauseProducing()
    assert transport.producerState == "paused"
    protocol.resumeProducing()
    assert transport.producerState == "producing"


def test_http_connection_with_unread_replies_is_aborted_at_the_idle_timeout():
    clock = Clock()
    factory = make_http(clock=clock)
    protocol, transport = connect(factory, "10.0.0.1")
    target = announce_target()
    protocol.dataReceived(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
    protocol.pauseProducing()
    clock.advance(31)
    factory.tick()
    # Aborted, not closed politely (which would wait for the client to read).
    assert transport.disconnected


def test_paused_connection_with_half_a_request_is_aborted_at_the_idle_timeout():
    clock = Clock()
    factory = make_http(clock=clock)
    protocol, transport = connect(factory, "10.0.0.1")
    protocol.dataReceived(b"GET %s HTTP/1.1\r\n\r\nGET /annou" % announce_target())
    protocol.pauseProducing()
    clock.advance(31)
    factory.tick()
    assert transport.disconnected


def test_connection_still_closing_an_idle_timeout_later_is_aborted():
    clock = Clock()
    factory = make_http(clock=clock)
    protocol, transport = connect(factory, "10.0.0.1")
    protocol.dataReceived(b"GET /announce HTTP/1.1\r\nConnection: close\r\n\r\n")
    # Closing politely: the reply is written, the client has not read it.
    assert transport.disconnecting and not transport.disconnected
    clock.advance(29)
    factory.tick()
    assert not transport.disconnected
    clock.advance(2)
    factory.tick()
    assert transport.disconnected


def test_idle_http_connection_that_read_everything_is_closed_politely():
    clock = Clock()
    factory = make_http(clock=clock)
    protocol, transport = connect(factory, "10.0.0.1")
    clock.advance(31)
    factory.tick()
    assert transport.disconnecting and not transport.disconnected


# -- announces per address ---------------------------------------------------------


def test_http_announces_past_the_rate_get_a_failure_and_change_nothing():
    factory = make_http()
    factory.rate_limiter = AnnounceRateLimiter(rate=1.0, burst=2)
    client = Client(factory, "10.0.0.1")
    assert b"interval" in client.announce(peer_id=peer_id(1))
    assert b"interval" in client.announce(peer_id=peer_id(2))
    refused = client.announce(peer_id=peer_id(3))
    assert refused[b"failure reason"].startswith(b"too many requests from your address")
    assert factory.core.stats.failures[("http", "rate_limited")] == 1
    assert factory.core.peer_count == 2
    # Another address has its own allowance.
    assert b"interval" in Client(factory, "10.0.0.2").announce(peer_id=peer_id(4))


def test_http_scrapes_count_against_the_same_allowance():
    factory = make_http()
    factory.rate_limiter = AnnounceRateLimiter(rate=1.0, burst=1)
    client = Client(factory, "10.0.0.1")
    client.announce()
    client.send(b"GET /scrape?info_hash=" + q(info_hash(1)) + b" HTTP/1.1\r\n\r\n")
    (status, _, body), = client.responses()
    assert bdecode(body)[b"failure reason"].startswith(b"too many requests")


def test_http_allowance_comes_back_with_time():
    clock = Clock()
    factory = make_http(clock=clock)
    factory.rate_limiter = AnnounceRateLimiter(rate=1.0, burst=1)
    client = Client(factory, "10.0.0.1")
    client.announce()
    assert b"failure reason" in client.announce()
    clock.advance(1)
    factory.tick()
    assert b"interval" in client.announce()


def test_udp_announces_past_the_rate_get_an_error_packet():
    core = TrackerCore(TrackerSettings(), rng=random.Random(1))
    clock = Clock()
    door = UDPTrackerProtocol(core, clock)
    transport = FakeDatagramTransport()
    door.makeConnection(transport)
    door.rate_limiter = AnnounceRateLimiter(rate=1.0, burst=1)
    client = UDPClient(door, transport)
    connection_id = client.connect()
    assert "error" not in client.announce(connection_id=connection_id, peer=1)
    refused = client.announce(connection_id=connection_id, peer=2)
    assert refused["error"].startswith("too many requests from your address")
    assert core.peer_count == 1 and core.stats.failures[("udp", "rate_limited")] == 1
