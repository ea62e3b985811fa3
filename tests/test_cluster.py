"""The cluster's parts without Redis: RESP parsing, the wire codec, applying remote
changes (no echo, last writer wins, TTL everywhere, completions once), the store's
hand-on log, shared UDP connection ids, and the --redis option."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from helpers import announce_request, info_hash, peer_id
from tracker.cluster.apply import RemoteApplier, unrecorded
from tracker.cluster.codec import (
    SEEDER_FLAG, decode_peers, decode_rare, encode_peers, encode_rare, parse_snapshot_row,
    snapshot_row,
)
from tracker.cluster.connection_ids import SharedConnectionIds
from tracker.cluster.replicator import StoreFeed, wire_part
from tracker.cluster.resp import RedisError, ReplyParser, encode_command
from tracker.cluster.link import RedisLink, parse_cluster_slots
from tracker.cluster.url import parse_redis_url, redacted
from tracker.core import EVENT_COMPLETED, EVENT_STOPPED, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import AccessRuleAdded, BanAdded, ModeSet, NodeTokenSet
from tracker.options import Options

TTL = 3600


def make_core(changes=None) -> TrackerCore:
    return TrackerCore(TrackerSettings(peer_ttl_s=TTL), changes=changes)


def ship(origin_log: ChangeLog, origin_core: TrackerCore, applier: RemoteApplier, at: float,
         origin: str = "a") -> None:
    """What the replicator does between two instances, without Redis."""
    batch = origin_log.take()
    data = encode_peers(batch, origin_core.compact_address)
    rare = encode_rare(batch)
    with unrecorded(applier.core):
        if rare:
            for item in decode_rare(rare):
                if isinstance(item, tuple):
                    applier.content(*item[1:])
                else:
                    applier.operator(item)
        for kind, h, p, detail in decode_peers(data):
            if kind == b"U":
                applier.upsert(origin, h, p, *detail)
            elif kind == b"S":
                applier.seen(origin, h, p, detail)
            elif kind == b"R":
                applier.removed(origin, h, p, at)
            else:
                applier.completed(h, p, detail)


def ports(core: TrackerCore, swarm: int = 1):
    s = core.swarms.get(info_hash(swarm))
    return sorted(v.port for v in s.views()) if s is not None else []


# -- RESP ---------------------------------------------------------------------------------


def test_reply_parser_handles_every_kind_split_anywhere():
    data = (b"+OK\r\n-ERR wrong\r\n:42\r\n$5\r\nhel\r\n\r\n$-1\r\n*2\r\n*1\r\n$1\r\na\r\n:7\r\n"
            b"*-1\r\n")
    for cut in range(len(data) + 1):
        parser = ReplyParser()
        replies = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert replies[0] == b"OK" and isinstance(replies[1], RedisError)
        assert replies[2:] == [42, b"hel\r\n", None, [[b"a"], 7], None]


def test_a_reply_of_an_unknown_kind_is_refused():
    with pytest.raises(RedisError):
        ReplyParser().feed(b"!what\r\n")


def test_commands_are_encoded_as_bulk_strings():
    assert encode_command([b"SET", "k", 1, 0.5]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n0.5\r\n")


# -- codec -----------------------------------------------------------------------------


def test_peer_records_round_trip_and_damage_is_an_error():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001, left=0), 10.0)
    core.announce(announce_request(peer=2, ip="2001:db8::2", port=7002, event=EVENT_COMPLETED), 11.0)
    core.announce(announce_request(peer=3, port=7003), 12.0)
    core.announce(announce_request(peer=3, port=7003, event=EVENT_STOPPED), 13.0)
    core.pin(info_hash(1), peer_id(1), float("inf"))
    data = encode_peers(changes.take(), core.compact_address)
    records = {(kind, p): detail for kind, _h, p, detail in decode_peers(data)}
    seen, flags, compact = records[(b"U", peer_id(1))]
    assert seen == float("inf") and flags & SEEDER_FLAG and compact == core.compact_address("10.0.0.1", 7001)
    assert records[(b"U", peer_id(2))][2] == core.compact_address("2001:db8::2", 7002)
    assert (b"R", peer_id(3)) in records and records[(b"C", peer_id(2))] == 11.0
    with pytest.raises(ValueError):
        list(decode_peers(data[:-3]))
    with pytest.raises(ValueError):
        list(decode_peers(b"Z" + data[1:]))


def test_rare_changes_round_trip():
    changes = ChangeLog()
    changes.operator_changed(AccessRuleAdded("deny", info_hash(3), "dmca", 5.0))
    changes.operator_changed(ModeSet("allow"))
    core = make_core(changes)
    core.describe_content(info_hash(4), "clip.mp4", 100, 6.0)
    items = decode_rare(encode_rare(changes.take()))
    assert ("content", info_hash(4), 6.0, "clip.mp4", 100) in items
    assert AccessRuleAdded("deny", info_hash(3), "dmca", 5.0) in items and ModeSet("allow") in items
    assert encode_rare(ChangeLog().take()) is None


def test_snapshot_rows_round_trip():
    row = snapshot_row(12.5, 2 | SEEDER_FLAG, b"\x0a\x00\x00\x01\x1b\x59")
    assert parse_snapshot_row(row) == (12.5, 2 | SEEDER_FLAG, b"\x0a\x00\x00\x01\x1b\x59")
    with pytest.raises(ValueError):
        parse_snapshot_row(row[:-1])


# -- applying ----------------------------------------------------------------------------


def test_a_remote_peer_is_served_and_not_recorded_again():
    log_a, log_b = ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    a.announce(announce_request(peer=1, port=7001), 100.0)
    ship(log_a, a, RemoteApplier(b, None, 65.0), 100.0)
    reply = b.announce(announce_request(peer=2, port=7002), 100.5)
    assert reply.peers == a.compact_address("10.0.0.1", 7001)
    # B's log holds only B's own peer: the copy of A's is never published by B.
    assert set(log_b.take().peers) == {(info_hash(1), peer_id(2))}
    # The copy keeps A's last-seen time, so it expires at B when it would at A.
    assert b.swarms[info_hash(1)].get(peer_id(1)).last_seen == 100.0


def test_the_latest_announce_wins_for_a_peer_that_moves_between_instances():
    log_a, log_b = ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    to_b, to_a = RemoteApplier(b, None, 65.0), RemoteApplier(a, None, 65.0)
    a.announce(announce_request(peer=1, port=7001), 100.0)
    b.announce(announce_request(peer=1, port=7009, left=0), 101.0)  # moved to B, later
    ship(log_a, a, to_b, 100.0)  # A's older state arrives late: ignored
    assert ports(b) == [7009] and b.swarms[info_hash(1)].seeders == 1
    ship(log_b, b, to_a, 101.0, origin="b")
    assert ports(a) == [7009] and a.swarms[info_hash(1)].seeders == 1


def test_a_stop_removes_the_copy_but_the_origins_expiry_does_not_drop_it_early():
    log_a, log_b = ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    to_b = RemoteApplier(b, None, 65.0)
    a.announce(announce_request(peer=1, port=7001), 100.0)
    a.announce(announce_request(peer=2, port=7002), 100.0)
    ship(log_a, a, to_b, 100.0)
    a.announce(announce_request(peer=1, port=7001, event=EVENT_STOPPED), 200.0)
    ship(log_a, a, to_b, 200.0)
    assert ports(b) == [7002]
    # A expires peer 2 a little early by B's reckoning (B heard a refresh A did
    # not, within one last-seen window): B leaves it to its own expiry.
    b.swarms[info_hash(1)].v4.set_seen(0, 130.0)
    list(a.expire(100.0 + TTL + 1, 1000))
    ship(log_a, a, to_b, 100.0 + TTL + 1)
    assert ports(b) == [7002]
    list(b.expire(130.0 + TTL + 1, 1000))
    assert ports(b) == []


def test_a_completion_counts_once_per_peer_across_instances():
    log_a, log_b = ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    store_b = ChangeLog()
    to_b = RemoteApplier(b, store_b, 65.0)
    a.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 10.0)
    ship(log_a, a, to_b, 10.0)
    b.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 20.0)  # same peer, at B
    ship(log_a, a, to_b, 20.0)
    assert b.scrape([info_hash(1)])[info_hash(1)].downloaded == 1
    assert [c[:2] for c in store_b.take().completions] == [(info_hash(1), peer_id(1))]
    assert to_b.completed_key(info_hash(1), b.swarms[info_hash(1)].completed_by[0]) is False


def test_operator_changes_apply_and_go_to_the_local_store_only():
    log_a, log_b, store_b = ChangeLog(), ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    to_b = RemoteApplier(b, store_b, 65.0)
    b.announce(announce_request(swarm=5, peer=1), 10.0)
    log_b.take()
    for change in (AccessRuleAdded("deny", info_hash(5), None, 11.0), BanAdded("192.0.2.0/24", None, 11.0),
                   NodeTokenSet("edge-1", "s3cret", 11.0)):
        log_a.operator_changed(change)
    ship(log_a, a, to_b, 11.0)
    assert info_hash(5) in b.access.denied and "192.0.2.0/24" in b.access.bans
    assert b.access.node_tokens == {"edge-1": "s3cret"}
    assert info_hash(5) not in b.swarms or not len(b.swarms[info_hash(5)])  # denied content left
    assert len(log_b) == 0  # nothing to publish again
    assert len(store_b.take().operator) == 3


def test_pinned_copies_of_a_dead_instance_start_to_age():
    log_a = ChangeLog()
    a, b = make_core(log_a), make_core()
    to_b = RemoteApplier(b, None, 65.0)
    a.announce(announce_request(peer=1, port=8080, door="line"), 10.0)
    a.pin(info_hash(1), peer_id(1), float("inf"))
    ship(log_a, a, to_b, 10.0)
    assert b.swarms[info_hash(1)].get(peer_id(1)).last_seen == float("inf")
    assert to_b.unpin_origin("a", 50.0) == 1
    assert b.swarms[info_hash(1)].get(peer_id(1)).last_seen == 50.0


# -- the store's log, fed by the replicator -----------------------------------------------


def test_absorb_lets_the_later_batch_win_and_keeps_everything_else():
    core_log = ChangeLog()
    core = make_core(core_log)
    feed = StoreFeed(core_log)
    core.announce(announce_request(peer=1, port=7001), 10.0)
    core.announce(announce_request(peer=2, port=7002), 10.0)
    feed.absorb(core_log.take())
    core.announce(announce_request(peer=1, port=7001, event=EVENT_STOPPED), 11.0)
    core.announce(announce_request(peer=2, port=7003, left=0, event=EVENT_COMPLETED), 12.0)
    feed.absorb(core_log.take())
    batch = feed.take()
    assert (info_hash(1), peer_id(1)) in batch.removed and (info_hash(1), peer_id(1)) not in batch.peers
    assert batch.peers[(info_hash(1), peer_id(2))][1] == 7003
    assert len(batch.completions) == 1


def test_the_wire_part_leaves_totals_and_node_rows_to_the_store():
    log = ChangeLog()
    log.totals((1, 0, 0, 0, 0, 0))
    log.node_seen("edge-1", "192.0.2.1", 8080, None, 1.0)
    assert wire_part(log.take()) is None


# -- UDP connection ids and options -------------------------------------------------------


def test_a_connection_id_from_one_instance_is_accepted_by_another_with_the_same_secret():
    clock = Clock()
    clock.advance(3600 * 300 - 15)  # just before a key rotation
    secret = b"s" * 32
    a = SharedConnectionIds(clock, lambda: secret)
    b = SharedConnectionIds(clock, lambda: secret)
    other = SharedConnectionIds(clock, lambda: b"t" * 32)
    connection_id = a.issue(b"\x0a\x00\x00\x01")
    assert b.check(connection_id, b"\x0a\x00\x00\x01")
    assert not b.check(connection_id, b"\x0a\x00\x00\x02")
    assert not other.check(connection_id, b"\x0a\x00\x00\x01")
    clock.advance(290)  # across the rotation, within its max age: still good at B
    assert b.check(connection_id, b"\x0a\x00\x00\x01")
    clock.advance(60)  # past its max age
    assert not b.check(connection_id, b"\x0a\x00\x00\x01")


def test_without_a_secret_yet_ids_are_this_process_own():
    clock = Clock()
    ids = SharedConnectionIds(clock, lambda: None)
    assert ids.check(ids.issue(b"\x0a\x00\x00\x01"), b"\x0a\x00\x00\x01")


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1", ("127.0.0.1", 6379, 0, False, None, None)),
    ("redis://cache.local:7000/3", ("cache.local", 7000, 3, False, None, None)),
    ("rediss://cache.local:6380", ("cache.local", 6380, 0, True, None, None)),
    ("rediss://:s%40cret@h/2", ("h", 6379, 2, True, None, "s@cret")),
    ("redis://tracker:pw@h", ("h", 6379, 0, False, "tracker", "pw")),
])
def test_redis_urls(url, expected):
    assert tuple(parse_redis_url(url)) == expected


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://h:99999", "redis://h/x",
                                 "redis://u@h", "rediss://h?ssl=1", "redis://h#x"])
def test_bad_redis_urls_are_one_line_errors(url):
    with pytest.raises(usage.UsageError, match="--redis"):
        Options().parseOptions(["--redis", url])


@pytest.mark.parametrize("url, shown", [
    ("rediss://:pw@h:6380/1", "rediss://:***@h:6380/1"),
    ("redis://user:pw@h", "redis://user:***@h"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_a_redis_password_is_never_shown(url, shown):
    assert redacted(url) == shown


@pytest.mark.parametrize("args, message", [
    (["--redis-cluster"], "--redis-cluster needs --redis"),
    (["--redis", "redis://h", "--redis-ca", "ca.pem"], "--redis-ca is for TLS"),
    (["--redis", "rediss://h", "--redis-key", "k.pem"], "--redis-key needs --redis-cert"),
])
def test_redis_options_that_only_make_sense_together(args, message):
    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(args)


def test_every_connection_authenticates_then_selects_its_database():
    link = RedisLink(parse_redis_url("redis://tracker:pw@h/3"))
    assert link.hello() == [[b"AUTH", "tracker", "pw"], [b"SELECT", 3]]
    assert RedisLink(parse_redis_url("redis://:pw@h")).hello() == [[b"AUTH", "pw"]]
    assert RedisLink(parse_redis_url("redis://h")).hello() == []


def test_rediss_with_a_ca_file_that_cannot_be_read_fails_at_start(tmp_path):
    with pytest.raises(ValueError, match="rediss://: cannot use the TLS files"):
        RedisLink(parse_redis_url("rediss://h"), ca_file=str(tmp_path / "missing.pem"))


def slots_reply(*ranges):
    return [[first, last] + [[host.encode(), port, b"id"] for host, port in nodes]
            for first, last, nodes in ranges]


def test_the_owner_of_the_tracker_slot_is_the_master_of_its_range():
    reply = slots_reply((0, 5460, [("10.0.0.1", 7000), ("10.0.0.4", 7003)]),
                        (5461, 10922, [("10.0.0.2", 7001)]),
                        (10923, 16383, [("10.0.0.3", 7002)]))
    found = parse_cluster_slots(reply, 6000)
    assert found.owner == ("10.0.0.2", 7001)
    assert found.nodes == [("10.0.0.1", 7000), ("10.0.0.4", 7003), ("10.0.0.2", 7001),
                           ("10.0.0.3", 7002)]
    with pytest.raises(ValueError, match="no node of the Redis Cluster serves slot 6000"):
        parse_cluster_slots(slots_reply((0, 5460, [("10.0.0.1", 7000)])), 6000)


def test_after_a_failure_the_next_cluster_node_is_tried_in_turn():
    from tracker.cluster.replicator import Replicator

    replicator = Replicator(make_core(ChangeLog()), ChangeLog(), Clock(), "redis://seed:1/0", "x")
    assert replicator._next_seed() == parse_redis_url("redis://seed:1/0")  # no cluster: the seed
    replicator.cluster_nodes = [("n1", 7000), ("n2", 7001)]
    replicator.address = replicator.address.at("n1", 7000)
    assert replicator._next_seed()[:2] == ("n2", 7001)
    replicator.address = replicator.address.at("n2", 7001)
    assert replicator._next_seed()[:2] == ("n1", 7000)


def test_without_redis_nothing_changes():
    options = Options()
    options.parseOptions([])
    assert options["redis"] is None and options["instance-id"] is None


class FakeRedis:
    """Answers a replicator's pipelines from canned replies (no network)."""

    def __init__(self, oldest: bytes) -> None:
        self.oldest = oldest
        self.commands = []

    def pipeline(self, commands):
        from twisted.internet.defer import succeed

        self.commands.extend(commands)
        replies = {b"XRANGE": [[self.oldest, [b"o", b"z"]]], b"XREAD": None, b"HGETALL": []}
        return [succeed(replies.get(c[0], 1)) for c in commands]


