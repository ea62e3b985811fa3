"""Clients of a real tracker process for the end-to-end tests: HTTP GET, announce targets, a node's line connection."""
from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from typing import List, Optional, Tuple
from urllib.parse import quote_from_bytes

from helpers import info_hash, peer_id
from process import REPO, TrackerProcess, free_port, source_env


def get(host: str, port: int, target: str) -> Tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def announce_target(swarm: int = 1, peer: int = 1, port: int = 6881, left: int = 100,
                    event: Optional[str] = None) -> str:
    target = "/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d" % (
        quote_from_bytes(info_hash(swarm)), quote_from_bytes(peer_id(peer)), port, left)
    if event:
        target += "&event=" + event
    return target


class LineSocket:
    """A node's connection, read line by line (events kept aside)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        # `source`: any address of 127/8 (all of it is local) to come from.
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.reader = self.sock.makefile("r", encoding="utf-8", newline="\n")
        self.events: List[str] = []

    def command(self, line: str, multiline: bool = False) -> List[str]:
        self.sock.sendall(line.encode() + b"\n")
        replies = []
        while True:
            text = self.reader.readline().rstrip("\n")
            if not text:
                raise AssertionError("connection closed while waiting for a reply to " + line)
            if text.startswith("*"):
                self.events.append(text)
                continue
            replies.append(text)
            if not multiline or text == "END" or text.startswith("ERR "):
                return replies

    def next_event(self) -> str:
        if self.events:
            return self.events.pop(0)
        return self.reader.readline().rstrip("\n")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


ADMIN_TOKEN = "admin-s3cret"


class AdminTracker:
    """A real tracker with HTTP, line and a token-guarded admin listener, and
    `tracker-admin` run against it (or against its stopped database)."""

    def __init__(self, tmp_path):
        self.http, self.line, self.admin = free_port(), free_port(), free_port()
        self.db = tmp_path / "tracker.sqlite3"
        self.process = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % self.http, "--udp", "off",
             "--ws", "off", "--line", "tcp:%d:interface=127.0.0.1" % self.line,
             "--admin", "tcp:%d:interface=127.0.0.1" % self.admin, "--admin-token", ADMIN_TOKEN,
             "--node-token", "edge-cfg=cfg-secret", "--line-auth", "open",
             "--db", str(self.db), "--flush-interval", "0.1"],
            tmp_path, [("127.0.0.1", p) for p in (self.http, self.line, self.admin)])

    def admin_cli(self, *args, token=ADMIN_TOKEN, db=False):
        command = [sys.executable, str(REPO / "tools" / "tracker_admin.py")]
        if db:
            command += ["--db", str(self.db)]
        else:
            command += ["--admin-url", "http://127.0.0.1:%d" % self.admin]
            if token:
                command += ["--token", token]
        env = dict(source_env())
        env.pop("TRACKER_ADMIN_ADMIN_TOKEN", None)
        return subprocess.run(command + list(args), capture_output=True, text=True, env=env,
                              timeout=60)
