"""Persistence: schema files and upgrades, the write-behind flush, restore at start."""
from __future__ import annotations

import shutil
import sqlite3

import pytest
import pytest_twisted
import sqlite_utils
from twisted.internet import reactor

from helpers import announce_request, info_hash, parse_options as parse, peer_id, tracker_config
from tracker.core import EVENT_COMPLETED, EVENT_STOPPED, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import ChangeBatch
from tracker.service import makeService
from tracker.store import MEMORY, SQLiteStore, StoreError, open_database, schema_version
from tracker.store.database import latest_version, schema_dir




# -- the schema ------------------------------------------------------------------------


def test_new_database_has_the_latest_schema(tmp_path):
    path = tmp_path / "t.sqlite3"
    conn = open_database(str(path))
    assert schema_version(conn) == latest_version() == 2
    tables = set(sqlite_utils.Database(conn).table_names())
    assert {"content", "peers", "completions", "nodes", "node_tokens", "access_list", "bans",
            "totals", "schema_version"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "t.sqlite3"]


def test_memory_database_for_tests():
    conn = open_database(MEMORY)
    assert schema_version(conn) == 2


def test_creation_is_atomic_when_a_schema_file_fails(tmp_path):
    schema = tmp_path / "schema"
    shutil.copytree(schema_dir(), schema)
    (schema / "0003_broken.sql").write_text("CREATE TABLE oops (;\n")
    path = tmp_path / "t.sqlite3"
    with pytest.raises(StoreError, match="cannot open database"):
        open_database(str(path), schema=schema)
    assert list(tmp_path.glob("t.sqlite3*")) == []


def test_upgrade_from_version_1_to_2_keeps_data_and_backs_up(tmp_path):
    path = str(tmp_path / "t.sqlite3")
    conn = open_database(path, target_version=1)
    assert schema_version(conn) == 1
    conn.execute("INSERT INTO content (info_hash, first_seen, completed) VALUES (?, 1.0, 7)",
                 (info_hash(1),))
    conn.execute("INSERT INTO peers VALUES (?, ?, '10.0.0.1', 6881, 0, 1, 2, 3.0, 'http')",
                 (info_hash(1), peer_id(1)))
    conn.close()

    conn = open_database(path)
    assert schema_version(conn) == 2
    db = sqlite_utils.Database(conn)
    assert db["content"].get(info_hash(1))["completed"] == 7
    assert db["peers"].count == 1
    assert "totals" in db.table_names()
    conn.close()
    backup = sqlite3.connect(path + ".v1.bak")
    assert backup.execute("SELECT version FROM schema_version").fetchone() == (1,)
    assert backup.execute("SELECT completed FROM content").fetchone() == (7,)
    backup.close()


def test_newer_database_is_refused(tmp_path):
    path = str(tmp_path / "t.sqlite3")
    conn = open_database(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError) as caught:
        open_database(path)
    assert str(caught.value) == (
        "%s: database version 99 is newer than this tracker supports (2); refusing to downgrade" % path)


@pytest.mark.parametrize("make_path,cause", [
    (lambda tmp: tmp / "missing-dir" / "t.sqlite3", "missing-dir does not exist"),
    (lambda tmp: tmp, "it is a directory"),
    (lambda tmp: _write(tmp / "garbage.sqlite3", b"this is not sqlite" * 100), "not a database"),
])
def test_database_that_cannot_be_opened_is_a_one_line_error(tmp_path, make_path, cause):
    path = make_path(tmp_path)
    with pytest.raises(StoreError) as caught:
        open_database(str(path))
    message = str(caught.value)
    assert str(path) in message and cause in message and "\n" not in message


def _write(path, data):
    path.write_bytes(data)
    return path


# -- writing and restoring --------------------------------------------------------------


def make_core(changes=None, **settings):
    return TrackerCore(TrackerSettings(**settings), changes=changes)


