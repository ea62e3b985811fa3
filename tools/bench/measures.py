"""The benchmark's extra measurements: latency during a flush, push fan-out, memory, restore."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

from process import process_rss_bytes

from . import LOAD_CORE, REPO, fanout
from .loaders import run_wrk
from .population import peer_left, torrent_hash, wrk_script
from .servers import Tracker, fill, pinned

FANOUT_SUBSCRIBERS = 10_000  # the CDN nodes of the performance issue
FLUSH_TORRENTS = 2000  # x 50 peers = 100,000 peers changed before the first flush
FLUSH_INTERVAL_S = 30
LOG_LARGEST_FLUSH = re.compile(r"largest flush (\d+) rows in ([\d.]+) s; longest ([\d.]+) s")
LOG_RESTORED = re.compile(r"restored (\d+) live peers in (\d+) swarms .* in ([\d.]+) s")


def measure_flush_latency(python: str, workdir: Path, duration_s: int) -> Dict[str, float]:
    """Announce latency (10 connections) with and without the persistence
    writing one flush of ~100,000 changed peers in the middle of the run.

    The tracker flushes every 30 s: filling 100,000 peers and then running wrk
    puts the first flush, holding every filled peer, inside the measured run."""
    script = workdir / "flush-announce.lua"
    script.write_text(wrk_script(FLUSH_TORRENTS, 50, "announce"))
    out: Dict[str, float] = {}
    for label, db in (("with_flush", ""), ("no_db", "off")):
        tracker = Tracker(python, workdir, ["--flush-interval", str(FLUSH_INTERVAL_S)], db=db)
        started = time.monotonic()
        try:
            fill(tracker, FLUSH_TORRENTS, 50)
            remaining = FLUSH_INTERVAL_S - (time.monotonic() - started)
            run_s = max(duration_s, int(remaining) + 5)
            figures = run_wrk(tracker.port, script, run_s, 10, close_each=False)
        finally:
            log = tracker.stop()
        out[label + "_rps"] = figures["rps"]
        out[label + "_p50_ms"] = figures["p50_us"] / 1000
        out[label + "_p99_ms"] = figures["p99_us"] / 1000
        out["errors"] = out.get("errors", 0) + figures["errors"] + figures["non2xx"]
        match = LOG_LARGEST_FLUSH.search(log)
        if db != "off":
            if not match:
                raise RuntimeError("no flush summary in the tracker log")
            out["largest_flush_rows"] = int(match.group(1))
            out["largest_flush_s"] = float(match.group(2))
            out["longest_flush_s"] = float(match.group(3))
    return out


def measure_fanout(python: str, workdir: Path, subscribers: int = FANOUT_SUBSCRIBERS,
                   pushes: int = 5) -> Dict[str, float]:
    """One swarm, `subscribers` line connections subscribed to it: the tracker's
    resident memory per connection, and how long from an HTTP announce of a new
    peer until every subscriber has read the JOIN event (tools/bench/fanout.py,
    its own process on the load core).

    The benchmark's tracker already runs with `--max-connections-per-address`
    raised (every connection comes from 127.0.0.1); its `--max-connections`
    follows its open-file limit, which it raises to the hard limit at start."""
    tracker = Tracker(python, workdir, [])
    try:
        command = pinned(LOAD_CORE) + [
            sys.executable, "-m", "bench.fanout", "--line-port", str(tracker.line_port),
            "--http-port", str(tracker.port), "--pid", str(tracker.pid),
            "--subscribers", str(subscribers), "--pushes", str(pushes)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO / "tools"),
                                timeout=fanout.SETUP_TIMEOUT_S + (pushes + 1) * (fanout.PUSH_TIMEOUT_S + 1) + 60)
    finally:
        tracker.stop()
    if result.returncode != 0:
        raise RuntimeError("the fan-out client failed: %s" % result.stderr.strip())
    for line in result.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    raise RuntimeError("the fan-out client printed no figures:\n" + result.stdout)


def measure_memory(start: Callable[[], object], torrents: int, peers: int,
                   loader: Path) -> Dict[str, float]:
    """Resident bytes per peer: RSS after filling minus RSS before, over the peers."""
    server = start()
    try:
        before = process_rss_bytes(server.pid)
        fill(server, torrents, peers, loader)
        after = process_rss_bytes(server.pid)
    finally:
        server.stop()
    count = torrents * peers
    return {"peers": count, "torrents": torrents, "rss_before": before, "rss_after": after,
            "bytes_per_peer": (after - before) / count}


def build_restore_database(path: Path, peers: int, now: float) -> None:
    """A database holding `peers` live peers over peers/100 torrents."""
    from tracker.store import open_database
    conn = open_database(str(path))
    per_torrent = 100
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO content (info_hash, first_seen, completed) VALUES (?, ?, 0)",
                     ((torrent_hash(t), now) for t in range(peers // per_torrent)))
    conn.executemany(
        "INSERT INTO peers VALUES (?, ?, ?, ?, ?, 0, 0, ?, 'http')",
        ((torrent_hash(n // per_torrent), b"-BN0001-%012d" % (n % per_torrent),
          "10.%d.%d.%d" % (n >> 16 & 255, n >> 8 & 255, n & 255), 10000 + n % per_torrent,
          peer_left(n), now) for n in range(peers)))
    conn.execute("COMMIT")
    conn.close()


def measure_restore(python: str, workdir: Path, peers: int) -> Dict[str, float]:
    db = workdir / ("restore-%d.sqlite3" % peers)
    if not db.exists():
        build_restore_database(db, peers, time.time())
    tracker = Tracker(python, workdir, [], db=str(db), wait_s=1800)
    rss = process_rss_bytes(tracker.pid)
    log = tracker.stop()
    match = LOG_RESTORED.search(log)
    if not match:
        raise RuntimeError("no restore line in the tracker log")
    return {"peers": int(match.group(1)), "swarms": int(match.group(2)),
            "seconds": float(match.group(3)), "rss_bytes": rss, "db_bytes": db.stat().st_size}
