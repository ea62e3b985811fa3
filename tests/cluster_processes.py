"""Processes for the cluster tests: a redis-server on a free loopback port and
tracker instances pointed at it (tests/test_cluster_e2e.py, test_cluster_libtorrent.py)."""
from __future__ import annotations

import json
import socket
import ssl
import struct
import subprocess
import urllib.request
from pathlib import Path

from e2e_clients import announce_target, get
from helpers import bdecode
from process import TrackerProcess, free_port, poll_real_process

ADMIN_TOKEN = "cluster-admin"


class RedisServer:
    """A redis-server on a free loopback port; with `tls=(key, cert)` it speaks only TLS,
    trusts `cert` as its CA and requires clients to present a certificate it signed."""

    def __init__(self, tmp_path: Path, tls=None, password=None) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.tls, self.password = tls, password
        self.process = None
        self.start()

    def start(self) -> None:
        self.log = open(self.dir / ("redis-%d.log" % self.port), "ab")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]
        if self.tls is not None:
            key, cert = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-key-file", str(key),
                     "--tls-cert-file", str(cert), "--tls-ca-cert-file", str(cert)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        poll_real_process(lambda: self.ping(), 10.0, "redis-server to answer")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if self.tls is not None:
                    key, cert = self.tls
                    context = ssl.create_default_context(cafile=str(cert))
                    context.load_cert_chain(str(cert), str(key))
                    s = context.wrap_socket(s, server_hostname="127.0.0.1")
                s.sendall(b"PING\r\n")
                # A server with a password answers NOAUTH: it is up all the same.
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        auth = ":%s@" % self.password if self.password is not None else ""
        return "%s://%s127.0.0.1:%d/0" % (scheme, auth, self.port)


class Instance:
    """One tracker process: HTTP, UDP, line and admin on free loopback ports."""

    def __init__(self, tmp_path: Path, name: str, redis: RedisServer, *extra: str,
                 http: int = 0, udp: int = 0) -> None:
        self.name = name
        self.http = http or free_port()
        self.udp = udp or free_port(socket.AF_INET, socket.SOCK_DGRAM)
        self.line, self.admin = free_port(), free_port()
        cwd = tmp_path / name
        cwd.mkdir(exist_ok=True)
        self.process = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % self.http,
             "--udp", "127.0.0.1:%d" % self.udp, "--line", "tcp:%d:interface=127.0.0.1" % self.line,
             "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % self.admin,
             "--admin-token", ADMIN_TOKEN, "--db", "off", "--redis", redis.url,
             "--instance-id", name, "--sweep-interval", "1"] + list(extra),
            cwd, [("127.0.0.1", p) for p in (self.line, self.admin, self.http)])

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


class RedisCluster:
    """Three redis-server masters (--cluster-enabled yes) joined by redis-cli --cluster create."""

    def __init__(self, tmp_path: Path, masters: int = 3) -> None:
        self.ports = [_cluster_port() for _ in range(masters)]
        self.processes = []
        for port in self.ports:
            node_dir = tmp_path / ("node-%d" % port)
            node_dir.mkdir()
            self.processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file",
                 "nodes.conf", "--dir", str(node_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            poll_real_process(lambda: _pings(port), 10.0, "redis-server %d to answer" % port)
        subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports]
                       + ["--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        poll_real_process(lambda: all(_cluster_ok(p) for p in self.ports), 20.0, "the cluster to be ok")

    def url(self, node: int) -> str:
        return "redis://127.0.0.1:%d/0" % self.ports[node]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True,
                          text=True, timeout=10).stdout
    return "cluster_state:ok" in info
