"""Many subscribed line connections on a real tracker: every one gets the event.

The benchmark's fan-out client (tools/bench/fanout.py) against a real twistd,
at a size a test run affords; the 10,000-connection figures come from
`tools/benchmark.py --fanout`. No timing is asserted here."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
from bench import fanout, report, servers  # noqa: E402
from bench.population import announce_path, torrent_hash  # noqa: E402

SUBSCRIBERS = 500


@pytest.fixture
def tracker(tmp_path):
    tracker = servers.Tracker(sys.executable, tmp_path, [], db="off")
    yield tracker
    assert "Traceback" not in tracker.stop()


@pytest.mark.e2e
def test_every_subscribed_connection_reads_the_join(tracker):
    figures = fanout.run(tracker.line_port, tracker.port, tracker.pid, SUBSCRIBERS, pushes=2)
    assert figures["subscribers"] == SUBSCRIBERS
    assert figures["pushes"] == 2 and len(figures["times_ms"]) == 2
    assert figures["rss_after"] > 0 and figures["rss_before"] > 0


@pytest.mark.e2e
def test_the_client_gives_up_on_an_event_that_never_comes(tracker):
    group = fanout.Subscribers(tracker.line_port, torrent_hash(0).hex(), 20)
    http = socket.create_connection(("127.0.0.1", tracker.port))
    try:
        group.subscribe_all()
        request = b"GET %s HTTP/1.1\r\nHost: b\r\n\r\n" % announce_path(0, 7, numwant=0).encode()
        with pytest.raises(RuntimeError, match="20 of 20 subscribers never got the event"):
            group.time_push(http, request, b"* JOIN nothing-of-the-sort ", timeout_s=0.5)
    finally:
        http.close()
        group.close()


def test_fanout_table_shows_memory_and_time_per_runtime():
    table = report.fanout_markdown({"cpython": {
        "subscribers": 10000, "bytes_per_connection": 3072, "median_ms": 120.0, "max_ms": 150.0,
        "first_ms": 180.0, "server_cpu_ms_median": 90.0, "client_cpu_ms_max": 40.0}})
    assert "| cpython | 10000 | 3.0 | 120.0 | 150.0 | 180.0 | 90 | 40 |" in table.splitlines()
