"""Small clients of the abuse cases: raw HTTP, line-protocol connections, idle TCP connections."""
from __future__ import annotations

import os
import socket
import time
from typing import List, Optional, Tuple
from urllib.parse import quote_from_bytes


def random_hash() -> bytes:
    return os.urandom(20)


def announce_path(info_hash: bytes, peer: int, numwant: Optional[str] = None, left: int = 100) -> str:
    path = "/announce?info_hash=%s&peer_id=-AB0001-%012d&port=%d&uploaded=0&downloaded=0&left=%d" % (
        quote_from_bytes(info_hash, safe=""), peer, 10000 + peer % 50000, left)
    return path + ("&numwant=%s" % numwant if numwant is not None else "")


def http_request(port: int, path: str, timeout_s: float = 10, source: str = "") -> Tuple[bytes, float]:
    """One GET on a fresh connection (from `source`, an address of this host):
    the whole reply and the seconds until its first byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s,
                                  source_address=(source, 0) if source else None) as s:
        started = time.monotonic()
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        first = s.recv(65536)
        elapsed = time.monotonic() - started
        chunks = [first]
        while chunks[-1]:
            chunks.append(s.recv(65536))
    return b"".join(chunks), elapsed


def http_body(reply: bytes) -> bytes:
    return reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""


class LineConnection:
    """A node's raw line connection: send lines, read lines with a deadline."""

    def __init__(self, port: int, timeout_s: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buffer = b""
        self.eof = False  # the tracker closed the connection

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self, timeout_s: float = 10) -> Optional[bytes]:
        """The next line (without its end), None if the connection closed (`eof`) or timed out."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def command(self, line: bytes, timeout_s: float = 10) -> Optional[bytes]:
        """Send one line, return the first line back that is not an event."""
        self.send(line + b"\n")
        while True:
            reply = self.read_line(timeout_s)
            if reply is None or not reply.startswith(b"*"):
                return reply

    def close(self) -> None:
        self.sock.close()


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of a socket (1 established, 7 closed, 8 close-wait), read
    with TCP_INFO without reading any data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


TCP_ESTABLISHED = 1


def open_idle(port: int, count: int, source: str = "127.0.0.1") -> List[socket.socket]:
    """`count` TCP connections that say nothing; stops early if the tracker refuses one."""
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2,
                                                  source_address=(source, 0)))
        except OSError:
            break
    return socks
