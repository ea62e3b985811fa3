"""/metrics for operators: build info, process metrics, every door's series from the start,
histograms; /healthz answers without the token and says nothing else."""
from __future__ import annotations

import http.client
import socket

import pytest

import tracker
from process import TrackerProcess, free_port, poll_real_process
from tracker.histogram import Histogram

TOKEN = "s3cret-token"


def test_histogram_buckets_are_cumulative_and_a_bound_is_inclusive():
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4 and h.sum == pytest.approx(3.65)


def request(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def admin_tracker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("metrics")
    http_port, admin_port = free_port(), free_port()
    udp_port = free_port(kind=socket.SOCK_DGRAM)
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http_port,
         "--udp", "127.0.0.1:%d" % udp_port, "--line", "off", "--ws", "off",
         "--admin", "tcp:%d:interface=127.0.0.1" % admin_port, "--admin-token", TOKEN,
         "--db", "t.sqlite3", "--flush-interval", "0.2"],
        directory, [("127.0.0.1", admin_port)])
    process.http_port = http_port
    yield process, admin_port
    assert process.stop()


@pytest.mark.e2e
def test_metrics_have_build_info_process_figures_and_zeros_for_every_door(admin_tracker):
    process, port = admin_tracker
    status, text = request(port, "/metrics", {"Authorization": "Bearer " + TOKEN})
    assert status == 200
    assert ('tracker_build_info{implementation="%s",python="' % __import__("platform")
            .python_implementation()) in text
    assert 'version="%s"' % tracker.__version__ in text
    assert "process_resident_memory_bytes" in text and "process_open_fds" in text
    # Before any request: both configured doors, at zero.
    for door in ("http", "udp"):
        assert 'tracker_announces_total{door="%s"} 0.0' % door in text
        assert 'tracker_scrapes_total{door="%s"} 0.0' % door in text
    assert 'door="line"' not in text  # not configured
    for door in ("http", "udp"):  # latency histograms too, empty
        assert 'tracker_request_seconds_count{door="%s"} 0.0' % door in text
    assert "# TYPE tracker_tls_handshake_failures_total counter" in text
    assert "tracker_max_swarms " in text and "tracker_max_peers " in text


@pytest.mark.e2e
def test_flushes_and_http_requests_fill_their_histograms(admin_tracker):
    from e2e_clients import announce_target, get

    process, port = admin_tracker
    http_port = process.http_port
    for n in range(32):  # two sampled reads at least
        assert get("127.0.0.1", http_port, announce_target(peer=n + 1))[0] == 200
    def histogram_counts():
        text = request(port, "/metrics", {"Authorization": "Bearer " + TOKEN})[1]
        counts = dict(line.rsplit(" ", 1) for line in text.splitlines()
                      if line.startswith(("tracker_flush_seconds_count",
                                          'tracker_request_seconds_count{door="http"}')))
        return counts if float(counts.get("tracker_flush_seconds_count", 0)) >= 1 else None

    # The announces are written at the tracker's next flush (every 0.2 s).
    counts = poll_real_process(histogram_counts, 10, "a flush in the histogram")
    assert float(counts["tracker_flush_seconds_count"]) >= 1
    assert float(counts['tracker_request_seconds_count{door="http"}']) >= 2


@pytest.mark.e2e
@pytest.mark.parametrize("headers", [{}, {"Host": "lb.example.org"}])
def test_healthz_needs_no_token_and_says_only_ok(admin_tracker, headers):
    process, port = admin_tracker
    assert request(port, "/healthz", headers) == (200, "ok\n")
    # Everything else still needs the token.
    assert request(port, "/api/health", headers)[0] in (401, 403)
    assert request(port, "/healthz/more", headers)[0] in (401, 403, 404)


# -- request latency per door, flush durations, failures by door and reason ----------------


def test_observe_many_counts_each_request_of_one_read():
    h = Histogram((0.001, 0.01))
    h.observe_many(0.005, 3)
    assert h.cumulative() == [("0.001", 0), ("0.01", 3), ("+Inf", 3)]
    assert h.sum == pytest.approx(0.015)