def test_a_batch_is_written_in_one_transaction_and_restored():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(swarm=1, peer=1, left=0, event=EVENT_COMPLETED), 100.0)
    core.announce(announce_request(swarm=1, peer=2, ip="2001:db8::1", left=5), 100.0)
    core.announce(announce_request(swarm=2, peer=3, door="udp"), 100.0)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    assert store.write(changes.take()) > 0
    assert len(changes) == 0

    restored = make_core()
    report = store.restore(restored, 200.0)
    assert (report.swarms, report.peers) == (2, 3)
    swarm = restored.swarms[info_hash(1)]
    assert swarm.completed == 1 and not swarm.remember_completion(peer_id(1))
    assert (swarm.seeders, swarm.leechers) == (1, 1)
    peer = swarm.get(peer_id(2))
    assert (peer.ip, peer.port, peer.seeder, peer.last_seen, peer.is_ipv6) == (
        "2001:db8::1", 6881, False, 100.0, True)
    assert restored.swarms[info_hash(2)].get(peer_id(3)).door == "udp"
    assert restored.peer_count == 3


def test_stopped_and_expired_peers_are_deleted():
    changes = ChangeLog()
    core = make_core(changes, interval_s=100)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    for n in range(1, 4):
        core.announce(announce_request(peer=n, port=1000 + n), 0.0)
    store.write(changes.take())
    core.announce(announce_request(peer=1, event=EVENT_STOPPED), 1.0)
    for _ in core.expire(150.0, 100):  # ttl 200: nobody expires yet
        pass
    core.announce(announce_request(peer=3, port=1003), 150.0)
    for _ in core.expire(250.0, 100):  # peer 2 (last seen at 0) expires
        pass
    store.write(changes.take())
    assert sorted(r[0] for r in store.conn.execute("SELECT peer_id FROM peers")) == [peer_id(3)]


def test_restore_drops_peers_past_their_time_to_live():
    changes = ChangeLog()
    core = make_core(changes, interval_s=100)
    core.announce(announce_request(peer=1), 0.0)
    core.announce(announce_request(peer=2, port=7000), 500.0)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    store.write(changes.take())
    restored = make_core(interval_s=100)
    report = store.restore(restored, 600.0)
    assert (report.peers, report.dropped_peers) == (1, 1)
    assert {p.peer_id for p in restored.swarms[info_hash(1)].views()} == {peer_id(2)}
    assert store.conn.execute("SELECT count(*) FROM peers").fetchone() == (1,)


def test_completion_counted_once_across_a_restart():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 10.0)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    store.write(changes.take())
    changes = ChangeLog()
    restored = make_core(changes)
    store.restore(restored, 20.0)
    restored.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 30.0)
    restored.announce(announce_request(peer=2, left=0, event=EVENT_COMPLETED), 30.0)
    store.write(changes.take())
    assert restored.scrape([info_hash(1)])[info_hash(1)].downloaded == 2
    assert store.conn.execute("SELECT completed FROM content").fetchone() == (2,)


def test_content_with_completions_but_no_peers_is_restored():
    changes = ChangeLog()
    core = make_core(changes, interval_s=100)
    core.announce(announce_request(peer=1, left=0, event=EVENT_COMPLETED), 0.0)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    store.write(changes.take())
    restored = make_core(interval_s=100)
    store.restore(restored, 10_000.0)
    assert restored.scrape([info_hash(1)])[info_hash(1)].downloaded == 1
    assert restored.peer_count == 0


def test_failed_batch_given_back_merges_with_newer_changes():
    changes = ChangeLog()
    core = make_core(changes)
    core.announce(announce_request(peer=1), 0.0)
    core.announce(announce_request(peer=2, port=7000), 0.0)
    failed = changes.take()
    core.announce(announce_request(peer=2, port=7000, event=EVENT_STOPPED), 1.0)
    core.announce(announce_request(peer=3, port=7001), 1.0)
    changes.give_back(failed)
    batch = changes.take()
    assert set(batch.peers) == {(info_hash(1), peer_id(1)), (info_hash(1), peer_id(3))}
    assert batch.removed == {(info_hash(1), peer_id(2))}


# -- the service: flush, stop, restart (real reactor, real file) ---------------------------


