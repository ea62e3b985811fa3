"""Writing change batches to SQLite, and rebuilding the core from it at start-up."""
from __future__ import annotations

import os
import sqlite3
import time
from itertools import groupby, islice
from operator import itemgetter
from typing import Dict, Iterable, Optional, Sequence, Tuple

import attr

from tracker.core import AccessPolicy, ChangeBatch, TrackerCore
from tracker.core.changes import (AccessRuleAdded, AccessRuleRemoved, BanAdded, BanRemoved, ModeSet,
                                  NodeTokenRemoved, NodeTokenSet, FIRST, REMOVED, SEEN, UPSERT,
                                  content_records, peer_records)
from tracker.store.database import MEMORY
from tracker.store.queries import StoreReader

# Peers written per executemany before the store thread yields the interpreter lock.
WRITE_CHUNK = 500
# Rows per transaction: a batch larger than this (the store catching up) is
# committed in parts, each well under a second.
TRANSACTION_ROWS = 50_000

_UPSERT_PEER = (
    "INSERT INTO peers (info_hash, peer_id, ip, port, left_bytes, uploaded, downloaded, last_seen, "
    "door) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (info_hash, peer_id) DO UPDATE SET "
    "ip = excluded.ip, port = excluded.port, left_bytes = excluded.left_bytes, "
    "uploaded = excluded.uploaded, downloaded = excluded.downloaded, "
    "last_seen = excluded.last_seen, door = excluded.door")
_UPDATE_SEEN = "UPDATE peers SET last_seen = ? WHERE info_hash = ? AND peer_id = ?"
_DELETE_PEER = "DELETE FROM peers WHERE info_hash = ? AND peer_id = ?"
_UPSERT_CONTENT = (
    "INSERT INTO content (info_hash, first_seen, completed, name, size) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (info_hash) DO UPDATE SET completed = max(content.completed, excluded.completed), "
    "name = coalesce(excluded.name, content.name), size = coalesce(excluded.size, content.size)")
_INSERT_COMPLETION = "INSERT OR IGNORE INTO completions (info_hash, peer_id, completed_at) VALUES (?, ?, ?)"
_UPSERT_NODE = (
    "INSERT INTO nodes (node_id, ip, port, region, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (node_id) DO UPDATE SET ip = excluded.ip, port = excluded.port, "
    "region = excluded.region, last_seen = excluded.last_seen")
