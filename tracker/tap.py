"""Entry point for `twistd tracker` and `tracker.tac`: options and service,
with start-up problems reported as one line instead of a traceback, in the
foreground and in daemon mode alike."""
from __future__ import annotations

import os
import sys

from twisted.logger import Logger

from tracker.options import Options
from tracker.reload import install_sighup
from tracker.service import makeService as _build
from tracker.store import StoreError

__all__ = ["Options", "makeService"]

log = Logger()

# The access-mode bits of a descriptor's flags (PyPy's os lacks O_ACCMODE).
ACCESS_MODE = getattr(os, "O_ACCMODE", 3)
# Under PIPE_BUF (4096 on Linux), so the status is one atomic write.
PIPE_MESSAGE_MAX = 4000
# What the daemon's parent prints when the child vanished without a word.
SILENT_CHILD = "tracker: the daemon exited during start-up without saying why; see its log file"


def makeService(config: Options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    under_twistd = "twisted.scripts._twistd_unix" in sys.modules
    if under_twistd:
        _report_daemon_failures()
    try:
        top = _build(config, reactor)
    except StoreError as e:
        raise SystemExit("tracker: %s" % (e,))
    if under_twistd:
        # Before any door is bound, so no SIGHUP can find the default action
        # (exit, without a flush); a daemon's child inherits the handler.
        install_sighup(top, config, reactor)
    return top


def _report_daemon_failures() -> None:
    """Make `twistd` without `-n` end with the start-up failure instead of hanging.

    twistd daemonises before the listeners bind: the parent waits on a status
    pipe for the child's "0" (started) or "1 <exception>". Two gaps make it hang
    or mumble: the child reports only an `Exception` (our one-line SystemExit
    escapes it), and the parent keeps the pipe's write end open, so a child that
    dies without writing is never noticed. Both methods are replaced here, in
    the parent before it forks (makeService runs first in both ways in); only
    when twistd's Unix runner is what is running us."""
    unix = sys.modules.get("twisted.scripts._twistd_unix")
    if unix is None or getattr(unix.UnixApplicationRunner, "_tracker_reports", False):
        return
    runner = unix.UnixApplicationRunner
    start = runner.startApplication

    def startApplication(self, application):
        try:
            start(self, application)
        except SystemExit as e:
            pipe = self.config.get("statusPipe")
            if pipe is None or not isinstance(e.code, str):
                raise
            # Log it and remove the pid file first: the parent exits as soon
            # as it reads the message, and whoever it returns to may look at both.
            log.critical("{message}", message=e.code)
            self.removePID(self.config["pidfile"])
            self.config["statusPipe"] = None
            _write_all(pipe, b"1 " + e.code.encode("utf-8", "replace")[:PIPE_MESSAGE_MAX])
            os.close(pipe)
            raise SystemExit(1)  # said already: no second copy of the line in the log

    def _waitForStart(self, readPipe: int) -> int:
        _close_write_end(readPipe)
        # One read: the child writes its status in one write under PIPE_BUF.
        data = _read(readPipe)
        if data == b"0":
            return 0
        message = data[2:].decode("utf-8", "replace").strip() if data else SILENT_CHILD
        sys.__stderr__.write(message + "\n")
        sys.__stderr__.flush()
        return 1

    runner.startApplication = startApplication
    runner._waitForStart = _waitForStart
    runner._tracker_reports = True


def _read(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 4096)
        except InterruptedError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue


def _close_write_end(read_fd: int) -> None:
    """Close this process's copy of the pipe's write end (same pipe inode,
    opened for writing), so the read ends when the child's copy closes."""
    import fcntl

    try:
        pipe = os.fstat(read_fd)
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return  # no /proc: keep Twisted's behaviour
    for fd in fds:
        if fd == read_fd:
            continue
        try:
            other = os.fstat(fd)
            if (other.st_dev, other.st_ino) == (pipe.st_dev, pipe.st_ino) and \
                    fcntl.fcntl(fd, fcntl.F_GETFL) & ACCESS_MODE == os.O_WRONLY:
                os.close(fd)
        except OSError:
            continue  # the directory's own descriptor, already gone
