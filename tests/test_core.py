"""The core's rules: announce, peer selection, counts, completed, scrape, expiry."""
from __future__ import annotations

import random

import pytest

from helpers import announce_request, info_hash, peer_id
from tracker.addresses import in_networks, normalise_ip
from tracker.cache import BoundedCache
from tracker.core import (
    EVENT_COMPLETED, EVENT_STARTED, EVENT_STOPPED, TrackerCore, TrackerError,
    TrackerSettings,
)
from tracker.core.changes import ChangeLog
from tracker.core.swarm import completion_key


def make_core(**settings) -> TrackerCore:
    return TrackerCore(TrackerSettings(**settings), rng=random.Random(7))


def fill(core, swarm=1, seeders=0, leechers=0, now=0.0, start=1000):
    n = start
    for _ in range(seeders):
        core.announce(announce_request(swarm, n, left=0, port=1000 + n % 60000), now)
        n += 1
    for _ in range(leechers):
        core.announce(announce_request(swarm, n, left=5, port=1000 + n % 60000), now)
        n += 1


def listed(core, now, **request):
    """Announce asking for BEP 3's list form; returns (result, chosen peers as views)."""
    result = core.announce(announce_request(compact=False, **request), now)
    return result, result.peer_list or []


def test_first_announce_creates_swarm_and_counts_the_peer():
    core = make_core()
    result = core.announce(announce_request(left=10, event=EVENT_STARTED), 0.0)
    assert (result.complete, result.incomplete) == (0, 1)
    assert (result.peers, result.peers6, result.peer_list) == (b"", b"", None)
    assert core.peer_count == 1
    assert info_hash(1) in core.swarms


def test_reply_carries_the_configured_intervals():
    core = make_core(interval_s=600, min_interval_s=300)
    result = core.announce(announce_request(), 0.0)
    assert (result.interval_s, result.min_interval_s) == (600, 300)


def test_requester_is_never_returned_to_itself():
    core = make_core()
    fill(core, seeders=3, leechers=3)
    for n in range(1000, 1006):
        _, peers = listed(core, 1.0, peer=n, left=5, port=1000 + n)
        assert len(peers) == 5
        assert peer_id(n) not in [p.peer_id for p in peers]


def test_requester_never_gets_itself_in_a_large_sampled_swarm():
    core = make_core()
    fill(core, leechers=300)
    for _ in range(50):
        _, peers = listed(core, 1.0, peer=1000, left=5, port=2000, numwant=200)
        assert len(peers) == 200
        assert peer_id(1000) not in [p.peer_id for p in peers]
        assert len({p.peer_id for p in peers}) == 200


def test_seeder_gets_no_seeders():
    core = make_core()
    fill(core, seeders=20, leechers=5)
    _, peers = listed(core, 1.0, peer=1, left=0)
    assert len(peers) == 5
    assert not any(p.seeder for p in peers)


def test_seeder_gets_no_seeders_in_a_large_swarm():
    core = make_core()
    fill(core, seeders=500, leechers=100)
    _, peers = listed(core, 1.0, peer=1, left=0, numwant=50)
    assert len(peers) == 50
    assert not any(p.seeder for p in peers)


def test_leecher_gets_seeders_and_leechers():
    core = make_core()
    fill(core, seeders=2, leechers=2)
    result, peers = listed(core, 1.0, peer=1, left=9)
    assert sorted(p.seeder for p in peers) == [False, False, True, True]
    assert (result.complete, result.incomplete) == (2, 3)


def test_numwant_defaults_to_50_and_is_capped():
    core = make_core(default_numwant=50, max_numwant=200)
    fill(core, leechers=400)
    assert len(core.announce(announce_request(peer=1), 1.0).peers) == 50 * 6
    assert len(core.announce(announce_request(peer=1, numwant=-1), 1.0).peers) == 50 * 6
    assert len(core.announce(announce_request(peer=1, numwant=1000), 1.0).peers) == 200 * 6
    assert len(core.announce(announce_request(peer=1, numwant=7), 1.0).peers) == 7 * 6
    assert core.announce(announce_request(peer=1, numwant=0), 1.0).peers == b""


