"""What every abuse case shares: its sizes, its environment, its row of the table."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from bench.loaders import build_load_tool, run_udp_load

from .target import MiB, Target

# Default sizes keep the whole suite to a few minutes; `--full` uses the sizes.
DEFAULT_SIZES = {
    "pipeline_mb": 8,           # MiB of pipelined announces on one connection that never reads
    "idle_connections": 1100,   # idle connections from one address (soft fd limit 1024)
    "random_hashes": 100_000,   # one-peer swarms over UDP (the issue: 1,000,000)
    "haves": 200_000,           # HAVEs from one node
    "burst_joins": 20_000,      # UDP joins into a swarm with a reading subscriber
    "sigkill_announces": 500_000,  # the UDP burst before a SIGKILL
    "db_peers": 10_000,         # peers on disk for the database cases
    "big_swarm": 100_000,       # peers in the swarm the admin API pages (the issue: 500,000)
}
FULL_SIZES = dict(DEFAULT_SIZES, random_hashes=1_000_000, big_swarm=500_000)
LOG_RESTORED = re.compile(r"restored (\d+) live peers in (\d+) swarms")


class Row(NamedTuple):
    """One line of the table. `held` is None when the case could not be measured."""
    case: str
    target: str
    measured: str
    held: Optional[bool]


class Env:
    """A run of the suite: a scratch directory, the sizes, the built UDP loader."""

    def __init__(self, sizes: Dict[str, int], tracker_args: List[str] = (),
                 workdir: Optional[Path] = None) -> None:
        self.sizes = sizes
        self.tracker_args = list(tracker_args)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tracker-abuse-"))
        self._loader: Optional[Path] = None

    def dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def target(self, name: str, args: List[str] = (), **kwargs) -> Target:
        """A fresh tracker for one case, in its own directory."""
        return Target(self.dir(name), list(args) + self.tracker_args, **kwargs)

    @property
    def loader(self) -> Path:
        """tools/udp_load.c, built once: fills a tracker over UDP far faster than Python can."""
        if self._loader is None:
            self._loader = build_load_tool(self.dir("bin"))
        return self._loader

    def udp_fill(self, target: Target, hashes: bytes, peers: int, time_limit_s: int = 300) -> Dict[str, float]:
        """Announce every (hash, peer) once over UDP, `peers` peers per hash; the loader's figures
        (`requests`: acknowledged announces, `errors`: error packets and bad replies)."""
        path = self.workdir / ("hashes-%d.bin" % len(hashes))
        path.write_bytes(hashes)
        try:
            return run_udp_load(self.loader, target.udp_port, path, peers, time_limit_s,
                                window=256, fill=True)
        finally:
            path.unlink()


def random_hashes(count: int) -> bytes:
    return os.urandom(20 * count)


def mib(n: float) -> str:
    return "%.1f MiB" % (n / MiB)


def restored_peers(log: str) -> Optional[int]:
    """Live peers the tracker said it restored at start, None if it said nothing."""
    match = LOG_RESTORED.search(log)
    return int(match.group(1)) if match else None


def errors_logged(log: str) -> List[str]:
    """Lines the tracker logged at error level or above, and tracebacks."""
    return [line for line in log.splitlines()
            if "#error]" in line or "#critical]" in line or line.startswith("Traceback")]
