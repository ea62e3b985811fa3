#!/usr/bin/env python3
"""Benchmark the tracker's HTTP door with wrk.

Starts the tracker (`twistd -n tracker`) in its own process pinned to one
core, fills it with a population (default 1,000 torrents x 50 peers, every
peer announced once), then drives it with wrk pinned to the other core:

- announce over keep-alive connections,
- announce with a new connection per request (`Connection: close`),
- scrape of one random torrent over keep-alive,
- UDP announce (BEP 15 connect + announce, 64 in flight) from `tools/udp_load.c`,
  a C load generator built by this command, which checks every reply,
- line-protocol commands (PEERS, SCRAPE, PING of population torrents) over
  8 connections with 64 commands in flight each.

When Debian's `opentracker` is installed it runs on the same population (its
own config file and whitelist, same pinning) and every row shows the ratio to
it, both in requests per second and per second of server CPU.

Optional extra measurements: `--without-db` (each runtime again with
persistence off), `--flush-latency` (announce latency while one flush of
100,000 changed peers runs), `--fanout` (push fan-out to 1,000 subscribers),
`--restore N` (start-up restore of N live peers).

Each scenario runs for `--duration` seconds, `--rounds` times, interleaved
across runtimes. Reported per scenario: requests per second (median and
min-max over rounds), p50/p99 latency (median over rounds) and the
server's CPU time per request (from /proc). Prints a Markdown table and, with
`--json PATH`, writes every measurement.

    python tools/benchmark.py                       # the running interpreter
    python tools/benchmark.py --runtime pypy=.venv-pypy/bin/python --json bench.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import quote_from_bytes

REPO = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
LOAD_CORE = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = ("announce-keepalive", "announce-new-connection", "scrape-keepalive", "udp-announce",
             "line-commands")
LINE_CONNECTIONS = 8  # line-protocol connections, each pipelining a window of commands
LINE_WINDOW = 64
FANOUT_SUBSCRIBERS = 1000
UDP_WINDOW = 64  # UDP transactions kept in flight by the load generator


# -- the population --------------------------------------------------------------


def torrent_hash(n: int) -> bytes:
    return hashlib.sha1(b"bench-torrent-%d" % n).digest()


def bench_peer_id(n: int) -> bytes:
    return b"-BN0001-%012d" % n


def peer_port(n: int) -> int:
    return 10000 + n


def peer_left(n: int) -> int:
    """Half the peers seed, half leech."""
    return 0 if n % 2 == 0 else 1000


def announce_path(torrent: int, peer: int, numwant: int = 50) -> str:
    return ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d"
            "&compact=1&numwant=%d" % (quote_from_bytes(torrent_hash(torrent), safe=""),
                                       bench_peer_id(peer).decode(), peer_port(peer),
                                       peer_left(peer), numwant))


def wrk_script(torrents: int, peers: int, kind: str) -> str:
    """A wrk Lua script drawing a random (torrent, peer) of the population per request."""
    hashes = ",\n".join('"%s"' % quote_from_bytes(torrent_hash(t), safe="") for t in range(torrents))
    if kind == "announce":
        path = ('"/announce?info_hash=" .. hashes[t] .. "&peer_id=-BN0001-" .. '
                'string.format("%012d", p) .. "&port=" .. (10000 + p) .. '
                '"&uploaded=0&downloaded=0&left=" .. ((p % 2 == 0) and 0 or 1000) .. '
                '"&compact=1&numwant=50"')
    else:
        path = '"/scrape?info_hash=" .. hashes[t]'
    return """
