"""The line door against docs/line-protocol.md: StringTransport and task.Clock."""
from __future__ import annotations

import base64
import random

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from clients import Node
from helpers import announce_request, info_hash
from tracker.core import EVENT_STOPPED, TrackerCore, TrackerSettings
from tracker.line.door import LineDoorSettings, LineTrackerFactory, node_peer_id

H1 = info_hash(1).hex()
H2 = info_hash(2).hex()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def core():
    return TrackerCore(TrackerSettings(), rng=random.Random(5))


@pytest.fixture
def factory(core, clock):
    return LineTrackerFactory(core, clock, LineDoorSettings(grace_s=60, idle_timeout_s=300))


# -- HELLO and registration ----------------------------------------------------------------


def test_hello_registers_the_node(factory):
    node = Node(factory)
    assert node.hello("edge-1", port=8080, region="eu") == ["OK HELLO edge-1 entries=0"]
    assert factory.sessions.get("edge-1").port == 8080
    assert factory.sessions.get("edge-1").ip == "10.0.0.1"


def test_commands_before_hello_are_refused_except_a_few(factory):
    node = Node(factory)
    assert node.send("HAVE " + H1) == ["ERR 403 say HELLO first"]
    assert node.send("PEERS " + H1) == ["ERR 403 say HELLO first"]
    assert node.send("PING") == ["PONG"]
    assert node.send("STATS")[0].startswith("OK STATS ")
    assert node.send("SCRAPE " + H1)[-1] == "END"
    assert not node.closed


@pytest.mark.parametrize("line,reply", [
    ("HELLO", "ERR 400 HELLO needs node=<id>: 1-64 letters, digits, '.', '_' or '-'"),
    ("HELLO node=bad/id", "ERR 400 HELLO needs node=<id>: 1-64 letters, digits, '.', '_' or '-'"),
    ("HELLO node=a port=0", "ERR 400 port must be a whole number from 1 to 65535"),
    ("HELLO node=a port=http", "ERR 400 port must be a whole number from 1 to 65535"),
    ("HELLO node=a ip=nowhere", "ERR 400 ip must be an IPv4 or IPv6 address"),
    ("HELLO node=a colour=red", "ERR 400 unexpected argument 'colour=red' (options: node, port, ip, region, token)"),
    ("HELLO node=a region=a/b", "ERR 400 region must be 1-64 letters, digits, '.', '_' or '-'"),
])
def test_bad_hello(factory, line, reply):
    node = Node(factory)
    assert node.send(line) == [reply]
    assert len(factory.sessions) == 0 and not node.closed


def test_second_hello_on_a_connection_is_refused(factory):
    node = Node(factory)
    node.hello("edge-1")
    assert node.send("HELLO node=edge-2") == ["ERR 400 already registered as edge-1"]


def test_tokens_when_configured(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(tokens={"edge-1": "s3cret"}))
    node = Node(factory)
    assert node.hello("edge-1", token="s3cret") == ["OK HELLO edge-1 entries=0"]
    for options in ({"token": "wrong"}, {}):
        node = Node(factory)
        assert node.hello("edge-1", **options) == ["ERR 401 wrong or missing token for node edge-1"]
        assert node.closed
    node = Node(factory)
    assert node.hello("stranger", token="s3cret") == ["ERR 401 wrong or missing token for node stranger"]


# -- entries: HAVE, WANT, DONE, DROP -----------------------------------------------------------


def test_have_makes_the_node_a_seeder_with_metadata(factory, core):
    node = Node(factory)
    node.hello("edge-1", port=8080)
    assert node.send("HAVE %s size=1048576 name=launch%%20video.mp4" % H1.upper()) == ["OK HAVE " + H1]
    swarm = core.swarms[info_hash(1)]
    peer = swarm.get(node_peer_id("edge-1"))
    assert (peer.ip, peer.port, peer.seeder, peer.door) == ("10.0.0.1", 8080, True, "line")
    assert (swarm.name, swarm.size) == ("launch video.mp4", 1048576)


def test_base32_hash_is_accepted(factory, core):
    node = Node(factory)
    node.hello()
    b32 = base64.b32encode(info_hash(1)).decode()
    assert node.send("WANT " + b32) == ["OK WANT " + H1]
    assert core.swarms[info_hash(1)].get(node_peer_id("edge-1")).seeder is False


