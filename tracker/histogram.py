"""A fixed-bucket histogram cheap enough for a hot path, read by /metrics.

`observe(seconds)` is one bisect and two additions, no allocation; the metrics
module turns the counts into a Prometheus histogram (cumulative buckets, sum,
count). The store records each flush's duration here; a door can record its
request latencies the same way (set `latency = Histogram(REQUEST_BUCKETS_S)`
on its factory and call `latency.observe(...)`; /metrics shows it per door).
"""
from __future__ import annotations

from bisect import bisect_left
from typing import List, Sequence, Tuple

# Upper bounds, seconds. A request on the announce path takes tens of
# microseconds; a flush of a large backlog takes seconds.
REQUEST_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 1.0)
# The announce doors (HTTP, UDP) time one read (or datagram) in this many:
# timing every read adds about 0.22 us (two perf_counter calls and an observe),
# 2% of the 11 us an HTTP announce takes through the door in process; the
# countdown to the next sample adds 0.05 us (0.5%).
REQUEST_SAMPLE_EVERY = 16
FLUSH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, times: int) -> None:
        """`times` observations of one value (requests answered together)."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> List[Tuple[str, int]]:
        """[(le, observations at or below it)], ending with ('+Inf', all)."""
        buckets, running = [], 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", running + self.counts[-1]))
        return buckets
