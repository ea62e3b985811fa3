"""Write-behind persistence: restore at start, flush every interval, flush at stop.

The reactor thread only swaps the change log out (O(1)); rows are built and
written by one dedicated store thread. A flush that fails is logged, its
changes go back into the log, and the next interval retries them; requests
are answered all the while.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from typing import Any, Dict, Iterator, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tracker.core import ChangeLog, TrackerCore
from tracker.histogram import FLUSH_BUCKETS_S, Histogram
from tracker.core.changes import AccessRuleAdded, BanAdded, ModeSet, NodeTokenSet
from tracker.store.database import StoreError, open_database
from tracker.store.sqlite import SQLiteStore, StoreFileLost

log = Logger()

GIL_SWITCH_INTERVAL_S = 0.001
# How much lower the background store thread's scheduling priority is than the reactor's.
STORE_THREAD_NICENESS = 10
# Batches up to this many rows are written by the background (low priority)
# thread; larger ones, a sign the store is falling behind, at normal priority.
BACKGROUND_MAX_ROWS = 30_000
# A re-announce that changes only a peer's last-seen time is recorded at most
# once per bucket of this many seconds (and of no more than a twentieth of the
# peer time to live), so the store keeps up with any re-announce rate; restore
# adds this much to stored times, so no peer expires early.
LAST_SEEN_RESOLUTION_S = 60.0
# Peers recorded per reactor turn when the whole state is written again.
REWRITE_SLICE = 10_000


def lower_thread_priority(increment: int) -> None:
    """Make the calling thread yield the CPU to the process's other threads.

    Linux keeps a nice value per thread: with a store thread at +10, a core
    shared with the reactor thread gives the reactor about nine tenths of its
    time while a flush runs, and the flush all the idle time. Elsewhere (no
    per-thread priorities) this does nothing. A thread cannot take back a
    higher priority without privileges, hence two store threads (below)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):
        pass


class FlushStats:
    """Figures about the store for the logs and, later, the metrics."""

    __slots__ = ("flushes", "failures", "rows", "last_duration_s", "restore_s",
                 "largest_rows", "largest_duration_s", "longest_duration_s", "file_lost",
                 "problem", "handed_over")

    def __init__(self) -> None:
        self.largest_rows = 0
        self.largest_duration_s = 0.0
        self.longest_duration_s = 0.0
        self.flushes = 0
        self.failures = 0
        self.rows = 0
        self.last_duration_s = 0.0
        self.restore_s = 0.0
        self.file_lost = 0  # times the file was found removed or replaced
        # Flushes the background thread could not finish in an interval.
        self.handed_over = 0
        self.problem: Optional[str] = None  # why writing fails now, for status and metrics


