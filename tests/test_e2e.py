"""End to end: the real `twistd` process, real sockets, IPv4 and IPv6."""
from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
from urllib.parse import quote_from_bytes

import pytest

from e2e_clients import announce_target, get
from helpers import bdecode, info_hash, peer_id
from process import REPO, TrackerProcess, answers_udp, free_port, source_env, twistd_command

pytestmark = pytest.mark.e2e


@pytest.fixture
def dual_stack_tracker(tmp_path):
    """`twistd -n tracker` on one dual-stack socket, as the default listens."""
    port = free_port(socket.AF_INET6)
    udp_port = free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    tracker = TrackerProcess(["tracker", "--http", "tcp6:%d:interface=\\:\\:" % port,
                              "--udp", str(udp_port), "--line", "off", "--ws", "off", "--admin", "off"],
                             tmp_path, [("127.0.0.1", port), ("::1", port)],
                             ready=lambda: answers_udp("127.0.0.1", udp_port))
    tracker.udp_port = udp_port
    yield port, tracker
    assert tracker.stop()
    assert "Traceback" not in tracker.output()


def test_announce_and_scrape_over_ipv4_and_ipv6(dual_stack_tracker):
    port, _ = dual_stack_tracker
    status, body = get("127.0.0.1", port, announce_target(peer=1, port=7001, left=0))
    assert status == 200
    reply = bdecode(body)
    assert reply[b"external ip"] == bytes([127, 0, 0, 1])
    assert (reply[b"complete"], reply[b"incomplete"]) == (1, 0)

    status, body = get("::1", port, announce_target(peer=2, port=7002))
    reply = bdecode(body)
    assert reply[b"external ip"] == socket.inet_pton(socket.AF_INET6, "::1")
    assert reply[b"peers"] == bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")
    assert (reply[b"complete"], reply[b"incomplete"]) == (1, 1)

    # The IPv4 seeder sees the IPv6 leecher in peers6.
    reply = bdecode(get("127.0.0.1", port, announce_target(peer=1, port=7001, left=0))[1])
    assert reply[b"peers6"] == socket.inet_pton(socket.AF_INET6, "::1") + (7002).to_bytes(2, "big")

    status, body = get("::1", port, "/scrape?info_hash=" + quote_from_bytes(info_hash(1)))
    assert bdecode(body)[b"files"][info_hash(1)] == {b"complete": 1, b"downloaded": 0,
                                                     b"incomplete": 1}


def test_keep_alive_and_bad_requests_on_a_real_socket(dual_stack_tracker):
    port, _ = dual_stack_tracker
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(5):
        conn.request("GET", announce_target(peer=n))
        response = conn.getresponse()
        assert response.status == 200 and b"peers" in bdecode(response.read())
    conn.request("GET", "/announce?info_hash=short&peer_id=x&port=1&left=0")
    response = conn.getresponse()
    assert bdecode(response.read())[b"failure reason"] == b"info_hash must be 20 bytes"
    conn.request("GET", "/nothing-here")
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.close()
    # Raw garbage gets a 400 and the server keeps serving others.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    assert get("127.0.0.1", port, announce_target(peer=9))[0] == 200


def test_tac_builds_the_same_service_from_any_directory(tmp_path):
    port = free_port()
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    (workdir / "tracker.toml").write_text(
        'http = "tcp:%d:interface=127.0.0.1"\nudp = "off"\nline = "off"\nws = "off"\nadmin = "off"\ninterval = 1234\nmin-interval = 600\n'
        % port)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the .tac makes its own tree importable
    env.pop("TRACKER_CONFIG", None)
    tracker = TrackerProcess(["-y", str(REPO / "tracker.tac")], workdir, [("127.0.0.1", port)], env)
    try:
        status, body = get("127.0.0.1", port, announce_target())
        reply = bdecode(body)
        assert reply[b"interval"] == 1234 and reply[b"min interval"] == 600
    finally:
        assert tracker.stop()
    assert "Traceback" not in tracker.output()