def test_sample_is_fair_across_the_swarm():
    """Every peer of a 100-peer swarm turns up about equally often in 10-peer samples."""
    core = make_core()
    fill(core, leechers=100)
    seen = {}
    rounds = 4000
    for _ in range(rounds):
        for p in listed(core, 1.0, peer=1, numwant=10)[1]:
            seen[p.peer_id] = seen.get(p.peer_id, 0) + 1
    assert len(seen) == 100
    expected = rounds * 10 / 100  # 400 per peer
    assert min(seen.values()) > expected * 0.75
    assert max(seen.values()) < expected * 1.25


def test_peer_moves_from_leecher_to_seeder():
    core = make_core()
    core.announce(announce_request(peer=1, left=10), 0.0)
    result = core.announce(announce_request(peer=1, left=0), 1.0)
    assert (result.complete, result.incomplete) == (1, 0)
    swarm = core.swarms[info_hash(1)]
    assert (swarm.seeders, swarm.leechers) == (1, 0)
    assert swarm.get(peer_id(1)).seeder


def test_reannounce_updates_address_and_counters():
    core = make_core()
    core.announce(announce_request(peer=1, ip="10.0.0.1", port=1000, key=77), 0.0)
    core.announce(announce_request(peer=1, ip="10.0.0.2", port=2000, uploaded=5, downloaded=7,
                                   key=77), 3.0)
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert (peer.ip, peer.port, peer.last_seen) == ("10.0.0.2", 2000, 3.0)
    assert peer.compact == bytes([10, 0, 0, 2]) + (2000).to_bytes(2, "big")
    assert core.peer_count == 1


# -- who may change an entry ----------------------------------------------------------


def refused_as_not_owner(core, request, now=5.0):
    before = [(v.peer_id, v.compact, v.seeder, v.last_seen)
              for s in core.swarms.values() for v in s.views()]
    announces = dict(core.stats.announces)
    with pytest.raises(TrackerError) as refused:
        core.announce(request, now)
    assert refused.value.code == "peer_not_owner"
    assert [(v.peer_id, v.compact, v.seeder, v.last_seen)
            for s in core.swarms.values() for v in s.views()] == before
    assert core.stats.announces == announces


@pytest.mark.parametrize("stranger", ["127.0.0.2", "::1"])
def test_a_stop_or_a_repoint_from_another_address_is_refused(stranger):
    core = make_core()
    core.announce(announce_request(peer=1, ip="127.0.0.1", port=6881, key=1234), 0.0)
    refused_as_not_owner(core, announce_request(peer=1, ip=stranger, event=EVENT_STOPPED))
    refused_as_not_owner(core, announce_request(peer=1, ip=stranger, port=9999))
    refused_as_not_owner(core, announce_request(peer=1, ip=stranger, port=9999, key=4321))
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "127.0.0.1"


def test_an_entry_without_a_key_is_bound_to_its_address():
    core = make_core()
    core.announce(announce_request(peer=1, ip="127.0.0.1"), 0.0)
    refused_as_not_owner(core, announce_request(peer=1, ip="127.0.0.2", key=99))
    refused_as_not_owner(core, announce_request(peer=1, ip="127.0.0.2"))


def test_the_owner_may_change_port_state_and_key_from_its_address():
    core = make_core()
    core.announce(announce_request(peer=1, ip="127.0.0.1", port=1000, key=5), 0.0)
    core.announce(announce_request(peer=1, ip="127.0.0.1", port=2000, left=0, key=6), 1.0)
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert (peer.port, peer.seeder) == (2000, True)
    refused_as_not_owner(core, announce_request(peer=1, ip="127.0.0.2", key=5))
    core.announce(announce_request(peer=1, ip="127.0.0.2", key=6), 2.0)  # the newest key
    core.announce(announce_request(peer=1, ip="127.0.0.2", event=EVENT_STOPPED), 3.0)
    assert core.peer_count == 0


