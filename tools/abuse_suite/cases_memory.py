"""Memory and reactor-time abuse: floods of swarms, HAVEs and joins, a huge admin page."""
from __future__ import annotations

import socket
import threading
import time
from typing import Dict, List

from process import poll_real_process

from .clients import LineConnection, announce_path, random_hash
from .common import Env, Row, mib, random_hashes
from .target import Target

SWARM_BYTES_TARGET = 300
REACTOR_BLOCK_TARGET_S = 0.010


def flood(env: Env, t: Target, count: int) -> Dict[str, float]:
    """`count` random info hashes, one peer each, over UDP; RSS after and what was taken."""
    figures = env.udp_fill(t, random_hashes(count), 1, time_limit_s=600)
    return {"rss": t.rss(), "announces": figures["requests"], "errors": figures["errors"],
            "swarms": t.status()["swarms"], "seconds": figures["duration_us"] / 1e6}


def udp_random_hashes(env: Env) -> Row:
    count = env.sizes["random_hashes"]
    name = "%d random info hashes over UDP, one peer each" % count
    target = "≤ %d B a one-peer swarm; a second flood after expiry does not raise the peak" % (
        SWARM_BYTES_TARGET)
    ttl_s = 10 + count // 10_000  # longer than the flood takes, so that all of it is counted
    with env.target("random-hashes", ["--peer-ttl", str(ttl_s), "--sweep-interval", "1"]) as t:
        before = t.rss()
        first = flood(env, t, count)
        poll_real_process(lambda: t.status()["peers"] == 0, timeout_s=ttl_s + 120,
                          what="every peer expired", interval_s=0.5)
        expired = t.rss()
        second = flood(env, t, count)
    per_swarm = (first["rss"] - before) / max(first["swarms"], 1)
    measured = "%s → %s (%.0f B a swarm, %d swarms, %d refused); after expiry %s; second flood %s" % (
        mib(before), mib(first["rss"]), per_swarm, first["swarms"], first["errors"], mib(expired),
        mib(second["rss"]))
    held = per_swarm <= SWARM_BYTES_TARGET and second["rss"] <= first["rss"] * 1.05
    return Row(name, target, measured, held)


def send_haves(conn: LineConnection, count: int, batch: int = 2000) -> Dict[str, int]:
    """`count` HAVEs of random hashes in batches, each batch's replies read before the next."""
    replies = {"ok": 0, "err": 0, "closed": 0}
    first_error = ""
    for start in range(0, count, batch):
        n = min(batch, count - start)
        conn.send(b"".join(b"HAVE %s\n" % random_hash().hex().encode() for _ in range(n)))
        for _ in range(n):
            line = conn.read_line(30)
            if line is None:
                replies["closed"] = 1
                return dict(replies, first_error=first_error)
            if line.startswith(b"ERR"):
                replies["err"] += 1
                first_error = first_error or line.decode("utf-8", "replace")[:60]
            elif line.startswith(b"OK"):
                replies["ok"] += 1
    return dict(replies, first_error=first_error)


def line_haves(env: Env) -> Row:
    count = env.sizes["haves"]
    name = "one node sends %d HAVEs" % count
    target = "a per-node cap on entries refuses HAVEs past it"
    with env.target("haves") as t:
        conn = LineConnection(t.line_port)
        try:
            conn.command(b"HELLO node=abuser")
            before = t.rss()
            started = time.monotonic()
            replies = send_haves(conn, count)
            seconds = time.monotonic() - started
            after = t.rss()
        finally:
            conn.close()
    measured = "+%s in %.1f s; %d accepted, %d refused%s%s" % (
        mib(after - before), seconds, replies["ok"], replies["err"],
        " (%s)" % replies["first_error"] if replies["first_error"] else "",
        "; connection closed" if replies["closed"] else "")
    return Row(name, target, measured, replies["err"] > 0 and not replies["closed"])


