"""Who may talk to the admin listener: what an endpoint really binds, the Host
and Origin rules that keep a web page in the operator's browser from driving
the API, and an access log that never records the token.

A browser lets any page send a "simple" cross-origin POST (text/plain body, no
custom headers) and, through DNS rebinding, make any name resolve to
127.0.0.1. So every request must name one of the listener's own hosts, a
state-changing one must not come from another origin, and a body must be
declared JSON (a content type no page can send cross-origin without asking).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable, List, Optional, Tuple

import attr
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.web.http import combinedLogFormatter

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_INTERFACES = ("", "0.0.0.0", "::")
SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")
JSON_TYPE = "application/json"


class _BindRecorder:
    """Stands in for the reactor to learn what an endpoint string would bind,
    exactly as Twisted parses it (a repeated `interface=` keeps the last)."""

    def __init__(self) -> None:
        self.binds: List[Tuple[str, str]] = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        self.binds.append(("tcp", interface))

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        self.binds.append(("tcp", interface))

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        self.binds.append(("unix", address))


def bound_interfaces(description: str) -> Optional[List[Tuple[str, str]]]:
    """[(kind, interface or path)] the endpoint would listen on; None if it
    cannot be told (a bad string, or an endpoint type not known here)."""
    recorder = _BindRecorder()
    try:
        endpoint = serverFromString(recorder, description)
        endpoint.listen(Factory()).addErrback(lambda failure: None)
    except Exception:
        return None
    return recorder.binds or None


def _is_loopback(interface: str) -> bool:
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def endpoint_is_local(description: str) -> bool:
    """True for an endpoint reachable from this machine only (unix socket or loopback)."""
    binds = bound_interfaces(description)
    return binds is not None and all(kind == "unix" or _is_loopback(interface)
                                     for kind, interface in binds)


@attr.s(slots=True, frozen=True)
class HostRule:
    """The names a request's Host may carry: the loopback names, each listener's
    interface, and the operator's extra names. A listener on every interface
    also accepts any address literal (an address is never a rebinding name)."""
    names = attr.ib()  # type: frozenset
    any_address = attr.ib(default=False)  # type: bool

    @classmethod
    def for_endpoints(cls, endpoints: Iterable[str], extra_names: Iterable[str] = ()) -> "HostRule":
        names = set(LOOPBACK_NAMES)
        any_address = False
        for description in endpoints:
            for kind, interface in bound_interfaces(description) or ():
                if kind != "tcp":
                    continue
                if interface in WILDCARD_INTERFACES:
                    any_address = True
                else:
                    names.add(_normal_name(interface))
        names.update(_normal_name(name) for name in extra_names)
        return cls(frozenset(names), any_address)

    def allows(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if name is None:
            return False
        if name in self.names:
            return True
        if self.any_address:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


def _normal_name(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:\d{1,5})?$")


def _host_name(host_header: str) -> Optional[str]:
    """The name part of a Host header value ('[::1]:6971' -> '::1'), None if malformed."""
    match = _HOST.match(host_header.strip().lower())
    return _normal_name(match.group(1)) if match else None


def refusal(request, rule: HostRule) -> Optional[Tuple[int, str, str]]:
    """(status, reason, message) when the request must be refused before any
    token check or handler runs; None when it may proceed."""
    host = request.getHeader(b"host")
    host_text = host.decode("latin-1") if host is not None else None
    # A request without Host is HTTP/1.0 from a script; browsers always send one.
    if host_text is not None and not rule.allows(host_text):
        return 403, "admin_host", "this listener does not answer to that Host name"
    if request.method in SAFE_METHODS:
        return None
    origin = request.getHeader(b"origin")
    if origin is not None:
        own = {scheme + (host_text or "").lower() for scheme in ("http://", "https://")}
        if origin.decode("latin-1").lower() not in own:
            return 403, "admin_origin", "changes are not accepted from another origin"
    return None


def body_refusal(request) -> Optional[Tuple[int, str, str]]:
    """(status, reason, message) for a body not declared JSON, else None."""
    if request.method in SAFE_METHODS or not _has_body(request):
        return None
    media_type = (request.getHeader(b"content-type") or b"").split(b";", 1)[0].strip().lower()
    if media_type != JSON_TYPE.encode():
        return 415, "admin_content_type", "a request body must be sent as application/json"
    return None


def _has_body(request) -> bool:
    length = request.getHeader(b"content-length")
    if length is not None and length.strip() not in (b"", b"0"):
        return True
    return request.getHeader(b"transfer-encoding") is not None


_SECRET = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)


def redacting_log_formatter(timestamp: str, request) -> str:
    """The combined access-log line, with any `token=` value (in the URI or the
    Referer) replaced, so that no log line holds the admin token."""
    return _SECRET.sub(r"\1REDACTED", combinedLogFormatter(timestamp, request))