@pytest_twisted.inlineCallbacks
def test_restart_round_trip(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    core = service.core
    now = reactor.seconds()
    for n in range(1, 6):
        core.announce(announce_request(swarm=1, peer=n, port=1000 + n, left=n % 2), now)
    core.announce(announce_request(swarm=2, peer=9, left=0, event=EVENT_COMPLETED), now)
    core.announce(announce_request(swarm=3, peer=9, left=0, event=EVENT_COMPLETED), now)
    core.announce(announce_request(swarm=3, peer=9, event=EVENT_STOPPED), now)
    before = {h: (s.seeders, s.leechers, s.completed, sorted(p.peer_id for p in s.views()))
              for h, s in core.swarms.items()}
    yield service.stopService()  # a clean stop flushes everything

    again = makeService(tracker_config(db), reactor)
    again.startService()
    after = {h: (s.seeders, s.leechers, s.completed, sorted(p.peer_id for p in s.views()))
             for h, s in again.core.swarms.items()}
    assert after == before
    assert again.core.peer_count == 6
    yield again.stopService()


@pytest_twisted.inlineCallbacks
def test_flush_runs_every_interval_without_a_stop(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    service.core.announce(announce_request(), reactor.seconds())
    yield service.persistence.flush()
    reader = sqlite_utils.Database(str(db))  # a second reader while the tracker runs
    assert reader["peers"].count == 1
    assert service.persistence.stats.flushes == 1
    yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_failed_flush_keeps_its_rows_and_retries(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence = service.persistence
    real_write = persistence.store.write_part
    attempts = []

    def disk_full(batch, *args):
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real_write(batch, *args)

    persistence.store.write_part = disk_full
    try:
        service.core.announce(announce_request(peer=1), reactor.seconds())
        yield persistence.flush()
        assert persistence.stats.failures == 1 and persistence.backlog > 0
        service.core.announce(announce_request(peer=2, port=7000), reactor.seconds())
        yield persistence.flush()
        assert persistence.backlog == 0
        assert sqlite_utils.Database(str(db))["peers"].count == 2
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_reader_can_query_while_the_writer_holds_a_transaction(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    service.core.announce(announce_request(), reactor.seconds())
    yield service.persistence.flush()
    writer = service.persistence.store.conn
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM peers")
    try:
        reader = sqlite_utils.Database(str(db))
        assert reader["peers"].count == 1  # WAL: readers see the last commit
        assert reader.execute("SELECT count(*) FROM content").fetchone() == (1,)
    finally:
        writer.execute("ROLLBACK")
    yield service.stopService()


def test_persistence_off_records_nothing(tmp_path):
    service = makeService(parse("--http", "tcp:0", "--udp", "off", "--line", "off", "--ws", "off", "--admin", "off", "--db", "off"), reactor)
    assert service.persistence is None and service.core.changes is None


def test_db_path_is_relative_to_the_data_dir(tmp_path):
    config = parse("--data-dir", str(tmp_path))
    assert config["db"] == str(tmp_path / "tracker.sqlite3")


@pytest_twisted.inlineCallbacks
def test_ordinary_flushes_run_in_the_background_and_a_backlog_at_normal_priority(
        tmp_path, monkeypatch):
    import os
    import threading

    from tracker.store import service as store_service
    monkeypatch.setattr(store_service, "BACKGROUND_MAX_ROWS", 5)
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence = service.persistence
    real_write = persistence.store.write_part
    seen = []

    def write(batch, *args):
        tid = threading.get_native_id()
        seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, tid)))
        return real_write(batch, *args)

    persistence.store.write_part = write
    try:
        service.core.announce(announce_request(peer=1), reactor.seconds())
        yield persistence.flush()
        for n in range(2, 12):
            service.core.announce(announce_request(peer=n, port=7000 + n), reactor.seconds())
        yield persistence.flush()
    finally:
        yield service.stopService()
    (small_thread, small_nice), (large_thread, large_nice) = seen[:2]
    assert "tracker-store-background" in small_thread
    assert "tracker-store" in large_thread and "background" not in large_thread
    assert small_nice == large_nice + store_service.STORE_THREAD_NICENESS
    assert sqlite_utils.Database(str(db))["peers"].count == 11


def test_a_smaller_completion_count_does_not_overwrite_the_stored_one():
    # A swarm dropped from memory while idle (TrackerCore._keep_idle) that comes
    # back counts from 0 again; the file keeps the count it had.
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    first, second = ChangeBatch(), ChangeBatch()
    first.content[info_hash(1)] = (1.0, 5, None, None)
    second.content[info_hash(1)] = (1.0, 1, "a.mp4", None)
    store.write(first)
    store.write(second)
    restored = TrackerCore(TrackerSettings())
    store.restore(restored, 2.0)
    assert (restored.swarms[info_hash(1)].completed, restored.swarms[info_hash(1)].name) == (5, "a.mp4")
