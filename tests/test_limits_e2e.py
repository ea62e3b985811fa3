"""The shared bounds on a real tracker: idle connections from one address past
its cap are refused while another address is served, requests past the
per-address allowance get a failure, and /metrics shows both."""
from __future__ import annotations

import http.client
import socket

import pytest

from e2e_clients import announce_target, get
from helpers import bdecode
from process import TrackerProcess, free_port, poll_real_process

pytestmark = pytest.mark.e2e


@pytest.fixture
def tracker(tmp_path):
    http_port, admin_port = free_port(), free_port()
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d" % http_port, "--udp", "off", "--line", "off",
         "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % admin_port, "--db", "off",
         "--max-connections-per-address", "3", "--request-rate", "1", "--request-burst", "3"],
        tmp_path, [("127.0.0.1", http_port), ("127.0.0.1", admin_port)])
    yield http_port, admin_port
    assert process.stop()


def metrics(admin_port: int) -> str:
    status, body = get("127.0.0.1", admin_port, "/metrics")
    assert status == 200
    return body.decode()


def test_idle_connections_from_one_address_do_not_lock_out_another(tracker):
    http_port, admin_port = tracker
    # The start-up check's own connections are gone before the test's come.
    poll_real_process(lambda: "tracker_connections_open 0.0" in metrics(admin_port), 10,
                      "the start-up probes' connections to close")
    idle = [socket.create_connection(("127.0.0.1", http_port), timeout=10) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as extra:
            refusal = extra.recv(4096)
        assert refusal.startswith(b"HTTP/1.1 503 ")
        assert b"too many connections from your address" in refusal
        # Another address of this machine is still served at once.
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10,
                                          source_address=("127.0.0.2", 0))
        try:
            conn.request("GET", announce_target(peer=2))
            response = conn.getresponse()
            assert response.status == 200 and b"interval" in response.read()
        finally:
            conn.close()
        text = metrics(admin_port)
        assert 'tracker_connections_refused_total{reason="connections_per_address"} 1.0' in text
        assert "tracker_connections_open 3.0" in text
    finally:
        for sock in idle:
            sock.close()


def test_requests_past_the_allowance_get_a_failure_and_are_counted(tracker):
    http_port, admin_port = tracker
    replies = [bdecode(get("127.0.0.1", http_port, announce_target(peer=n))[1]) for n in range(5)]
    assert [b"interval" in r for r in replies[:3]] == [True, True, True]
    assert replies[3][b"failure reason"].startswith(b"too many requests from your address")
    assert 'tracker_failures_total{door="http",reason="rate_limited"}' in metrics(admin_port)