_UPSERT_TOTALS = ("INSERT OR REPLACE INTO totals (minute, swarms, peers, seeders, leechers, announces) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_ADD_ACCESS = "INSERT OR REPLACE INTO access_list (list, info_hash, note, added_at) VALUES (?, ?, ?, ?)"
_REMOVE_ACCESS = "DELETE FROM access_list WHERE list = ? AND info_hash = ?"
_ADD_BAN = "INSERT OR REPLACE INTO bans (cidr, note, added_at) VALUES (?, ?, ?)"
_REMOVE_BAN = "DELETE FROM bans WHERE cidr = ?"
_SET_TOKEN = "INSERT OR REPLACE INTO node_tokens (node_id, token, created_at) VALUES (?, ?, ?)"
_REMOVE_TOKEN = "DELETE FROM node_tokens WHERE node_id = ?"
_SET_MODE = "INSERT OR REPLACE INTO settings (key, value) VALUES ('access_mode', ?)"


# A peer log record's statement, and its parameters from (key, row or time or None).
_PEER_STATEMENTS = {
    UPSERT: (_UPSERT_PEER, lambda key, row: key + row),
    FIRST: (_UPSERT_PEER, lambda key, row: key + row),
    SEEN: (_UPDATE_SEEN, lambda key, seen: (seen,) + key),
    REMOVED: (_DELETE_PEER, lambda key, _: key),
}


def operator_statement(change) -> Tuple[str, tuple]:
    """The SQL for one of the operator's changes (access rules, bans, tokens, mode)."""
    if isinstance(change, AccessRuleAdded):
        return _ADD_ACCESS, (change.list_name, change.info_hash, change.note, change.added_at)
    if isinstance(change, AccessRuleRemoved):
        return _REMOVE_ACCESS, (change.list_name, change.info_hash)
    if isinstance(change, BanAdded):
        return _ADD_BAN, (change.cidr, change.note, change.added_at)
    if isinstance(change, BanRemoved):
        return _REMOVE_BAN, (change.cidr,)
    if isinstance(change, NodeTokenSet):
        return _SET_TOKEN, (change.node_id, change.token, change.created_at)
    if isinstance(change, NodeTokenRemoved):
        return _REMOVE_TOKEN, (change.node_id,)
    if isinstance(change, ModeSet):
        return _SET_MODE, (change.mode,)
    raise TypeError("no SQL for %r" % (change,))


class _OutOfTime(Exception):
    """A part of a batch was written and committed; the rest is for another call."""


class _Writer:
    """Runs a batch's statements in chunks, inside transactions of at most
    TRANSACTION_ROWS rows. The batch's rows come in a fixed order, so a write
    cut short by its deadline can be resumed by skipping what was written."""

    def __init__(self, conn: sqlite3.Connection, skip: int = 0,
                 deadline: Optional[float] = None) -> None:
        self.conn = conn
        self.pending = 0  # rows in the open transaction
        self.position = 0  # rows of the batch passed so far, written or skipped
        self.skip = skip
        self.deadline = deadline

    def _skipped(self, count: int) -> int:
        """How many of the next `count` rows an earlier part already wrote."""
        skipped = min(max(self.skip - self.position, 0), count)
        self.position += count
        return skipped

    def rows(self, sql: str, rows: Sequence) -> None:
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = rows[start:start + WRITE_CHUNK]
            skipped = self._skipped(len(chunk))
            if skipped < len(chunk):
                self._run(sql, chunk[skipped:])

    def stream(self, sql: str, rows: Iterable, count: int) -> None:
        """`rows` for `count` rows made as they are read, a chunk at a time: a
        batch's million packed peers or removals (ChangeBatch) are never
        unpacked all at once."""
        rows = iter(rows)
        for start in range(0, count, WRITE_CHUNK):
            size = min(WRITE_CHUNK, count - start)
            skipped = self._skipped(size)
            chunk = list(islice(rows, size))
            if skipped < size:
                self._run(sql, chunk[skipped:])

    def records(self, records: Iterable, count: int) -> None:
        """A peer log's `count` records (ChangeBatch.peer_log), in order, a
        chunk at a time; each run of one kind in a chunk is one statement."""
        records = iter(records)
        for start in range(0, count, WRITE_CHUNK):
            size = min(WRITE_CHUNK, count - start)
            skipped = self._skipped(size)
            chunk = list(islice(records, size))[skipped:]
            if not chunk:
                continue
            for kind, run in groupby(chunk, key=itemgetter(0)):
                run = list(run)
                if kind == FIRST:  # the new swarm's content row first
                    self._execute(_UPSERT_CONTENT, [(key[0], row[5], 0, None, None)
                                                    for _, key, row in run])
                sql, parameters = _PEER_STATEMENTS[kind]
                self._execute(sql, [parameters(key, value) for _, key, value in run])
            self._pause()

    def _run(self, sql: str, rows: Sequence) -> None:
        self._execute(sql, rows)
        self._pause()

    def _execute(self, sql: str, rows: Sequence) -> None:
        conn = self.conn
        if not conn.in_transaction:
            conn.execute("BEGIN")
        conn.executemany(sql, rows)
        self.pending += len(rows)

    def _pause(self) -> None:
        """Between chunks: commit a large transaction, stop at the deadline,
        hand the interpreter lock to the reactor thread."""
        if self.pending >= TRANSACTION_ROWS:
            self.commit()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.commit()
            raise _OutOfTime()
        time.sleep(0)

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.pending = 0

    def abandon(self) -> None:
        # SQLite may already have rolled back (disk full does): a second
        # ROLLBACK would raise and hide the real cause.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def write_peer_changes(writer: _Writer, batch: ChangeBatch) -> None:
    """Content rows, then peers upserted, seen and removed: as the batch's
    records, in order and unpacked a chunk at a time, or from the dicts a
    consumer made of them (ChangeBatch)."""
    if batch.packed:
        writer.stream(_UPSERT_CONTENT, ((info_hash,) + row for info_hash, row
                                        in content_records(batch.content_log)),
                      batch.content_changes)
        writer.records(peer_records(batch.peer_log), batch.peer_changes)
        return
    writer.rows(_UPSERT_CONTENT, [(info_hash,) + content
                                  for info_hash, content in batch.content.items()])
    writer.stream(_UPSERT_PEER, (key + row for key, row in batch.peers.items()), len(batch.peers))
    writer.rows(_UPDATE_SEEN, [(seen, info_hash, peer_id)
                               for (info_hash, peer_id), seen in batch.seen.items()])
    writer.stream(_DELETE_PEER, batch.removed, len(batch.removed))


@attr.s(slots=True, frozen=True)
class RestoreReport:
    swarms = attr.ib()  # type: int
    peers = attr.ib()  # type: int
    dropped_peers = attr.ib()  # type: int
    seconds = attr.ib()  # type: float


class StoreFileLost(Exception):
    """The database file was removed or replaced behind the tracker's back."""


class SQLiteStore:
    """The tracker's durable copy. `write` runs on the store's own thread;
    `restore` runs once at start-up, before any request is served."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self.identity = self._file_identity()

    def _file_identity(self) -> Optional[Tuple[int, int]]:
        """(device, inode) of the file at `path` now; None for a memory database."""
        if self.path == MEMORY:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1, -1)
        return (st.st_dev, st.st_ino)

    def file_is_lost(self) -> bool:
        """True if `path` is no longer the file this connection writes (deleted,
        its directory removed, or another file put there): SQLite would go on
        writing to the unlinked file and lose it all."""
        return self.identity is not None and self._file_identity() != self.identity

    def check_file(self) -> None:
        if self.file_is_lost():
            raise StoreFileLost("the database file %s was removed or replaced while the tracker "
                                "ran" % self.path)

    def reopen(self, conn: sqlite3.Connection) -> None:
        """Write to a newly opened file from now on (after StoreFileLost)."""
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        self.conn = conn
        self.identity = self._file_identity()

    def write(self, batch: ChangeBatch) -> int:
        """Write one batch; return the number of rows written (see write_part)."""
        return self.write_part(batch)[0]

    def write_part(self, batch: ChangeBatch, skip: int = 0,
                   time_budget_s: Optional[float] = None) -> Tuple[int, bool]:
        """Write a batch, or as much of it as `time_budget_s` allows, leaving out
        its first `skip` rows (written by an earlier part); return (rows of the
        batch written so far, whether it is all written).

        Runs on the store thread. Rows are built and written in chunks with a
        pause between them, so this thread never holds the interpreter lock for
        long while the reactor thread has requests to answer; a large batch is
        committed every TRANSACTION_ROWS rows, so no transaction runs long and
        what is written survives a crash during the rest. Every change is
        idempotent, so a batch given back after a failure part-way is simply
        written again."""
        self.check_file()
        deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
        writer = _Writer(self.conn, skip, deadline)
        try:
            write_peer_changes(writer, batch)
            writer.rows(_INSERT_COMPLETION, batch.completions)
            writer.rows(_UPSERT_TOTALS, batch.totals)
            writer.rows(_UPSERT_NODE, [(node_id, ip, port, region, seen, seen)
                                       for node_id, (ip, port, region, seen) in batch.nodes.items()])
            for change in batch.operator:
                sql, parameters = operator_statement(change)
                writer.rows(sql, [parameters])
            writer.commit()
        except _OutOfTime:
            return writer.position, False
        except BaseException:
            writer.abandon()
            raise
        return len(batch), True

    def restore(self, core: TrackerCore, now: float, seen_slack_s: float = 0.0) -> RestoreReport:
        """Rebuild swarms from live peers (time to live not run out) and the
        completion counts; drop expired peers from the file too.

        `seen_slack_s`: how far a stored last-seen time may lag the true one
        (ChangeLog.coarsen_last_seen); a peer is restored as last seen that
        much later (never after `now`), so none expires before its time."""
        started = time.perf_counter()
        cutoff = now - core.settings.effective_peer_ttl_s - seen_slack_s
        conn = self.conn
        conn.execute("BEGIN")
        try:
            dropped = conn.execute("DELETE FROM peers WHERE last_seen < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        swarms: Dict[bytes, object] = {}
        for info_hash, first_seen, completed, name, size in conn.execute(
                "SELECT info_hash, first_seen, completed, name, size FROM content "
                "WHERE completed > 0 OR info_hash IN (SELECT info_hash FROM peers)"):
            swarms[info_hash] = core.restore_swarm(info_hash, first_seen, completed, name, size)
        restored = 0
        swarm = None
        current: Optional[bytes] = None
        for (info_hash, peer_id, ip, port, left, last_seen, door) in conn.execute(
                "SELECT info_hash, peer_id, ip, port, left_bytes, last_seen, door FROM peers "
                "ORDER BY info_hash"):
            if info_hash != current:
                current = info_hash
                swarm = swarms.get(info_hash)
                if swarm is None:
                    swarm = core.restore_swarm(info_hash, last_seen, 0)
            # A node's entries are pinned at infinity while it is connected; after a
            # restart they live one time to live unless the node comes back.
            core.restore_peer(swarm, peer_id, ip, port, left, min(last_seen + seen_slack_s, now), door)
            restored += 1
        for info_hash, peer_id in conn.execute(
                "SELECT info_hash, peer_id FROM completions WHERE completed_at >= ?", (cutoff,)):
            swarm = core.swarms.get(info_hash)
            if swarm is not None:
                swarm.remember_completion(peer_id)
        self.restore_access(core.access)
        return RestoreReport(len(core.swarms), restored, dropped, time.perf_counter() - started)

    def notes(self) -> list:
        """The operator's entries with their notes and times (StoredNote), read
        at start, before the store thread runs."""
        return StoreReader(self.conn, self.path).notes()

    def recent_totals(self, since_minute: int) -> list:
        """The totals chart's history (read at start, before the store thread runs)."""
        return StoreReader(self.conn, self.path).recent_totals(since_minute)

    def restore_access(self, access: AccessPolicy) -> None:
        """Load the access lists, bans, node tokens and mode the admin set."""
        conn = self.conn
        for list_name, info_hash in conn.execute("SELECT list, info_hash FROM access_list"):
            access.add(list_name, info_hash)
        for (cidr,) in conn.execute("SELECT cidr FROM bans"):
            access.ban(cidr)
        for node_id, token in conn.execute("SELECT node_id, token FROM node_tokens"):
            access.node_tokens[node_id] = token
        for (mode,) in conn.execute("SELECT value FROM settings WHERE key = 'access_mode'"):
            access.set_mode(mode)

    def close(self) -> None:
        self.conn.close()
