"""The WebSocket relay against webtorrent's own server: the same load
(relay_load.js: CLIENTS browsers in one swarm, each announce with one offer,
every offer answered) on our tracker under CPython and PyPy and on
`bittorrent-tracker`'s Server (npm, version 9, its WebSocket door only), one
server core each (taskset -c 0, the load generator on core 1). Prints, per
server: announces answered per second, per server CPU-second, offers and
answers relayed, memory with the CLIENTS sockets open, the relay's latency at
half the rate reached (open loop); then the memory
per idle connection with 10,000 connections open. Loopback only.

    .venv/bin/python tests/webtorrent/relay_bench.py [CLIENTS] [SECONDS]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from process import (  # noqa: E402  (tests/ on the path above)
    REPO, TrackerProcess, accepts_connections, free_port, poll_real_process, process_cpu_s,
    process_rss_bytes,
)

WARMUP_S = 3
REFERENCE = """
const { Server } = require('bittorrent-tracker')
const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('warning', () => {})
server.listen(Number(process.argv[1]), '127.0.0.1')
"""


def pin(core: int):
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() > 1 else []


def measure(pid: int, port: int, clients: int, seconds: int) -> dict:
    load = subprocess.Popen(pin(1) + ["node", "relay_load.js", "ws://127.0.0.1:%d" % port,
                                      str(clients), str(seconds), str(WARMUP_S)],
                            cwd=str(HERE), stdout=subprocess.PIPE, text=True)
    timer = threading.Event()
    timer.wait(WARMUP_S)   # the load generator's own warm-up: not a test, a benchmark
    cpu_before, rss = process_cpu_s(pid), 0
    timer.wait(seconds / 2)
    rss = process_rss_bytes(pid)
    timer.wait(seconds / 2)
    cpu = process_cpu_s(pid) - cpu_before
    out, _ = load.communicate(timeout=60)
    counts = json.loads(out.strip().splitlines()[-1])
    counts.update(cpu_s=cpu, rss_mib=rss / 2 ** 20)
    # Then at half the rate reached: the relay's latency (announce sent to offer received).
    half = max(1, int(counts["announces"] / seconds / 2))
    run = subprocess.run(pin(1) + ["node", "relay_load.js", "ws://127.0.0.1:%d" % port,
                                   str(clients), "5", "2", "1", str(half)],
                         cwd=str(HERE), capture_output=True, text=True, timeout=60)
    timed = json.loads(run.stdout.strip().splitlines()[-1])
    counts.update(half_rate=half, p50_ms=timed["p50_ms"], p99_ms=timed["p99_ms"])
    return counts


def ours(python: str, clients: int, seconds: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        tracker = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % free_port(), "--udp", "off",
             "--line", "off", "--admin", "off", "--db", "off",
             "--ws", "tcp:%d:interface=127.0.0.1" % port],
            Path(work), [("127.0.0.1", port)], python=python, prefix=pin(0))
        try:
            return measure(tracker.pid, port, clients, seconds)
        finally:
            tracker.stop()


def reference(clients: int, seconds: int) -> dict:
    port = free_port()
    server = subprocess.Popen(pin(0) + ["node", "-e", REFERENCE, str(port)], cwd=str(HERE))
    try:
        poll_real_process(lambda: accepts_connections("127.0.0.1", port), 20, "node server")
        return measure(server.pid, port, clients, seconds)
    finally:
        server.terminate()
        server.wait(10)


def idle_memory(python: str, count: int) -> float:
    """Bytes of tracker memory (RSS) per idle WebSocket connection, each a
    browser that announced once, from the RSS before and after `count`."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 1000)), hard))
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        tracker = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % free_port(), "--udp", "off",
             "--line", "off", "--admin", "off", "--db", "off",
             "--ws", "tcp:%d:interface=127.0.0.1" % port],
            Path(work), [("127.0.0.1", port)], python=python)
        holder = None
        try:
            before = process_rss_bytes(tracker.pid)
            holder = subprocess.Popen(["node", "idle_sockets.js", "ws://127.0.0.1:%d" % port,
                                       str(count)], cwd=str(HERE), stdout=subprocess.PIPE,
                                      text=True)
            line = holder.stdout.readline().strip()
            assert line == "ready %d" % count, line
            return (process_rss_bytes(tracker.pid) - before) / count
        finally:
            if holder is not None:
                holder.kill()
                holder.wait()
            tracker.stop()


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = [("bittorrent-tracker 9 (node %s)" % subprocess.run(
        ["node", "--version"], capture_output=True, text=True).stdout.strip(),
        lambda: reference(clients, seconds)),
            ("this tracker, CPython", lambda: ours(str(REPO / ".venv" / "bin" / "python"),
                                                   clients, seconds))]
    pypy = REPO / ".venv-pypy" / "bin" / "python"
    if pypy.exists():
        runs.append(("this tracker, PyPy", lambda: ours(str(pypy), clients, seconds)))
    print("%d browsers in one swarm, each announce with one offer, every offer answered; "
          "%d s measured" % (clients, seconds))
    print("%-32s %11s %10s %9s %9s %8s %22s" % (
        "server", "announces/s", "per CPU-s", "offers", "answers", "RSS MiB",
        "relay p50/p99 ms @ rate"))
    for name, run in runs:
        r = run()
        print("%-32s %11.0f %10.0f %9d %9d %8.1f %9.2f/%.2f @ %d/s" % (
            name, r["announces"] / seconds, r["announces"] / max(r["cpu_s"], 1e-9), r["offers"],
            r["answers"], r["rss_mib"], r["p50_ms"], r["p99_ms"], r["half_rate"]))
        time.sleep(1)
    count = 10000
    print("memory per idle connection (RSS, %d connections, each a browser that announced):"
          % count)
    for name, python in (("CPython", REPO / ".venv" / "bin" / "python"), ("PyPy", pypy)):
        if python.exists():
            print("  %-8s %6.1f KiB" % (name, idle_memory(str(python), count) / 1024))


if __name__ == "__main__":
    main()
