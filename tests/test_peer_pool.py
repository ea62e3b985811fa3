"""The packed peer layout: pools of fixed-width records, checked against a plain model."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from helpers import announce_request, info_hash, peer_id
from tracker.addresses import compact_address
from tracker.core import NO_KEY, PeerPool, TrackerCore, TrackerSettings
from tracker.core.swarm import INDEX_AT, RECORD, Swarm


def check_pool(pool: PeerPool, model: dict) -> None:
    """The pool holds exactly the model's peers, seeders first, and finds each."""
    assert len(pool) == len(model)
    assert len(pool.recs) == RECORD * len(model)
    assert len(pool.addrs) == pool.addr_width * len(model)
    assert pool.seeders == sum(1 for v in model.values() if v[1])
    for pos in range(len(pool)):
        view = pool.view(pos)
        compact, seeder, seen, door, key = model[view.peer_id]
        assert (view.compact, view.seeder, view.last_seen) == (compact, seeder, seen)
        assert (pool.door(pos), pool.key(pos)) == (door, key)
        assert pool.find(view.peer_id) == pos
    if len(pool) > INDEX_AT:
        assert pool.index is not None
    if pool.index is not None:
        assert len(pool) >= INDEX_AT // 2
        assert pool.index == {pool.peer_id(p): p for p in range(len(pool))}


operations = st.lists(st.tuples(st.sampled_from(["add", "remove", "flip", "move", "seen",
                                                 "refresh"]),
                                st.integers(0, 400), st.booleans()), max_size=600)


