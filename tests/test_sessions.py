"""The session registry (tracker/sessions.py): connection-bound entries, grace
period, reconnect, takeover, the address binding and the entry cap, without any door."""
from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from helpers import announce_request, info_hash
from tracker.core import ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import NodeSeen
from tracker.sessions import SessionRefused, SessionRegistry

H1, H2 = info_hash(1), info_hash(2)
PEER_ID = b"-CDN000-" + b"a" * 12


class Handle:
    """A door's connection as the registry sees it: something to close."""

    def __init__(self):
        self.closed_with = None

    def close(self, code, message):
        self.closed_with = (code, message)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def core():
    return TrackerCore(TrackerSettings(), rng=random.Random(3))


@pytest.fixture
def registry(core, clock):
    return SessionRegistry(core, clock, grace_s=60, max_entries=3)


def attach(registry, connection, origin="10.0.0.1", anywhere=False, session_id="edge-1",
           ip=None, port=8080, region=None):
    return registry.attach(session_id, PEER_ID, connection, ip or origin, port, region, origin,
                           anywhere=anywhere)


def test_entries_are_pinned_while_connected_and_kept_for_the_grace_period(registry, core, clock):
    first = Handle()
    session, kept = attach(registry, first)
    assert kept == 0 and registry.get("edge-1") is session and registry.by_peer_id(PEER_ID) is session
    registry.set_entry(session, H1, left=0)
    for _ in core.expire(1e9, 1000):
        pass
    assert PEER_ID in core.swarms[H1]  # pinned: no expiry while connected
    registry.detach(session, first)
    assert not session.connected and registry.connected() == 0
    clock.advance(59)
    again, kept = attach(registry, Handle())
    assert (again, kept) == (session, 1)
    clock.advance(120)
    assert PEER_ID in core.swarms[H1]


def test_grace_over_removes_the_entries_and_the_session(registry, core, clock):
    handle = Handle()
    session, _ = attach(registry, handle)
    registry.set_entry(session, H1, left=1)
    registry.detach(session, handle)
    clock.advance(60)
    assert PEER_ID not in core.swarms[H1]
    assert "edge-1" not in registry and registry.by_peer_id(PEER_ID) is None
    assert registry.entry_count() == 0


def test_a_newer_connection_takes_over_and_the_older_ones_close_changes_nothing(registry, clock):
    old, new = Handle(), Handle()
    session, _ = attach(registry, old)
    attach(registry, new)
    assert old.closed_with == (409, "replaced by a new connection of node edge-1")
    registry.detach(session, old)  # the old connection's close arrives later
    assert session.connection is new and session.grace is None


def test_an_id_stays_bound_to_its_address_unless_the_caller_allows_anywhere(registry, core, clock):
    first = Handle()
    session, _ = attach(registry, first, origin="127.0.0.1")
    registry.set_entry(session, H1, left=0)
    with pytest.raises(SessionRefused) as refused:
        attach(registry, Handle(), origin="127.0.0.2")
    assert (refused.value.code, refused.value.reason) == (409, "node_elsewhere")
    assert refused.value.message == "node edge-1 is registered from another address"
    assert session.connection is first and first.closed_with is None
    assert core.swarms[H1].get(PEER_ID).ip == "127.0.0.1"
    # Also during the grace period, but no longer after it.
    registry.detach(session, first)
    with pytest.raises(SessionRefused):
        attach(registry, Handle(), origin="127.0.0.2")
    clock.advance(60)
    assert attach(registry, Handle(), origin="127.0.0.2")[1] == 0


def test_a_takeover_from_anywhere_moves_the_entries(registry, core):
    session, _ = attach(registry, Handle(), origin="127.0.0.1")
    registry.set_entry(session, H1, left=0)
    attach(registry, Handle(), origin="127.0.0.2", anywhere=True)
    assert core.swarms[H1].get(PEER_ID).ip == "127.0.0.2"
    assert session.origin == "127.0.0.2"


