"""/metrics for operators: build info, process metrics, every door's series from the start,
histograms; /healthz answers without the token and says nothing else."""
from __future__ import annotations

import http.client
import socket

import pytest

import tracker
from process import TrackerProcess, free_port
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
    assert "# TYPE tracker_tls_handshake_failures_total counter" in text
    assert "tracker_max_swarms " in text and "tracker_max_peers " in text


@pytest.mark.e2e
@pytest.mark.parametrize("headers", [{}, {"Host": "lb.example.org"}])
def test_healthz_needs_no_token_and_says_only_ok(admin_tracker, headers):
    process, port = admin_tracker
    assert request(port, "/healthz", headers) == (200, "ok\n")
    # Everything else still needs the token.
    assert request(port, "/api/health", headers)[0] in (401, 403)
    assert request(port, "/healthz/more", headers)[0] in (401, 403, 404)
