"""Run the real `twistd` tracker process on loopback for end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def twistd_command() -> List[str]:
    """The `twistd` of the interpreter running the tests."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


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


class TrackerProcess:
    """A `twistd -n ...` child process; `stop()` ends it with SIGTERM."""

    def __init__(self, args: List[str], cwd: Path, wait_for: List[tuple],
                 env: Optional[Dict[str, str]] = None) -> None:
        self.log_path = cwd / "twistd.out"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            twistd_command() + ["-n", "--pidfile=", "--logfile=-"] + args,
            cwd=str(cwd), env=env if env is not None else source_env(),
            stdout=self._log, stderr=subprocess.STDOUT)
        try:
            for host, port in wait_for:
                self._wait_for_port(host, port)
        except Exception:
            self.stop()
            raise

    def _wait_for_port(self, host: str, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("twistd exited with %s:\n%s" % (self.process.returncode, self.output()))
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                try:  # wait a moment, or notice at once that twistd exited
                    self.process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
        raise RuntimeError("twistd did not listen on %s:%d in time:\n%s" % (host, port, self.output()))

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> bool:
        """SIGTERM, then True if twistd shut down cleanly."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        # twistd re-raises the signal that stopped it, so SIGTERM is a clean exit.
        return (self.process.returncode in (0, -signal.SIGTERM)
                and "Server Shut Down." in self.output())
