"""Persistence with the real twistd: SIGKILL under load, clean stop, bad files."""
from __future__ import annotations

import http.client
import signal
import subprocess
import threading
import time
from urllib.parse import quote_from_bytes

import pytest
import sqlite_utils

from helpers import bdecode, info_hash, peer_id
from process import TrackerProcess, free_port, poll_real_process, source_env, twistd_command

pytestmark = pytest.mark.e2e

FLUSH_INTERVAL_S = 0.25
# What the crash test promises: every announce acknowledged at least this long
# before the kill is on disk. One flush interval, plus one more for a flush
# that had started but not committed when the process died.
DURABILITY_BOUND_S = 2 * FLUSH_INTERVAL_S
LOAD_S = 2.0  # how long the stream of announces runs before the kill


def start(tmp_path, port, db):
    return TrackerProcess(["tracker", "--http", "tcp:%d:interface=127.0.0.1" % port, "--udp", "off",
                           "--line", "off", "--ws", "off", "--admin", "off",
                           # One client address sends the whole load: no per-address allowance.
                           "--request-rate", "0",
                           "--db", str(db), "--flush-interval", str(FLUSH_INTERVAL_S)],
                          tmp_path, [("127.0.0.1", port)])


def announce_path(n: int, event: str = "started") -> str:
    return ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d&event=%s"
            % (quote_from_bytes(info_hash(n)), quote_from_bytes(peer_id(n)), 1000 + n % 60000,
               0 if event == "completed" else 10, event))


def scrape_all(port: int, count: int):
    files = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for first in range(0, count, 100):
        query = "&".join("info_hash=" + quote_from_bytes(info_hash(n))
                         for n in range(first, min(first + 100, count)))
        conn.request("GET", "/scrape?" + query)
        files.update(bdecode(conn.getresponse().read())[b"files"])
    conn.close()
    return files


def test_sigkill_under_load_loses_at_most_the_last_flush_interval(tmp_path):
    port = free_port()
    db = tmp_path / "crash.sqlite3"
    tracker = start(tmp_path, port, db)
    acknowledged = []  # (n, monotonic time of the reply)
    problems = []  # what went wrong in the announcer's thread, asserted in the test's thread
    stop = threading.Event()

    def announce_until_killed():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while not stop.is_set():
            try:
                conn.request("GET", announce_path(n, "completed" if n % 3 == 0 else "started"))
                body = conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                return  # the tracker was killed
            if b"failure reason" in body:
                problems.append(body)
                return
            acknowledged.append((n, time.monotonic()))
            n += 1

    def announcer():
        try:
            announce_until_killed()
        except Exception as e:  # an exception here could not fail the test by itself
            problems.append(repr(e))

    thread = threading.Thread(target=announcer)
    thread.start()
    try:
        # The kill lands in a stream of acknowledged announces at least LOAD_S long.
        poll_real_process(lambda: problems or not thread.is_alive() or (
                              acknowledged and acknowledged[-1][1] - acknowledged[0][1] >= LOAD_S),
                          timeout_s=LOAD_S + 30, what="a stream of announces")
        tracker.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        tracker.process.wait()
    finally:
        stop.set()
        thread.join()
        tracker.stop()

    assert problems == []
    must_survive = [n for n, at in acknowledged if at <= killed_at - DURABILITY_BOUND_S]
    assert len(must_survive) > 100, "too few announces to make the test meaningful"

    tracker = start(tmp_path, port, db)
    try:
        files = scrape_all(port, len(acknowledged))
    finally:
        assert tracker.stop()
    lost = [n for n in must_survive if files[info_hash(n)][b"complete"] + files[info_hash(n)][b"incomplete"] != 1]
    assert lost == [], "%d of %d announces older than %.2f s lost" % (
        len(lost), len(must_survive), DURABILITY_BOUND_S)
    lost_completions = [n for n in must_survive if n % 3 == 0 and files[info_hash(n)][b"downloaded"] != 1]
    assert lost_completions == []
    assert "restored" in tracker.output()


def test_clean_stop_writes_everything_and_start_reports_the_restore(tmp_path):
    port = free_port()
    db = tmp_path / "clean.sqlite3"
    tracker = start(tmp_path, port, db)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(50):
        conn.request("GET", announce_path(n))
        conn.getresponse().read()
    conn.close()
    assert tracker.stop()  # SIGTERM: the last changes are flushed before exit
    assert "all changes written to" in tracker.output()
    assert sqlite_utils.Database(str(db))["peers"].count == 50

    tracker = start(tmp_path, port, db)
    try:
        files = scrape_all(port, 50)
        assert all(files[info_hash(n)][b"incomplete"] == 1 for n in range(50))
    finally:
        assert tracker.stop()
    assert "restored 50 live peers in 50 swarms" in tracker.output()


def test_reader_queries_the_file_while_the_tracker_writes(tmp_path):
    port = free_port()
    db = tmp_path / "live.sqlite3"
    tracker = start(tmp_path, port, db)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        counts = []
        for n in range(300):
            conn.request("GET", announce_path(n))
            conn.getresponse().read()
            if n % 50 == 0:
                counts.append(sqlite_utils.Database(str(db))["peers"].count)
        conn.close()
        # Keep reading while the tracker flushes, until every peer is on disk.
        def all_on_disk() -> bool:
            counts.append(sqlite_utils.Database(str(db))["peers"].count)
            return counts[-1] == 300
        poll_real_process(all_on_disk, timeout_s=10 * FLUSH_INTERVAL_S + 5,
                          what="every peer on disk", interval_s=FLUSH_INTERVAL_S / 5)
        # The reader sees the writer's progress, up to every peer, never locked out by it.
        assert counts == sorted(counts)
    finally:
        assert tracker.stop()


@pytest.mark.parametrize("make_db,cause", [
    (lambda tmp: tmp / "no-such-dir" / "t.sqlite3", "no-such-dir does not exist"),
    (lambda tmp: _garbage(tmp / "garbage.sqlite3"), "file is not a database"),
])
def test_unusable_database_is_a_one_line_error(tmp_path, make_db, cause):
    db = make_db(tmp_path)
    result = subprocess.run(
        twistd_command() + ["-n", "--pidfile=", "--logfile=-", "tracker", "--http",
                            "tcp:%d:interface=127.0.0.1" % free_port(), "--udp", "off", "--line", "off", "--ws", "off", "--admin", "off",
                            "--db", str(db)],
        cwd=str(tmp_path), env=source_env(), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tracker: cannot open database %s: " % db in output and cause in output
    assert "Traceback" not in output


def _garbage(path):
    path.write_bytes(b"not a database at all " * 200)
    return path
