"""Clients of a real tracker process for the end-to-end tests: HTTP GET, announce targets, a node's line connection."""
from __future__ import annotations

import http.client
import socket
from typing import List, Optional, Tuple
from urllib.parse import quote_from_bytes

from helpers import info_hash, peer_id


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

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
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
