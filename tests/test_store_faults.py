"""The store under load and under faults: re-announces coalesced by last-seen
window, flushes bounded in time and size, the file removed or replaced while
running, a full disk, a damaged file at start."""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from e2e_clients import announce_target, get
from helpers import announce_request, info_hash, peer_id
from process import TrackerProcess, free_port, poll_real_process, source_env, twistd_command
from tracker.core import EVENT_COMPLETED, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import PeerUpserted
from tracker.options import Options
from tracker.service import makeService
from tracker.store import MEMORY, PersistenceService, SQLiteStore, StoreError, open_database
from tracker.store import sqlite as store_sqlite
from tracker.store.queries import StoreReader


def tracker_config(db_path, *extra):
    config = Options()
    config.parseOptions(["--http", "tcp:0:interface=127.0.0.1", "--udp", "off", "--line", "off", "--ws", "off",
                         "--admin", "off", "--db", str(db_path), "--flush-interval", "0.05", *extra])
    return config


def upserts(changes):
    return [c for c in changes.take() if isinstance(c, PeerUpserted)]


# -- re-announces that change only the time -----------------------------------------------


def test_a_re_announce_within_the_window_is_not_written_again():
    changes = ChangeLog()
    changes.coarsen_last_seen(60.0)
    core = TrackerCore(TrackerSettings(), changes=changes)
    core.announce(announce_request(peer=1), 120.0)
    assert [u.last_seen for u in upserts(changes)] == [120.0]
    core.announce(announce_request(peer=1), 150.0)  # same window, nothing else changed
    assert upserts(changes) == [] and changes.coalesced == 1
    core.announce(announce_request(peer=1, left=0), 151.0)  # became a seeder: written
    core.announce(announce_request(peer=1, left=0, port=7000), 152.0)  # moved: written
    assert [(u.left, u.port, u.last_seen) for u in upserts(changes)] == [(0, 7000, 152.0)]
    core.announce(announce_request(peer=1, left=0, port=7000), 180.0)  # next window: written
    assert [u.last_seen for u in upserts(changes)] == [180.0]


def test_without_a_window_every_change_is_written():
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(), changes=changes)
    core.announce(announce_request(peer=1), 120.0)
    changes.take()
    core.announce(announce_request(peer=1), 121.0)
    assert [u.last_seen for u in upserts(changes)] == [121.0]


def test_a_removed_peer_that_comes_back_in_the_window_is_written():
    changes = ChangeLog()
    changes.coarsen_last_seen(60.0)
    core = TrackerCore(TrackerSettings(), changes=changes)
    core.announce(announce_request(peer=1), 120.0)
    core.remove_peer(info_hash(1), peer_id(1))
    changes.take()
    core.announce(announce_request(peer=1), 130.0)
    assert [u.last_seen for u in upserts(changes)] == [130.0]


def test_persistence_coarsens_last_seen_from_the_start_at_a_twentieth_of_the_ttl():
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(interval_s=100), changes=changes)  # ttl 200 s
    PersistenceService(core, changes, SQLiteStore(open_database(MEMORY), MEMORY), Clock())
    assert changes.seen_resolution_s == 10.0
    core.announce(announce_request(peer=1), 100.0)
    changes.take()
    core.announce(announce_request(peer=1), 105.0)  # at any announce rate
    assert len(changes) == 0


@pytest.mark.parametrize("peers", [1, 3], ids=["solo", "pooled"])
def test_a_re_announce_within_the_bucket_is_no_row_one_after_the_bucket_is_one(peers):
    changes = ChangeLog()
    changes.coarsen_last_seen(60.0)
    core = TrackerCore(TrackerSettings(), changes=changes)
    for n in range(1, peers + 1):
        core.announce(announce_request(peer=n, left=1000), 100.0)
    changes.take()
    core.announce(announce_request(peer=1, left=500, uploaded=7), 119.0)  # bucket [60, 120)
    assert len(changes) == 0 and changes.coalesced == 1  # bytes moved, still a leecher
    core.announce(announce_request(peer=1, left=400), 120.0)  # the next bucket: a row
    assert [(u.left, u.last_seen) for u in upserts(changes)] == [(400, 120.0)]
    core.announce(announce_request(peer=1, left=400, event=EVENT_COMPLETED), 121.0)
    assert len(changes) > 0  # a completion is always recorded
    changes.take()
    core.announce(announce_request(peer=1, left=0), 122.0)  # became a seeder: a row
    assert [u.left for u in upserts(changes)] == [0]