@pytest.mark.parametrize("oldest, reloaded", [(b"200-0", True), (b"100-0", False), (b"50-7", False)])
def test_an_instance_whose_position_was_trimmed_from_the_stream_loads_the_state_again(oldest, reloaded):
    from tracker.cluster.replicator import Replicator

    replicator = Replicator(make_core(ChangeLog()), ChangeLog(), Clock(), "redis://127.0.0.1:1/0", "x")
    loads = []
    replicator._load_at_start = lambda: loads.append(True)
    replicator._redis = FakeRedis(oldest)
    replicator.last_id = b"100-0"
    replicator.tick()
    assert bool(loads) is reloaded and replicator.stats.resyncs == int(reloaded)
    assert [c[0] for c in replicator._redis.commands][-2:] == [b"XRANGE", b"XREAD"]


def test_a_node_that_moved_here_keeps_its_entries_when_its_old_instance_lets_go():
    log_a, log_b = ChangeLog(), ChangeLog()
    a, b = make_core(log_a), make_core(log_b)
    to_b = RemoteApplier(b, None, 65.0)
    a.announce(announce_request(peer=1, port=8080, door="line"), 10.0)
    a.pin(info_hash(1), peer_id(1), float("inf"))
    ship(log_a, a, to_b, 10.0)
    # The node connects to B now: B's own entry, pinned by B.
    b.announce(announce_request(peer=1, port=8080, door="line"), 20.0)
    b.pin(info_hash(1), peer_id(1), float("inf"))
    to_b.local_changes(log_b.take())  # what B's replicator does with B's own batch
    # A lets its old session go: unpinned, then removed after its grace period.
    a.pin(info_hash(1), peer_id(1), 30.0)
    ship(log_a, a, to_b, 30.0)
    a.remove_peer(info_hash(1), peer_id(1))
    ship(log_a, a, to_b, 90.0)
    assert b.swarms[info_hash(1)].get(peer_id(1)).last_seen == float("inf")
    # ... and says so again, so that A gets the entry back.
    assert to_b.reassert == {(info_hash(1), peer_id(1))}


