"""The cluster scenario: two tracker instances sharing swarms through one redis-server.

    python -m tools.bench.cluster [--rate 2000] [--duration 10] [--torrents 1000]
                                  [--peers 20] [--probes 40] [--json PATH] [--join N]

Measures, with the same population and paced HTTP load (http_load.c, keep-alive)
sent to one instance (A), persistence as deployed (a database per instance):
- CPU per announce at A, single instance (no --redis) and in the cluster;
- CPU per announce at B (applying A's changes) and in redis-server;
- propagation latency while the load runs: a probe peer announced at A, then
  B asked every 5 ms until its reply holds the probe (p50, p99, max).
With `--join N` only: the start of an instance joining a cluster whose Redis
snapshot holds N live peers (N/100 torrents), until it answers with them.
With `--lua N` only: the alternative design, N announces each done as one
Redis Lua script (the peer written with its time, the swarm's counts and a
sample of 50 read), pipelined 100 at a time: Redis and client CPU per announce.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import quote_from_bytes

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tools.bench.loaders import build_load_tool, run_paced_load  # noqa: E402
from tools.bench.population import hashes_blob, torrent_hash  # noqa: E402
from tools.bench.servers import Tracker, fill  # noqa: E402

from process import free_port, poll_real_process, process_cpu_s  # noqa: E402

COMMON_ARGS = ["--request-rate", "0"]  # (servers.Tracker already turns the WebSocket door off)
PROBE_POLL_S = 0.005
_PEERS = re.compile(rb"5:peers(\d+):")


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll_real_process(lambda: self._ping(), 10.0, "redis-server to answer")

    def _ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _announce(conn: http.client.HTTPConnection, info_hash: bytes, peer_id: bytes, port: int,
              event: str = "") -> bytes:
    target = ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=1"
              "&compact=1&numwant=200%s" % (quote_from_bytes(info_hash, safe=""),
                                            quote_from_bytes(peer_id, safe=""), port,
                                            "&event=" + event if event else ""))
    conn.request("GET", target)
    return conn.getresponse().read()


def _ports(body: bytes) -> set:
    found = _PEERS.search(body)
    if not found:
        return set()
    start = found.end()
    peers = body[start:start + int(found.group(1))]
    return {int.from_bytes(peers[i + 4:i + 6], "big") for i in range(0, len(peers), 6)}


def probe_propagation(port_a: int, port_b: int, probes: int, every_s: float,
                      results: List[float]) -> None:
    """Announce a new peer at A, time until B returns it; repeat `probes` times."""
    swarm = b"PROBE" + b"\x00" * 15
    a = http.client.HTTPConnection("127.0.0.1", port_a, timeout=10)
    b = http.client.HTTPConnection("127.0.0.1", port_b, timeout=10)
    watcher = b"-PW0001-000000000000"
    for n in range(probes):
        peer_id = b"-PR0001-%012d" % n
        port = 20000 + n
        started = time.perf_counter()
        _announce(a, swarm, peer_id, port)
        while port not in _ports(_announce(b, swarm, watcher, 19999)):
            if time.perf_counter() - started > 10:
                break
            time.sleep(PROBE_POLL_S)
        results.append(time.perf_counter() - started)
        _announce(a, swarm, peer_id, port, "stopped")
        time.sleep(every_s)
    a.close()
    b.close()


def measure_load(tracker: Tracker, others: Dict[str, int], loader: Path, hashes: Path,
                 args) -> Dict[str, float]:
    """Paced load at `tracker`; CPU seconds per announce of it and of `others` (pids)."""
    pids = dict(others, server=tracker.pid)
    before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    figures = run_paced_load(loader, "http", tracker.port, hashes, args.peers, args.duration,
                             args.rate, connections=8)
    after = {name: process_cpu_s(pid) for name, pid in pids.items()}
    out = {"announces": figures["requests"], "rps": figures["rps"],
           "p99_ms": figures.get("p99_us", 0) / 1000}
    for name in pids:
        out["cpu_us_per_announce_" + name] = (after[name] - before[name]) / figures["requests"] * 1e6
    return out


def wait_until_shared(port_b: int, peers: int) -> None:
    def full() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port_b, timeout=10)
        try:
            conn.request("GET", "/scrape?info_hash=" + quote_from_bytes(torrent_hash(0), safe=""))
            body = conn.getresponse().read()
        finally:
            conn.close()
        counts = [int(x) for x in re.findall(rb"(?:complete|incomplete)i(\d+)e", body)]
        return sum(counts) >= peers
    poll_real_process(full, 60.0, "the population to reach B")


def run(args) -> Dict[str, Dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    hashes = workdir / "hashes.bin"
    hashes.write_bytes(hashes_blob(args.torrents))
    udp_load = build_load_tool(workdir)
    http_load = build_load_tool(workdir, "http_load")
    results: Dict[str, Dict[str, float]] = {}

    single = Tracker(args.python, workdir, COMMON_ARGS)
    try:
        fill(single, args.torrents, args.peers, udp_load)
        results["single"] = measure_load(single, {}, http_load, hashes, args)
    finally:
        single.stop()

    redis = Redis(workdir)
    url = "redis://127.0.0.1:%d/0" % redis.port
    a = Tracker(args.python, workdir, COMMON_ARGS + ["--redis", url, "--instance-id", "a"])
    b = Tracker(args.python, workdir, COMMON_ARGS + ["--redis", url, "--instance-id", "b"])
    try:
        fill(a, args.torrents, args.peers, udp_load)
        wait_until_shared(b.port, args.peers)
        latencies: List[float] = []
        prober = threading.Thread(target=probe_propagation,
                                  args=(a.port, b.port, args.probes,
                                        args.duration * 0.8 / args.probes, latencies))
        prober.start()
        cluster = measure_load(a, {"other": b.pid, "redis": redis.process.pid}, http_load,
                               hashes, args)
        prober.join()
        latencies.sort()
        cluster.update({
            "propagation_p50_ms": statistics.median(latencies) * 1000,
            "propagation_p99_ms": latencies[min(len(latencies) - 1,
                                                int(len(latencies) * 0.99))] * 1000,
            "propagation_max_ms": latencies[-1] * 1000, "probes": len(latencies)})
        results["cluster"] = cluster
    finally:
        a.stop()
        b.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def measure_join(args) -> Dict[str, float]:
    """Write N snapshot rows straight into Redis, then start an instance on it."""
    from tracker.cluster.codec import snapshot_row
    from tracker.cluster.resp import BlockingRedis
    from tracker.cluster.snapshot import shard_key

    workdir = Path(tempfile.mkdtemp(prefix="bench-join-"))
    redis = Redis(workdir)
    try:
        client = BlockingRedis("127.0.0.1", redis.port)
        now = time.time()
        torrents = max(1, args.join // 100)
        written = 0
        for first in range(0, args.join, 10_000):
            commands = []
            for n in range(first, min(first + 10_000, args.join)):
                info_hash = torrent_hash(n % torrents)
                compact = bytes((10, (n >> 16) & 255, (n >> 8) & 255, n & 255)) + b"\x1a\xe1"
                commands.append([b"HSET", shard_key(info_hash), info_hash + b"-JN0001-%012d" % n,
                                 snapshot_row(now, 1, compact)])
            client.pipeline(commands)
            written += len(commands)
        client.close()
        started = time.perf_counter()
        tracker = Tracker(args.python, workdir, COMMON_ARGS + [
            "--redis", "redis://127.0.0.1:%d/0" % redis.port, "--db", "off"], db="off", wait_s=600)
        serving_s = time.perf_counter() - started
        try:
            log = tracker.process.output()
            loaded = re.search(r"loaded (\d+) shared peers .* in ([0-9.]+) s", log)
        finally:
            tracker.stop()
        return {"peers": written, "start_to_serving_s": serving_s,
                "loaded_peers": int(loaded.group(1)) if loaded else 0,
                "load_s": float(loaded.group(2)) if loaded else 0.0}
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# The alternative: the whole announce in Redis (a hash per swarm: peer -> "seen seeder
# compact"; counts from a seeders counter and HLEN; 50 peers by HRANDFIELD).
ANNOUNCE_LUA = """
local swarm, seeders = KEYS[1], KEYS[2]
local old = redis.call('HGET', swarm, ARGV[1])
redis.call('HSET', swarm, ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
local was = old and string.sub(old, -1) == '1' and 1 or 0
local now = tonumber(ARGV[3])
if now ~= was then redis.call('INCRBY', seeders, now - was) end
local sample = redis.call('HRANDFIELD', swarm, 50, 'WITHVALUES')
return {redis.call('HLEN', swarm), tonumber(redis.call('GET', seeders) or '0'), sample}
"""


def measure_lua(args) -> Dict[str, float]:
    from tracker.cluster.resp import BlockingRedis

    workdir = Path(tempfile.mkdtemp(prefix="bench-lua-"))
    redis = Redis(workdir)
    try:
        client = BlockingRedis("127.0.0.1", redis.port)
        sha = client.command("SCRIPT", "LOAD", ANNOUNCE_LUA)
        def calls(first: int, count: int):
            out = []
            for n in range(first, first + count):
                torrent, peer = n % args.torrents, (n // args.torrents) % args.peers
                out.append([b"EVALSHA", sha, 2, b"s:%d" % torrent, b"c:%d" % torrent,
                            b"p%d" % peer, repr(time.time()), n % 2, b"\x0a\x00\x00\x01\x1a\xe1"])
            return out
        for first in range(0, args.torrents * args.peers, 100):  # the population first
            client.pipeline(calls(first, 100))
        cpu_redis, cpu_client = process_cpu_s(redis.process.pid), time.process_time()
        for first in range(0, args.lua, 100):
            client.pipeline(calls(first, 100))
        redis_us = (process_cpu_s(redis.process.pid) - cpu_redis) / args.lua * 1e6
        client_us = (time.process_time() - cpu_client) / args.lua * 1e6
        client.close()
        return {"announces": args.lua, "redis_cpu_us_per_announce": redis_us,
                "client_cpu_us_per_announce": client_us}
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: Dict[str, Dict[str, float]], args) -> str:
    single, cluster = results["single"], results["cluster"]
    ratio = cluster["cpu_us_per_announce_server"] / single["cpu_us_per_announce_server"]
    lines = [
        "Cluster scenario: %d torrents x %d peers, paced HTTP load %d/s for %d s at one instance"
        % (args.torrents, args.peers, args.rate, args.duration),
        "",
        "| figure | single | cluster |", "| --- | --- | --- |",
        "| CPU per announce, instance under load (us) | %.1f | %.1f (%.2fx) |"
        % (single["cpu_us_per_announce_server"], cluster["cpu_us_per_announce_server"], ratio),
        "| CPU per announce, other instance (us) | - | %.1f |" % cluster["cpu_us_per_announce_other"],
        "| redis-server CPU per announce (us) | - | %.1f |" % cluster["cpu_us_per_announce_redis"],
        "| announce p99 at the instance under load (ms) | %.2f | %.2f |"
        % (single["p99_ms"], cluster["p99_ms"]),
        "| propagation A -> B p50 / p99 / max (ms, %d probes) | - | %.0f / %.0f / %.0f |"
        % (cluster["probes"], cluster["propagation_p50_ms"], cluster["propagation_p99_ms"],
           cluster["propagation_max_ms"]),
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter running the trackers")
    parser.add_argument("--rate", type=int, default=2000, help="announces a second at A")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--torrents", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=20, help="peers per torrent")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--join", type=int, metavar="N",
                        help="only: start an instance on a snapshot of N peers (e.g. 1000000)")
    parser.add_argument("--lua", type=int, metavar="N",
                        help="only: N announces as Redis Lua scripts (the alternative design)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed")
    if args.lua:
        results = {"lua": measure_lua(args)}
        lua = results["lua"]
        print("announce as a Redis Lua script (%d): Redis CPU %.1f us, client CPU %.1f us per "
              "announce" % (lua["announces"], lua["redis_cpu_us_per_announce"],
                            lua["client_cpu_us_per_announce"]))
    elif args.join:
        results = {"join": measure_join(args)}
        join = results["join"]
        print("instance joining a cluster of %d peers: loaded %d in %.1f s, serving %.1f s after "
              "its start" % (join["peers"], join["loaded_peers"], join["load_s"],
                             join["start_to_serving_s"]))
    else:
        results = run(args)
        print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
