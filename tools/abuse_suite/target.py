"""A tracker under attack: one real twistd with every door on loopback, and what to read off it."""
from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from process import TrackerProcess, free_port, process_rss_bytes, source_env

MiB = 1 << 20
# Starts twistd with a given soft open-file limit (hard limit unchanged), as a
# fresh login shell would (Debian: 1024), whatever this process's own limit is.
WITH_NOFILE = ("import os, resource, sys; hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
               "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard)); "
               "os.execv(sys.argv[2], sys.argv[2:])")


class Target:
    """`twistd -n tracker` with HTTP, UDP, line and admin on 127.0.0.1, persistence on."""

    def __init__(self, workdir: Path, extra_args: List[str] = (), db: Optional[Path] = None,
                 soft_nofile: Optional[int] = None, start_timeout_s: float = 120) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.line_port = free_port()
        self.admin_port = free_port()
        self.db = db or workdir / "tracker.sqlite3"
        self.extra_args = list(extra_args)
        self.soft_nofile = soft_nofile
        self.start_timeout_s = start_timeout_s
        self.runs: List[TrackerProcess] = []  # every start so far; the last one is current
        self.start()

    def args(self) -> List[str]:
        return ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % self.http_port,
                "--udp", "127.0.0.1:%d" % self.udp_port,
                "--line", "tcp:%d:interface=127.0.0.1" % self.line_port, "--ws", "off",
                "--admin", "tcp:%d:interface=127.0.0.1" % self.admin_port,
                "--db", str(self.db),
                # Every case's load comes from loopback: the per-address allowance
                # would refuse most of it before the bound under test is reached
                # (a case may set it again in extra_args, which come later and win).
                "--request-rate", "0"] + self.extra_args

    def start(self) -> None:
        """Start (again), on the same ports and database; ready once every TCP door listens."""
        prefix: List[str] = []
        if self.soft_nofile:
            prefix = [sys.executable, "-c", WITH_NOFILE, str(self.soft_nofile)]
        self.runs.append(TrackerProcess(
            self.args(), self.workdir,
            [("127.0.0.1", p) for p in (self.http_port, self.line_port, self.admin_port)],
            env=source_env(), python=sys.executable if prefix else None, prefix=prefix,
            log_path=self.workdir / ("twistd-%d.out" % len(self.runs)),
            start_timeout_s=self.start_timeout_s))

    @property
    def process(self) -> TrackerProcess:
        return self.runs[-1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return process_rss_bytes(self.pid)

    def output(self) -> str:
        """What the current run has logged."""
        return self.process.output()

    def stop(self) -> bool:
        """SIGTERM (a clean stop); True if twistd shut down cleanly."""
        return self.process.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.process.kill()
        self.stop()

    def admin(self, path: str, timeout_s: float = 30) -> Any:
        """GET an admin API path, its JSON."""
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                    timeout=timeout_s) as response:
            return json.loads(response.read())

    def status(self) -> Dict[str, Any]:
        return self.admin("/api/status")

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
