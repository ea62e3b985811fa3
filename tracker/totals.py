"""A time series of totals, one row a minute: for the status page, the admin
tool and (through the change log) the database."""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from tracker.core import ChangeLog, TrackerCore

MINUTE_S = 60
HISTORY_MINUTES = 24 * 60

# (minute, swarms, peers, seeders, leechers, announces in that minute)
TotalsRow = Tuple[int, int, int, int, int, int]
COLUMNS = ("minute", "swarms", "peers", "seeders", "leechers", "announces")


class TotalsRecorder(Service):
    name = "totals"

    def __init__(self, core: TrackerCore, clock, changes: Optional[ChangeLog] = None,
                 store=None) -> None:
        self.store = store  # where the earlier history is read from at start
        self.core = core
        self.clock = clock
        self.changes = changes
        self.history: Deque[TotalsRow] = deque(maxlen=HISTORY_MINUTES)
        self._loop: Optional[LoopingCall] = None
        self._announces_seen = 0

    def startService(self) -> None:
        super().startService()
        if self.store is not None:
            since = int(self.clock.seconds() // MINUTE_S) - HISTORY_MINUTES
            self.history.extend(tuple(row) for row in self.store.recent_totals(since))
        self._announces_seen = sum(self.core.stats.announces.values())
        self._loop = LoopingCall(self.record)
        self._loop.clock = self.clock
        self._loop.start(MINUTE_S, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def record(self) -> TotalsRow:
        totals = self.core.totals()
        announces = sum(self.core.stats.announces.values())
        row = (int(self.clock.seconds() // MINUTE_S), totals["swarms"], totals["peers"],
               totals["seeders"], totals["leechers"], announces - self._announces_seen)
        self._announces_seen = announces
        self.history.append(row)
        if self.changes is not None:
            self.changes.totals(row)
        return row

    def series(self, since_minute: int = 0) -> List[Dict[str, int]]:
        return [dict(zip(COLUMNS, row)) for row in self.history if row[0] >= since_minute]