class PersistenceService(Service):
    name = "persistence"

    def __init__(self, core: TrackerCore, changes: ChangeLog, store: SQLiteStore, reactor,
                 flush_interval_s: float = 1.0) -> None:
        self.core = core
        self.changes = changes
        self.store = store
        self.reactor = reactor
        self.flush_interval_s = flush_interval_s
        self.stats = FlushStats()
        # Every flush's duration, for /metrics (tracker_flush_seconds).
        self.flush_durations = Histogram(FLUSH_BUCKETS_S)
        # (kind, subject) -> (note, added_at) of the operator's access rules, bans
        # and node tokens: loaded at start, kept up to date by the admin API, which
        # lists them (memory holds the rules themselves, not their notes).
        self.notes: Dict[Tuple[str, str], Tuple[Optional[str], Optional[float]]] = {}
        self.seen_resolution_s = min(LAST_SEEN_RESOLUTION_S,
                                     core.settings.effective_peer_ttl_s / 20)
        changes.coarsen_last_seen(self.seen_resolution_s)
        # Two store threads, used one at a time (a flush waits for the last):
        # ordinary batches go to the background one, at low priority, so that
        # requests do not queue behind a flush; a large batch means the store
        # is falling behind, and goes to the one at normal priority, which
        # keeps what a crash can lose to a few flush intervals.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="tracker-store")
        self._background_pool = ThreadPool(minthreads=1, maxthreads=1,
                                           name="tracker-store-background")
        self._flushing: Optional[Deferred] = None
        self._failing = False
        self._file_lost = False  # the file must be made again before writing
        self._rewrite: Optional[Iterator[int]] = None  # the whole state, being recorded again
        self._flush_loop: Optional[LoopingCall] = None

    # -- start and stop -------------------------------------------------------

    def startService(self) -> None:
        try:
            report = self.store.restore(self.core, self.reactor.seconds(), self.seen_resolution_s)
        except sqlite3.DatabaseError as e:
            raise SystemExit("tracker: the database %s is damaged (%s): move it aside (for example "
                             "mv %s %s.damaged) and start again, with an empty database"
                             % (self.store.path, e, self.store.path, self.store.path))
        self.stats.restore_s = report.seconds
        self.notes.update(((n.kind, n.subject), (n.note, n.added_at)) for n in self.store.notes())
        log.info("restored {peers} live peers in {swarms} swarms from {path} in {seconds:.3f} s "
                 "({dropped} expired peers dropped)", peers=report.peers, swarms=report.swarms,
                 path=self.store.path, seconds=report.seconds, dropped=report.dropped_peers)
        super().startService()
        # The store thread competes with the reactor thread for the interpreter
        # lock; switching every millisecond (instead of 5) bounds how long a
        # request can wait behind a flush.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._pool.start()
        self._background_pool.start()
        self._background_pool.callInThread(lower_thread_priority, STORE_THREAD_NICENESS)
        self._flush_loop = LoopingCall(self.flush)
        self._flush_loop.clock = self.reactor
        self._flush_loop.start(self.flush_interval_s, now=False)

    def stopService(self) -> Deferred:
        """Flush everything (after any flush in progress), then close the file."""
        super().stopService()
        if self._flush_loop is not None and self._flush_loop.running:
            self._flush_loop.stop()
        while self._rewrite is not None:  # finish recording the whole state first
            self._rewrite_step(slice_peers=None)
        pending = self._flushing or succeed(None)
        pending.addBoth(lambda _: self.flush())
        pending.addBoth(lambda _: self._final_report())
        return pending

    def _final_report(self) -> None:
        if len(self.changes):
            log.error("stopping with {count} changes not written to {path}",
                      count=len(self.changes), path=self.store.path)
        else:
            stats = self.stats
            log.info("all changes written to {path}: {flushes} flushes, {rows} rows; largest flush "
                     "{largest_rows} rows in {largest_s:.3f} s; longest {longest_s:.3f} s",
                     path=self.store.path, flushes=stats.flushes, rows=stats.rows,
                     largest_rows=stats.largest_rows, largest_s=stats.largest_duration_s,
                     longest_s=stats.longest_duration_s)
        self._pool.stop()
        self._background_pool.stop()
        self.store.close()

    # -- flushing ---------------------------------------------------------------

    def flush(self) -> Deferred:
        """Write what changed since the last flush, on the store thread."""
        if self._flushing is not None:
            return self._flushing
        # Checked every interval, not only when there is something to write:
        # the state already written would be lost with the file.
        if not self._file_lost and self.store.file_is_lost():
            self._lost("the database file %s was removed or replaced while the tracker ran"
                       % self.store.path)
        if self._file_lost and not self._make_file_again():
            return succeed(None)
        batch = self.changes.take()
        if not batch:
            return succeed(None)
        started = time.perf_counter()
        if len(batch) <= BACKGROUND_MAX_ROWS:
            # At low priority for at most one interval: a machine busy with
            # other work could starve that thread; the rest goes at normal priority.
            d = deferToThreadPool(self.reactor, self._background_pool, self.store.write_part, batch,
                                  0, self.flush_interval_s)
        else:
            d = deferToThreadPool(self.reactor, self._pool, self.store.write_part, batch)
        d.addCallback(self._finish_part, batch)
        d.addCallbacks(self._written, self._failed, callbackArgs=(started,), errbackArgs=(batch,))
        d.addBoth(self._flushed)
        if self._flushing is None and not d.called:
            self._flushing = d
        return d

    def _finish_part(self, result: Tuple[int, bool], batch) -> Any:
        rows, complete = result
        if complete:
            return rows
        self.stats.handed_over += 1
        d = deferToThreadPool(self.reactor, self._pool, self.store.write_part, batch, rows)
        return d.addCallback(lambda result: result[0])

    def _written(self, rows: int, started: float) -> None:
        stats = self.stats
        stats.flushes += 1
        stats.rows += rows
        stats.last_duration_s = duration = time.perf_counter() - started
        self.flush_durations.observe(duration)
        if rows > stats.largest_rows:
            stats.largest_rows, stats.largest_duration_s = rows, duration
        stats.longest_duration_s = max(stats.longest_duration_s, duration)
        if self._failing:
            log.info("writing to {path} works again", path=self.store.path)
            self._failing = False
            stats.problem = None

    def _failed(self, failure, batch) -> None:
        self.stats.failures += 1
        self.changes.give_back(batch)
        if failure.check(StoreFileLost):
            self._lost(failure.getErrorMessage())
        elif not self._failing:  # log a failing streak once, not every second
            log.error("cannot write to {path}: {error}; keeping {count} changes to retry",
                      path=self.store.path, error=failure.getErrorMessage(), count=len(batch))
            self._failing = True
            self.stats.problem = failure.getErrorMessage()

    def _flushed(self, _) -> None:
        self._flushing = None

    @property
    def backlog(self) -> int:
        return len(self.changes)

    # -- the file removed or replaced ------------------------------------------------

    def _lost(self, message: str) -> None:
        self.stats.file_lost += 1
        self.stats.problem = message
        self._failing = self._file_lost = True
        log.error("{message}; the whole state will be written to a new file at {path}",
                  message=message, path=self.store.path)

    def _make_file_again(self) -> bool:
        """Open a new file at the path and record the whole state for it; False
        (logged once per cause) while that cannot be done, e.g. the directory is gone."""
        try:
            directory = os.path.dirname(os.path.abspath(self.store.path))
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700)
                log.warn("made the database directory {directory} again", directory=directory)
            conn = open_database(self.store.path)
        except (StoreError, OSError) as e:
            if self.stats.problem != str(e):
                log.error("{error}; retrying every flush", error=str(e))
                self.stats.problem = str(e)
            return False
        self.store.reopen(conn)
        self._file_lost = False
        self.stats.problem = None
        log.info("new database file {path}: writing the whole state again", path=self.store.path)
        self._rewrite = record_everything(self.core, self.changes, self.reactor.seconds(), self.notes)
        self._rewrite_step()
        return True

    def _rewrite_step(self, slice_peers: Optional[int] = REWRITE_SLICE) -> None:
        """Record the next slice of the state; the next one on a later reactor turn."""
        rewrite = self._rewrite
        if rewrite is None:
            return
        recorded = 0
        for peers in rewrite:
            recorded += peers
            if slice_peers is not None and recorded >= slice_peers:
                self.reactor.callLater(0, self._rewrite_step)
                return
        self._rewrite = None


