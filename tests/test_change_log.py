"""The change log: typed values, coalescing per peer, hand-back after a failed write."""
from __future__ import annotations

import pytest

from helpers import announce_request, info_hash, peer_id
from tracker.core import EVENT_COMPLETED, EVENT_STOPPED, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import (REMOVED, SEEN, UPSERT, AccessRuleAdded, AccessRuleRemoved,
                                  BanAdded, ChangeBatch, Completion, ContentDescribed, MinuteTotals,
                                  ModeSet, NodeSeen, PeerRemoved, PeerSeen, PeerUpserted,
                                  FIRST, PACKED, peer_records)
from tracker.store import MEMORY, SQLiteStore, open_database


def make_core(changes, **settings):
    return TrackerCore(TrackerSettings(**settings), changes=changes)


def test_a_batch_iterates_as_typed_values_without_live_objects():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 10.0)
    core.announce(announce_request(peer=2, port=7000), 11.0)
    core.announce(announce_request(peer=2, port=7000, event=EVENT_STOPPED), 12.0)
    core.pin(info_hash(1), peer_id(1), 50.0)
    changes.node_seen("edge-1", "192.0.2.1", 8080, "eu", 13.0)
    changes.totals((1, 1, 1, 1, 0, 3))
    changes.operator_changed(BanAdded("203.0.113.0/24", "abuse", 14.0))
    changes.operator_changed(ModeSet("allow"))
    values = list(changes.take())
    assert values == [
        ContentDescribed(info_hash(1), 10.0, 1, None, None),
        PeerUpserted(info_hash(1), peer_id(1), "10.0.0.1", 6881, 0, 0, 0, 50.0, "http"),
        PeerRemoved(info_hash(1), peer_id(2)),
        Completion(info_hash(1), peer_id(1), 10.0),
        NodeSeen("edge-1", "192.0.2.1", 8080, "eu", 13.0),
        MinuteTotals(1, 1, 1, 1, 0, 3),
        BanAdded("203.0.113.0/24", "abuse", 14.0),
        ModeSet("allow"),
    ]
    with pytest.raises(AttributeError):
        values[0].completed = 2  # frozen


def test_content_row_is_copied_when_it_changes_not_read_later():
    changes = ChangeLog()
    core = make_core(changes)
    core.describe_content(info_hash(1), "a.mp4", 100, 5.0)
    swarm = core.swarms[info_hash(1)]
    swarm.name = "changed behind the log's back"
    (content,) = list(changes.take())
    assert content == ContentDescribed(info_hash(1), 5.0, 0, "a.mp4", 100)


def test_a_peer_announcing_many_times_between_flushes_is_one_change():
    changes = ChangeLog()
    core = make_core(changes)
    for second in range(10):
        core.announce(announce_request(peer=1), float(second))
    peers = [c for c in changes.take() if isinstance(c, PeerUpserted)]
    assert len(peers) == 1 and peers[0].last_seen == 9.0


def test_a_pinned_peer_not_otherwise_changed_is_a_seen_change():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1), 1.0)
    changes.take()
    core.pin(info_hash(1), peer_id(1), float("inf"))
    assert list(changes.take()) == [PeerSeen(info_hash(1), peer_id(1), float("inf"))]


def test_operator_changes_keep_their_order_across_a_failed_write():
    changes = ChangeLog()
    changes.operator_changed(AccessRuleAdded("deny", info_hash(1), None, 1.0))
    failed = changes.take()
    changes.operator_changed(AccessRuleRemoved("deny", info_hash(1)))
    changes.give_back(failed)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    batch = changes.take()
    assert [type(c) for c in batch] == [AccessRuleAdded, AccessRuleRemoved]
    store.write(batch)
    assert store.conn.execute("SELECT count(*) FROM access_list").fetchone() == (0,)


def test_only_operator_changes_are_taken_as_operator_changes():
    with pytest.raises(TypeError):
        ChangeLog().operator_changed(("INSERT INTO bans VALUES (?)", ("0.0.0.0/0",)))


# -- pending changes held packed ------------------------------------------------------


