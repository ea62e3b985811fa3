"""Resource bounds shared by the doors: open files, connections per address
and in total, and announces per address per second.

A hostile client must not make the tracker run out of file descriptors (and
with them the admin listener) or spend its CPU on one address's flood. These
are small bookkeeping objects the doors consult; they count what they refuse
so `/metrics` can show it.
"""
from __future__ import annotations

import resource
import socket
from itertools import islice
from typing import Dict, Optional, Tuple, Union

from twisted.logger import Logger

log = Logger()

# File descriptors kept free for the admin listener, the database and logs
# when the total connection cap is derived from the open-file limit.
RESERVED_FDS = 128

RATE_LIMITED = "rate_limited"
RATE_LIMITED_MESSAGE = "too many requests from your address: announce less often"
REFUSED_TOTAL = "connections_total"
REFUSED_PER_ADDRESS = "connections_per_address"


ClientKey = Union[str, bytes]


def client_key(ip: str) -> ClientKey:
    """Who a limit counts: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's network gets a whole /64, so counting single IPv6
    addresses would give each client 2^64 allowances)."""
    if ":" not in ip:
        return ip
    try:
        return socket.inet_pton(socket.AF_INET6, ip)[:8]
    except OSError:
        return ip


def raise_open_file_limit() -> Tuple[int, int]:
    """Raise the soft open-file limit to the hard one; return (before, after).

    Distributions start services with a soft limit of 1024, which a thousand
    idle connections exhaust; the hard limit is what the operator allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def default_max_connections(open_file_limit: int) -> int:
    """Total stream connections allowed: the open-file limit less a reserve."""
    return max(64, open_file_limit - RESERVED_FDS)


class ConnectionLimiter:
    """Counts open stream connections per client address (an IPv6 /64 counts
    as one address) and in total.

    One limiter is shared by every stream door (HTTP, line), so the total
    cap keeps descriptors for the admin listener whatever door is flooded."""

    __slots__ = ("max_total", "max_per_address", "open", "per_address", "refused")

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open = 0
        self.per_address: Dict[ClientKey, int] = {}
        self.refused: Dict[str, int] = {REFUSED_TOTAL: 0, REFUSED_PER_ADDRESS: 0}

    def admit(self, ip: str) -> Optional[str]:
        """Count a new connection from `ip`; return None, or why it is refused
        (and then nothing is counted but the refusal)."""
        if self.open >= self.max_total:
            self.refused[REFUSED_TOTAL] += 1
            return REFUSED_TOTAL
        key = client_key(ip)
        count = self.per_address.get(key, 0)
        if count >= self.max_per_address:
            self.refused[REFUSED_PER_ADDRESS] += 1
            return REFUSED_PER_ADDRESS
        self.per_address[key] = count + 1
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        """A connection admitted for `ip` has closed."""
        key = client_key(ip)
        count = self.per_address.get(key, 0)
        if count <= 0:
            return
        if count == 1:
            del self.per_address[key]
        else:
            self.per_address[key] = count - 1
        self.open -= 1


class AnnounceRateLimiter:
    """A token bucket per client address: `rate` announces a second on
    average, bursts of up to `burst`. Rate 0 turns it off.

    An IPv6 /64 counts as one address. The table of buckets is bounded: when
    it is full, buckets that have refilled completely (idle addresses, which
    lose nothing by being forgotten) are dropped; if that frees less than a
    quarter of it, the oldest quarter goes as well (they get one more burst
    when they come back). Either way the scan is rare: at most once per
    quarter-table of new addresses."""

    __slots__ = ("rate", "burst", "max_addresses", "_buckets", "refused")

    def __init__(self, rate: float, burst: float, max_addresses: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        # ip -> [tokens, time of the last refill]
        self._buckets: Dict[ClientKey, list] = {}
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: str, now: float) -> bool:
        """Take one token from `ip`'s bucket; False (and counted) if it is empty."""
        key = ip if ":" not in ip else client_key(ip)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._forget_idle(now)
            self._buckets[key] = [self.burst - 1, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            self.refused += 1
            return False
        bucket[0] = tokens - 1
        return True

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        buckets = self._buckets
        idle = [key for key, (_, last) in buckets.items() if now - last >= full_after]
        quarter = max(1, self.max_addresses // 4)
        if len(idle) < quarter:
            idle += islice(buckets, quarter)
        for key in idle:
            buckets.pop(key, None)


class DoorLimits:
    """The bounds every door shares, built once from the settings."""

    __slots__ = ("connections", "requests", "open_file_limit")

    def __init__(self, connections: ConnectionLimiter, requests: Optional[AnnounceRateLimiter],
                 open_file_limit: int) -> None:
        self.connections = connections
        self.requests = requests
        self.open_file_limit = open_file_limit

    @classmethod
    def from_settings(cls, max_connections: int, max_per_address: int, rate: float,
                      burst: float) -> "DoorLimits":
        """Raise the open-file limit (logged), then size the connection cap
        from it unless `max_connections` is given (0: derived)."""
        before, after = raise_open_file_limit()
        if after != before:
            log.info("open-file limit raised from {before} to {after}", before=before, after=after)
        total = max_connections or default_max_connections(after)
        requests = AnnounceRateLimiter(rate, burst) if rate > 0 else None
        return cls(ConnectionLimiter(total, max_per_address), requests, after)