local hashes = {
%s
}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end
request = function()
  local t = math.random(1, #hashes)
  local p = math.random(0, %d)
  return wrk.format("GET", %s)
end
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH-JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"errors\\": %%d, \\"non2xx\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
""" % (hashes, peers - 1, path)


def parse_wrk_output(output: str) -> Dict[str, float]:
    """The figures our Lua `done` hook prints."""
    for line in output.splitlines():
        if line.startswith("BENCH-JSON "):
            figures = json.loads(line[len("BENCH-JSON "):])
            figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
            return figures
    raise ValueError("wrk printed no BENCH-JSON line:\n" + output)


# -- the tracker process --------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Tracker:
    """The tracker under test, pinned to the server core."""

    def __init__(self, python: str, workdir: Path, extra_args: List[str],
                 db: str = "", wait_s: float = 30) -> None:
        """`db`: the database file ("" for one of its own in `workdir`, "off" for none)."""
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.line_port = free_port()
        self.log_path = workdir / ("tracker-%d.log" % self.port)
        self.log = open(self.log_path, "wb")
        db = db or str(workdir / ("tracker-%d.sqlite3" % self.port))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("TRACKER_CONFIG", None)
        command = [python, "-c", "from twisted.scripts.twistd import run; run()",
                   "-n", "--pidfile=", "tracker", "--http",
                   "tcp:%d:interface=127.0.0.1" % self.port,
                   "--udp", "127.0.0.1:%d" % self.udp_port,
                   "--line", "tcp:%d:interface=127.0.0.1" % self.line_port, "--admin", "off",
                   "--db", db] + extra_args
        if shutil.which("taskset"):
            command = ["taskset", "-c", SERVER_CORE] + command
        self.process = subprocess.Popen(command, cwd=str(workdir), env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        # Ready when it answers: the port is bound before the swarms are restored.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=wait_s) as s:
                    s.sendall(b"GET /scrape HTTP/1.0\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1.1"):
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tracker did not start; see %s" % self.log.name)
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> str:
        """Stop cleanly (the final flush included); return the tracker's log."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        return self.log_path.read_text(errors="replace")


def http_get_many(port: int, paths: List[str], pipeline: int = 200) -> List[bytes]:
    """GET every path over one keep-alive connection, pipelined; return the bodies."""
    bodies = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        buffer = b""
        for start in range(0, len(paths), pipeline):
            batch = paths[start:start + pipeline]
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: b\r\n\r\n" % p.encode() for p in batch))
            wanted = len(bodies) + len(batch)
            while len(bodies) < wanted:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffer[:end]
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(buffer) >= end + 4 + length:
                        bodies.append(buffer[end + 4:end + 4 + length])
                        buffer = buffer[end + 4 + length:]
                        continue
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("tracker closed the connection while filling")
                buffer += chunk
    return bodies


def fill(server, torrents: int, peers: int, loader: Optional[Path] = None) -> None:
    """Announce every peer of the population once, and check the server took them.

    With `loader` (the built udp_load) the announces go over UDP, fast and the
    same for every server; otherwise over HTTP, pipelined."""
    port = server.port
    if loader is not None:
        hashes = loader.parent / ("fill-%d.bin" % torrents)
        if not hashes.exists():
            hashes.write_bytes(b"".join(torrent_hash(t) for t in range(torrents)))
        figures = run_udp_load(loader, server.udp_port, hashes, peers, 1800, window=256, fill=True)
        if figures["requests"] != torrents * peers or figures["errors"]:
            raise RuntimeError("filling over UDP: %d of %d announces answered, %d errors"
                               % (figures["requests"], torrents * peers, figures["errors"]))
    else:
        for first in range(0, torrents, 1000):  # in slices: a million peers fit in memory here
            paths = [announce_path(t, p, numwant=0)
                     for t in range(first, min(first + 1000, torrents)) for p in range(peers)]
            bodies = http_get_many(port, paths)
            failures = [b for b in bodies if b"failure reason" in b]
            if failures:
                raise RuntimeError("the tracker refused the population: %r" % failures[0])
    # One full announce: a leecher must get numwant (or the whole swarm) peers back
    # (opentracker may include the requester itself).
    body = http_get_many(port, [announce_path(0, 1)])[0]
    match = re.search(rb"5:peers(\d+):", body)
    if not match or int(match.group(1)) < min(50, peers - 1) * 6:
        raise RuntimeError("unexpected announce reply after filling: %r" % body[:200])


# -- running wrk ------------------------------------------------------------------------


class OpenTracker:
    """opentracker (Debian's package), the C reference, on the same population.

    Debian builds it to track whitelisted hashes only; the whitelist is read
    relative to its root directory, so each run gets a directory of its own."""

    def __init__(self, workdir: Path, torrents: int) -> None:
        self.port = self.udp_port = free_port()
        root = workdir / ("opentracker-%d" % self.port)
        root.mkdir()
        (root / "whitelist.txt").write_text(
            "".join(torrent_hash(t).hex() + "\n" for t in range(torrents)))
        (root / "opentracker.conf").write_text(
            "listen.tcp_udp 127.0.0.1:%d\naccess.whitelist whitelist.txt\ntracker.rootdir %s\n"
            % (self.port, root))
        self.log = open(root / "log", "wb")
        command = ["opentracker", "-f", str(root / "opentracker.conf")]
        if shutil.which("taskset"):
            command = ["taskset", "-c", SERVER_CORE] + command
        self.process = subprocess.Popen(command, cwd=str(root), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("opentracker did not start")
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        return ""


def run_load(what: str, command: List[str], duration_s: int) -> Dict[str, float]:
    """Run a load generator on the load core and return its BENCH-JSON figures."""
    if shutil.which("taskset"):
        command = ["taskset", "-c", LOAD_CORE] + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    if result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (what, result.stderr))
    return parse_wrk_output(result.stdout)


def run_wrk(port: int, script: Path, duration_s: int, connections: int,
            close_each: bool) -> Dict[str, float]:
    command = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration_s, "-s", str(script)]
    if close_each:
        command += ["-H", "Connection: close"]
    command.append("http://127.0.0.1:%d" % port)
    return run_load("wrk", command, duration_s)


