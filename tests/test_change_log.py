"""The change log: typed values, coalescing per peer, hand-back after a failed write."""
from __future__ import annotations

import pytest

from helpers import announce_request, info_hash, peer_id
from tracker.core import EVENT_COMPLETED, EVENT_STOPPED, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import (AccessRuleAdded, AccessRuleRemoved, BanAdded, Completion,
                                  ContentDescribed, MinuteTotals, ModeSet, NodeSeen, PeerRemoved,
                                  PeerSeen, PeerUpserted)
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