def test_done_counts_once_and_makes_a_seeder(factory, core):
    node = Node(factory)
    node.hello()
    node.send("WANT " + H1)
    assert node.send("DONE " + H1) == ["OK DONE " + H1]
    assert node.send("DONE " + H1) == ["OK DONE " + H1]
    swarm = core.swarms[info_hash(1)]
    assert swarm.completed == 1
    assert swarm.get(node_peer_id("edge-1")).seeder


def test_drop_leaves_the_swarm(factory, core):
    node = Node(factory)
    node.hello()
    node.send("HAVE " + H1)
    assert node.send("DROP " + H1) == ["OK DROP " + H1]
    assert node_peer_id("edge-1") not in core.swarms[info_hash(1)]
    assert node.send("DROP " + H1) == ["OK DROP " + H1]


@pytest.mark.parametrize("line,reply", [
    ("HAVE", "ERR 400 missing info hash"),
    ("HAVE abc", "ERR 400 bad info hash 'abc': use 40 hex digits or 32 base32 characters"),
    ("HAVE " + "g" * 40, "ERR 400 bad info hash '%s': use 40 hex digits or 32 base32 characters" % ("g" * 40)),
    ("HAVE %s size=-1" % H1, "ERR 400 size must be a whole number from 0 to 9223372036854775807"),
    ("HAVE %s name" % H1, "ERR 400 unexpected argument 'name' (options: size, name)"),
    ("HAVE %s name=%%ff" % H1, "ERR 400 a %-escape in an option is not UTF-8"),
    ("WANT %s extra" % H1, "ERR 400 unexpected argument 'extra' (options: none)"),
    ("FETCH " + H1, "ERR 404 unknown command FETCH"),
    ("PEERS %s numwant=lots" % H1, "ERR 400 numwant must be a whole number from 0 to 1000000"),
])
def test_bad_commands_get_one_error_line_and_change_nothing(factory, core, line, reply):
    node = Node(factory)
    node.hello()
    assert node.send(line) == [reply]
    assert core.swarms == {}
    assert node.send("PING") == ["PONG"]


def test_non_utf8_line(factory):
    node = Node(factory)
    node.protocol.dataReceived(b"HELLO node=\xff\xfe\r\n")
    assert node.read() == ["ERR 415 the line is not UTF-8"]
    assert not node.closed


def test_over_long_line_is_refused_and_closed(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(max_line=100))
    node = Node(factory)
    node.protocol.dataReceived(b"PING " + b"x" * 200 + b"\n")
    assert node.read() == ["ERR 413 line too long (limit 100 bytes)"]
    assert node.closed


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_length_counts_the_same_with_lf_and_crlf(core, clock, ending):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(max_line=100))
    node = Node(factory)
    longest = b"PING " + b" " * 95
    node.protocol.dataReceived(longest + ending)
    assert node.read() == ["PONG"] and not node.closed
    node.protocol.dataReceived(longest + b" " + ending)
    assert node.read() == ["ERR 413 line too long (limit 100 bytes)"] and node.closed


def test_only_ascii_digits_are_numbers_on_the_wire(factory, core):
    node = Node(factory)
    assert node.send("HELLO node=edge-1 port=\u0661\u0662") == [
        "ERR 400 port must be a whole number from 1 to 65535"]
    node.hello("edge-1")
    assert node.send("HAVE %s size=\uff11" % H1) == [
        "ERR 400 size must be a whole number from 0 to 9223372036854775807"]
    assert core.swarms == {}


def test_entries_per_node_are_capped(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(max_entries=2))
    node = Node(factory)
    node.hello("edge-1")
    assert node.send("HAVE " + H1) == ["OK HAVE " + H1]
    assert node.send("WANT " + H2) == ["OK WANT " + H2]
    assert node.send("HAVE " + H2) == ["OK HAVE " + H2]  # one it has: not a new entry
    h3 = info_hash(3).hex()
    assert node.send("HAVE " + h3) == ["ERR 400 at most 2 entries per node: DROP some first"]
    assert info_hash(3) not in core.swarms
    assert core.stats.failures[("line", "node_entry_cap")] == 1
    node.send("DROP " + H1)
    assert node.send("HAVE " + h3) == ["OK HAVE " + h3]


