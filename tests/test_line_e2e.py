"""The line protocol end to end: real twistd, a node on a real socket, an HTTP
announcer on the same swarm, the `tracker-line` CLI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from e2e_clients import LineSocket, announce_target, get
from helpers import bdecode, info_hash
from process import REPO, TrackerProcess, free_port, poll_real_process

pytestmark = pytest.mark.e2e

GRACE_S = 1.0
H1 = info_hash(1).hex()


@pytest.fixture
def tracker(tmp_path):
    http_port, line_port = free_port(), free_port()
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http_port, "--udp", "off",
         "--ws", "off", "--line", "tcp:%d:interface=127.0.0.1" % line_port, "--line-grace", str(GRACE_S),
         "--db", "off", "--admin", "off"],
        tmp_path, [("127.0.0.1", http_port), ("127.0.0.1", line_port)])
    process.http_port, process.line_port = http_port, line_port
    yield process
    assert process.stop()
    assert "Traceback" not in process.output()


def http_peers(tracker, peer: int):
    reply = bdecode(get("127.0.0.1", tracker.http_port, announce_target(peer=peer, port=7000 + peer))[1])
    return [reply[b"peers"][i:i + 6] for i in range(0, len(reply[b"peers"]), 6)]


def compact(ip: str, port: int) -> bytes:
    return socket.inet_aton(ip) + port.to_bytes(2, "big")


def test_node_and_http_announcer_see_each_other(tracker):
    node = LineSocket(tracker.line_port)
    try:
        assert node.command("HELLO node=edge-1 port=8080 region=eu") == ["OK HELLO edge-1 entries=0"]
        assert node.command("SUBSCRIBE " + H1) == ["OK SUBSCRIBE " + H1]
        assert node.command("HAVE %s size=100 name=clip.mp4" % H1) == ["OK HAVE " + H1]
        # HTTP -> sees the node as an ordinary peer.
        assert compact("127.0.0.1", 8080) in http_peers(tracker, 1)
        # The node is told the HTTP peer joined, and lists it.
        assert node.next_event() == "* JOIN %s 127.0.0.1 7001 leecher door=http" % H1
        assert node.command("PEERS " + H1, multiline=True) == [
            "PEER 127.0.0.1 7001 leecher door=http", "END"]
        assert node.command("SCRAPE " + H1, multiline=True) == [
            "SCRAPE %s seeders=1 leechers=1 completed=0" % H1, "END"]
        get("127.0.0.1", tracker.http_port, announce_target(peer=1, port=7001, event="stopped"))
        assert node.next_event() == "* LEAVE %s 127.0.0.1 7001 leecher door=http" % H1
        assert node.command("QUIT") == ["OK BYE"]
    finally:
        node.close()


def test_reconnect_within_grace_keeps_entries_and_absence_removes_them(tracker):
    node = LineSocket(tracker.line_port)
    node.command("HELLO node=edge-2 port=8082")
    node.command("HAVE " + H1)
    node.close()  # the connection drops
    again = LineSocket(tracker.line_port)
    try:
        assert again.command("HELLO node=edge-2 port=8082") == ["OK HELLO edge-2 entries=1"]
        assert compact("127.0.0.1", 8082) in http_peers(tracker, 3)
    finally:
        again.close()
    # Now it stays away: after the grace period it is gone from every door.
    poll_real_process(lambda: compact("127.0.0.1", 8082) not in http_peers(tracker, 3),
                      timeout_s=GRACE_S + 10, what="node gone after its grace period", interval_s=0.1)
    watcher = LineSocket(tracker.line_port)
    try:
        watcher.command("HELLO node=watcher")
        assert watcher.command("PEERS " + H1, multiline=True) == [
            "PEER 127.0.0.1 7003 leecher door=http", "END"]
    finally:
        watcher.close()


def test_bad_input_and_flood_keep_the_server_serving(tracker):
    node = LineSocket(tracker.line_port)
    try:
        assert node.command("HAVE " + H1) == ["ERR 403 say HELLO first"]
        assert node.command("BOGUS") == ["ERR 404 unknown command BOGUS"]
        node.sock.sendall(b"\xff\xfe\n")
        assert node.reader.readline().rstrip("\n") == "ERR 415 the line is not UTF-8"
        # Thousands of pipelined commands, then read them all back.
        node.sock.sendall(b"PING\n" * 5000)
        assert all(node.reader.readline() == "PONG\n" for _ in range(5000))
        node.sock.sendall(b"X" * 5000 + b"\n")
        assert node.reader.readline().startswith("ERR 413 line too long")
        assert node.reader.readline() == ""  # closed
    finally:
        node.close()
    other = LineSocket(tracker.line_port)
    try:
        assert other.command("PING") == ["PONG"]
    finally:
        other.close()


def test_cli_runs_commands_and_sets_its_exit_status(tracker, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = [sys.executable, str(REPO / "tools" / "tracker_line.py"), "--port", str(tracker.line_port),
           "--host", "127.0.0.1"]
    result = subprocess.run(cli + ["HELLO node=cli-1 port=9000", "HAVE " + H1, "SCRAPE " + H1],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "OK HELLO cli-1 entries=0", "OK HAVE " + H1,
        "SCRAPE %s seeders=1 leechers=0 completed=0" % H1]
    script = tmp_path / "session.txt"
    script.write_text("# a script\nPING\nFETCH x\n")
    result = subprocess.run(cli + ["--file", str(script)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["PONG", "ERR 404 unknown command FETCH"]
    result = subprocess.run(cli[:2] + ["--port", str(free_port()), "--host", "127.0.0.1", "PING"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("tracker-line: cannot reach 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1


class LineSocketFrom(LineSocket):
    """A line connection from a chosen loopback address (all of 127/8 is local)."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.reader = self.sock.makefile("r", encoding="utf-8", newline="\n")
        self.events = []


