"""Reading the tracker database: the queries behind `tracker-admin --db` and the
totals chart's history, so that no SQL lives outside the store.

`StoreReader.open(path)` opens a file read-only (a stopped tracker's, or a
running one's: WAL lets readers in while the tracker writes); the running
tracker's store builds one on its own connection.
"""
from __future__ import annotations

import os
import sqlite3
import urllib.parse
from typing import List, Optional, Tuple

import attr

from tracker.store.database import StoreError

# Sort orders of the busiest-swarms query, by the name the admin API uses.
SWARM_SORTS = ("peers", "seeders", "leechers", "completed", "first_seen")


@attr.s(slots=True, frozen=True)
class StoredPeer:
    peer_id = attr.ib()  # type: bytes
    ip = attr.ib()  # type: str
    port = attr.ib()  # type: int
    left = attr.ib()  # type: int
    door = attr.ib()  # type: str
    last_seen = attr.ib()  # type: float
    # The byte counters of the peer's last announce (not held in memory while running).
    uploaded = attr.ib(default=0)  # type: int
    downloaded = attr.ib(default=0)  # type: int


@attr.s(slots=True, frozen=True)
class StoredContent:
    info_hash = attr.ib()  # type: bytes
    completed = attr.ib()  # type: int
    name = attr.ib()  # type: Optional[str]
    size = attr.ib()  # type: Optional[int]
    first_seen = attr.ib()  # type: Optional[float]


@attr.s(slots=True, frozen=True)
class StoredSwarm:
    """A swarm's stored figures (the busiest-swarms list)."""
    info_hash = attr.ib()  # type: bytes
    peers = attr.ib()  # type: int
    seeders = attr.ib()  # type: int
    leechers = attr.ib()  # type: int
    completed = attr.ib()  # type: int
    first_seen = attr.ib()  # type: float
    name = attr.ib()  # type: Optional[str]
    size = attr.ib()  # type: Optional[int]


@attr.s(slots=True, frozen=True)
class StoredNote:
    """An operator's entry (an access rule, a ban, a node token): what it is
    about, the note given with it and when it was added."""
    kind = attr.ib()  # type: str  # allow, deny, ban or token
    subject = attr.ib()  # type: str  # hex info hash, CIDR or node id
    note = attr.ib()  # type: Optional[str]
    added_at = attr.ib()  # type: Optional[float]


@attr.s(slots=True, frozen=True)
class StoredNode:
    node_id = attr.ib()  # type: str
    ip = attr.ib()  # type: Optional[str]
    port = attr.ib()  # type: Optional[int]
    region = attr.ib()  # type: Optional[str]
    last_seen = attr.ib()  # type: float


_SWARMS = (
    "SELECT c.info_hash, count(p.peer_id) AS peers, coalesce(sum(p.left_bytes = 0), 0) AS seeders, "
    "coalesce(sum(p.left_bytes != 0), 0) AS leechers, c.completed, c.first_seen, c.name, c.size "
    "FROM content c LEFT JOIN peers p ON p.info_hash = c.info_hash "
    "GROUP BY c.info_hash ORDER BY %s DESC LIMIT ?")


class StoreReader:
    """Read-only questions about a tracker database, answered as values."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str) -> "StoreReader":
        """Open `path` read-only; StoreError (one line) if it is missing or not a tracker's."""
        if not os.path.isfile(path):
            raise StoreError("database %s does not exist" % path)
        try:
            conn = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(path), uri=True)
        except sqlite3.Error as e:
            raise StoreError("cannot read database %s: %s" % (path, e))
        reader = cls(conn, path)
        try:
            reader.rows("SELECT version FROM schema_version")
        except sqlite3.Error as e:
            conn.close()
            raise StoreError("cannot read database %s: %s" % (path, e))
        return reader

    def rows(self, sql: str, *args) -> List[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self.conn.close()

    def peer_totals(self) -> Tuple[int, int, int]:
        """(swarms with peers, peers, seeders)."""
        (row,) = self.rows("SELECT count(DISTINCT info_hash), count(*), coalesce(sum(left_bytes = 0), 0) "
                           "FROM peers")
        return row

    def access_mode(self) -> str:
        mode = self.rows("SELECT value FROM settings WHERE key = 'access_mode'")
        return mode[0][0] if mode else "open"

    def content_of(self, info_hash: bytes) -> Optional[StoredContent]:
        rows = self.rows("SELECT completed, name, size, first_seen FROM content WHERE info_hash = ?",
                         info_hash)
        return StoredContent(info_hash, *rows[0]) if rows else None

    def peers_of(self, info_hash: bytes) -> List[StoredPeer]:
        return [StoredPeer(*row) for row in self.rows(
            "SELECT peer_id, ip, port, left_bytes, door, last_seen, uploaded, downloaded FROM peers "
            "WHERE info_hash = ?", info_hash)]

    def busiest_swarms(self, sort: str, limit: int) -> List[StoredSwarm]:
        """The `limit` swarms with the most of `sort` (one of SWARM_SORTS), most first."""
        if sort not in SWARM_SORTS:
            raise ValueError("unknown sort %r" % sort)
        return [StoredSwarm(*row) for row in self.rows(_SWARMS % sort, limit)]

    def nodes(self) -> List[StoredNode]:
        return [StoredNode(*row) for row in self.rows(
            "SELECT node_id, ip, port, region, last_seen FROM nodes ORDER BY node_id")]

    def content(self, limit: int) -> List[StoredContent]:
        """Content rows, oldest first."""
        return [StoredContent(*row) for row in self.rows(
            "SELECT info_hash, completed, name, size, first_seen FROM content "
            "ORDER BY first_seen LIMIT ?", limit)]

    def access_list(self, list_name: str) -> List[bytes]:
        return [row[0] for row in self.rows("SELECT info_hash FROM access_list WHERE list = ?",
                                            list_name)]

    def bans(self) -> List[str]:
        return [row[0] for row in self.rows("SELECT cidr FROM bans ORDER BY cidr")]

    def nodes_with_tokens(self) -> List[str]:
        return [row[0] for row in self.rows("SELECT node_id FROM node_tokens ORDER BY node_id")]

    def notes(self) -> List[StoredNote]:
        """Every access rule, ban and node token with its note and time added
        (never a token's secret)."""
        found = [StoredNote(list_name, info_hash.hex(), note, added_at)
                 for list_name, info_hash, note, added_at in self.rows(
                     "SELECT list, info_hash, note, added_at FROM access_list")]
        found += [StoredNote("ban", cidr, note, added_at) for cidr, note, added_at in self.rows(
            "SELECT cidr, note, added_at FROM bans")]
        found += [StoredNote("token", node_id, None, created_at) for node_id, created_at in self.rows(
            "SELECT node_id, created_at FROM node_tokens")]
        return sorted(found, key=lambda n: (n.kind, n.subject))

    def recent_totals(self, since_minute: int) -> List[Tuple[int, int, int, int, int, int]]:
        """(minute, swarms, peers, seeders, leechers, announces) from `since_minute` on."""
        return self.rows("SELECT minute, swarms, peers, seeders, leechers, announces FROM totals "
                         "WHERE minute >= ? ORDER BY minute", since_minute)