def test_entry_cap(registry, core):
    session, _ = attach(registry, Handle())
    for n in range(3):
        registry.set_entry(session, info_hash(n), left=0)
    registry.set_entry(session, info_hash(0), left=1)  # an entry it has: not a new one
    with pytest.raises(SessionRefused) as refused:
        registry.set_entry(session, info_hash(9), left=0)
    assert refused.value.reason == "node_entry_cap"
    assert refused.value.message == "at most 3 entries per node: DROP some first"
    assert info_hash(9) not in core.swarms
    registry.drop_entry(session, info_hash(1))
    registry.set_entry(session, info_hash(9), left=0)


def test_peers_for_puts_the_same_region_first(registry, core):
    for n in range(20):
        core.announce(announce_request(swarm=1, peer=n, ip="192.0.2.%d" % (n + 1), left=0), 0.0)
    near = registry.attach("near", b"-CDN000-" + b"n" * 12, Handle(), "10.0.0.2", 1, "eu", "10.0.0.2")[0]
    registry.set_entry(near, H1, left=0)
    asker = registry.attach("asker", b"-CDN000-" + b"q" * 12, Handle(), "10.0.0.3", 1, "eu", "10.0.0.3")[0]
    registry.set_entry(asker, H1, left=1)
    peers = registry.peers_for(asker, H1, 5)
    assert len(peers) == 5 and peers[0].ip == "10.0.0.2"
    assert all(p.peer_id != asker.peer_id for p in peers)
    assert registry.peers_for(asker, H2, 5) == [] and registry.peers_for(asker, H1, 0) == []


def test_node_records_go_to_the_change_log(clock):
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(), changes=changes)
    registry = SessionRegistry(core, clock)
    handle = Handle()
    clock.advance(5)
    session, _ = attach(registry, handle, region="eu")
    assert [c for c in changes.take() if isinstance(c, NodeSeen)] == [
        NodeSeen("edge-1", "10.0.0.1", 8080, "eu", 5.0)]
    clock.advance(5)
    registry.detach(session, handle)
    assert [c for c in changes.take() if isinstance(c, NodeSeen)] == [
        NodeSeen("edge-1", "10.0.0.1", 8080, "eu", 10.0)]


def test_metrics_read_the_registry(registry):
    from tracker.admin.metrics import line_metrics
    session, _ = attach(registry, Handle())
    registry.set_entry(session, H1, left=0)
    registry.connection_stats.open = 2
    registry.connection_stats.resyncs = 3
    figures = {family.name: family.samples[0].value for family in line_metrics(registry)}
    assert figures == {"tracker_line_connections": 2, "tracker_line_nodes": 1,
                       "tracker_line_connected_nodes": 1, "tracker_line_entries": 1,
                       "tracker_line_resyncs": 3, "tracker_line_cut_off": 0}


def test_coming_back_at_a_new_port_drops_only_the_entries_now_refused(registry, core, clock):
    first = Handle()
    session, _ = attach(registry, first, port=8080)
    registry.set_entry(session, H1, left=0)
    registry.set_entry(session, H2, left=0)
    registry.detach(session, first)
    core.access.add("deny", H1)  # denied while the node was away
    again, kept = attach(registry, Handle(), port=9090)
    # The node is back: the refused entry left its swarm, the other moved.
    assert again is session and again.connected and kept == 1
    assert H1 not in session.entries and (H1 not in core.swarms or PEER_ID not in core.swarms[H1])
    assert core.swarms[H2].get(PEER_ID).port == 9090
    clock.advance(1000)
    assert PEER_ID in core.swarms[H2]  # pinned again, no grace timer left behind


# -- with --redis: node ids bound across instances (tracker/cluster/nodes.py) ----------


