"""UDP connection ids any instance accepts: the MAC keys derive from a secret shared in Redis.

The door's ConnectionIds makes a random key per rotation period and keeps it
in memory, so an id is good only at the process that issued it. Here each
period's key is derived from `tracker:udp-secret` (set once, by the first
instance, with SET NX) and the period number, so every instance computes the
same key for the same period and keys still rotate. Until the secret is
known (Redis not reached at start) the process's own random keys are used.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional

from tracker.doors.connection_ids import ConnectionIds


class SharedConnectionIds(ConnectionIds):
    def __init__(self, clock, secret: Callable[[], Optional[bytes]], max_age_s: float = 300.0,
                 rotate_s: float = 3600.0) -> None:
        super().__init__(clock, max_age_s=max_age_s, rotate_s=rotate_s)
        self._secret = secret
        self._derived = {}

    def _key(self, window: int, create: bool) -> Optional[bytes]:
        secret = self._secret()
        if secret is None:
            return super()._key(window, create)
        index = window // self.windows_per_key
        key = self._derived.get(index)
        if key is None:
            key = hashlib.blake2s(index.to_bytes(8, "big"), key=secret[:32],
                                  person=b"udp-cid").digest()
            self._derived = {i: k for i, k in self._derived.items() if i >= index - 1}
            self._derived[index] = key
        return key