def test_http_door_times_one_read_in_n_with_every_request_of_it():
    from clients import Client
    from tracker.core import TrackerCore
    from tracker.doors.http import HTTPTrackerFactory
    from tracker.histogram import REQUEST_SAMPLE_EVERY
    from twisted.internet.task import Clock

    factory = HTTPTrackerFactory(TrackerCore(), Clock())
    client = Client(factory)
    for n in range(REQUEST_SAMPLE_EVERY - 1):
        client.announce(peer=n)
    assert factory.latency.count == 0
    # The sampled read carries two pipelined requests: both are observed.
    one = b"GET /announce?info_hash=%s&peer_id=%s&port=1&left=0 HTTP/1.1\r\nHost: t\r\n\r\n"
    client.send(one % (b"a" * 20, b"b" * 20) + one % (b"a" * 20, b"c" * 20))
    assert len(client.responses()) == 2
    assert factory.latency.count == 2 and 0 < factory.latency.sum < 1.0


def test_udp_door_times_one_datagram_in_n():
    from clients import UDPClient
    from tracker.core import TrackerCore
    from tracker.doors.udp import UDPTrackerProtocol
    from tracker.histogram import REQUEST_SAMPLE_EVERY
    from twisted.internet.task import Clock
    from twisted.internet.testing import FakeDatagramTransport

    door = UDPTrackerProtocol(TrackerCore(), Clock())
    transport = FakeDatagramTransport()
    door.makeConnection(transport)
    client = UDPClient(door, transport)
    connection_id = client.connect()
    for n in range(2 * REQUEST_SAMPLE_EVERY - 1):
        client.announce(connection_id=connection_id, peer=n)
    assert door.latency.count == 2


def test_line_and_ws_doors_time_every_command():
    import json as json_module

    from clients import Node
    from browser_clients import Browser, pid
    from tracker.core import TrackerCore
    from tracker.line.door import LineTrackerFactory
    from tracker.ws.door import WsTrackerFactory
    from twisted.internet.task import Clock

    core = TrackerCore()
    line = LineTrackerFactory(core, Clock())
    node = Node(line)
    node.hello("edge-1")
    node.send("PING")
    assert line.latency.count == 2
    ws = WsTrackerFactory(core, Clock())
    browser = Browser(ws)
    browser.announce(pid(1), numwant=0, event="started", offers=[])
    browser.send_text(json_module.dumps({"action": "scrape"}))
    assert ws.latency.count == 2


def test_metrics_have_every_doors_latency_from_the_start_and_failures_by_door_and_reason():
    from prometheus_client import CollectorRegistry, generate_latest
    from tracker.admin.api import AdminContext
    from tracker.admin.metrics import TrackerCollector
    from tracker.core import TrackerCore
    from tracker.doors.http import HTTPTrackerFactory
    from tracker.doors.udp import UDPTrackerProtocol
    from twisted.internet.task import Clock

    core = TrackerCore()
    context = AdminContext(core, Clock())
    context.doors = ("http", "udp")
    context.door_factories = {"http": HTTPTrackerFactory(core, Clock()),
                              "udp": UDPTrackerProtocol(core, Clock())}
    core.stats.count_failure("content_denied", "http")
    core.stats.count_failure("content_denied", "udp")
    core.stats.count_failure("bad_magic", "udp")
    registry = CollectorRegistry()
    registry.register(TrackerCollector(context))
    text = generate_latest(registry).decode()
    for door in ("http", "udp"):
        assert 'tracker_request_seconds_bucket{door="%s",le="+Inf"} 0.0' % door in text
        assert 'tracker_request_seconds_count{door="%s"} 0.0' % door in text
    assert 'tracker_failures_total{door="http",reason="content_denied"} 1.0' in text
    assert 'tracker_failures_total{door="udp",reason="content_denied"} 1.0' in text
    assert 'tracker_failures_total{door="udp",reason="bad_magic"} 1.0' in text