@pytest.fixture
def tracker_with_admin(tmp_path):
    http_port, line_port, admin_port = free_port(), free_port(), free_port()
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http_port, "--udp", "off",
         "--ws", "off", "--line", "tcp:%d:interface=127.0.0.1" % line_port, "--db", "off",
         "--admin", "tcp:%d:interface=127.0.0.1" % admin_port],
        tmp_path, [("127.0.0.1", p) for p in (http_port, line_port, admin_port)])
    process.http_port, process.line_port, process.admin_port = http_port, line_port, admin_port
    yield process
    assert process.stop()
    assert "Traceback" not in process.output()


def test_open_mode_a_node_id_cannot_be_taken_from_another_address(tracker_with_admin):
    tracker = tracker_with_admin
    node = LineSocketFrom(tracker.line_port, "127.0.0.1")
    intruder = LineSocketFrom(tracker.line_port, "127.0.0.2")
    try:
        assert node.command("HELLO node=edge-5 port=8085") == ["OK HELLO edge-5 entries=0"]
        assert node.command("HAVE " + H1) == ["OK HAVE " + H1]
        assert intruder.command("HELLO node=edge-5 port=6666") == [
            "ERR 409 node edge-5 is registered from another address"]
        assert intruder.command("HELLO node=edge-6 ip=127.0.0.9") == [
            "ERR 403 ip= needs a valid node token (or --allow-ip-param)"]
        # The registered node keeps its connection, and BitTorrent clients
        # are still sent its address, not the intruder's.
        assert node.command("PING") == ["PONG"]
        peers = http_peers(tracker, 4)
        assert compact("127.0.0.1", 8085) in peers and compact("127.0.0.2", 6666) not in peers
        assert intruder.command("PING") == ["PONG"]
    finally:
        node.close()
        intruder.close()
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % tracker.admin_port, timeout=10) as reply:
        metrics = reply.read().decode()
    assert 'tracker_failures_total{door="line",reason="node_elsewhere"} 1.0' in metrics
    assert 'tracker_failures_total{door="line",reason="ip_refused"} 1.0' in metrics