def test_past_the_tracker_bounds_a_have_gets_503_and_the_node_stays(clock):
    from tracker.core import ChangeLog

    core = TrackerCore(TrackerSettings(max_write_backlog=1), changes=ChangeLog())
    core.store_log = core.changes
    node = Node(LineTrackerFactory(core, clock, LineDoorSettings()))
    node.hello("edge-1")
    core.changes.take()  # the node's own record, written
    assert node.send("HAVE " + H1) == ["OK HAVE " + H1]
    assert node.send("HAVE " + H2) == [
        "ERR 503 this tracker is behind with writing its database: try again later"]
    assert core.stats.failures[("line", "write_backlog")] == 1 and info_hash(2) not in core.swarms
    assert node.send("PING") == ["PONG"]


def test_commands_are_case_insensitive_and_blank_lines_ignored(factory):
    node = Node(factory)
    assert node.send("") == []
    assert node.send("ping") == ["PONG"]


def test_quit(factory):
    node = Node(factory)
    assert node.send("QUIT") == ["OK BYE"]
    assert node.closed


# -- PEERS, SCRAPE, STATS ---------------------------------------------------------------------


def test_peers_include_bittorrent_peers_and_nodes_but_not_itself(factory, core, clock):
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413, left=10), 0.0)
    edge1, edge2 = Node(factory, "10.0.0.1"), Node(factory, "10.0.0.2")
    edge1.hello("edge-1", port=8080)
    edge2.hello("edge-2", port=8081, region="eu")
    edge1.send("HAVE " + H1)
    edge2.send("WANT " + H1)
    reply = edge2.send("PEERS " + H1)
    assert reply[-1] == "END"
    assert sorted(reply[:-1]) == [
        "PEER 10.0.0.1 8080 seeder door=line node=edge-1",
        "PEER 192.0.2.5 51413 leecher door=http",
    ]


def test_seeding_node_gets_no_seeders(factory, core):
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", left=0), 0.0)
    core.announce(announce_request(swarm=1, peer=2, ip="192.0.2.6", left=10), 0.0)
    node = Node(factory)
    node.hello()
    node.send("HAVE " + H1)
    assert node.send("PEERS " + H1) == ["PEER 192.0.2.6 6881 leecher door=http", "END"]


def test_same_region_nodes_come_first(factory, core):
    for n in range(30):
        core.announce(announce_request(swarm=1, peer=n, ip="192.0.2.%d" % (n + 1), left=0), 0.0)
    for n, region in enumerate(["us", "eu", "eu", "ap"]):
        node = Node(factory, "10.0.1.%d" % n)
        node.hello("edge-%d" % n, region=region)
        node.send("HAVE " + H1)
    asker = Node(factory, "10.0.2.1")
    asker.hello("asker", region="eu")
    asker.send("WANT " + H1)
    for _ in range(10):
        reply = asker.send("PEERS %s numwant=5" % H1)[:-1]
        assert len(reply) == 5
        assert sorted(reply[:2]) == ["PEER 10.0.1.1 6881 seeder door=line node=edge-1 region=eu",
                                     "PEER 10.0.1.2 6881 seeder door=line node=edge-2 region=eu"]
        assert all("region=eu" not in line for line in reply[2:])


def test_peers_numwant_and_unknown_swarm(factory, core):
    for n in range(10):
        core.announce(announce_request(swarm=1, peer=n, ip="192.0.2.%d" % (n + 1)), 0.0)
    node = Node(factory)
    node.hello()
    assert len(node.send("PEERS %s numwant=3" % H1)) == 4
    assert len(node.send("PEERS %s numwant=0" % H1)) == 1
    assert node.send("PEERS " + H2) == ["END"]


def test_scrape_many(factory, core):
    core.announce(announce_request(swarm=1, peer=1, left=0), 0.0)
    node = Node(factory)
    assert node.send("SCRAPE %s %s" % (H1, H2)) == [
        "SCRAPE %s seeders=1 leechers=0 completed=0" % H1,
        "SCRAPE %s seeders=0 leechers=0 completed=0" % H2,
        "END"]
    assert node.send("SCRAPE") == ["ERR 400 SCRAPE needs at least one info hash"]