def test_a_copy_alone_in_its_swarm_stays_inline_and_watchers_see_it_join():
    core = make_core(ChangeLog())
    seen = []

    class Watcher:
        def swarm_changed(self, info_hash, peer, joined):
            seen.append((peer.peer_id, peer.port, joined))
    core.watch(info_hash(5), Watcher())
    to = RemoteApplier(core, None, 65.0)
    compact = bytes([10, 0, 0, 7]) + (7007).to_bytes(2, "big")
    with unrecorded(core):
        assert to.upsert("a", info_hash(5), peer_id(1), 100.0, 0, compact)
        swarm = core.swarms[info_hash(5)]
        assert swarm.solo is not None and core.peer_count == 1  # no pool for one peer
        assert not to.upsert("a", info_hash(5), peer_id(1), 90.0, 0, compact)  # older: ignored
        to.seen("a", info_hash(5), peer_id(1), 130.0)
        assert swarm.solo is not None and core.replica_seen(info_hash(5), peer_id(1)) == 130.0
        assert to.upsert("a", info_hash(5), peer_id(2), 131.0, 0x80, compact[:4] + b"\x1b\x5a")
    assert swarm.solo is None and len(swarm) == 2 and swarm.seeders == 1
    assert seen == [(peer_id(1), 7007, True), (peer_id(2), 7002, True)]
    assert core.changes.take().peers == {}  # nothing recorded for the store as this instance's