def test_restore_allows_for_the_window_so_no_peer_expires_early():
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    changes = ChangeLog()
    changes.coarsen_last_seen(10.0)
    core = TrackerCore(TrackerSettings(interval_s=100), changes=changes)  # ttl 200
    core.announce(announce_request(peer=1), 100.0)
    store.write(changes.take())
    core.announce(announce_request(peer=1), 109.0)  # coalesced: the file says 100
    assert len(changes) == 0
    restored = TrackerCore(TrackerSettings(interval_s=100))
    report = store.restore(restored, 305.0, seen_slack_s=10.0)  # 100 + 200 < 305 < 109 + 200
    assert report.peers == 1
    assert restored.swarms[info_hash(1)].get(peer_id(1)).last_seen == 110.0


# -- flushes bounded in time ------------------------------------------------------------


def test_a_write_cut_short_by_its_budget_resumes_where_it_stopped(monkeypatch):
    monkeypatch.setattr(store_sqlite, "WRITE_CHUNK", 10)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(), changes=changes)
    core.describe_content(info_hash(1), "a.mp4", None, 0.5)  # a content record of its own
    for n in range(95):
        core.announce(announce_request(peer=n, port=1000 + n), 1.0)
    batch = changes.take()
    rows, complete = store.write_part(batch, 0, time_budget_s=0.0)  # one chunk, then out of time
    assert (rows, complete) == (1, False)  # the content row
    rows, complete = store.write_part(batch, rows, time_budget_s=0.0)
    assert (rows, complete) == (11, False)  # and ten peers, committed
    assert store.conn.execute("SELECT count(*) FROM content").fetchone() == (1,)
    assert store.conn.execute("SELECT count(*) FROM peers").fetchone() == (10,)
    assert store.write_part(batch, rows) == (len(batch), True)
    assert store.conn.execute("SELECT count(*) FROM peers").fetchone() == (95,)


def test_a_large_batch_is_committed_in_parts(monkeypatch):
    monkeypatch.setattr(store_sqlite, "WRITE_CHUNK", 10)
    monkeypatch.setattr(store_sqlite, "TRANSACTION_ROWS", 20)
    store = SQLiteStore(open_database(MEMORY), MEMORY)
    commits = []
    store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(), changes=changes)
    core.describe_content(info_hash(1), "a.mp4", None, 0.5)  # a content record of its own
    for n in range(59):
        core.announce(announce_request(peer=n, port=1000 + n), 1.0)
    store.write(changes.take())  # 60 rows: 1 content + 59 peers
    assert len(commits) == 3
    assert store.conn.execute("SELECT count(*) FROM peers").fetchone() == (59,)


# -- the file removed or replaced, the disk full ---------------------------------------------


class LogLines:
    def __init__(self):
        self.lines = []

    def __call__(self, event):
        from twisted.logger import formatEvent
        self.lines.append(formatEvent(event))

    def __enter__(self):
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self)


def remove_database(db):
    for suffix in ("", "-wal", "-shm"):
        path = str(db) + suffix
        if os.path.exists(path):
            os.unlink(path)