def test_plugin_and_tac_take_settings_from_the_same_file(tmp_path):
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text('http = "tcp:%d:interface=127.0.0.1"\nudp = "off"\nline = "off"\nws = "off"\nadmin = "off"\ninterval = 999\n'
                      'min-interval = 99\n' % port)
    tracker = TrackerProcess(["tracker", "--config", str(config)], tmp_path, [("127.0.0.1", port)])
    try:
        reply = bdecode(get("127.0.0.1", port, announce_target())[1])
        assert (reply[b"interval"], reply[b"min interval"]) == (999, 99)
    finally:
        assert tracker.stop()


def test_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            twistd_command() + ["-n", "--pidfile=", "--logfile=-", "tracker", "--http",
                                "tcp:%d:interface=127.0.0.1" % port, "--udp", "off", "--line", "off", "--ws", "off", "--admin", "off"],
            cwd=str(tmp_path), env=source_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Couldn't listen on 127.0.0.1:%d" % port in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_option_is_a_one_line_error(tmp_path):
    result = subprocess.run(twistd_command() + ["-n", "tracker", "--interval", "soon"],
                            cwd=str(tmp_path), env=source_env(), capture_output=True, text=True,
                            timeout=60)
    # (twistd's exit status for a usage error differs between Twisted releases.)
    output = result.stdout + result.stderr
    assert "option --interval: 'soon' is not valid" in output
    assert "Traceback" not in output


def test_installed_twistd_finds_the_plugin(tmp_path):
    """After `pip install .` the plugin is in site-packages, not only in the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(twistd_command() + ["--help"], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    commands = result.stdout.split("Commands:", 1)[1]
    assert any(line.split()[:1] == ["tracker"] for line in commands.splitlines()), commands


def udp_exchange(host: str, port: int, packet: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(packet, (host, port))
        return s.recv(4096)


def udp_announce(host: str, port: int, peer: int, peer_port: int, left: int) -> dict:
    reply = udp_exchange(host, port, (0x41727101980).to_bytes(8, "big") + struct.pack(">II", 0, 1))
    action, tid, connection_id = struct.unpack(">II8s", reply)
    assert (action, tid) == (0, 1)
    packet = struct.pack(">8sII20s20sQQQIIIiH", connection_id, 1, 2, info_hash(1), peer_id(peer),
                         0, left, 0, 2, 0, 0, -1, peer_port)
    reply = udp_exchange(host, port, packet)
    action, tid, interval, leechers, seeders = struct.unpack_from(">IIIII", reply)
    assert (action, tid) == (1, 2), reply
    return {"interval": interval, "leechers": leechers, "seeders": seeders, "peers": reply[20:]}


def test_udp_and_http_share_one_swarm_over_ipv4_and_ipv6(dual_stack_tracker):
    port, tracker = dual_stack_tracker
    # A UDP seeder over IPv4, then a UDP leecher over IPv6.
    udp_announce("127.0.0.1", tracker.udp_port, peer=1, peer_port=7001, left=0)
    reply = udp_announce("::1", tracker.udp_port, peer=2, peer_port=7002, left=10)
    assert (reply["seeders"], reply["leechers"]) == (1, 1)
    assert reply["interval"] == 1800
    assert reply["peers"] == b""  # an IPv6 request gets IPv6 peers; the seeder is IPv4
    # An HTTP client sees both UDP peers.
    reply = bdecode(get("127.0.0.1", port, announce_target(peer=3, port=7003))[1])
    assert reply[b"peers"] == bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")
    assert reply[b"peers6"] == socket.inet_pton(socket.AF_INET6, "::1") + (7002).to_bytes(2, "big")
    # And a UDP client over IPv4 sees the HTTP peer.
    reply = udp_announce("127.0.0.1", tracker.udp_port, peer=4, peer_port=7004, left=10)
    assert bytes([127, 0, 0, 1]) + (7003).to_bytes(2, "big") in [
        reply["peers"][i:i + 6] for i in range(0, len(reply["peers"]), 6)]