def test_pending_changes_for_the_same_peer_read_as_one_entry_its_latest_state():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1, left=100, key=7), 1.0)
    core.announce(announce_request(peer=1, left=50, port=7000, key=7), 2.0)
    core.announce(announce_request(peer=1, left=0, ip="2001:db8::1", key=7), 3.0)
    batch = changes.take()
    assert batch.packed and batch.peer_changes == 3
    assert batch.peers == {(info_hash(1), peer_id(1)): ("2001:db8::1", 6881, 0, 0, 0, 3.0, "http")}
    assert batch.content == {info_hash(1): (1.0, 0, None, None)}
    assert not batch.packed and not batch.peer_log


def test_records_replay_in_order_a_peer_removed_then_back_is_there():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1), 1.0)
    core.announce(announce_request(peer=2), 1.0)
    core.announce(announce_request(peer=1, event=EVENT_STOPPED), 2.0)
    core.announce(announce_request(peer=1), 3.0)
    core.remove_peer(info_hash(1), peer_id(2))
    core.pin(info_hash(1), peer_id(1), float("inf"))
    batch = changes.take()
    first = FIRST if PACKED else UPSERT  # the new swarm's content row in its first peer's record
    assert [kind for kind, _, _ in peer_records(batch.peer_log)] == [
        first, UPSERT, REMOVED, UPSERT, REMOVED, SEEN]
    assert batch.peers == {(info_hash(1), peer_id(1)): ("10.0.0.1", 6881, 100, 0, 0, float("inf"),
                                                        "http")}
    assert batch.removed == {(info_hash(1), peer_id(2))} and batch.seen == {}
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    changes.give_back(batch)
    store.write(changes.take())
    restored = TrackerCore(TrackerSettings())
    assert store.restore(restored, 4.0).peers == 1 and peer_id(1) in restored.swarms[info_hash(1)]


def test_a_failed_batch_given_back_stays_before_newer_records():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1, port=1000), 1.0)
    failed = changes.take()
    core.announce(announce_request(peer=1, port=2000), 2.0)
    changes.give_back(failed)
    batch = changes.take()
    assert batch.packed and batch.peers[(info_hash(1), peer_id(1))][1] == 2000


def test_content_records_keep_names_sizes_and_none():
    changes = ChangeLog()
    core = make_core(changes)
    core.describe_content(info_hash(1), "é.mp4", 2 ** 40, 5.0)
    core.announce(announce_request(swarm=2), 6.0)
    assert changes.take().content == {info_hash(1): (5.0, 0, "é.mp4", 2 ** 40),
                                      info_hash(2): (6.0, 0, None, None)}


@pytest.mark.skipif(not PACKED, reason="records are packed under CPython only")
def test_a_pending_new_peer_and_its_swarm_take_about_90_bytes_in_two_blocks():
    changes = ChangeLog()
    core = make_core(changes)
    for n in range(1000):
        core.announce(announce_request(swarm=n, ip="10.0.%d.%d" % (n >> 8, n & 255)), 1.0)
    batch = changes.take()
    assert (len(batch.peer_log) + len(batch.content_log)) / 1000 < 100


def test_a_store_writes_a_batch_whose_parts_a_consumer_set_as_plain_dicts():
    batch = ChangeBatch()
    batch.peers = {(info_hash(1), peer_id(1)): ("10.0.0.1", 6881, 0, 0, 0, 5.0, "udp")}
    batch.removed = {(info_hash(1), peer_id(2))}
    batch.content = {info_hash(1): (5.0, 0, None, None)}
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    assert store.write(batch) == 3
    restored = TrackerCore(TrackerSettings())
    assert store.restore(restored, 6.0).peers == 1


def test_a_new_swarms_content_row_written_with_its_first_peer_and_later_changes_kept():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(swarm=1), 5.0)  # new swarm: one record for both
    core.announce(announce_request(swarm=2, left=0, event=EVENT_COMPLETED), 6.0)
    core.describe_content(info_hash(3), "a.mp4", None, 7.0)
    core.announce(announce_request(swarm=3), 8.0)  # not new: its own upsert
    batch = changes.take()
    if PACKED:
        assert batch.content_changes == 3 and batch.peer_changes == 3
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    store.write(batch)
    restored = TrackerCore(TrackerSettings())
    store.restore(restored, 9.0)
    assert [(s.first_seen, s.completed, s.name) for s in
            (restored.swarms[info_hash(n)] for n in (1, 2, 3))] == [
        (5.0, 0, None), (6.0, 1, None), (7.0, 0, "a.mp4")]
