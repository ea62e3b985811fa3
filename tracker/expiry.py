"""The expiry sweep: removes silent peers in bounded slices on the reactor."""
from __future__ import annotations

from typing import Iterator, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tracker.core import TrackerCore

log = Logger()


class ExpiryService(Service):
    """Every `interval_s`, walk all peers and drop those past their time to live.

    A sweep examines at most `slice_size` peers per reactor turn and then
    yields (callLater(0)), so a million peers never stall announces."""

    def __init__(self, core: TrackerCore, clock: IReactorTime, interval_s: float,
                 slice_size: int) -> None:
        self.core = core
        self.clock = clock
        self.interval_s = interval_s
        self.slice_size = slice_size
        self._loop: Optional[LoopingCall] = None
        self._sweep: Optional[Iterator[int]] = None
        self._next_slice: Optional[IDelayedCall] = None
        self._started_at = 0.0
        self._removed = 0

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.start_sweep)
        self._loop.clock = self.clock
        self._loop.start(self.interval_s, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._next_slice is not None and self._next_slice.active():
            self._next_slice.cancel()
        self._sweep = None

    @property
    def sweeping(self) -> bool:
        return self._sweep is not None

    def start_sweep(self) -> None:
        if self._sweep is not None:
            return  # the previous sweep is still running
        self._started_at = self.clock.seconds()
        self._removed = 0
        self._sweep = self.core.expire(self._started_at, self.slice_size)
        self._run_slice()

    def _run_slice(self) -> None:
        self._next_slice = None
        sweep = self._sweep
        if sweep is None:
            return
        try:
            self._removed = next(sweep)
        except StopIteration:
            self._sweep = None
            if self._removed:
                log.info("expiry sweep removed {removed} peers in {duration_s:.3f} s",
                         removed=self._removed,
                         duration_s=self.clock.seconds() - self._started_at)
            return
        except Exception:
            self._sweep = None
            log.failure("expiry sweep failed")
            return
        self._next_slice = self.clock.callLater(0, self._run_slice)
