"""Log observers: JSON lines for log collectors, for `python -m tracker --log-format json`
and for twistd (`twistd --logger tracker.logs.json_observer -n tracker ...`).

Each event is one line of JSON (twisted.logger's own format: the message in
`log_format`, its fields beside it, `log_time`, `log_level`), so a collector
can keep the fields (door, address, counts) instead of parsing text. The
tracker never puts a secret in an event's fields (tokens are counted, not shown).
"""
from __future__ import annotations

import sys

from twisted.logger import jsonFileLogObserver, textFileLogObserver


def json_observer():
    """For `twistd --logger`: JSON lines on standard output (the journal, a container)."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def observer_for(log_format: str, stream):
    """The observer `python -m tracker` starts: 'text' (twistd's format) or 'json'."""
    if log_format == "json":
        return jsonFileLogObserver(stream, recordSeparator="")
    return textFileLogObserver(stream)