@settings(max_examples=60, deadline=None)
@given(operations, st.integers(0, 2 ** 32))
def test_pool_matches_a_plain_dict_model_through_any_changes(ops, seed):
    rng = random.Random(seed)
    pool = PeerPool(6)
    model = {}
    for n, (op, who, flag) in enumerate(ops):
        pid = peer_id(who)
        pos = pool.find(pid)
        assert (pos >= 0) == (pid in model)
        if op == "add" and pos < 0:
            compact = compact_address("10.0.%d.%d" % (who // 256, who % 256), 1000 + who)
            key = (who * 2654435761) % 2 ** 32 if who % 3 else 0
            pool.add(pid, compact, float(n), n % 3, flag, rng, key)
            model[pid] = (compact, flag, float(n), n % 3, key)
        elif pos < 0:
            continue
        elif op == "remove":
            pool.remove(pos)
            del model[pid]
        elif op == "flip":
            new = pool.set_seeder(pos, flag, rng)
            assert pool.peer_id(new) == pid and (new < pool.seeders) == flag
            model[pid] = (model[pid][0], flag) + model[pid][2:]
        elif op == "move":
            compact = compact_address("192.168.1.%d" % (who % 256), 2000 + n)
            _, seeder, seen, door, key = model[pid]
            assert pool.refresh(pos, compact, seen, door, seeder, NO_KEY, rng) == pos
            model[pid] = (compact,) + model[pid][1:]
        elif op == "refresh":
            compact = compact_address("10.3.0.%d" % (n % 256), 3000 + n)
            key = n * 7 if flag else 0
            new = pool.refresh(pos, compact, float(n), 2, flag, key, rng)
            assert pool.peer_id(new) == pid and (new < pool.seeders) == flag
            model[pid] = (compact, flag, float(n), 2, key or model[pid][4])
        else:
            pool.set_seen(pos, float("inf"))
            model[pid] = model[pid][:2] + (float("inf"),) + model[pid][3:]
    check_pool(pool, model)


def test_a_large_pool_keeps_an_index_and_drops_it_when_small_again():
    rng = random.Random(1)
    pool = PeerPool(6)
    model = {}
    for n in range(INDEX_AT + 10):
        compact = compact_address("10.1.0.1", 1000 + n)
        pool.add(peer_id(n), compact, 0.0, 0, n % 2 == 0, rng)
        model[peer_id(n)] = (compact, n % 2 == 0, 0.0, 0, 0)
    assert pool.index is not None
    check_pool(pool, model)
    for n in range(INDEX_AT):
        pool.remove(pool.find(peer_id(n)))
        del model[peer_id(n)]
    assert pool.index is None
    check_pool(pool, model)


def test_an_id_matching_across_two_records_is_not_found():
    pool = PeerPool(6)
    rng = random.Random(2)
    pool.add(b"A" * 10 + b"B" * 10, compact_address("10.0.0.1", 1), 0.0, 0, False, rng)
    pool.add(b"C" * 10 + b"D" * 10, compact_address("10.0.0.2", 2), 0.0, 0, False, rng)
    straddling = bytes(pool.recs[10:30])
    assert pool.find(straddling) == -1
    tail_and_next_id = bytes(pool.recs[RECORD - 10:RECORD + 10])
    assert pool.find(tail_and_next_id) == -1


@given(st.integers(0, 60), st.integers(0, 60), st.integers(-1, 70), st.integers(0, 2 ** 32))
def test_window_gives_count_distinct_positions_inside_the_range_without_skip(
        size, count, skip, seed):
    pool = PeerPool(6)
    lo, hi = 5, 5 + size
    ranges = pool.window(lo, hi, count, skip, random.Random(seed))
    positions = [p for a, b in ranges for p in range(a, b)]
    available = size - (lo <= skip < hi)
    assert len(positions) == min(count, max(available, 0))
    assert len(set(positions)) == len(positions)
    assert all(lo <= p < hi and p != skip for p in positions)


def test_window_is_fair_to_every_peer_but_the_requester():
    pool = PeerPool(6)
    rng = random.Random(3)
    hits = [0] * 20
    for _ in range(19000):
        for a, b in pool.window(0, 20, 5, 7, rng):
            for p in range(a, b):
                hits[p] += 1
    assert hits[7] == 0
    others = hits[:7] + hits[8:]
    # 19,000 draws of 5 from 19: 5,000 each.
    assert min(others) > 4600 and max(others) < 5400


def core_with(peers):
    core = TrackerCore(TrackerSettings(), rng=random.Random(5))
    for n, ip in peers:
        core.announce(announce_request(peer=n, ip=ip, port=7000 + n), 0.0)
    return core


def test_http_gets_both_families_in_proportion_and_udp_only_its_own():
    core = core_with([(n, "10.0.0.%d" % n) for n in range(1, 61)]
                     + [(n, "2001:db8::%x" % n) for n in range(61, 81)])
    swarm = core.swarms[info_hash(1)]
    assert (len(swarm.v4), len(swarm.v6)) == (60, 20)
    both = core.announce(announce_request(peer=500, numwant=40), 1.0)
    v4, v6 = len(both.peers) // 6, len(both.peers6) // 18
    assert v4 + v6 == 40 and 28 <= v4 <= 32
    only4 = core.announce(announce_request(peer=501, numwant=40, family=4), 1.0)
    assert (len(only4.peers), only4.peers6) == (40 * 6, b"")
    only6 = core.announce(announce_request(peer=502, numwant=40, family=6), 1.0)
    assert (only6.peers, len(only6.peers6)) == (b"", 20 * 18)


def test_a_peer_that_changes_family_is_moved_not_doubled():
    core = core_with([(1, "10.0.0.1"), (2, "10.0.0.2")])
    core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001, key=11), 1.0)
    core.announce(announce_request(peer=1, ip="2001:db8::1", port=7001, key=11), 1.0)
    swarm = core.swarms[info_hash(1)]
    assert (len(swarm.v4), len(swarm.v6), core.peer_count, len(swarm)) == (1, 1, 2, 2)
    assert swarm.get(peer_id(1)).ip == "2001:db8::1"


def test_compact_reply_is_the_chosen_peers_addresses():
    core = core_with([(n, "10.0.0.%d" % n) for n in range(1, 6)])
    result = core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001), 1.0)
    got = {result.peers[i:i + 6] for i in range(0, len(result.peers), 6)}
    assert got == {compact_address("10.0.0.%d" % n, 7000 + n) for n in range(2, 6)}


def test_a_swarm_with_no_peers_is_still_truthy():
    # Code that looks swarms up with dict.get() must not mistake an empty one for none.
    assert Swarm(info_hash(1))


def test_append_keeps_seeders_first_and_every_peer_findable():
    pool = PeerPool(6)
    model = {}
    for n in range(INDEX_AT + 40):  # past the size that builds the index
        compact = compact_address("10.2.0.1", 2000 + n)
        seeder = n % 3 == 0
        pool.append(peer_id(n), compact, float(n), 1, seeder)
        model[peer_id(n)] = (compact, seeder, float(n), 1, 0)
    check_pool(pool, model)


# -- a swarm of one peer keeps it inline ---------------------------------------------------