def two_instances(clock):
    """Registries of instances a and b, their bindings wired as the service
    wires them, and a `ship` that carries a's published bindings to b and back."""
    from tracker.cluster.nodes import NodeBindings

    registries = {}
    for name in ("a", "b"):
        registry = SessionRegistry(TrackerCore(TrackerSettings(), rng=random.Random(3)), clock,
                                   grace_s=60)
        registry.bindings = NodeBindings(name)
        registry.bindings.on_taken = registry.taken_elsewhere
        registries[name] = registry

    def ship(source, target):
        field, _ = registries[source].bindings.commands(registries[source].bindings.take())
        if field is not None:
            registries[target].bindings.apply(source, field)
    return registries["a"], registries["b"], ship


def test_an_id_registered_at_another_instance_is_refused_from_another_address(core, clock):
    a, b, ship = two_instances(clock)
    at_a = Handle()
    attach(a, at_a, origin="127.0.0.1")
    ship("a", "b")
    with pytest.raises(SessionRefused) as refused:
        attach(b, Handle(), origin="127.0.0.2")
    assert (refused.value.code, refused.value.reason) == (409, "node_elsewhere")
    assert "edge-1" not in b and at_a.closed_with is None
    # From a token-proven connection, or from the same address (the node moved), it may.
    assert attach(b, Handle(), origin="127.0.0.2", anywhere=True)[1] == 0


def test_an_id_that_moves_to_another_instance_closes_its_older_connection(core, clock):
    a, b, ship = two_instances(clock)
    at_a = Handle()
    attach(a, at_a, origin="127.0.0.1")
    ship("a", "b")
    attach(b, Handle(), origin="127.0.0.1")
    ship("b", "a")
    assert at_a.closed_with == (409, "replaced by a new connection of node edge-1 at instance b")
    # A's session is in its grace period (the door forgets a closed connection),
    # and when that is over the id is released at A too.
    assert a.get("edge-1").connection is None
    clock.advance(60)
    assert "edge-1" not in a and a.bindings.take() == {"edge-1": None}


def test_an_id_released_at_its_instance_is_free_everywhere(core, clock):
    a, b, ship = two_instances(clock)
    at_a = Handle()
    session, _ = attach(a, at_a, origin="127.0.0.1")
    ship("a", "b")
    a.detach(session, at_a)
    clock.advance(60)  # the grace period: the session is over
    ship("a", "b")
    assert b.bindings.remote == {}
    assert attach(b, Handle(), origin="127.0.0.2")[1] == 0


def test_a_restarted_instance_voids_what_it_held_before(core, clock):
    from tracker.cluster.nodes import NodeBindings

    a, b, ship = two_instances(clock)
    attach(a, Handle(), origin="127.0.0.1")
    ship("a", "b")
    a.bindings = NodeBindings("a")  # a new process under the same instance id
    ship("a", "b")
    assert b.bindings.remote == {}
    field, commands = NodeBindings("a").commands({"*": None, "edge-2": "10.0.0.2"})
    assert commands == [[b"DEL", b"{tracker}:nodes:a"], [b"HSET", b"{tracker}:nodes:a", "edge-2",
                                                         "10.0.0.2"]]


def test_bindings_of_a_silent_instance_are_dropped_and_a_failed_publish_is_retried(core, clock):
    from tracker.cluster.nodes import NodeBindings

    bindings = NodeBindings("b")
    bindings.apply("a", b'[["edge-1", "127.0.0.1"], ["edge-2", "127.0.0.2"]]')
    bindings.apply("c", b'[["edge-3", "127.0.0.3"]]')
    assert bindings.forget_instance("a") == 2 and list(bindings.remote) == ["edge-3"]
    with pytest.raises(ValueError):
        bindings.apply("a", b'[["edge-1", 5]]')
    out = bindings.take()
    bindings.bound("edge-9", "10.0.0.9")
    bindings.give_back(out)
    assert list(bindings.take()) == ["*", "edge-9"]
