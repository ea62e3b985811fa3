"""Admission to the stream doors: a connection past the shared caps gets one
clear refusal in the door's own language and is closed.

Every stream door's factory mixes in `LimitedConnections`; all of them share
one `ConnectionLimiter` (tracker/limits.py), so a flood on one door cannot
take the descriptors the others, and the admin listener, need.
"""
from __future__ import annotations

from typing import Optional

from twisted.internet.protocol import Protocol

from tracker.addresses import normalise_ip
from tracker.limits import REFUSED_PER_ADDRESS, ConnectionLimiter

REFUSAL_TEXT = {
    REFUSED_PER_ADDRESS: "too many connections from your address",
}
DEFAULT_REFUSAL_TEXT = "too many connections: try again later"


def refusal_text(reason: str) -> str:
    return REFUSAL_TEXT.get(reason, DEFAULT_REFUSAL_TEXT)


class RefusedConnection(Protocol):
    """Writes the refusal and closes; holds nothing else."""

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        self.transport.write(self.message)
        self.transport.loseConnection()


class LimitedConnections:
    """Mixin for a stream door's factory (before `Factory` in the bases).

    A connection is counted when built and released when the door's protocol
    reports it lost through `connection_released(peer_ip)`. The door says how
    a refusal reads on its wire with `refusal_message(text)`."""

    limiter: Optional[ConnectionLimiter] = None

    def refusal_message(self, text: str) -> bytes:
        raise NotImplementedError

    def buildProtocol(self, addr):
        limiter = self.limiter
        if limiter is not None:
            reason = limiter.admit(normalise_ip(addr.host))
            if reason is not None:
                return RefusedConnection(self.refusal_message(refusal_text(reason)))
        return super().buildProtocol(addr)

    def connection_released(self, peer_ip: str) -> None:
        if self.limiter is not None:
            self.limiter.release(peer_ip)