def test_a_swarm_of_one_peer_holds_it_inline_until_a_second_comes():
    core = TrackerCore(TrackerSettings(), rng=random.Random(5))
    first = core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001, left=0, key=9),
                          100.0)
    assert (first.complete, first.incomplete, first.peers) == (1, 0, b"")
    swarm = core.swarms[info_hash(1)]
    assert swarm.solo is not None and (swarm._v4, swarm._v6) == (None, None)
    assert (swarm.first_seen, len(swarm), swarm.seeders) == (100.0, 1, 1)
    # A re-announce keeps it inline, with the new time and state.
    core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001, left=5), 150.0)
    view = swarm.get(peer_id(1))
    assert (view.last_seen, view.seeder, swarm.solo is not None) == (150.0, False, True)
    second = core.announce(announce_request(peer=2, ip="10.0.0.2", port=7002), 160.0)
    assert second.peers == compact_address("10.0.0.1", 7001)
    assert swarm.solo is None and len(swarm.v4) == 2 and swarm.first_seen == 100.0
    # The key given at first still owns the entry after it moved into a pool.
    core.announce(announce_request(peer=1, ip="10.9.9.9", port=7001, left=5, key=9), 170.0)
    assert swarm.get(peer_id(1)).ip == "10.9.9.9"


def test_the_expiry_sweep_puts_a_swarm_left_with_one_peer_back_inline():
    core = TrackerCore(TrackerSettings(peer_ttl_s=100), rng=random.Random(5))
    core.announce(announce_request(peer=1, ip="2001:db8::1", port=7001, left=0), 10.0)
    core.announce(announce_request(peer=2, ip="10.0.0.2", port=7002), 20.0)
    core.announce(announce_request(peer=1, ip="2001:db8::1", port=7001, left=0), 90.0)
    swarm = core.swarms[info_hash(1)]
    assert swarm.solo is None
    assert list(core.expire(125.0, 10)) == [1]
    assert swarm.solo is not None and (swarm._v4, swarm._v6) == (None, None)
    view = swarm.get(peer_id(1))
    assert (view.ip, view.port, view.seeder, view.last_seen) == ("2001:db8::1", 7001, True, 90.0)
    assert (swarm.first_seen, core.peer_count, len(swarm)) == (10.0, 1, 1)
    assert list(core.expire(195.0, 10)) == [1]
    assert info_hash(1) not in core.swarms and core.peer_count == 0


def test_every_way_in_from_outside_sees_the_inline_peer_as_a_pool():
    core = TrackerCore(TrackerSettings(), rng=random.Random(5))
    core.announce(announce_request(peer=1, ip="10.0.0.1", port=7001), 5.0)
    swarm = core.swarms[info_hash(1)]
    assert [v.peer_id for v in core.peers(info_hash(1), 10)] == [peer_id(1)]
    assert core.peers(info_hash(1), 10, requester_id=peer_id(1)) == []
    assert swarm.solo is not None  # looking did not make a pool
    pool, pos = swarm.locate(peer_id(1))
    assert pool is swarm.v4 and pool.seen(pos) == 5.0 and swarm.solo is None
    assert swarm.demote() and swarm.solo is not None
    core.pin(info_hash(1), peer_id(1), float("inf"))
    assert swarm.get(peer_id(1)).last_seen == float("inf") and swarm.solo is not None
    assert core.remove_peer(info_hash(1), peer_id(1))
    assert (len(swarm), core.peer_count, swarm.first_seen) == (0, 0, 5.0)


def test_a_restored_peer_alone_in_its_swarm_is_held_inline():
    core = TrackerCore(TrackerSettings(), rng=random.Random(5))
    swarm = core.restore_swarm(info_hash(1), 3.0, 2, "name", 10)
    core.restore_peer(swarm, peer_id(1), "10.0.0.1", 7001, 0, 4.0, "udp")
    assert swarm.solo is not None and swarm._more[4] is None  # the solo peer holds it
    assert (swarm.first_seen, swarm.completed, swarm.name, swarm.size) == (3.0, 2, "name", 10)
    view = swarm.get(peer_id(1))
    assert (view.door, view.seeder, view.last_seen) == ("udp", True, 4.0)
    core.restore_peer(swarm, peer_id(2), "10.0.0.2", 7002, 5, 4.0, "http")
    assert swarm.solo is None and (len(swarm), swarm.seeders, core.peer_count) == (2, 1, 2)
