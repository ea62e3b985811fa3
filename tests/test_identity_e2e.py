"""End to end: a peer's entry belongs to its owner. The real `twistd` process;
raw HTTP and UDP announces from 127.0.0.1 (the owner) and 127.0.0.2 or ::1
(a stranger who knows the owner's peer id); refusals visible in /metrics."""
from __future__ import annotations

import http.client
import socket
import struct
from typing import Optional

import pytest

from e2e_clients import announce_target, get
from helpers import bdecode, info_hash, peer_id
from process import TrackerProcess, free_port

pytestmark = pytest.mark.e2e

OWNER, STRANGER = "127.0.0.1", "127.0.0.2"
NOT_OWNER = b"this peer id is announced from another address"


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    port, admin = free_port(), free_port()
    udp_port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % port, "--udp", "127.0.0.1:%d" % udp_port,
         "--line", "off", "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % admin, "--db", "off"],
        tmp_path_factory.mktemp("identity"), [("127.0.0.1", port), ("127.0.0.1", admin)])
    process.port, process.udp_port, process.admin_port = port, udp_port, admin
    yield process
    assert process.stop()
    assert "Traceback" not in process.output()


def http_announce(tracker, source: str, key: Optional[str] = None, **params) -> dict:
    target = announce_target(**params) + ("&key=" + key if key else "")
    conn = http.client.HTTPConnection("127.0.0.1", tracker.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", target)
        return bdecode(conn.getresponse().read())
    finally:
        conn.close()


def udp_announce(tracker, source: str, swarm: int, peer: int, event: int = 0, key: int = 0,
                 port: int = 6881) -> bytes:
    """Connect, then announce; the announce reply's bytes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(10)
        target = ("127.0.0.1", tracker.udp_port)
        s.sendto(struct.pack(">QII", 0x41727101980, 0, 1), target)
        _, _, connection_id = struct.unpack(">II8s", s.recv(100))
        s.sendto(struct.pack(">8sII20s20sQQQIIIiH", connection_id, 1, 2, info_hash(swarm),
                             peer_id(peer), 0, 100, 0, event, 0, key, -1, port), target)
        return s.recv(2048)


def failures(tracker, door: str, reason: str) -> float:
    status, body = get("127.0.0.1", tracker.admin_port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith('tracker_failures_total{door="%s",reason="%s"}' % (door, reason)):
            return float(line.split()[-1])
    return 0.0


def seen_from(tracker, swarm: int, source: str, **params) -> bytes:
    """The peers a fresh leecher at `source` is given for `swarm` (compact)."""
    return http_announce(tracker, source, swarm=swarm, peer=99, **params)[b"peers"]


def test_http_stop_and_repoint_from_another_address_are_refused(tracker):
    before = failures(tracker, "http", "peer_not_owner")
    assert b"peers" in http_announce(tracker, OWNER, swarm=1, peer=1, port=7001, key="0badf00d")
    for params in ({"event": "stopped"}, {"port": 9999}, {"port": 9999, "key": "12345678"}):
        reply = http_announce(tracker, STRANGER, swarm=1, peer=1, **params)
        assert reply[b"failure reason"].startswith(NOT_OWNER)
    assert failures(tracker, "http", "peer_not_owner") == before + 3
    assert seen_from(tracker, 1, OWNER, port=7099) == bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")


def test_udp_stop_and_repoint_from_another_address_are_refused(tracker):
    before = failures(tracker, "udp", "peer_not_owner")
    reply = udp_announce(tracker, OWNER, swarm=2, peer=1, key=0xB0A7, port=7002)
    assert struct.unpack_from(">I", reply)[0] == 1
    for event, key, port in ((3, 0, 6881), (0, 0, 9999), (0, 0x1234, 9999)):
        reply = udp_announce(tracker, STRANGER, swarm=2, peer=1, event=event, key=key, port=port)
        assert struct.unpack_from(">I", reply)[0] == 3 and reply[8:].startswith(NOT_OWNER)
    assert failures(tracker, "udp", "peer_not_owner") == before + 3
    assert seen_from(tracker, 2, OWNER, port=7099) == bytes([127, 0, 0, 1]) + (7002).to_bytes(2, "big")


def test_a_client_that_moves_with_its_key_keeps_its_entry(tracker):
    udp_announce(tracker, OWNER, swarm=3, peer=1, key=0xC0FFEE, port=7003)
    reply = http_announce(tracker, STRANGER, swarm=3, peer=1, port=7004, key="00c0ffee")
    assert b"failure reason" not in reply and reply[b"incomplete"] == 1
    assert seen_from(tracker, 3, OWNER, port=7099) == bytes([127, 0, 0, 2]) + (7004).to_bytes(2, "big")
    # The old address is now the stranger.
    assert udp_announce(tracker, OWNER, swarm=3, peer=1, event=3)[8:].startswith(NOT_OWNER)


@pytest.fixture
def dual_stack_tracker(tmp_path):
    """HTTP and UDP on `::`, so 127.0.0.1 and ::1 reach the same door."""
    port = free_port(socket.AF_INET6)
    udp_port = free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    process = TrackerProcess(
        ["tracker", "--http", "tcp6:%d:interface=\\:\\:" % port, "--udp", str(udp_port),
         "--line", "off", "--ws", "off", "--admin", "off", "--db", "off"],
        tmp_path, [("127.0.0.1", port), ("::1", port)])
    process.port, process.udp_port = port, udp_port
    yield process
    assert process.stop()


def test_stop_and_repoint_from_ipv6_loopback_are_refused(dual_stack_tracker):
    tracker = dual_stack_tracker
    assert b"peers" in http_announce(tracker, OWNER, swarm=4, peer=1, port=7005)
    for params in ({"event": "stopped"}, {"port": 9999}):
        conn = http.client.HTTPConnection("::1", tracker.port, timeout=10)
        try:
            conn.request("GET", announce_target(swarm=4, peer=1, **params))
            reply = bdecode(conn.getresponse().read())
        finally:
            conn.close()
        assert reply[b"failure reason"].startswith(NOT_OWNER)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        target = ("::1", tracker.udp_port)
        s.sendto(struct.pack(">QII", 0x41727101980, 0, 1), target)
        _, _, connection_id = struct.unpack(">II8s", s.recv(100))
        s.sendto(struct.pack(">8sII20s20sQQQIIIiH", connection_id, 1, 2, info_hash(4),
                             peer_id(1), 0, 100, 0, 3, 0, 0, -1, 6881), target)
        reply = s.recv(2048)
    assert struct.unpack_from(">I", reply)[0] == 3 and reply[8:].startswith(NOT_OWNER)
    # The owner's entry is still there, at its IPv4 address and port.
    assert seen_from(tracker, 4, OWNER, port=7099) == bytes([127, 0, 0, 1]) + (7005).to_bytes(2, "big")