class Subscriber(threading.Thread):
    """A line connection subscribed to one swarm that reads everything as it comes."""

    def __init__(self, port: int, info_hash: bytes) -> None:
        super().__init__(daemon=True)
        self.conn = LineConnection(port)
        self.conn.command(b"HELLO node=watcher")
        reply = self.conn.command(b"SUBSCRIBE %s" % info_hash.hex().encode())
        if not reply or not reply.startswith(b"OK"):
            raise RuntimeError("SUBSCRIBE refused: %r" % reply)
        self.counts = {"JOIN": 0, "LEAVE": 0, "RESYNC": 0, "bytes": 0}
        self.pong = threading.Event()
        self.closed = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            line = self.conn.read_line(0.5)
            if line is None:
                if self.conn.eof:
                    self.closed.set()
                    return
                continue
            self.counts["bytes"] += len(line) + 1
            words = line.split(None, 2)
            if line.startswith(b"*") and len(words) > 1:
                kind = words[1].decode("ascii", "replace")
                self.counts[kind] = self.counts.get(kind, 0) + 1
            elif line.startswith(b"OK PONG") or line == b"PONG":
                self.pong.set()

    def stop(self) -> None:
        self.stopping = True
        self.join(5)
        self.conn.close()


def subscriber_burst(env: Env) -> Row:
    count = env.sizes["burst_joins"]
    name = "%d UDP joins as fast as they go into a swarm with a reading subscriber" % count
    target = "the subscriber is not cut off (events coalesce instead)"
    info_hash = random_hash()
    with env.target("burst") as t:
        subscriber = Subscriber(t.line_port, info_hash)
        subscriber.start()
        try:
            figures = env.udp_fill(t, info_hash, count)
            subscriber.conn.send(b"PING\n")
            answered = subscriber.pong.wait(10) and not subscriber.closed.is_set()
        finally:
            subscriber.stop()
    c = subscriber.counts
    measured = "%d joins in %.2f s; subscriber read %d JOIN, %d RESYNC (%s); %s" % (
        figures["requests"], figures["duration_us"] / 1e6, c["JOIN"], c["RESYNC"], mib(c["bytes"]),
        "still connected" if answered else "cut off")
    return Row(name, target, measured, answered)


class AnnounceProber(threading.Thread):
    """Announces on one keep-alive connection in a loop, recording each reply's latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.request = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % announce_path(random_hash(), 7).encode()
        self.latencies: List[float] = []
        self.stopping = False

    def run(self) -> None:
        reader = self.sock.makefile("rb")
        while not self.stopping:
            started = time.monotonic()
            self.sock.sendall(self.request)
            length = 0
            while True:
                header = reader.readline()
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
                if header in (b"\r\n", b""):
                    break
            reader.read(length)
            self.latencies.append(time.monotonic() - started)

    def stop(self) -> None:
        self.stopping = True
        self.join(10)
        self.sock.close()


def admin_big_swarm(env: Env) -> Row:
    count = env.sizes["big_swarm"]
    name = "GET /api/swarms/HASH?limit=100000 on a %d-peer swarm" % count
    target = "other requests answered within %.0f ms meanwhile" % (REACTOR_BLOCK_TARGET_S * 1000)
    info_hash = random_hash()
    with env.target("big-swarm") as t:
        acknowledged = env.udp_fill(t, info_hash, count)["requests"]
        poll_real_process(lambda: t.status()["peers"] >= acknowledged, timeout_s=30,
                          what="swarm filled", interval_s=0.5)
        time.sleep(2.5)  # let the flush of the filled swarm pass, so it is not what we measure
        prober = AnnounceProber(t.http_port)
        prober.start()
        try:
            started = time.monotonic()
            page = t.admin("/api/swarms/%s?limit=100000" % info_hash.hex(), timeout_s=120)
            seconds = time.monotonic() - started
            time.sleep(0.2)
        finally:
            prober.stop()
    worst = max(prober.latencies) if prober.latencies else float("inf")
    lists = [v for k, v in sorted(page.items()) if isinstance(v, list)] if isinstance(page, dict) else []
    peers = len(lists[0]) if lists else 0  # the page's list of peers, whatever its key
    measured = "the page (%d peers) took %.2f s; worst announce meanwhile %.1f ms" % (
        peers, seconds, worst * 1000)
    return Row(name, target, measured, worst <= REACTOR_BLOCK_TARGET_S)
