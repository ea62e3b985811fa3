"""One bounded memo table for the hot paths (parsed addresses, unescaped ids,
connection ids, address text).

Each of these maps a value seen on the wire to something derived from it, and
the same values come back again and again (a swarm's hash on every announce,
a client's address at each of its requests). A table that only grew would be
a memory leak an attacker could drive, so every table is a `BoundedCache`:
when it is full, the next `put` empties it and it refills with what is in use.
Emptying costs O(1) per entry over the table's life and nothing on a hit,
which an LRU's bookkeeping on every hit would not.
"""
from __future__ import annotations

from typing import TypeVar

# Entries kept before a cache is emptied: enough for the active set of a busy
# tracker, small enough (a few MiB) not to matter.
DEFAULT_LIMIT = 65536

V = TypeVar("V")


class BoundedCache(dict):
    """A dict read with `get` (a plain dict look-up on the hot path) and
    written with `put`, which empties it first when it holds `limit` entries."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a cache must hold at least one entry")
        self.limit = limit

    def put(self, key, value: V) -> V:
        """Remember `value` under `key` and return it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
