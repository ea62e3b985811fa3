"""What the tracker says when it has started, and what `--version` prints: the
version and build, the settings file, the database, and each door's bound address.

Read from what is bound (the listening ports), never from the option text, so
`tcp6:6969:interface=\\:\\:` is reported as the address and family the kernel gave.
"""
from __future__ import annotations

import platform
from typing import Dict, Iterator, Tuple

import twisted
from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger

from tracker import __version__

log = Logger()


def build_info() -> Dict[str, str]:
    """Labels of tracker_build_info and the version line."""
    return {"version": __version__, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "twisted": twisted.__version__}


def version_line() -> str:
    info = build_info()
    return "cdn-tracker %(version)s (%(implementation)s %(python)s, Twisted %(twisted)s)" % info


def _address_text(address) -> Tuple[str, str]:
    """(address, family) of a bound port's getHost()."""
    if isinstance(address, IPv6Address):
        return "[%s]:%d" % (address.host, address.port), "IPv6" + (
            " and IPv4" if address.host == "::" else "")
    if isinstance(address, IPv4Address):
        return "%s:%d" % (address.host, address.port), "IPv4"
    if isinstance(address, UNIXAddress):
        name = address.name.decode() if isinstance(address.name, bytes) else str(address.name)
        return name, "unix socket"
    return str(address), "?"


def bound_doors(top) -> Iterator[Tuple[str, str, str, str]]:
    """(door, address, family, transport) for every listener bound in `top`."""
    for child in top:
        door, _, description = (child.name or "").partition(" ")
        port = None
        if isinstance(child, StreamServerEndpointService):
            waiting = child._waitingForPort  # fired: bound in privilegedStartService
            port = getattr(waiting, "result", None) if waiting is not None else None
            transport = "TLS" if description.startswith("ssl:") else "TCP"
        elif isinstance(child, UDPServer):
            port = getattr(child, "_port", None)
            note = getattr(getattr(port, "protocol", None), "io_note", "")  # --udp-batch
            transport = "UDP, " + note if note else "UDP"
        if port is None or not hasattr(port, "getHost"):
            continue
        address, family = _address_text(port.getHost())
        if family == "unix socket":
            transport = "stream"
        yield door, address, family, transport


def log_started(top, config) -> None:
    """The start-up lines: build, settings file and database, then one per door."""
    log.info("{version}; settings file: {config}; database: {db}",
             version=version_line(),
             config=config["config"] or "none (defaults and command line)",
             db={"off": "off (nothing kept)", ":memory:": ":memory: (nothing kept)"}.get(
                 config["db"], config["db"]))
    for door, address, family, transport in bound_doors(top):
        log.info("{door} door listening on {address} ({family}, {transport})",
                 door=door, address=address, family=family, transport=transport)
