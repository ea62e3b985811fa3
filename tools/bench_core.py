"""Core micro-benchmark: announces per CPU-second through `TrackerCore.announce`
alone (no door, no network), on a large population.

The population is `--peers` peers spread over `--swarms` swarms (IPv4, half
seeders). The timed mix is mostly re-announces of known peers, as a tracker
sees in steady state, plus a few joins and stops that keep the population the
same size. Requests are built before the clock starts, so the figure is the
core's own cost. Run it under each runtime to compare:

    .venv/bin/python tools/bench_core.py
    .venv-pypy/bin/python tools/bench_core.py

`run()` is importable for the benchmark package.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracker.core import EVENT_STOPPED, AnnounceRequest, TrackerCore  # noqa: E402


def _address(n: int) -> str:
    return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def run(peers: int = 1_000_000, swarms: int = 100_000, announces: int = 300_000,
        rounds: int = 3, join_share: float = 0.05, seed: int = 1) -> Dict[str, object]:
    """Fill a core, then time `rounds` rounds of `announces` announces each.
    Returns the population and the announces per CPU-second of each round."""
    rng = random.Random(seed)
    core = TrackerCore(rng=random.Random(seed))
    hashes = [b"H%019d" % i for i in range(swarms)]
    members: List[List[bytes]] = [[] for _ in range(swarms)]
    t0 = time.perf_counter()
    for n in range(peers):
        s = n % swarms
        pid = b"-BC0001-%012d" % n
        core.announce(AnnounceRequest(hashes[s], pid, _address(n), 6881, left=n & 1), 0.0)
        members[s].append(pid)
    fill_s = time.perf_counter() - t0
    next_id = peers
    figures = []
    for r in range(rounds):
        requests = []
        for _ in range(announces):
            s = rng.randrange(swarms)
            group = members[s]
            if rng.random() < join_share and group:
                # A stop and a join in the same swarm keep its size.
                gone = group.pop(rng.randrange(len(group)))
                requests.append(AnnounceRequest(hashes[s], gone, _address(int(gone[8:])), 6881,
                                                event=EVENT_STOPPED))
                pid = b"-BC0001-%012d" % next_id
                requests.append(AnnounceRequest(hashes[s], pid, _address(next_id), 6881,
                                                left=next_id & 1))
                group.append(pid)
                next_id += 1
            elif group:
                pid = group[rng.randrange(len(group))]
                n = int(pid[8:])
                requests.append(AnnounceRequest(hashes[s], pid, _address(n), 6881, left=n & 1))
        gc.collect()
        announce = core.announce
        now = 1.0 + r
        # CPU time of this process: other work on the machine does not count.
        t0 = time.process_time()
        for request in requests:
            announce(request, now)
        elapsed = time.process_time() - t0
        figures.append(len(requests) / elapsed)
    return {"runtime": sys.implementation.name, "peers": core.peer_count,
            "swarms": len(core.swarms), "fill_s": round(fill_s, 1),
            "announces_per_cpu_s": [round(f) for f in figures]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--swarms", type=int, default=100_000)
    parser.add_argument("--announces", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.peers, args.swarms, args.announces, args.rounds)
    rates = sorted(result["announces_per_cpu_s"])
    print("%s: %d peers in %d swarms (filled in %.1f s); announces per CPU-second, each round %s; median %d"
          % (result["runtime"], result["peers"], result["swarms"], result["fill_s"],
             result["announces_per_cpu_s"], rates[len(rates) // 2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