@pytest.mark.parametrize("moved_to", ["127.0.0.2", "::1"])
def test_a_client_whose_address_changed_keeps_its_entry_with_its_key(moved_to):
    core = make_core()
    core.announce(announce_request(peer=1, ip="127.0.0.1", key=0xDEADBEEF), 0.0)
    core.announce(announce_request(peer=2, ip="127.0.0.9"), 0.0)
    result = core.announce(announce_request(peer=1, ip=moved_to, key=0xDEADBEEF), 1.0)
    assert (result.incomplete, core.peer_count) == (2, 2)
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == moved_to
    # Bound to the new address now: the old one is a stranger.
    refused_as_not_owner(core, announce_request(peer=1, ip="127.0.0.1", event=EVENT_STOPPED))
    core.announce(announce_request(peer=1, ip=moved_to, event=EVENT_STOPPED), 2.0)
    assert core.peer_count == 1


def test_cdn_node_entries_follow_their_node_whatever_its_address():
    core = make_core()
    core.announce(announce_request(peer=1, ip="10.0.0.1", door="line"), 0.0)
    refused_as_not_owner(core, announce_request(peer=1, ip="10.0.0.2", door="http"))
    core.announce(announce_request(peer=1, ip="10.0.0.2", door="line"), 1.0)
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "10.0.0.2"


def test_ipv6_peer_has_an_18_byte_compact_form():
    core = make_core()
    core.announce(announce_request(peer=1, ip="2001:db8::1", port=6881), 0.0)
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert peer.is_ipv6 and len(peer.compact) == 18 and peer.ip == "2001:db8::1"


def test_peer_records_the_door_it_came_in_by():
    core = make_core()
    core.announce(announce_request(peer=1, door="udp"), 0.0)
    assert core.swarms[info_hash(1)].get(peer_id(1)).door == "udp"
    assert core.stats.announces == {"udp": 1}


def test_stopped_removes_the_peer_and_returns_no_peers():
    core = make_core()
    fill(core, leechers=3)
    core.announce(announce_request(peer=1, left=5), 0.0)
    result = core.announce(announce_request(peer=1, left=5, event=EVENT_STOPPED), 1.0)
    assert result.peers == b""
    assert (result.complete, result.incomplete) == (0, 3)
    assert peer_id(1) not in core.swarms[info_hash(1)]
    assert core.peer_count == 3


def test_stopped_for_an_unknown_swarm_creates_nothing():
    core = make_core()
    result = core.announce(announce_request(event=EVENT_STOPPED), 0.0)
    assert (result.complete, result.incomplete, result.peers) == (0, 0, b"")
    assert core.swarms == {}


def test_completed_counts_once_per_peer_and_content():
    core = make_core()
    core.announce(announce_request(swarm=1, peer=1, left=10, event=EVENT_STARTED), 0.0)
    core.announce(announce_request(swarm=1, peer=1, left=0, event=EVENT_COMPLETED), 1.0)
    core.announce(announce_request(swarm=1, peer=1, left=0, event=EVENT_COMPLETED), 2.0)
    core.announce(announce_request(swarm=1, peer=2, left=0, event=EVENT_COMPLETED), 2.0)
    core.announce(announce_request(swarm=2, peer=1, left=0, event=EVENT_COMPLETED), 2.0)
    files = core.scrape([info_hash(1), info_hash(2)])
    assert files[info_hash(1)].downloaded == 2
    assert files[info_hash(2)].downloaded == 1


def test_completed_still_counts_once_after_stop_and_restart():
    core = make_core()
    core.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 0.0)
    core.announce(announce_request(peer=1, left=0, event=EVENT_STOPPED), 1.0)
    core.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 2.0)
    assert core.scrape([info_hash(1)])[info_hash(1)].downloaded == 1


