"""SIGHUP: re-read the settings file, apply what can change while running, reopen the log.

What a reload may change: the intervals and peer counts sent to clients, the
peer time to live, the caps on swarms and peers in memory, the tracker id and warning message, the trusted proxies and
their header, `allow-ip-param`, and the CDN nodes' tokens. Endpoints, the
database and the other settings need a restart; a reload names those that
changed in the file and leaves them as they are. A setting given on the command
line keeps its value (the command line beats the file, at start and on reload).
A file that does not parse or holds a bad value changes nothing. Nothing here
stops the tracker, so no acknowledged state can be lost to a SIGHUP.
"""
from __future__ import annotations

import ipaddress
import os
import signal
from typing import Any, Dict, List, Tuple

import attr
from twisted.logger import Logger, globalLogPublisher
from twisted.python.usage import UsageError

from tracker.doors.responses import announce_trailer
from tracker.options import SETTINGS, Options, load_config_file

log = Logger()

RELOADABLE = (
    "interval", "min-interval", "peer-ttl", "numwant", "max-numwant", "max-scrape-hashes",
    "max-swarms", "max-peers", "max-write-backlog",
    "tracker-id", "warning-message", "trusted-proxy", "proxy-header", "allow-ip-param",
    "node-token",
)
# Secrets: a reload says that they changed, never what they are.
SECRET = {"node-token", "admin-token"}
_BY_NAME = {s.name: s for s in SETTINGS}


def current_values(config: Options) -> Dict[str, Any]:
    """Every setting as the file (or the default) gives it now; the command line still wins.
    Raises UsageError with a one-line reason for a file that cannot be used."""
    path = config["config"]
    from_file = load_config_file(path) if path else {}
    values = {}
    for setting in SETTINGS:
        name = setting.name
        if name in config.from_command_line:
            values[name] = config[name]
            continue
        raw = from_file.get(name, setting.default)
        try:
            values[name] = setting.convert(raw) if raw is not None else None
        except (TypeError, ValueError) as e:
            raise UsageError("%s in %s: %r is not valid (%s)" % (name, path, raw, e))
    if values["min-interval"] > values["interval"]:
        raise UsageError("min-interval (%d) must not exceed interval (%d)"
                         % (values["min-interval"], values["interval"]))
    if values["db"] not in ("off", ":memory:"):
        values["db"] = os.path.join(values["data-dir"], values["db"])
    return values


def changes(config: Options, values: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(reloadable settings that changed, other settings that changed)."""
    now, later = [], []
    for setting in SETTINGS:
        name = setting.name
        if name in ("line-auth", "data-dir") or values[name] == config[name]:
            continue  # line-auth is decided once at start; data-dir is part of db
        (now if name in RELOADABLE else later).append(name)
    return now, later


def apply(top, config: Options, values: Dict[str, Any], names: List[str]) -> None:
    """Put the reloadable `names` into the running service and into `config`."""
    for name in names:
        config[name] = values[name]
    core = top.core
    core.settings = attr.evolve(
        core.settings, interval_s=config["interval"], min_interval_s=config["min-interval"],
        peer_ttl_s=config["peer-ttl"], default_numwant=config["numwant"],
        max_numwant=config["max-numwant"], max_scrape_hashes=config["max-scrape-hashes"],
        max_swarms=config["max-swarms"], max_peers=config["max-peers"],
        max_write_backlog=config["max-write-backlog"])
    http = top.http_factory
    if http is not None:
        def utf8(text):
            return text.encode("utf-8") if text else None
        http.settings = attr.evolve(
            http.settings, tracker_id=utf8(config["tracker-id"]),
            warning_message=utf8(config["warning-message"]),
            allow_ip_param=config["allow-ip-param"],
            trusted_proxies=tuple(ipaddress.ip_network(c) for c in config["trusted-proxy"]),
            proxy_header=config["proxy-header"].lower().encode("ascii"))
        # Kept connections answer with the settings they started with; new
        # ones, and every announce reply's trailer, use the new ones.
        http.announce_trailer = announce_trailer(http.settings.tracker_id,
                                                 http.settings.warning_message)
    line = top.line_factory
    if line is not None:
        line.settings = attr.evolve(line.settings, tokens=dict(config["node-token"]),
                                    allow_ip_param=config["allow-ip-param"])


def reopen_logs() -> int:
    """Reopen every log file twistd writes to (after logrotate moved it); how many."""
    count = 0
    seen = set()
    pending = [globalLogPublisher]
    while pending:
        observer = pending.pop()
        if id(observer) in seen:
            continue
        seen.add(id(observer))
        pending.extend(getattr(observer, "_observers", ()))
        out = getattr(observer, "_outFile", None)
        if out is not None and callable(getattr(out, "reopen", None)):
            out.reopen()
            count += 1
    return count


def describe(config: Options, names: List[str]) -> str:
    words = []
    for name in names:
        if name in SECRET:
            words.append("%s (%d)" % (name, len(config[name])))
        else:
            words.append("%s=%s" % (name, config[name]))
    return ", ".join(words)


def reload(top, config: Options) -> List[str]:
    """Re-read the settings file and apply what may change; log one line. Returns the
    names applied. A file that cannot be used is logged and changes nothing."""
    try:
        values = current_values(config)
    except UsageError as e:
        log.warn("reload refused, nothing changed: {reason}", reason=str(e))
        return []
    now, later = changes(config, values)
    apply(top, config, values, now)
    reopened = reopen_logs()
    log.info("reloaded {source}: {applied}; {reopened} log file(s) reopened{later}",
             source=config["config"] or "defaults (no settings file)",
             applied=("changed " + describe(config, now)) if now else "no change",
             reopened=reopened,
             later=("; needs a restart, left as it is: " + ", ".join(later)) if later else "")
    return now


def install_sighup(top, config: Options, reactor) -> None:
    """Reload on SIGHUP, in the reactor thread (once it runs). Called by the process
    entry points before any door binds, never by tests building a service in-process."""
    def on_signal(signum, frame):
        reactor.callFromThread(reload, top, config)

    signal.signal(signal.SIGHUP, on_signal)
