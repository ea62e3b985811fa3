"""Timeouts for the stream doors' connections, shared by every stream door.

A door's factory keeps its open connections and a coarse clock (`now`, read
by connections on every request instead of asking the reactor); a timer calls
`tick` about once a second to advance the clock and let each connection close
itself if it has been idle or slow too long.
"""
from __future__ import annotations

from typing import Set

from twisted.internet.interfaces import IReactorTime


class TimedConnections:
    """Mixin for a door's factory. Its connections add themselves to
    `connections` when made, discard themselves when lost, and define
    `check_timeout(now)`."""

    clock: IReactorTime
    connections: Set
    now: float

    def start_timing(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.connections = set()
        self.now = clock.seconds()

    def tick(self) -> None:
        """Advance `now` and enforce every connection's timeouts."""
        self.now = now = self.clock.seconds()
        for connection in list(self.connections):
            connection.check_timeout(now)
