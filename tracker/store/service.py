"""Write-behind persistence: restore at start, flush every interval, flush at stop.

The reactor thread only swaps the change log out (O(1)); rows are built and
written by one dedicated store thread. A flush that fails is logged, its
changes go back into the log, and the next interval retries them; requests
are answered all the while.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tracker.core import ChangeLog, TrackerCore
from tracker.store.sqlite import SQLiteStore

log = Logger()

GIL_SWITCH_INTERVAL_S = 0.001
# How much lower the background store thread's scheduling priority is than the reactor's.
STORE_THREAD_NICENESS = 10
# Batches up to this many rows are written by the background (low priority)
# thread; larger ones, a sign the store is falling behind, at normal priority.
BACKGROUND_MAX_ROWS = 30_000


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
                 "largest_rows", "largest_duration_s", "longest_duration_s")

    def __init__(self) -> None:
        self.largest_rows = 0
        self.largest_duration_s = 0.0
        self.longest_duration_s = 0.0
        self.flushes = 0
        self.failures = 0
        self.rows = 0
        self.last_duration_s = 0.0
        self.restore_s = 0.0


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
        self._flush_loop: Optional[LoopingCall] = None

    # -- start and stop -------------------------------------------------------

    def startService(self) -> None:
        report = self.store.restore(self.core, self.reactor.seconds())
        self.stats.restore_s = report.seconds
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
        batch = self.changes.take()
        if not batch:
            return succeed(None)
        started = time.perf_counter()
        pool = self._background_pool if len(batch) <= BACKGROUND_MAX_ROWS else self._pool
        d = deferToThreadPool(self.reactor, pool, self.store.write, batch)

        def written(rows: int) -> None:
            stats = self.stats
            stats.flushes += 1
            stats.rows += rows
            stats.last_duration_s = duration = time.perf_counter() - started
            if rows > stats.largest_rows:
                stats.largest_rows, stats.largest_duration_s = rows, duration
            stats.longest_duration_s = max(stats.longest_duration_s, duration)
            if self._failing:
                log.info("writing to {path} works again", path=self.store.path)
                self._failing = False

        def failed(failure) -> None:
            self.stats.failures += 1
            self.changes.give_back(batch)
            if not self._failing:  # log a failing streak once, not every second
                log.error("cannot write to {path}: {error}; keeping {count} changes to retry",
                          path=self.store.path, error=failure.getErrorMessage(), count=len(batch))
                self._failing = True

        def done(_):
            self._flushing = None

        d.addCallbacks(written, failed)
        d.addBoth(done)
        if self._flushing is None and not d.called:
            self._flushing = d
        return d

    @property
    def backlog(self) -> int:
        return len(self.changes)
