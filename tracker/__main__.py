"""`python -m tracker`: the same service as `twistd tracker`, run in the foreground
without twistd (for systemd, containers and other service managers).

    python -m tracker --http tcp:6969 --db /var/lib/tracker/tracker.sqlite3
    python -m tracker --log-format json        # one JSON object per log line
    python -m tracker --version

Every tracker option works as with `twistd tracker` (`--help` lists them). Logs go
to standard output (or `--logfile PATH`, reopened on SIGHUP and SIGUSR1 for log
rotation). SIGTERM and SIGINT stop it after writing every change; SIGHUP reloads
the settings file. A start-up failure is one line on standard error, exit status 1;
bad options exit 2.
"""
from __future__ import annotations

import signal
import sys
from typing import List, Optional

from twisted.python import usage

from tracker.options import Options

EXIT_START_FAILED = 1
EXIT_USAGE = 2


class MainOptions(Options):
    synopsis = "[options]   (python -m tracker)"
    optParameters = Options.optParameters + [
        ["log-format", None, "text", "log lines as 'text' (twistd's format) or 'json'"],
        ["logfile", None, "-", "log file ('-' for standard output)"],
    ]

    def postOptions(self) -> None:
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        super().postOptions()


def _open_log(path: str):
    if path == "-":
        return sys.stdout
    from twisted.python.logfile import LogFile

    log_file = LogFile.fromFullPath(path, rotateLength=None)
    return log_file


def run(argv: List[str]) -> int:
    config = MainOptions()
    try:
        config.parseOptions(argv)
    except usage.UsageError as e:
        print("%s\ntracker: %s" % (config, e), file=sys.stderr)
        return EXIT_USAGE
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from tracker.logs import observer_for
    from tracker.reload import install_sighup
    from tracker.tap import makeService

    stream = _open_log(config["logfile"])
    globalLogBeginner.beginLoggingTo([observer_for(config["log-format"], stream)],
                                     redirectStandardIO=False)
    try:
        top = makeService(config, reactor)
        install_sighup(top, config, reactor)  # before any door is bound: see tracker/tap.py
        top.privilegedStartService()  # binds every door, or none
    except SystemExit as e:
        print(e.code if isinstance(e.code, str) else "tracker: start-up failed", file=sys.stderr)
        return EXIT_START_FAILED
    failed = []

    def start():
        try:
            top.startService()
        except Exception as e:  # restore failed: say it in one line and stop
            failed.append("tracker: cannot start: %s" % (e,))
            reactor.stop()
            return
        if stream is not sys.stdout:
            signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(stream.rotate))

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    if failed:
        print(failed[0], file=sys.stderr)
        return EXIT_START_FAILED
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