def record_everything(core: TrackerCore, changes: ChangeLog, now: float,
                      notes: Optional[Dict[Tuple[str, str], Tuple[Optional[str], Optional[float]]]] = None
                      ) -> Iterator[int]:
    """Record the whole live state into the change log, one swarm at a time
    (yielding how many peers each took), for a database file made anew. Later
    changes to the same peer simply replace what was recorded here. What memory
    does not hold is written as best known: bytes left 0 for a seeder and 1 for
    a leecher, byte counters 0; notes and times added as `notes` has them
    (else none, and now); completions (who completed) and the totals history
    start afresh."""
    access = core.access
    notes = notes or {}

    def known(kind: str, subject: str) -> Tuple[Optional[str], float]:
        note, added_at = notes.get((kind, subject), (None, None))
        return note, now if added_at is None else added_at

    changes.forget_recent()
    for list_name, hashes in (("allow", access.allowed), ("deny", access.denied)):
        for info_hash in sorted(hashes):
            changes.operator_changed(AccessRuleAdded(list_name, info_hash,
                                                     *known(list_name, info_hash.hex())))
    for cidr in sorted(access.bans):
        changes.operator_changed(BanAdded(cidr, *known("ban", cidr)))
    for node_id, token in sorted(access.node_tokens.items()):
        changes.operator_changed(NodeTokenSet(node_id, token, known("token", node_id)[1]))
    changes.operator_changed(ModeSet(access.mode))
    for info_hash in list(core.swarms):
        swarm = core.swarms.get(info_hash)
        if swarm is None:
            continue
        changes.content_changed(swarm)
        count = 0
        for peer in list(swarm.views()):
            changes.peer_updated(info_hash, peer.peer_id, (
                peer.ip, peer.port, 0 if peer.seeder else 1, 0, 0, peer.last_seen, peer.door))
            count += 1
        yield count