def test_scrape_takes_the_cores_limit_on_hashes(clock):
    core = TrackerCore(TrackerSettings(max_scrape_hashes=3), rng=random.Random(5))
    node = Node(LineTrackerFactory(core, clock, LineDoorSettings()))
    assert node.send("SCRAPE " + " ".join([H1] * 4)) == [
        "ERR 400 at most 3 info_hash values per scrape"]
    assert node.send("SCRAPE " + " ".join([H1] * 3))[-1] == "END"


def test_stats(factory, core):
    core.announce(announce_request(swarm=1, peer=1, left=0), 0.0)
    node = Node(factory)
    node.hello()
    node.send("WANT " + H2)
    Node(factory)
    assert node.send("STATS") == ["OK STATS swarms=2 peers=2 seeders=1 leechers=1 nodes=1 connections=2"]


# -- SUBSCRIBE and pushed events ----------------------------------------------------------------


def test_subscriber_sees_joins_and_leaves_from_every_door(factory, core):
    watcher = Node(factory, "10.0.9.9")
    watcher.hello("watcher")
    assert watcher.send("SUBSCRIBE " + H1) == ["OK SUBSCRIBE " + H1]
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413, left=10), 0.0)
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413, left=5), 1.0)
    core.announce(announce_request(swarm=2, peer=2), 1.0)  # another swarm: no event
    edge = Node(factory, "10.0.0.1")
    edge.hello("edge-1", region="eu")
    edge.send("HAVE " + H1)
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413,
                                   event=EVENT_STOPPED), 2.0)
    edge.send("DROP " + H1)
    watcher.read()
    assert watcher.events == [
        "* JOIN %s 192.0.2.5 51413 leecher door=http" % H1,
        "* JOIN %s 10.0.0.1 6881 seeder door=line node=edge-1 region=eu" % H1,
        "* LEAVE %s 192.0.2.5 51413 leecher door=http" % H1,
        "* LEAVE %s 10.0.0.1 6881 seeder door=line node=edge-1 region=eu" % H1,
    ]


def test_events_are_distinguishable_from_pipelined_replies(factory, core):
    watcher = Node(factory)
    watcher.hello("watcher")
    watcher.send("SUBSCRIBE " + H1)
    other = Node(factory, "10.0.0.2")
    other.hello("edge-2")
    # The watcher pipelines PING, PEERS and PING; a join happens in between.
    watcher.protocol.dataReceived(("PING\nPEERS %s\n" % H1).encode())
    other.send("HAVE " + H1)
    watcher.protocol.dataReceived(b"PING\n")
    watcher.clock.advance(0)
    raw = watcher.transport.value().decode().splitlines()
    assert [line for line in raw if not line.startswith("*")] == ["PONG", "END", "PONG"]
    assert [line for line in raw if line.startswith("*")] == [
        "* JOIN %s 10.0.0.2 6881 seeder door=line node=edge-2" % H1]


def test_events_of_one_turn_come_same_region_first(factory, core):
    watcher = Node(factory, "10.0.9.9")
    watcher.hello("watcher", region="eu")
    watcher.send("SUBSCRIBE " + H1)
    far, near = Node(factory, "10.0.0.1"), Node(factory, "10.0.0.2")
    far.hello("far-1", region="us")
    near.hello("near-1", region="eu")
    # Both join, then a BitTorrent peer, all before the reactor turn ends.
    far.protocol.dataReceived(("HAVE %s\n" % H1).encode())
    near.protocol.dataReceived(("HAVE %s\n" % H1).encode())
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413), 0.0)
    watcher.read()
    assert watcher.events == [
        "* JOIN %s 10.0.0.2 6881 seeder door=line node=near-1 region=eu" % H1,
        "* JOIN %s 10.0.0.1 6881 seeder door=line node=far-1 region=us" % H1,
        "* JOIN %s 192.0.2.5 51413 leecher door=http" % H1,
    ]