@pytest.mark.parametrize("field,value,code", [
    ("info_hash", b"short", "invalid_info_hash"),
    ("info_hash", b"x" * 21, "invalid_info_hash"),
    ("peer_id", b"p" * 19, "invalid_peer_id"),
    ("port", 0, "invalid_port"),
    ("port", 65536, "invalid_port"),
    ("left", -1, "invalid_counter"),
    ("uploaded", 2 ** 63, "invalid_counter"),
])
def test_invalid_announce_is_refused_and_changes_nothing(field, value, code):
    core = make_core()
    fill(core, leechers=2)
    before = (dict(core.swarms), core.peer_count, dict(core.stats.announces))
    req = announce_request(peer=1)
    setattr(req, field, value)
    with pytest.raises(TrackerError) as caught:
        core.announce(req, 1.0)
    assert caught.value.code == code
    assert (dict(core.swarms), core.peer_count, dict(core.stats.announces)) == before
    assert peer_id(1) not in core.swarms[info_hash(1)]


def test_scrape_many_hashes_and_unknown_ones():
    core = make_core()
    fill(core, swarm=1, seeders=2, leechers=3)
    fill(core, swarm=2, leechers=1)
    files = core.scrape([info_hash(1), info_hash(2), info_hash(3)])
    assert (files[info_hash(1)].complete, files[info_hash(1)].incomplete) == (2, 3)
    assert (files[info_hash(2)].complete, files[info_hash(2)].incomplete) == (0, 1)
    assert (files[info_hash(3)].complete, files[info_hash(3)].incomplete,
            files[info_hash(3)].downloaded) == (0, 0, 0)
    assert info_hash(3) not in core.swarms


def test_scrape_refuses_bad_and_too_many_hashes():
    core = make_core(max_scrape_hashes=3)
    with pytest.raises(TrackerError) as caught:
        core.scrape([])
    assert caught.value.code == "full_scrape_refused"
    with pytest.raises(TrackerError) as caught:
        core.scrape([info_hash(n) for n in range(4)])
    assert caught.value.code == "too_many_hashes"
    with pytest.raises(TrackerError) as caught:
        core.scrape([b"short"])
    assert caught.value.code == "invalid_info_hash"


def test_default_peer_ttl_is_twice_the_interval():
    assert TrackerSettings(interval_s=100).effective_peer_ttl_s == 200
    assert TrackerSettings(interval_s=100, peer_ttl_s=30).effective_peer_ttl_s == 30


def run_sweep(core, now, budget):
    slices = 0
    for _ in core.expire(now, budget):
        slices += 1
    return slices


def test_expiry_removes_only_peers_past_their_ttl():
    core = make_core(interval_s=100)  # ttl 200
    core.announce(announce_request(swarm=1, peer=1), 0.0)
    core.announce(announce_request(swarm=1, peer=2), 150.0)
    run_sweep(core, 199.0, 100)
    assert core.peer_count == 2
    run_sweep(core, 201.0, 100)
    assert [p.peer_id for p in core.swarms[info_hash(1)].views()] == [peer_id(2)]
    assert core.peer_count == 1
    assert core.stats.expired_peers == 1


def test_expiry_drops_empty_swarms_but_keeps_completed_counts():
    core = make_core(interval_s=100)
    core.announce(announce_request(swarm=1, peer=1), 0.0)
    core.announce(announce_request(swarm=2, peer=1, left=0, event=EVENT_COMPLETED), 0.0)
    run_sweep(core, 1000.0, 100)
    assert info_hash(1) not in core.swarms
    assert len(core.swarms[info_hash(2)]) == 0
    assert core.scrape([info_hash(2)])[info_hash(2)].downloaded == 1


def test_expiry_works_in_bounded_slices():
    core = make_core(interval_s=100)
    for s in range(10):
        fill(core, swarm=s, leechers=100, now=0.0, start=s * 1000)
    assert core.peer_count == 1000
    # 1,000 peers in slices of 64: at least 16 pauses.
    assert run_sweep(core, 1000.0, 64) >= 1000 // 64
    assert core.peer_count == 0
    assert core.swarms == {}


