"""Run the real `twistd` tracker process on loopback: for the end-to-end tests and for tools/.

The one process helper of the tree: the e2e tests import it as `process` (tests/ is on
their path), and the benchmark and abuse tools in tools/ put tests/ on their path to
import the same module, so there is one way to start, wait for, measure and stop a
tracker. It needs nothing beyond the standard library.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


def twistd_command(python: Optional[str] = None) -> List[str]:
    """`twistd` for `python` (default: the interpreter running this code)."""
    if python is None:
        script = Path(sys.executable).parent / "twistd"
        if script.exists():
            return [str(script)]
        python = sys.executable
    return [python, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or UDP) port free on both loopback addresses right now."""
    for _ in range(50):
        with socket.socket(family, kind) as s:
            s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.AF_INET if family == socket.AF_INET6 else socket.AF_INET6
        try:
            with socket.socket(other, kind) as s:
                s.bind(("127.0.0.1" if other == socket.AF_INET else "::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def source_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment that runs the source tree's code (and its twistd plugin)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("TRACKER_CONFIG", None)
    if extra:
        env.update(extra)
    return env


def poll_real_process(condition: Callable[[], T], timeout_s: float, what: str,
                      interval_s: float = 0.05) -> T:
    """Ask `condition` every `interval_s` until it returns something true; return that.

    For waiting on a real process (a twistd child, the kernel), which runs on its
    own clock: there is no task.Clock to advance, so the only honest wait is to
    look again until a deadline. Raises TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("%s: not within %.1f s" % (what, timeout_s))
        time.sleep(min(interval_s, remaining))


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status), 0 if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def accepts_connections(host: str, port: int) -> bool:
    """True if something accepts a TCP connection on (host, port) right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def answers_udp(host: str, port: int) -> bool:
    """True once the tracker's UDP door answers a BEP 15 connect (a datagram sent
    before the port is bound is simply lost: HTTP accepting says nothing of UDP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto((0x41727101980).to_bytes(8, "big") + b"\0\0\0\0\0\0\0\x07", (host, port))
            return s.recv(64)[:8] == b"\0\0\0\0\0\0\0\x07"
    except OSError:
        return False


def answers_http(host: str, port: int) -> bool:
    """True once the tracker's HTTP door answers (its port is bound before the restore ends)."""
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /scrape HTTP/1.0\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1")
    except OSError:
        return False


class TrackerProcess:
    """A `twistd -n ...` child process; `stop()` ends it with SIGTERM.

    `wait_for`: (host, port) pairs that must accept connections before the
    constructor returns; `ready`: a further check polled until true (e.g.
    `answers_http`). `python` runs twistd under another interpreter, `prefix`
    goes before the command (e.g. `taskset -c 0`)."""

    def __init__(self, args: List[str], cwd: Path, wait_for: Sequence[tuple],
                 env: Optional[Dict[str, str]] = None, *, python: Optional[str] = None,
                 prefix: Sequence[str] = (), log_path: Optional[Path] = None,
                 ready: Optional[Callable[[], bool]] = None,
                 start_timeout_s: float = START_TIMEOUT_S,
                 stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.log_path = log_path or cwd / "twistd.out"
        self.stop_timeout_s = stop_timeout_s
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            list(prefix) + twistd_command(python) + ["-n", "--pidfile=", "--logfile=-"] + args,
            cwd=str(cwd), env=env if env is not None else source_env(),
            stdout=self._log, stderr=subprocess.STDOUT)
        try:
            for host, port in wait_for:
                self._wait_until(lambda: accepts_connections(host, port), start_timeout_s,
                                 "listen on %s:%d" % (host, port))
            if ready is not None:
                self._wait_until(ready, start_timeout_s, "answer")
        except Exception:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        def up_or_exited() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("twistd exited with %s:\n%s" % (self.process.returncode, self.output()))
            return condition()
        try:
            poll_real_process(up_or_exited, timeout_s, "twistd to " + what)
        except TimeoutError as e:
            raise RuntimeError("%s:\n%s" % (e, self.output())) from None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash would; `stop()` afterwards closes the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> bool:
        """SIGTERM, then True if twistd shut down cleanly."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        # twistd re-raises the signal that stopped it, so SIGTERM is a clean exit.
        return (self.process.returncode in (0, -signal.SIGTERM)
                and "Server Shut Down." in self.output())
