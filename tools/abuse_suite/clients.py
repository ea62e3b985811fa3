"""Small clients of the abuse cases: raw HTTP, BEP 15 over UDP, line-protocol connections."""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import List, Optional, Tuple
from urllib.parse import quote_from_bytes

UDP_MAGIC = 0x41727101980


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


class UDPClient:
    """One BEP 15 client: connects once, then announces."""

    def __init__(self, port: int, timeout_s: float = 5) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(("127.0.0.1", port))
        self.sock.send(struct.pack(">QII", UDP_MAGIC, 0, 1))
        action, _, self.connection_id = struct.unpack(">IIQ", self.sock.recv(64))
        if action != 0:
            raise RuntimeError("UDP connect refused")

    def announce(self, info_hash: bytes, peer: int, numwant: int = 50) -> Tuple[int, bytes]:
        """(action, payload after the 8-byte header) of the reply."""
        self.sock.send(struct.pack(">QII20s20sQQQIIIiH", self.connection_id, 1, 2, info_hash,
                                   b"-AB0001-%012d" % peer, 0, 100, 0, 2, 0, 0, numwant,
                                   10000 + peer % 50000))
        reply = self.sock.recv(65536)
        return struct.unpack(">I", reply[:4])[0], reply[8:]

    def close(self) -> None:
        self.sock.close()


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
