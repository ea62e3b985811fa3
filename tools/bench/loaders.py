"""The load generators: wrk, the C loaders in tools/ (built here), and a Python line-protocol client."""
from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List

from tracker.line.protocol import ERROR, LAST, format_command, format_hello, reply_kind

from . import LOAD_CORE, REPO
from .population import line_command_mix

LINE_CONNECTIONS = 8  # line-protocol connections, each pipelining a window of commands
LINE_WINDOW = 64
UDP_WINDOW = 64  # UDP transactions kept in flight by the load generator


def parse_wrk_output(output: str) -> Dict[str, float]:
    """The figures our Lua `done` hook (and the C loaders) print."""
    for line in output.splitlines():
        if line.startswith("BENCH-JSON "):
            figures = json.loads(line[len("BENCH-JSON "):])
            figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
            return figures
    raise ValueError("wrk printed no BENCH-JSON line:\n" + output)


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


def run_udp_load(binary: Path, port: int, hashes_file: Path, peers: int, duration_s: int,
                 window: int = UDP_WINDOW, fill: bool = False) -> Dict[str, float]:
    command = [str(binary), "127.0.0.1", str(port), str(duration_s), str(hashes_file), str(peers),
               str(window)] + (["fill"] if fill else [])
    return run_load("udp_load", command, duration_s)


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


def is_reply_end(line: bytes) -> bool:
    """Whether a line-protocol line ends the reply to one command: an ERR, an END or a
    one-line reply; not an event, not a PEER or SCRAPE row of a multi-line reply."""
    return reply_kind(line) in (ERROR, LAST)


class LineConnection:
    """One pipelining line-protocol connection of the line benchmark."""

    def __init__(self, port: int, n: int, commands: List[bytes]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        node = "bench-%d" % n
        self.sock.sendall(format_command("HELLO", node=node).encode() + b"\n")
        if self.sock.makefile("rb").readline().decode().rstrip("\r\n") != format_hello(node, 0):
            raise RuntimeError("HELLO refused")
        self.sock.setblocking(False)
        self.commands = commands
        self.inflight: List[float] = []  # when each unanswered command was sent
        self.buffer = b""
        self.next = n * 97

    def top_up(self, now: float) -> None:
        batch = []
        while len(self.inflight) < LINE_WINDOW:
            batch.append(self.commands[self.next % len(self.commands)])
            self.next += 1
            self.inflight.append(now)
        if batch:
            self.sock.sendall(b"".join(batch))

    def read_replies(self, latencies: List[float]) -> int:
        """Read what arrived; record each completed command's latency; return the errors."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("the tracker closed a line connection")
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        now = time.monotonic()
        errors = 0
        for line in lines:
            if not is_reply_end(line):
                continue
            errors += reply_kind(line) == ERROR
            latencies.append(now - self.inflight.pop(0))
        return errors


def run_line_load(port: int, torrents: int, duration_s: int) -> Dict[str, float]:
    """Line-protocol commands per second: LINE_CONNECTIONS connections, each
    keeping LINE_WINDOW commands in flight."""
    commands = line_command_mix(torrents)
    selector = selectors.DefaultSelector()
    conns = [LineConnection(port, n, commands) for n in range(LINE_CONNECTIONS)]
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    latencies: List[float] = []
    errors = 0
    start = time.monotonic()
    end = start + duration_s
    for conn in conns:
        conn.top_up(start)
    while time.monotonic() < end:
        for key, _ in selector.select(timeout=0.5):
            errors += key.data.read_replies(latencies)
            now = time.monotonic()
            if now < end:
                key.data.top_up(now)
    elapsed = time.monotonic() - start
    for conn in conns:
        conn.sock.close()
    selector.close()
    latencies.sort()
    return {"requests": len(latencies), "duration_us": elapsed * 1e6, "rps": len(latencies) / elapsed,
            "p50_us": latencies[len(latencies) // 2] * 1e6 if latencies else 0,
            "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6 if latencies else 0,
            "errors": errors}