@pytest_twisted.inlineCallbacks
def test_a_removed_file_is_detected_and_the_whole_state_written_again(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence, core = service.persistence, service.core
    try:
        with LogLines() as log:
            for n in range(1, 4):
                core.announce(announce_request(swarm=n, peer=n, port=1000 + n), reactor.seconds())
            yield persistence.flush()
            remove_database(db)
            core.announce(announce_request(swarm=9, peer=9, port=1009), reactor.seconds())
            yield persistence.flush()  # finds the file gone, makes a new one, writes everything
            assert persistence.stats.file_lost == 1 and persistence.stats.problem is None
    finally:
        yield service.stopService()
    errors = [line for line in log.lines if "removed or replaced" in line]
    assert len(errors) == 1 and str(db) in errors[0]
    reader = StoreReader.open(str(db))
    assert reader.peer_totals() == (4, 4, 0)


@pytest_twisted.inlineCallbacks
def test_a_removed_file_is_noticed_with_nothing_new_to_write(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence = service.persistence
    try:
        service.core.announce(announce_request(), reactor.seconds())
        yield persistence.flush()
        remove_database(db)
        yield persistence.flush()  # an idle interval
        assert persistence.stats.file_lost == 1
    finally:
        yield service.stopService()
    assert StoreReader.open(str(db)).peer_totals() == (1, 1, 0)


@pytest_twisted.inlineCallbacks
def test_a_removed_directory_is_made_again_and_nothing_is_lost(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    db = directory / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence, core = service.persistence, service.core
    try:
        core.announce(announce_request(swarm=1, peer=1), reactor.seconds())
        yield persistence.flush()
        shutil.rmtree(directory)
        core.announce(announce_request(swarm=2, peer=2), reactor.seconds())
        yield persistence.flush()
        yield persistence.flush()
        assert persistence.stats.file_lost == 1
    finally:
        yield service.stopService()
    assert StoreReader.open(str(db)).peer_totals() == (2, 2, 0)


@pytest_twisted.inlineCallbacks
def test_a_full_disk_is_logged_with_its_real_cause(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    persistence, core = service.persistence, service.core
    conn = persistence.store.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute("PRAGMA max_page_count = %d" % pages)  # the file may not grow: a full disk
    try:
        with LogLines() as log:
            for n in range(2000):
                core.announce(announce_request(swarm=n, peer=n, port=1000 + n % 60000),
                              reactor.seconds())
            yield persistence.flush()
        assert persistence.stats.failures == 1 and persistence.backlog > 0
        errors = [line for line in log.lines if "cannot write" in line]
        assert len(errors) == 1 and "database or disk is full" in errors[0]
        assert not any("cannot rollback" in line for line in log.lines)
        conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        yield persistence.flush()
        assert persistence.backlog == 0 and persistence.stats.problem is None
    finally:
        yield service.stopService()
    assert StoreReader.open(str(db)).peer_totals()[1] == 2000


# -- a damaged file at start ------------------------------------------------------------------


def test_a_damaged_file_at_start_is_one_line_naming_it_and_what_to_do(tmp_path):
    db = tmp_path / "damaged.sqlite3"
    conn = open_database(str(db))
    conn.executemany("INSERT INTO peers VALUES (?, ?, '10.0.0.1', 6881, 0, 0, 0, 1e12, 'http')",
                     [(info_hash(n), peer_id(n)) for n in range(20000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with open(db, "r+b") as f:  # 64 KiB of garbage in the middle
        f.seek(size // 2)
        f.write(os.urandom(64 * 1024))
    result = subprocess.run(
        twistd_command() + ["-n", "--pidfile=", "tracker", "--http", "tcp:0:interface=127.0.0.1",
                            "--udp", "off", "--line", "off", "--ws", "off", "--admin", "off", "--db", str(db)],
        cwd=str(tmp_path), env=source_env(), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if str(db) in line and "damaged" in line]
    assert len(lines) == 1 and "move it aside" in lines[0], output


def test_a_file_that_is_not_a_database_at_start_says_what_to_do(tmp_path):
    db = tmp_path / "garbage.sqlite3"
    db.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError) as caught:
        open_database(str(db))
    assert str(db) in str(caught.value) and "move it aside" in str(caught.value)


@pytest.mark.e2e
def test_real_tracker_survives_its_data_directory_being_removed(tmp_path):
    http, admin = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir()
    args = ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http, "--udp", "off", "--line", "off",
            "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % admin,
            "--data-dir", str(data), "--flush-interval", "0.1"]
    tracker = TrackerProcess(args, tmp_path, [("127.0.0.1", http), ("127.0.0.1", admin)])
    try:
        for n in range(1, 21):
            assert get("127.0.0.1", http, announce_target(swarm=n, peer=n))[0] == 200
        poll_real_process(lambda: (data / "tracker.sqlite3").exists() and
                          StoreReader.open(str(data / "tracker.sqlite3")).peer_totals()[1] == 20,
                          timeout_s=30, what="the peers on disk")
        shutil.rmtree(data)
        poll_real_process(lambda: "removed or replaced" in tracker.output(), timeout_s=30,
                          what="the loss logged")
        metrics = poll_real_process(lambda: (lambda m: m if "tracker_database_file_lost_total 1.0" in m
                                             else None)(admin_get(admin, "/metrics")),
                                    timeout_s=30, what="the loss counted")
        assert "tracker_database_failing 0.0" in metrics  # the new file is written
    finally:
        assert tracker.stop()
    errors = [line for line in tracker.output().splitlines() if "removed or replaced" in line]
    assert len(errors) == 1 and "#error" in errors[0]
    assert StoreReader.open(str(data / "tracker.sqlite3")).peer_totals() == (20, 20, 0)


def admin_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as response:
        return response.read().decode()
