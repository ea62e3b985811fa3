"""Two real tracker processes sharing swarms through a real redis-server (tracker/cluster/).

Each test starts its own redis-server on a free loopback port (no saving, so
a restart comes back empty) and two twistd instances pointed at it; waits on
the real processes go through poll_real_process."""
from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import urllib.request
from pathlib import Path

import pytest

from e2e_clients import LineSocket, announce_target, get
from helpers import bdecode, info_hash, peer_id
from process import TrackerProcess, free_port, poll_real_process

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed")]

# What the issue promises: a peer announced at one instance is in the other's
# replies within 1 s; the tests allow for a loaded machine.
PROPAGATION_S = 5.0
RESYNC_S = 10.0
ADMIN_TOKEN = "cluster-admin"


class RedisServer:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.process = None
        self.start()

    def start(self) -> None:
        self.log = open(self.dir / ("redis-%d.log" % self.port), "ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)], stdout=self.log, stderr=subprocess.STDOUT)
        poll_real_process(lambda: self.ping(), 10.0, "redis-server to answer")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port


class Instance:
    """One tracker process: HTTP, UDP, line and admin on free loopback ports."""

    def __init__(self, tmp_path: Path, name: str, redis: RedisServer, *extra: str) -> None:
        self.name = name
        self.http, self.udp, self.line, self.admin = (free_port(), free_port(socket.AF_INET, socket.SOCK_DGRAM),
                                                      free_port(), free_port())
        cwd = tmp_path / name
        cwd.mkdir(exist_ok=True)
        self.process = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % self.http,
             "--udp", "127.0.0.1:%d" % self.udp, "--line", "tcp:%d:interface=127.0.0.1" % self.line,
             "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % self.admin,
             "--admin-token", ADMIN_TOKEN, "--db", "off", "--redis", redis.url,
             "--instance-id", name, "--sweep-interval", "1"] + list(extra),
            cwd, [("127.0.0.1", p) for p in (self.http, self.line, self.admin)])

    def announce(self, swarm: int, peer: int, port: int, event=None, left: int = 100):
        status, body = get("127.0.0.1", self.http, announce_target(swarm, peer, port, left, event))
        assert status == 200, body
        return bdecode(body)

    def ports_seen_by(self, swarm: int, asking_peer: int = 99):
        """The ports of the peers this instance returns for `swarm` (asking as a seeder-less leecher)."""
        reply = self.announce(swarm, asking_peer, 1, left=1)
        peers = reply.get(b"peers", b"")
        return {struct.unpack("!H", peers[i + 4:i + 6])[0] for i in range(0, len(peers), 6)}

    def admin_call(self, method: str, path: str, body=None):
        request = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.admin, path), method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> bool:
        return self.process.stop()


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def pair(tmp_path, redis):
    started = []
    try:
        started.append(Instance(tmp_path, "a", redis))
        started.append(Instance(tmp_path, "b", redis))
        yield started
    finally:
        for instance in started:
            instance.stop()


def eventually(condition, what, timeout_s=PROPAGATION_S):
    return poll_real_process(condition, timeout_s, what)


def test_a_peer_announced_at_one_instance_is_returned_by_the_other_both_ways(pair):
    a, b = pair
    a.announce(1, 1, 7001)
    eventually(lambda: 7001 in b.ports_seen_by(1), "peer from A at B")
    b.announce(1, 2, 7002)
    eventually(lambda: 7002 in a.ports_seen_by(1), "peer from B at A")
    # Stopped at A: it leaves B too.
    a.announce(1, 1, 7001, event="stopped")
    eventually(lambda: 7001 not in b.ports_seen_by(1), "stopped peer gone from B")
    assert 7002 in b.ports_seen_by(1)


def test_no_echo_a_peer_is_published_only_by_the_instance_it_announced_to(pair, redis):
    a, b = pair
    a.announce(2, 1, 7011)
    eventually(lambda: 7011 in b.ports_seen_by(2), "peer from A at B")
    entries = _redis(redis, "XRANGE", "tracker:changes", "-", "+")
    origins = [e[1][e[1].index(b"o") + 1] for e in entries if info_hash(2) + peer_id(1) in e[1][5]]
    assert origins and set(origins) == {b"a"}, origins


def _redis(redis, *args):
    from tracker.cluster.resp import BlockingRedis

    client = BlockingRedis("127.0.0.1", redis.port)
    try:
        return client.command(*args)
    finally:
        client.close()
