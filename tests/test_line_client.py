"""The line client library: reply matching, events, and re-registration after a reconnect."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from clients import ADDRESS, FakeConnector, Link
from helpers import info_hash
from tracker.core import TrackerCore
from tracker.line.door import LineTrackerFactory, node_peer_id
from tracker.line.client import LineClient, LineError, NodeClientFactory

H1 = info_hash(1).hex()


def test_replies_are_matched_in_order_and_events_go_aside():
    server = LineTrackerFactory(TrackerCore(), Clock())
    events = []
    client = LineClient(on_event=events.append)
    link = Link(client, server)
    results = []
    client.command("HELLO node=a").addCallback(results.append)
    client.command("SUBSCRIBE " + H1).addCallback(results.append)
    client.command("PEERS " + H1).addCallback(results.append)
    failures = []
    client.command("BOGUS").addErrback(lambda f: failures.append(f.value))
    link.pump()
    other = Link(LineClient(), server)
    other.client.command("HELLO node=b")
    other.client.command("HAVE " + H1)
    other.pump()
    link.pump()
    assert results == [["OK HELLO a entries=0"], ["OK SUBSCRIBE " + H1], []]
    assert isinstance(failures[0], LineError) and failures[0].code == 404
    assert events == ["* JOIN %s 10.0.0.1 6881 seeder door=line node=b" % H1]


def test_pending_commands_fail_when_the_connection_drops():
    client = LineClient()
    client.makeConnection(StringTransport())
    errors = []
    client.command("PING").addErrback(errors.append)
    client.connectionLost(Failure(Exception("gone")))
    assert len(errors) == 1


def test_node_client_registers_again_after_a_reconnect():
    core = TrackerCore()
    server = LineTrackerFactory(core, Clock())
    node = NodeClientFactory("edge-1", port=8080, region="eu")
    node.clock = Clock()
    link = Link(node.buildProtocol(ADDRESS), server)
    link.pump()
    replies = []
    node.have(H1, size=10, name="a file").addCallback(replies.append)
    node.subscribe(H1)
    link.pump()
    assert replies == [["OK HAVE " + H1]]
    assert core.swarms[info_hash(1)].name == "a file"

    link.cut()
    connector = FakeConnector()
    node.clientConnectionLost(connector, Failure(Exception("cut")))
    assert node.client is None
    node.clock.advance(node.maxDelay)
    assert connector.attempts == 1  # it tries again, with back-off

    registered = []
    node.when_registered().addCallback(registered.append)
    again = Link(node.buildProtocol(ADDRESS), server)
    again.pump()
    assert registered == [again.client]
    # HELLO found the node's entry kept through the grace period, and the
    # client re-sent its HAVE and SUBSCRIBE.
    assert core.swarms[info_hash(1)].get(node_peer_id("edge-1")).port == 8080
    assert again.server.subscriptions == {info_hash(1)}
    assert server.sessions.get("edge-1").connection is again.server