def build_load_tool(workdir: Path, name: str = "udp_load") -> Path:
    """Compile one of the C load generators in tools/ (udp_load, http_load):
    the UDP path is too fast for a Python client, and wrk cannot pace."""
    binary = workdir / name
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("a C compiler (cc) is needed for the UDP and paced scenarios")
    subprocess.run([compiler, "-O2", "-o", str(binary), str(REPO / "tools" / (name + ".c"))],
                   check=True)
    return binary


def run_paced_load(binary: Path, door: str, port: int, hashes_file: Path, peers: int,
                   duration_s: int, rate: float, connections: int) -> Dict[str, float]:
    """Announces started on a fixed schedule of `rate` a second (latency from
    the scheduled time): `door` is "http" (http_load) or "udp" (udp_load)."""
    if door == "http":
        command = [str(binary), "127.0.0.1", str(port), str(duration_s), str(hashes_file),
                   str(peers), str(connections), "%.0f" % rate]
    else:
        command = [str(binary), "127.0.0.1", str(port), str(duration_s), str(hashes_file),
                   str(peers), str(UDP_WINDOW), "rate=%.0f" % rate]
    figures = run_load("%s paced load" % door, command, duration_s)
    figures["target_rps"] = rate
    return figures


def paced_table(paced: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    lines = ["| server | door | paced at (½ max) req/s | achieved req/s | p50 ms | p99 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, by_door in paced.items():
        for door, r in by_door.items():
            lines.append("| %s | %s | %.0f | %.0f | %.2f | %.2f | %d |" % (
                name, door, r["target_rps"], r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                r["errors"] + r.get("non2xx", 0)))
    return "\n".join(lines)


def run_udp_load(binary: Path, port: int, hashes_file: Path, peers: int, duration_s: int,
                 window: int = UDP_WINDOW, fill: bool = False) -> Dict[str, float]:
    command = [str(binary), "127.0.0.1", str(port), str(duration_s), str(hashes_file), str(peers),
               str(window)] + (["fill"] if fill else [])
    return run_load("udp_load", command, duration_s)


def line_command_mix(torrents: int) -> List[bytes]:
    """The commands the line benchmark cycles through: SCRAPE and PEERS of
    random population torrents, and PING."""
    rng = random.Random(7)
    out = []
    for i in range(1024):
        h = torrent_hash(rng.randrange(torrents)).hex()
        out.append((b"PEERS %s numwant=50\n" % h.encode()) if i % 3 == 0 else
                   (b"SCRAPE %s\n" % h.encode()) if i % 3 == 1 else b"PING\n")
    return out


def run_line_load(port: int, torrents: int, duration_s: int) -> Dict[str, float]:
    """Line-protocol commands per second: LINE_CONNECTIONS connections, each
    keeping LINE_WINDOW commands in flight. A reply is a line that is not an
    event and not a PEER line (PEERS answers end with END)."""
    import selectors
    commands = line_command_mix(torrents)
    selector = selectors.DefaultSelector()
    conns = []
    for n in range(LINE_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"HELLO node=bench-%d\n" % n)
        if not sock.makefile("rb").readline().startswith(b"OK HELLO"):
            raise RuntimeError("HELLO refused")
        sock.setblocking(False)
        state = {"sock": sock, "inflight": [], "buffer": b"", "next": n * 97}
        conns.append(state)
        selector.register(sock, selectors.EVENT_READ, state)
    latencies: List[float] = []
    completed = errors = 0

    def top_up(state, now):
        batch = []
        while len(state["inflight"]) < LINE_WINDOW:
            command = commands[state["next"] % len(commands)]
            state["next"] += 1
            batch.append(command)
            state["inflight"].append(now)
        if batch:
            state["sock"].sendall(b"".join(batch))

    start = time.monotonic()
    end = start + duration_s
    for state in conns:
        top_up(state, start)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for key, _ in selector.select(timeout=0.5):
            state = key.data
            data = state["sock"].recv(1 << 16)
            if not data:
                raise RuntimeError("the tracker closed a line connection")
            lines = (state["buffer"] + data).split(b"\n")
            state["buffer"] = lines.pop()
            now = time.monotonic()
            for line in lines:
                if line.startswith(b"PEER ") or line.startswith(b"SCRAPE ") or line.startswith(b"*"):
                    continue
                if line.startswith(b"ERR"):
                    errors += 1
                sent = state["inflight"].pop(0)
                completed += 1
                latencies.append(now - sent)
            if now < end:
                top_up(state, now)
    elapsed = time.monotonic() - start
    for state in conns:
        state["sock"].close()
    latencies.sort()
    return {"requests": completed, "duration_us": elapsed * 1e6, "rps": completed / elapsed,
            "p50_us": latencies[len(latencies) // 2] * 1e6 if latencies else 0,
            "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6 if latencies else 0,
            "errors": errors}


def measure_fanout(python: str, workdir: Path, subscribers: int = FANOUT_SUBSCRIBERS,
                   rounds: int = 5) -> Dict[str, float]:
    """One swarm, `subscribers` connections subscribed to it: how long from an
    HTTP announce of a new peer until every subscriber has read the JOIN event."""
    import selectors
    tracker = Tracker(python, workdir, [])
    socks = []
    try:
        h = torrent_hash(0).hex().encode()
        for n in range(subscribers):
            sock = socket.create_connection(("127.0.0.1", tracker.line_port))
            sock.sendall(b"HELLO node=watcher-%d\nSUBSCRIBE %s\n" % (n, h))
            socks.append(sock)
        for sock in socks:  # wait for both replies
            buffer = b""
            while buffer.count(b"\n") < 2:
                buffer += sock.recv(4096)
            if not buffer.split(b"\n")[1].startswith(b"OK SUBSCRIBE"):
                raise RuntimeError("subscribe failed: %r" % buffer)
        times = []
        for round_no in range(rounds):
            selector = selectors.DefaultSelector()
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            waiting = set(socks)
            started = time.monotonic()
            http_get_many(tracker.port, [announce_path(0, 100 + round_no)])
            while waiting:
                for key, _ in selector.select(timeout=10):
                    data = key.fileobj.recv(4096)
                    if b"* JOIN" in data:
                        waiting.discard(key.fileobj)
                        selector.unregister(key.fileobj)
                if time.monotonic() - started > 30:
                    raise RuntimeError("%d subscribers never got the event" % len(waiting))
            times.append(time.monotonic() - started)
            selector.close()
    finally:
        for sock in socks:
            sock.close()
        tracker.stop()
    return {"subscribers": subscribers, "rounds": rounds,
            "median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


def measure_memory(start, torrents: int, peers: int, loader: Path) -> Dict[str, float]:
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


def memory_markdown(results: Dict[str, Dict[str, float]]) -> str:
    lines = ["| server | peers | torrents | resident MiB before / after | bytes per peer |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %d | %.0f / %.0f | %.0f |" % (
            name, r["peers"], r["torrents"], r["rss_before"] / 2 ** 20, r["rss_after"] / 2 ** 20,
            r["bytes_per_peer"]))
    return "\n".join(lines)


def write_chart(results: Dict[str, Dict[str, Dict[str, float]]], path: Path) -> bool:
    """A PNG bar chart of median requests per second, per door and server."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("benchmark: matplotlib is not installed; no chart (pip install matplotlib)",
              file=sys.stderr)
        return False
    servers = list(results)
    scenarios = [s for s in SCENARIOS if any(s in results[n] for n in servers)]
    width = 0.8 / max(len(servers), 1)
    figure, axes = plt.subplots(figsize=(10, 5))
    for i, name in enumerate(servers):
        values = [results[name].get(s, {}).get("rps_median", 0) for s in scenarios]
        positions = [x + i * width for x in range(len(scenarios))]
        axes.bar(positions, values, width, label=name)
    axes.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(scenarios))])
    axes.set_xticklabels(scenarios, rotation=15)
    axes.set_ylabel("requests per second (median, one server core)")
    axes.set_title("Throughput per door")
    axes.legend()
    figure.tight_layout()
    figure.savefig(str(path), dpi=100)
    plt.close(figure)
    return True


def fanout_markdown(results: Dict[str, Dict[str, float]]) -> str:
    lines = ["| runtime | subscribers | time until all have the event, median ms | max ms |",
             "|---|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %.1f | %.1f |" % (name, r["subscribers"], r["median_ms"], r["max_ms"]))
    return "\n".join(lines)


def summarise(runs: List[Dict[str, float]]) -> Dict[str, float]:
    rps = [r["rps"] for r in runs]
    return {
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": statistics.median(r["p50_us"] for r in runs) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in runs) / 1000,
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "errors": sum(r["errors"] + r.get("non2xx", 0) for r in runs),
        "lost": sum(r.get("timeouts", 0) for r in runs),
        "rounds": len(runs),
    }


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s %s" % (cpu, os.cpu_count() or 0, platform.system(), platform.release())


def markdown_table(results: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    reference = results.get("opentracker", {})
    lines = [
        "| runtime | scenario | req/s median | req/s min–max | × opentracker req/s "
        "| × opentracker per CPU | p50 ms | p99 ms | server CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        # (For udp-announce a "request" is one connect plus one announce.)
    ]
    for runtime, scenarios in results.items():
        for scenario, s in scenarios.items():
            ref = reference.get(scenario)
            ratio = "%.2f" % (s["rps_median"] / ref["rps_median"]) if ref else "–"
            # Requests per second of server CPU, relative: opentracker's CPU per request / ours.
            per_cpu = ("%.2f" % (ref["cpu_us_per_request"] / s["cpu_us_per_request"])
                       if ref and s["cpu_us_per_request"] else "–")
            lines.append("| %s | %s | %.0f | %.0f–%.0f | %s | %s | %.2f | %.2f | %.1f |" % (
                runtime, scenario, s["rps_median"], s["rps_min"], s["rps_max"], ratio, per_cpu,
                s["p50_ms"], s["p99_ms"], s["cpu_us_per_request"]))
    return "\n".join(lines)


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


def flush_latency_table(results: Dict[str, Dict[str, float]]) -> str:
    lines = ["| runtime | largest flush (rows) | its duration s | p50 / p99 ms during flushes | "
             "p50 / p99 ms, persistence off | req/s with / without |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %.2f | %.2f / %.2f | %.2f / %.2f | %.0f / %.0f |" % (
            name, r["largest_flush_rows"], r["largest_flush_s"], r["with_flush_p50_ms"],
            r["with_flush_p99_ms"], r["no_db_p50_ms"], r["no_db_p99_ms"], r["with_flush_rps"],
            r["no_db_rps"]))
    return "\n".join(lines)


def build_restore_database(path: Path, peers: int, now: float) -> None:
    """A database holding `peers` live peers over peers/100 torrents."""
    sys.path.insert(0, str(REPO))
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


def restore_markdown(results: Dict[str, Dict[str, float]]) -> str:
    lines = ["| runtime | live peers restored | swarms | restore s | resident MiB after | database MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %d | %.1f | %.0f | %.0f |" % (
            name, r["peers"], r["swarms"], r["seconds"], r["rss_bytes"] / 2 ** 20, r["db_bytes"] / 2 ** 20))
    return "\n".join(lines)


def runtime_version(python: str) -> str:
    return subprocess.run([python, "-c", "import platform, sys; print(platform.python_implementation(), "
                           "platform.python_version())"],
                          capture_output=True, text=True).stdout.strip()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", action="append", default=[], metavar="NAME=PYTHON",
                        help="interpreter to run the tracker with (repeatable); "
                             "default: this interpreter")
    parser.add_argument("--torrents", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=50, help="peers per torrent")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every scenario (0: only --flush-latency / --restore)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only these scenarios (repeatable)")
    parser.add_argument("--without-db", action="store_true",
                        help="also run each runtime with persistence off (--db off), side by side")
    parser.add_argument("--flush-latency", action="store_true",
                        help="measure announce latency while a flush of ~100,000 changed peers runs")
    parser.add_argument("--no-opentracker", action="store_true",
                        help="leave opentracker out even when it is installed")
    parser.add_argument("--memory", type=int, metavar="PEERS",
                        help="resident bytes per peer after PEERS peers over PEERS/100 torrents "
                             "(e.g. 1000000), for each runtime and opentracker")
    parser.add_argument("--paced", action="store_true",
                        help="after the rounds, announce at half of each server's maximum rate "
                             "(HTTP keep-alive and UDP) and report the latency")
    parser.add_argument("--chart", metavar="PNG", help="write a bar chart of throughput per door")
    parser.add_argument("--fanout", action="store_true",
                        help="measure push fan-out: one swarm, 1,000 subscribed line connections")
    parser.add_argument("--restore", type=int, metavar="PEERS",
                        help="measure start-up restore of PEERS live peers (e.g. 1000000)")
    parser.add_argument("--json", metavar="PATH", help="write all measurements as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    args = parser.parse_args(argv)

    if not shutil.which("wrk"):
        print("benchmark: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    runtimes = {}
    for spec in args.runtime or ["%s=%s" % (platform.python_implementation().lower(), sys.executable)]:
        name, sep, python = spec.partition("=")
        if not sep or not shutil.which(python):
            print("benchmark: --runtime wants NAME=PYTHON, got %r" % spec, file=sys.stderr)
            return 2
        runtimes[name] = (python, "")
        if args.without_db:
            runtimes[name + " no-db"] = (python, "off")
    scenarios = args.scenario or list(SCENARIOS)
    use_opentracker = not args.no_opentracker and shutil.which("opentracker") is not None

    workdir = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    scripts = {kind: workdir / ("%s.lua" % kind) for kind in ("announce", "scrape")}
    for kind, path in scripts.items():
        path.write_text(wrk_script(args.torrents, args.peers, kind))
    hashes_file = workdir / "hashes.bin"
    hashes_file.write_bytes(b"".join(torrent_hash(t) for t in range(args.torrents)))
    udp_load = loader = build_load_tool(workdir)
    http_load = build_load_tool(workdir, "http_load") if args.paced else None

    raw: Dict[str, Dict[str, List[Dict[str, float]]]] = {r: {s: [] for s in scenarios} for r in runtimes}
    trackers = {}
    extra = {}
    paced: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name, (python, _) in runtimes.items():
        extra[name] = {"version": runtime_version(python)}
    try:
        for name, (python, db) in (runtimes.items() if args.rounds else ()):
            tracker = Tracker(python, workdir, [], db=db)
            fill(tracker, args.torrents, args.peers, loader)
            trackers[name] = tracker
            extra[name]["rss_bytes_after_fill"] = process_rss_bytes(tracker.pid)
            print("%s: filled %d torrents x %d peers" % (name, args.torrents, args.peers),
                  file=sys.stderr)
        if args.rounds and use_opentracker:
            reference = OpenTracker(workdir, args.torrents)
            trackers["opentracker"] = reference
            fill(reference, args.torrents, args.peers, loader)
            raw["opentracker"] = {s: [] for s in scenarios if s != "line-commands"}
        for round_no in range(args.rounds):
            for scenario in scenarios:
                for name, tracker in trackers.items():
                    if scenario not in raw[name]:
                        continue  # opentracker has no line protocol
                    kind = "scrape" if scenario.startswith("scrape") else "announce"
                    cpu_before = process_cpu_s(tracker.pid)
                    if scenario == "udp-announce":
                        figures = run_udp_load(udp_load, tracker.udp_port, hashes_file, args.peers,
                                               args.duration)
                    elif scenario == "line-commands":
                        figures = run_line_load(tracker.line_port, args.torrents, args.duration)
                    else:
                        figures = run_wrk(tracker.port, scripts[kind], args.duration,
                                          args.connections,
                                          close_each=scenario == "announce-new-connection")
                    cpu = process_cpu_s(tracker.pid) - cpu_before
                    figures["cpu_us_per_request"] = cpu / max(figures["requests"], 1) * 1e6
                    raw[name][scenario].append(figures)
                    print("round %d %s %s: %.0f req/s" % (round_no + 1, name, scenario, figures["rps"]),
                          file=sys.stderr)
        # Latency at half of each server's own maximum rate (medians of the rounds above).
        for door, scenario in (("http", "announce-keepalive"), ("udp", "udp-announce")):
            if not args.paced or not args.rounds or scenario not in scenarios:
                continue
            for name, tracker in trackers.items():
                rate = statistics.median(r["rps"] for r in raw[name][scenario]) / 2
                figures = run_paced_load(http_load if door == "http" else udp_load, door,
                                         tracker.port if door == "http" else tracker.udp_port,
                                         hashes_file, args.peers, args.duration, rate,
                                         args.connections)
                paced.setdefault(name, {})[door] = figures
                print("paced %s %s at %.0f/s: p99 %.2f ms" % (name, door, rate,
                                                              figures["p99_us"] / 1000),
                      file=sys.stderr)
    finally:
        for tracker in trackers.values():
            tracker.stop()

    results = {name: {s: summarise(runs) for s, runs in by.items()}
               for name, by in raw.items() if args.rounds}
    table = markdown_table(results) if results else ""
    measured: Dict[str, Dict[str, Dict[str, float]]] = {}
    flush_table = restore_table = ""
    if args.flush_latency:
        measured["flush_latency"] = {
            name: measure_flush_latency(python, workdir, args.duration)
            for name, (python, db) in runtimes.items() if db != "off"}
        flush_table = flush_latency_table(measured["flush_latency"])
    memory_table = ""
    if args.memory:
        per_torrent = 100
        torrents = max(1, args.memory // per_torrent)
        measured["memory"] = {
            name: measure_memory(lambda: Tracker(python, workdir, [], db=db, wait_s=600),
                                 torrents, per_torrent, loader)
            for name, (python, db) in runtimes.items() if db != "off"}
        if use_opentracker:
            measured["memory"]["opentracker"] = measure_memory(
                lambda: OpenTracker(workdir, torrents), torrents, per_torrent, loader)
        memory_table = memory_markdown(measured["memory"])
    fanout_table = ""
    if args.fanout:
        measured["fanout"] = {name: measure_fanout(python, workdir)
                              for name, (python, db) in runtimes.items() if db != "off"}
        fanout_table = fanout_markdown(measured["fanout"])
    if args.restore:
        measured["restore"] = {name: measure_restore(python, workdir, args.restore)
                               for name, (python, db) in runtimes.items() if db != "off"}
        restore_table = restore_markdown(measured["restore"])
    if paced:
        measured["paced"] = paced
    table = "\n\n".join(t for t in (table, paced_table(paced) if paced else "", flush_table,
                                      fanout_table, restore_table, memory_table) if t)
    if args.chart and results:
        write_chart(results, Path(args.chart))
    report = {
        "machine": machine_description(),
        "population": {"torrents": args.torrents, "peers_per_torrent": args.peers, "numwant": 50},
        "duration_s": args.duration, "rounds": args.rounds, "connections": args.connections,
        "pinning": {"server_core": SERVER_CORE, "load_core": LOAD_CORE} if shutil.which("taskset") else None,
        "runtimes": extra, "results": results, "runs": raw, **measured,
    }
    print("Machine: %s" % report["machine"])
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text("Machine: %s\n\n%s\n" % (report["machine"], table))
    failed = any(s["errors"] for by in results.values() for s in by.values())
    failed = failed or any(r["errors"] for r in measured.get("flush_latency", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
