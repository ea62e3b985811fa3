"""BEP 15 connection ids that cannot be forged and need no per-client table.

An id is 8 bytes: the low 16 bits of the time window it was issued in, then a
48-bit keyed BLAKE2s MAC (BLAKE2s: the fastest keyed hash on PyPy here) over (window, client address). Checking one takes a
single MAC and a constant-time comparison; nothing needs storing per client.
The last id issued to (or verified for) each recent address is remembered, so
a client's connect and the announces that follow it cost one MAC, not one each.

The MAC key rotates every `rotate_s` seconds; the previous key is kept so an id
stays valid across a rotation. Keys live in memory only: after a restart every
client's id is refused once with an error, and BEP 15 clients then connect
again (one extra round trip each), which is cheaper and safer than keeping a
secret on disk.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Callable, Dict, Optional

from twisted.internet.interfaces import IReactorTime

from tracker.cache import BoundedCache

WINDOW_S = 15


class ConnectionIds:
    """Issues and checks connection ids bound to a client address.

    An id is accepted for at least `max_age_s` seconds after it was issued
    (and at most `max_age_s + WINDOW_S`)."""

    def __init__(self, clock: IReactorTime, max_age_s: float = 300.0, rotate_s: float = 3600.0,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if max_age_s < 120:
            raise ValueError("BEP 15 needs connection ids accepted for at least 2 minutes")
        self.clock = clock
        self.max_windows = int(-(-max_age_s // WINDOW_S))  # ceil
        # A key must outlive every id made with it: at least two rotations span max_age.
        self.windows_per_key = max(int(rotate_s // WINDOW_S), self.max_windows + 1)
        self._random_bytes = random_bytes
        self._keys: Dict[int, bytes] = {}
        # The last id issued to (or verified for) each recent client address.
        self._recent = BoundedCache()

    def _key(self, window: int, create: bool) -> Optional[bytes]:
        index = window // self.windows_per_key
        key = self._keys.get(index)
        if key is None and create:
            key = self._keys[index] = self._random_bytes(32)
            for old in [i for i in self._keys if i < index - 1]:
                del self._keys[old]
        return key

    def _mac(self, key: bytes, window: int, address: bytes) -> bytes:
        return hashlib.blake2s(window.to_bytes(8, "big") + address, key=key, digest_size=6).digest()

    def issue(self, address: bytes) -> bytes:
        """A connection id for the client at `address` (packed IP bytes)."""
        window = int(self.clock.seconds() // WINDOW_S)
        stamp = (window & 0xFFFF).to_bytes(2, "big")
        recent = self._recent.get(address)
        if recent is not None and recent[:2] == stamp:
            return recent
        connection_id = stamp + self._mac(self._key(window, create=True), window, address)
        self._recent.put(address, connection_id)
        return connection_id

    def check(self, connection_id: bytes, address: bytes) -> bool:
        """True if `connection_id` was issued to `address` recently enough."""
        if len(connection_id) != 8:
            return False
        now_window = int(self.clock.seconds() // WINDOW_S)
        age = (now_window - int.from_bytes(connection_id[:2], "big")) & 0xFFFF
        if age > self.max_windows:
            return False
        window = now_window - age
        key = self._key(window, create=False)
        if key is None:  # issued before this process started, or too long ago
            return False
        recent = self._recent.get(address)
        if recent is not None and hmac.compare_digest(recent, connection_id):
            return True
        if hmac.compare_digest(connection_id[2:], self._mac(key, window, address)):
            self._recent.put(address, connection_id)
            return True
        return False
