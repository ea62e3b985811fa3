"""The benchmark's extra measurements: latency during a flush, push fan-out, memory, restore."""
from __future__ import annotations

import re
import selectors
import socket
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

from process import process_rss_bytes
from tracker.line.protocol import EVENT, LineError, format_command, format_ok, parse_event, reply_kind

from .loaders import run_wrk
from .population import announce_path, peer_left, torrent_hash, wrk_script
from .servers import Tracker, fill, http_get_many

FANOUT_SUBSCRIBERS = 1000
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


def subscribe_all(line_port: int, info_hash_hex: str, subscribers: int) -> List[socket.socket]:
    """`subscribers` line connections, each said HELLO and SUBSCRIBEd to one swarm."""
    socks = []
    subscribed = format_ok("SUBSCRIBE", info_hash_hex).encode()
    try:
        for n in range(subscribers):
            sock = socket.create_connection(("127.0.0.1", line_port))
            socks.append(sock)
            sock.sendall(("%s\n%s\n" % (format_command("HELLO", node="watcher-%d" % n),
                                        format_command("SUBSCRIBE", info_hash_hex))).encode())
        for sock in socks:  # wait for both replies
            buffer = b""
            while buffer.count(b"\n") < 2:
                buffer += sock.recv(4096)
            if buffer.split(b"\n")[1].rstrip(b"\r") != subscribed:
                raise RuntimeError("subscribe failed: %r" % buffer)
    except Exception:
        for sock in socks:
            sock.close()
        raise
    return socks


def is_join(line: bytes) -> bool:
    if reply_kind(line) != EVENT:
        return False
    try:
        return parse_event(line.decode("utf-8", "replace")).kind == "JOIN"
    except LineError:
        return False


def time_until_all_see_join(socks: List[socket.socket], http_port: int, peer: int) -> float:
    """Seconds from an HTTP announce of a new peer until every socket has read its JOIN."""
    selector = selectors.DefaultSelector()
    buffers = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    started = time.monotonic()
    http_get_many(http_port, [announce_path(0, peer)])
    while buffers:
        for key, _ in selector.select(timeout=10):
            lines = (buffers[key.fileobj] + key.fileobj.recv(4096)).split(b"\n")
            buffers[key.fileobj] = lines.pop()
            if any(is_join(line) for line in lines):
                del buffers[key.fileobj]
                selector.unregister(key.fileobj)
        if time.monotonic() - started > 30:
            raise RuntimeError("%d subscribers never got the event" % len(buffers))
    selector.close()
    return time.monotonic() - started


def measure_fanout(python: str, workdir: Path, subscribers: int = FANOUT_SUBSCRIBERS,
                   rounds: int = 5) -> Dict[str, float]:
    """One swarm, `subscribers` connections subscribed to it: how long from an
    HTTP announce of a new peer until every subscriber has read the JOIN event."""
    tracker = Tracker(python, workdir, [])
    socks: List[socket.socket] = []
    try:
        socks = subscribe_all(tracker.line_port, torrent_hash(0).hex(), subscribers)
        times = [time_until_all_see_join(socks, tracker.port, 100 + n) for n in range(rounds)]
    finally:
        for sock in socks:
            sock.close()
        tracker.stop()
    return {"subscribers": subscribers, "rounds": rounds,
            "median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


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