class RecordingTransport(StringTransport):
    """Keeps every object written, so a test can tell one shared bytes object from copies."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.writes = []

    def write(self, data):
        self.writes.append(data)
        super().write(data)


def test_one_join_to_many_subscribers_is_the_same_bytes_and_one_timer(factory, core, clock):
    transports = []
    for n in range(50):
        address = IPv4Address("TCP", "10.0.%d.%d" % (n // 200, n % 200 + 1), 40000)
        protocol, transport = factory.buildProtocol(address), RecordingTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(("HELLO node=w%d\nSUBSCRIBE %s\n" % (n, H1)).encode())
        transports.append(transport)
        transport.writes.clear()
    core.announce(announce_request(swarm=1, peer=1, ip="192.0.2.5", port=51413, left=10), 0.0)
    # One call at the end of the turn for every subscriber, none of their own.
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert not clock.getDelayedCalls()
    first = transports[0].writes
    assert first == [("* JOIN %s 192.0.2.5 51413 leecher door=http\n" % H1).encode()]
    # Formatted and encoded once: every subscriber is written that very object.
    assert all(len(t.writes) == 1 and t.writes[0] is first[0] for t in transports)


def test_unsubscribe_and_disconnect_stop_events(factory, core):
    watcher = Node(factory)
    watcher.hello("watcher")
    watcher.send("SUBSCRIBE " + H1)
    assert watcher.send("UNSUBSCRIBE " + H1) == ["OK UNSUBSCRIBE " + H1]
    core.announce(announce_request(swarm=1, peer=1), 0.0)
    watcher.read()
    assert watcher.events == []
    watcher.send("SUBSCRIBE " + H1)
    watcher.drop_connection()
    core.announce(announce_request(swarm=1, peer=2, port=7000), 0.0)
    assert core._watchers == {}


def test_subscription_limit(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(max_subscriptions=2))
    node = Node(factory)
    node.hello()
    node.send("SUBSCRIBE " + H1)
    node.send("SUBSCRIBE " + H2)
    assert node.send("SUBSCRIBE " + info_hash(3).hex()) == ["ERR 400 at most 2 subscriptions per connection"]


# -- liveness: grace period, reconnect, idle timeout -----------------------------------------


def test_entries_stay_while_connected_without_reannouncing(factory, core, clock):
    node = Node(factory)
    node.hello()
    node.send("HAVE " + H1)
    for _ in core.expire(1e9, 1000):  # far past any time to live
        pass
    assert node_peer_id("edge-1") in core.swarms[info_hash(1)]


def test_reconnect_within_grace_loses_nothing(factory, core, clock):
    node = Node(factory)
    node.hello("edge-1", port=8080)
    node.send("HAVE " + H1)
    node.send("WANT " + H2)
    node.drop_connection()
    clock.advance(59)
    assert node_peer_id("edge-1") in core.swarms[info_hash(1)]
    again = Node(factory)
    assert again.hello("edge-1", port=8080) == ["OK HELLO edge-1 entries=2"]
    clock.advance(120)
    assert node_peer_id("edge-1") in core.swarms[info_hash(1)]
    assert node_peer_id("edge-1") in core.swarms[info_hash(2)]
    for _ in core.expire(1e9, 1000):  # pinned again: no expiry while connected
        pass
    assert node_peer_id("edge-1") in core.swarms[info_hash(1)]


def test_node_that_stays_away_leaves_after_the_grace_period(factory, core, clock):
    watcher = Node(factory, "10.0.9.9")
    watcher.hello("watcher")
    watcher.send("SUBSCRIBE " + H1)
    node = Node(factory)
    node.hello("edge-1")
    node.send("HAVE " + H1)
    node.drop_connection()
    clock.advance(60)
    assert node_peer_id("edge-1") not in core.swarms[info_hash(1)]
    assert "edge-1" not in factory.sessions
    watcher.read()
    assert watcher.events[-1] == "* LEAVE %s 10.0.0.1 6881 seeder door=line node=edge-1" % H1
    assert Node(factory).hello("edge-1") == ["OK HELLO edge-1 entries=0"]


def test_new_connection_from_the_same_address_takes_over_a_live_node_id(factory, core):
    old = Node(factory)
    old.hello("edge-1")
    old.send("HAVE " + H1)
    new = Node(factory)
    assert new.hello("edge-1", port=9000) == ["OK HELLO edge-1 entries=1"]
    assert old.read() == ["ERR 409 replaced by a new connection of node edge-1"]
    assert old.closed
    old.drop_connection()  # the old connection's close must not start a grace period
    assert factory.sessions.get("edge-1").grace is None
    peer = core.swarms[info_hash(1)].get(node_peer_id("edge-1"))
    assert (peer.ip, peer.port) == ("10.0.0.1", 9000)


# -- node identity (--line-auth) ------------------------------------------------------------


def test_open_mode_refuses_a_node_id_from_another_address(factory, core, clock):
    assert factory.settings.auth == "open"
    first = Node(factory, "127.0.0.1")
    first.hello("edge-1", port=8080)
    first.send("HAVE " + H1)
    intruder = Node(factory, "127.0.0.2")
    assert intruder.hello("edge-1") == ["ERR 409 node edge-1 is registered from another address"]
    assert core.stats.failures[("line", "node_elsewhere")] == 1
    # The registered node keeps its connection, its entry and its address.
    assert not first.closed and first.read() == []
    assert first.send("PING") == ["PONG"]
    assert factory.sessions.get("edge-1").connection is first.protocol
    assert core.swarms[info_hash(1)].get(node_peer_id("edge-1")).ip == "127.0.0.1"
    # The refused connection may still register another id.
    assert intruder.hello("edge-2") == ["OK HELLO edge-2 entries=0"]


def test_open_mode_binding_lasts_while_the_entries_live(factory, core, clock):
    first = Node(factory, "127.0.0.1")
    first.hello("edge-1")
    first.send("HAVE " + H1)
    first.drop_connection()
    clock.advance(30)  # in its grace period: still bound
    assert Node(factory, "127.0.0.2").hello("edge-1") == [
        "ERR 409 node edge-1 is registered from another address"]
    clock.advance(30)  # the grace period is over and the entries gone: the id is free
    assert Node(factory, "127.0.0.2").hello("edge-1") == ["OK HELLO edge-1 entries=0"]


def test_token_mode_a_valid_token_takes_over_from_any_address(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(tokens={"edge-1": "s3cret"}))
    assert factory.settings.auth == "token"
    old = Node(factory, "127.0.0.1")
    old.hello("edge-1", token="s3cret")
    old.send("HAVE " + H1)
    new = Node(factory, "127.0.0.2")
    assert new.hello("edge-1", token="s3cret") == ["OK HELLO edge-1 entries=1"]
    assert old.read() == ["ERR 409 replaced by a new connection of node edge-1"] and old.closed
    assert core.swarms[info_hash(1)].get(node_peer_id("edge-1")).ip == "127.0.0.2"
    assert Node(factory, "127.0.0.3").hello("edge-1") == ["ERR 401 wrong or missing token for node edge-1"]


def test_a_token_added_through_the_admin_api_does_not_lock_other_nodes_out(factory, core):
    core.access.node_tokens["edge-9"] = "tok9"  # what the admin API does
    assert Node(factory).hello("edge-1") == ["OK HELLO edge-1 entries=0"]
    assert Node(factory, "10.0.0.2").hello("edge-9") == ["ERR 401 wrong or missing token for node edge-9"]
    proven = Node(factory, "10.0.0.3")
    assert proven.hello("edge-9", token="tok9") == ["OK HELLO edge-9 entries=0"]
    # Proven by its token, it may move even in open mode.
    assert Node(factory, "10.0.0.4").hello("edge-9", token="tok9") == ["OK HELLO edge-9 entries=0"]
    assert proven.read() == ["ERR 409 replaced by a new connection of node edge-9"]


def test_token_mode_needs_a_token_for_every_node(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(auth="token"))
    core.access.node_tokens["edge-1"] = "t"
    assert Node(factory).hello("edge-2") == ["ERR 401 wrong or missing token for node edge-2"]
    assert Node(factory).hello("edge-1", token="t") == ["OK HELLO edge-1 entries=0"]


def test_ip_option_needs_a_token(factory, core):
    node = Node(factory, "10.0.0.1")
    assert node.hello("edge-1", ip="192.0.2.99") == ["ERR 403 ip= needs a valid node token (or --allow-ip-param)"]
    assert core.stats.failures[("line", "ip_refused")] == 1
    assert len(factory.sessions) == 0 and not node.closed
    # Its own address is no claim on anyone else's.
    assert node.hello("edge-1", ip="10.0.0.1") == ["OK HELLO edge-1 entries=0"]


def test_ip_option_with_a_token_or_allow_ip_param(core, clock):
    core.access.node_tokens["edge-1"] = "t"
    factory = LineTrackerFactory(core, clock, LineDoorSettings())
    node = Node(factory)
    assert node.hello("edge-1", ip="192.0.2.99", token="t") == ["OK HELLO edge-1 entries=0"]
    node.send("HAVE " + H1)
    assert core.swarms[info_hash(1)].get(node_peer_id("edge-1")).ip == "192.0.2.99"
    factory = LineTrackerFactory(core, clock, LineDoorSettings(allow_ip_param=True))
    other = Node(factory)
    assert other.hello("edge-2", ip="192.0.2.98") == ["OK HELLO edge-2 entries=0"]
    assert factory.sessions.get("edge-2").ip == "192.0.2.98"


def test_silent_connection_is_closed_and_ping_keeps_it(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(idle_timeout_s=300))
    quiet, chatty = Node(factory), Node(factory)
    for _ in range(5):
        clock.advance(100)
        chatty.send("PING")
        factory.tick()
    assert quiet.closed and quiet.read() == ["ERR 408 idle for too long"]
    assert not chatty.closed


# -- flow control ---------------------------------------------------------------------------


def test_pipelining_without_reading_pauses_the_connection(factory):
    """When the transport's buffer fills it pauses us: no more lines are read
    (StringTransport records the pause instead of buffering forever)."""
    node = Node(factory)
    assert node.transport.producer is node.protocol
    node.protocol.pauseProducing()  # what the transport does when its buffer is full
    assert node.transport.producerState == "paused"
    node.protocol.dataReceived(b"PING\n" * 1000)
    assert node.transport.value() == b""
    node.protocol.resumeProducing()  # the client read its replies
    assert node.transport.value() == b"PONG\n" * 1000


def burst(core, clock, joins, swarm=1, first_peer=1):
    """`joins` BitTorrent peers join a swarm, one reactor turn each."""
    for n in range(first_peer, first_peer + joins):
        core.announce(announce_request(swarm=swarm, peer=n, port=7000 + n), 0.0)
        clock.advance(0)


def subscribed_watcher(core, clock, **settings):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(**settings))
    watcher = Node(factory)
    watcher.hello("watcher")
    watcher.send("SUBSCRIBE " + H1)
    watcher.send("SUBSCRIBE " + H2)
    return factory, watcher


def test_a_burst_to_a_slow_reader_coalesces_into_one_resync(core, clock):
    factory, watcher = subscribed_watcher(core, clock, max_event_backlog=2000)
    watcher.protocol.pauseProducing()  # its send buffer is full: it reads slowly
    burst(core, clock, 200)  # about 16,000 bytes of JOINs for H1
    burst(core, clock, 3, swarm=2, first_peer=500)  # a few for H2, after the bound was passed
    assert watcher.transport.value() == b""  # nothing written while it is not reading
    held = watcher.protocol.unsent_event_bytes
    assert held <= 2000
    clock.advance(30)
    factory.tick()
    watcher.protocol.resumeProducing()  # it read what was buffered
    assert not watcher.closed
    watcher.read()
    resyncs = [e for e in watcher.events if e.startswith("* RESYNC")]
    assert resyncs == ["* RESYNC " + H1]
    assert [e.split()[3:5] for e in watcher.events if e.startswith("* JOIN " + H2)] == [
        ["10.0.0.1", "7500"], ["10.0.0.1", "7501"], ["10.0.0.1", "7502"]]
    assert len(watcher.events) == 4
    assert factory.sessions.connection_stats.resyncs == 1
    assert ("line", "slow_reader") not in core.stats.failures
    # Afterwards, events flow one by one again.
    watcher.events.clear()
    burst(core, clock, 1, first_peer=900)
    watcher.read()
    assert watcher.events == ["* JOIN %s 10.0.0.1 7900 leecher door=http" % H1]


def test_a_burst_within_one_turn_is_bounded_too(core, clock):
    factory, watcher = subscribed_watcher(core, clock, max_event_backlog=2000)
    for n in range(1, 200):  # one reactor turn, no reading in between
        core.announce(announce_request(swarm=1, peer=n, port=7000 + n), 0.0)
    assert watcher.protocol.unsent_event_bytes <= 2000
    watcher.read()
    assert watcher.events[0] == "* RESYNC " + H1
    assert all(e.startswith("* JOIN " + H1) for e in watcher.events[1:])
    assert len(watcher.events) < 30


def test_a_subscriber_that_reads_nothing_at_all_is_dropped(core, clock):
    factory, watcher = subscribed_watcher(core, clock, max_event_backlog=2000,
                                          stall_timeout_s=60, idle_timeout_s=1000)
    watcher.protocol.pauseProducing()
    burst(core, clock, 200)
    for _ in range(59):
        clock.advance(1)
        factory.tick()
    assert not watcher.closed
    clock.advance(1)
    factory.tick()
    assert watcher.closed and watcher.transport.value() == b""
    assert core.stats.failures.get(("line", "slow_reader")) == 1
    assert factory.sessions.connection_stats.cut_off == 1
    burst(core, clock, 1, first_peer=900)
    assert watcher.transport.value() == b""  # nothing more for it


def test_a_paused_connection_without_events_waits_for_the_idle_timeout(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(stall_timeout_s=60, idle_timeout_s=300))
    node = Node(factory)
    node.protocol.pauseProducing()  # pipelined without reading; no subscription
    clock.advance(299)
    factory.tick()
    assert not node.closed
    clock.advance(1)
    factory.tick()
    assert node.closed and node.transport.value() == b""  # aborted: it does not read


def test_a_subscriber_that_catches_up_keeps_its_connection(core, clock):
    factory = LineTrackerFactory(core, clock, LineDoorSettings(max_event_backlog=2000))
    watcher = Node(factory)
    watcher.hello("watcher")
    watcher.send("SUBSCRIBE " + H1)
    for n in range(1, 60):
        if n % 10 == 1:
            watcher.protocol.pauseProducing()
        core.announce(announce_request(swarm=1, peer=n, port=7000 + n), 0.0)
        clock.advance(0)
        if n % 10 == 0:
            watcher.protocol.resumeProducing()  # it read what was waiting
    watcher.protocol.resumeProducing()
    assert not watcher.closed
    watcher.read()
    assert len(watcher.events) == 59


def test_line_auth_option_is_decided_at_start():
    from tracker.options import Options
    chosen = {}
    for name, argv in (("none", []), ("tokens", ["--node-token", "edge-1=s"]),
                       ("explicit", ["--line-auth", "open", "--node-token", "edge-1=s"])):
        options = Options()
        options.parseOptions(argv)
        chosen[name] = options["line-auth"]
    assert chosen == {"none": "open", "tokens": "token", "explicit": "open"}


def test_connection_that_never_reads_its_last_replies_is_aborted(factory, clock):
    node = Node(factory)
    assert node.send("QUIT") == ["OK BYE"]
    # Closing politely: the client has not read the reply.
    assert node.transport.disconnecting and not node.transport.disconnected
    clock.advance(299)
    factory.tick()
    assert not node.transport.disconnected
    clock.advance(2)
    factory.tick()
    assert node.transport.disconnected


def test_refusals_are_counted_by_door_and_a_reason_without_the_door_in_it(core, factory):
    node = Node(factory)
    assert node.send("FROB")[0].startswith("ERR 404")
    assert node.send("HAVE " + H1)[0].startswith("ERR 403 say HELLO first")
    assert node.hello("edge-1") == ["OK HELLO edge-1 entries=0"]
    core.access.add("deny", info_hash(2))
    assert node.send("HAVE " + info_hash(2).hex())[0].startswith("ERR 403")
    Node(factory).hello("edge-1")  # takes the id over: the old connection is told 409
    assert core.stats.failures == {("line", "unknown_command"): 1, ("line", "forbidden"): 1,
                                   ("line", "content_denied"): 1, ("line", "replaced"): 1}