def test_a_swarm_table_left_a_quarter_full_by_expiry_is_rebuilt_smaller(monkeypatch):
    import sys
    import tracker.core.tracker as core_module
    monkeypatch.setattr(core_module, "COMPACT_FROM", 64)
    core = make_core(interval_s=100)
    table = core.swarms
    for s in range(400):
        core.announce(announce_request(swarm=s, peer=1), 0.0 if s >= 10 else 500.0)
    cpython = sys.implementation.name == "cpython"  # PyPy has no getsizeof
    full = sys.getsizeof(table) if cpython else 0
    run_sweep(core, 300.0, 1000)
    # The same dict (others hold it), holding the ten live swarms, rebuilt.
    assert core.swarms is table and sorted(table) == sorted(info_hash(s) for s in range(10))
    assert core._swarms_high == 10
    if cpython:
        assert sys.getsizeof(table) < full // 8
    assert core.scrape([info_hash(3)])[info_hash(3)].incomplete == 1


def test_peer_reannouncing_during_a_sweep_survives_it():
    core = make_core(interval_s=100)
    fill(core, swarm=1, leechers=10, now=0.0)
    sweep = core.expire(1000.0, 3)
    next(sweep)  # 3 peers examined and removed
    core.announce(announce_request(swarm=1, peer=1009, left=5, port=1000 + 1009), 999.0)
    for _ in sweep:
        pass
    assert [p.peer_id for p in core.swarms[info_hash(1)].views()] == [peer_id(1009)]
    assert core.peer_count == 1


def test_totals():
    core = make_core()
    fill(core, swarm=1, seeders=2, leechers=3)
    fill(core, swarm=2, seeders=1)
    assert core.totals() == {"swarms": 2, "peers": 6, "seeders": 3, "leechers": 3}


def test_completions_of_many_peers_count_once_each_in_any_order():
    core = make_core()
    order = list(range(500)) * 2
    random.Random(3).shuffle(order)
    for n in order:  # every peer completes twice, in a shuffled order
        core.announce(announce_request(peer=n, port=1000 + n, left=0, event=EVENT_COMPLETED), 0.0)
    swarm = core.swarms[info_hash(1)]
    assert swarm.completed == 500
    assert list(swarm.completed_by) == sorted(swarm.completed_by)  # kept sorted for bisect
    assert set(swarm.completed_by) == {completion_key(peer_id(n)) for n in range(500)}


