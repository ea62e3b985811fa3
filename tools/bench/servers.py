"""The servers under test: our tracker (through the tests' process helper) and opentracker."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import List, Optional

from process import (TrackerProcess, accepts_connections, answers_http, free_port,
                     poll_real_process, source_env)

from . import SERVER_CORE
from .loaders import run_udp_load
from .population import announce_path, hashes_blob, torrent_hash


def pinned(core: str) -> List[str]:
    """The command prefix that pins a process to `core` (none without taskset)."""
    return ["taskset", "-c", core] if shutil.which("taskset") else []


class Tracker:
    """The tracker under test, pinned to the server core, HTTP, UDP and line on loopback."""

    def __init__(self, python: str, workdir: Path, extra_args: List[str],
                 db: str = "", wait_s: float = 30) -> None:
        """`db`: the database file ("" for one of its own in `workdir`, "off" for none)."""
        self.port = free_port()
        self.udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.line_port = free_port()
        db = db or str(workdir / ("tracker-%d.sqlite3" % self.port))
        args = ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % self.port,
                "--udp", "127.0.0.1:%d" % self.udp_port,
                "--line", "tcp:%d:interface=127.0.0.1" % self.line_port, "--ws", "off", "--admin", "off",
                "--db", db,
                # The load generators send everything from one address: no
                # per-address allowance or connection cap, as for opentracker.
                "--request-rate", "0", "--max-connections-per-address", "1000000",
                # Filling a million peers as fast as they go outruns the store
                # for a while: the population is filled, not refused (the full
                # run of 27 November 2026 filled it under a cap of 200,000).
                "--max-write-backlog", "10000000"] + extra_args
        # Ready when it answers: the port is bound before the swarms are restored.
        self.process = TrackerProcess(
            args, workdir, [], env=source_env(), python=python, prefix=pinned(SERVER_CORE),
            log_path=workdir / ("tracker-%d.log" % self.port),
            ready=lambda: answers_http("127.0.0.1", self.port),
            start_timeout_s=wait_s, stop_timeout_s=120)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> str:
        """Stop cleanly (the final flush included); return the tracker's log."""
        self.process.stop()
        return self.process.output()


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
        command = pinned(SERVER_CORE) + ["opentracker", "-f", str(root / "opentracker.conf")]
        self.process = subprocess.Popen(command, cwd=str(root), stdout=self.log,
                                        stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("opentracker exited with %s" % self.process.returncode)
            return accepts_connections("127.0.0.1", self.port)
        try:
            poll_real_process(listening, 30, "opentracker to listen", interval_s=0.1)
        except Exception:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        return ""


def http_get_many(port: int, paths: List[str], pipeline: int = 200) -> List[bytes]:
    """GET every path over one keep-alive connection, pipelined; return the bodies."""
    bodies: List[bytes] = []
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
    if loader is not None:
        hashes = loader.parent / ("fill-%d.bin" % torrents)
        if not hashes.exists():
            hashes.write_bytes(hashes_blob(torrents))
        figures = run_udp_load(loader, server.udp_port, hashes, peers, 1800, window=256, fill=True)
        if figures["requests"] != torrents * peers or figures["errors"]:
            raise RuntimeError("filling over UDP: %d of %d announces answered, %d errors"
                               % (figures["requests"], torrents * peers, figures["errors"]))
    else:
        for first in range(0, torrents, 1000):  # in slices: a million peers fit in memory here
            paths = [announce_path(t, p, numwant=0)
                     for t in range(first, min(first + 1000, torrents)) for p in range(peers)]
            bodies = http_get_many(server.port, paths)
            failures = [b for b in bodies if b"failure reason" in b]
            if failures:
                raise RuntimeError("the tracker refused the population: %r" % failures[0])
    # One full announce: a leecher must get numwant (or the whole swarm) peers back
    # (opentracker may include the requester itself).
    body = http_get_many(server.port, [announce_path(0, 1)])[0]
    match = re.search(rb"5:peers(\d+):", body)
    if not match or int(match.group(1)) < min(50, peers - 1) * 6:
        raise RuntimeError("unexpected announce reply after filling: %r" % body[:200])


def runtime_version(python: str) -> str:
    return subprocess.run([python, "-c", "import platform, sys; print(platform.python_implementation(), "
                           "platform.python_version())"],
                          capture_output=True, text=True).stdout.strip()
