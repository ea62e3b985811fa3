"""Shared test helpers: building requests, decoding bencoded replies, and the
settings of an in-process tracker with a database."""
from __future__ import annotations

import bencode

from tracker.core import AnnounceRequest
from tracker.options import Options


def info_hash(n: int) -> bytes:
    return b"H%019d" % n


def peer_id(n: int) -> bytes:
    return b"-TT0001-%012d" % n


def announce_request(swarm: int = 1, peer: int = 1, ip: str = "10.0.0.1", port: int = 6881,
                     left: int = 100, event: int = 0, numwant=None, door: str = "http",
                     **extra) -> AnnounceRequest:
    return AnnounceRequest(info_hash(swarm), peer_id(peer), ip, port, left=left, event=event,
                           numwant=numwant, door=door, **extra)


def bdecode(data: bytes):
    """Decode bencode keeping keys and strings as bytes."""
    return bencode.Bencode(encoding=None).decode(data)


def parse_options(*args) -> Options:
    config = Options()
    config.parseOptions(list(args))
    return config


def tracker_config(db_path, *extra) -> Options:
    """An in-process tracker on a loopback HTTP port, no other door, writing
    to `db_path` every 50 ms."""
    return parse_options("--http", "tcp:0:interface=127.0.0.1", "--udp", "off", "--line", "off",
                         "--ws", "off", "--admin", "off", "--db", str(db_path),
                         "--flush-interval", "0.05", *extra)