def test_restored_peers_are_shuffled_within_their_part():
    """The store gives rows in peer id order; a sample must not be a run of them."""
    core = make_core()
    swarm = core.restore_swarm(info_hash(1), 0.0, 0)
    for n in range(300):
        core.restore_peer(swarm, peer_id(n), "10.0.%d.%d" % (n // 256, n % 256), 1000 + n,
                          n % 2, 0.0, "http")
    views = list(swarm.views())
    seeders = [v.peer_id for v in views if v.seeder]
    leechers = [v.peer_id for v in views if not v.seeder]
    assert (len(seeders), len(leechers), core.peer_count) == (150, 150, 300)
    assert seeders != sorted(seeders) and leechers != sorted(leechers)
    assert [v.seeder for v in views] == [True] * 150 + [False] * 150


def test_a_bounded_cache_empties_itself_when_full():
    cache = BoundedCache(3)
    for n in range(3):
        assert cache.put(n, str(n)) == str(n)
    assert dict(cache) == {0: "0", 1: "1", 2: "2"}
    cache.put(3, "3")
    assert dict(cache) == {3: "3"}
    with pytest.raises(ValueError):
        BoundedCache(0)


@pytest.mark.parametrize("ip,networks,inside", [
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("2001:db8::1", ["10.0.0.0/8", "2001:db8::/32"], True),
    ("10.1.2.3", ["::/0"], False),  # an IPv4 address is not in an IPv6 network
    ("not an address", ["0.0.0.0/0"], False),
])
def test_network_membership(ip, networks, inside):
    import ipaddress
    assert in_networks(ip, [ipaddress.ip_network(n) for n in networks]) is inside


@pytest.mark.parametrize("host,ip", [
    ("::ffff:10.0.0.1", "10.0.0.1"), ("fe80::1%eth0", "fe80::1"), ("2001:db8::1", "2001:db8::1"),
])
def test_client_addresses_are_normalised(host, ip):
    assert normalise_ip(host) == ip


def test_malloc_threshold_is_fixed_where_glibc_allows_it():
    import ctypes.util
    import platform
    from tracker.core.tracker import fix_malloc_threshold
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or not ctypes.util.find_library("c"):
        pytest.skip("glibc only")
    assert fix_malloc_threshold() is True


# -- swarms kept only for their completion count -------------------------------------------


def expire_all(core, now):
    for _ in core.expire(now, 1000):
        pass


def test_a_completion_for_an_unknown_swarm_does_not_hold_a_place_under_max_swarms():
    core = TrackerCore(TrackerSettings(interval_s=10, max_swarms=2))  # ttl 20 s
    for n in (1, 2):
        core.announce(announce_request(swarm=n, left=0, event=EVENT_COMPLETED), 0.0)
    with pytest.raises(TrackerError) as refused:  # two swarms with a peer: the cap
        core.announce(announce_request(swarm=3), 1.0)
    assert refused.value.code == "swarm_limit"  # the door counts it: tracker_failures{reason=...}
    expire_all(core, 30.0)  # their peers gone, their counts kept (scrape)
    assert list(core.idle_swarms) == [info_hash(1), info_hash(2)]
    assert core.scrape([info_hash(1)])[info_hash(1)].downloaded == 1
    core.announce(announce_request(swarm=3), 31.0)
    core.announce(announce_request(swarm=1, peer=2), 31.0)  # back: counted again
    assert list(core.idle_swarms) == [info_hash(2)]
    with pytest.raises(TrackerError):
        core.announce(announce_request(swarm=4), 32.0)


def test_idle_swarms_beyond_max_swarms_are_dropped_longest_idle_first():
    core = TrackerCore(TrackerSettings(interval_s=10, max_swarms=2))
    for n in (1, 2):
        core.announce(announce_request(swarm=n, left=0, event=EVENT_COMPLETED), float(n))
    expire_all(core, 30.0)
    core.announce(announce_request(swarm=3, left=0, event=EVENT_COMPLETED), 31.0)
    expire_all(core, 60.0)
    assert list(core.idle_swarms) == [info_hash(2), info_hash(3)]
    assert info_hash(1) not in core.swarms and core.stats.idle_swarms_dropped == 1
    assert len(core.swarms) == 2


def test_a_restored_swarm_without_peers_is_idle_and_one_with_peers_is_not():
    core = TrackerCore(TrackerSettings(max_swarms=1))
    core.restore_swarm(info_hash(1), 0.0, 5)
    swarm = core.restore_swarm(info_hash(2), 0.0, 3)
    core.restore_peer(swarm, peer_id(1), "10.0.0.1", 6881, 0, 1.0, "udp")
    assert list(core.idle_swarms) == [info_hash(1)]
    with pytest.raises(TrackerError):  # swarm 2 holds the one place
        core.announce(announce_request(swarm=3), 2.0)


def test_a_new_peer_is_refused_while_the_write_backlog_is_full_and_known_peers_go_on():
    changes = ChangeLog()
    core = make_core(max_write_backlog=3)
    core.changes = core.store_log = changes
    n = 0
    while len(changes) < 3:  # a new swarm's first peer is one change or two, by runtime
        n += 1
        core.announce(announce_request(swarm=1, peer=n, port=6000 + n), 10.0)
    held = core.peer_count
    assert held == n >= 2
    with pytest.raises(TrackerError) as refused:
        core.announce(announce_request(swarm=2, peer=9, port=6009), 10.0)
    assert refused.value.code == "write_backlog"
    assert info_hash(2) not in core.swarms and core.peer_count == held
    # A peer already held still announces (and is recorded), and stops.
    core.announce(announce_request(swarm=1, peer=1, port=6001, left=0), 11.0)
    core.announce(announce_request(swarm=1, peer=n, port=6000 + n, event=EVENT_STOPPED), 11.0)
    assert core.peer_count == held - 1
    changes.take()  # written
    core.announce(announce_request(swarm=2, peer=9, port=6009), 12.0)
    assert core.peer_count == held


def test_without_a_database_there_is_no_write_backlog_to_refuse_on():
    core = make_core(max_write_backlog=1)
    for n in range(1, 5):
        core.announce(announce_request(swarm=n, peer=n), 10.0)
    assert core.peer_count == 4
