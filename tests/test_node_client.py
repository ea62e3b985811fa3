"""NodeClientFactory: refusals that end the reconnect loop, a takeover, and the PEERS and SCRAPE helpers."""
from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from clients import FakeConnector, Link
from helpers import info_hash
from tracker.core import TrackerCore
from tracker.line.client import LineError, NodeClientFactory, PeerLine
from tracker.line.door import AUTH_TOKEN, LineDoorSettings, LineTrackerFactory

H1 = info_hash(1).hex()


def token_door():
    return LineTrackerFactory(TrackerCore(), Clock(),
                              LineDoorSettings(tokens={"edge-1": "right"}, auth=AUTH_TOKEN))


def node(token):
    factory = NodeClientFactory("edge-1", port=8080, token=token)
    factory.clock = Clock()
    return factory


def test_a_wrong_token_fails_when_registered_and_stops_reconnecting():
    client = node("wrong")
    outcome = []
    client.when_registered().addErrback(lambda f: outcome.append(f.value))
    link = Link(client.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)), token_door())
    link.pump()
    assert len(outcome) == 1 and isinstance(outcome[0], LineError) and outcome[0].code == 401
    assert link.client_transport.disconnecting  # the client closed its side
    connector = FakeConnector()
    client.clientConnectionLost(connector, Failure(Exception("closed")))
    client.clock.advance(client.maxDelay * 10)
    assert connector.attempts == 0  # no retry loop
    later = []
    client.when_registered().addErrback(lambda f: later.append(f.value.code))
    assert later == [401]


def test_a_passing_failure_keeps_reconnecting():
    client = node("right")
    link = Link(client.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)), token_door())
    link.cut()  # before HELLO got its reply
    connector = FakeConnector()
    client.clientConnectionLost(connector, Failure(Exception("cut")))
    client.clock.advance(client.maxDelay)
    assert connector.attempts == 1 and client.refused is None


def test_a_node_taken_over_by_another_connection_stops_instead_of_taking_it_back():
    door = token_door()
    first = node("right")
    first_link = Link(first.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)), door)
    first_link.pump()
    assert first.client is not None
    second = node("right")
    registered = []
    second.when_registered().addCallback(registered.append)
    second_link = Link(second.buildProtocol(IPv4Address("TCP", "10.0.0.1", 2)), door)
    second_link.pump()
    first_link.pump()  # the notice reaches the first client
    assert registered == [second_link.client]
    assert first.refused is not None and first.refused.code == 409
    connector = FakeConnector()
    first.clientConnectionLost(connector, Failure(Exception("closed")))
    first.clock.advance(first.maxDelay * 10)
    assert connector.attempts == 0


def test_peers_and_scrape_give_parsed_values():
    door = LineTrackerFactory(TrackerCore(), Clock())
    seeder, asker = node(None), NodeClientFactory("edge-2", port=9090)
    seeder.clock = asker.clock = Clock()
    seeder_link = Link(seeder.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)), door)
    asker_link = Link(asker.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1)), door)
    seeder_link.pump()
    asker_link.pump()
    seeder.have(H1, size=10)
    seeder_link.pump()
    peers, figures = [], []
    asker.peers(H1, numwant=5).addCallback(peers.append)
    asker.scrape(H1).addCallback(figures.append)
    asker_link.pump()
    assert peers == [[PeerLine("10.0.0.1", 8080, True, "line", "edge-1", None)]]
    assert figures == [{H1: (1, 0, 0)}]


def test_helpers_fail_while_disconnected():
    client = node(None)
    failed = []
    client.peers(H1).addErrback(lambda f: failed.append(f))
    assert len(failed) == 1


def test_an_err_reply_to_peers_is_a_line_error():
    door = LineTrackerFactory(TrackerCore(), Clock())
    client = node(None)
    link = Link(client.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)), door)
    link.pump()
    failures = []
    client.peers("zz").addErrback(lambda f: failures.append(f.value))
    link.pump()
    assert isinstance(failures[0], LineError) and failures[0].code == 400
