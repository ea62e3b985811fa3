"""`--reuse-port`: listeners bound with SO_REUSEPORT, so several processes share one port.

The kernel then spreads new TCP connections and UDP datagrams over the
processes bound to the same address and port (by a hash of the client's
address and port, so one client's UDP connect and announce usually reach the
same process; when they do not, the shared connection-id secret of
tracker/cluster/connection_ids.py makes the id good everywhere).

Twisted's endpoints cannot set the option, so the socket is made here, bound
and then adopted by the reactor (IReactorSocket.adoptStreamPort /
adoptDatagramPort). Only plain TCP endpoints (tcp:PORT[:interface=ADDR],
tcp6:...) and UDP addresses can share a port; anything else is refused at
start with one line.
"""
from __future__ import annotations

import re
import socket
from typing import Tuple

from twisted.application.internet import UDPServer
from twisted.internet.defer import fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

BACKLOG = 1024
_TCP = re.compile(r"^(tcp6?):(\d+)((?::[a-z]+=(?:[^:\\]|\\.)*)*)$")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_tcp(description: str) -> Tuple[int, str, int]:
    """(family, interface, port) of a tcp:/tcp6: endpoint string; ValueError otherwise."""
    found = _TCP.match(description)
    if not found:
        raise ValueError("--reuse-port works with tcp:PORT and tcp6:PORT endpoints only, not %r"
                         % description)
    kind, port, options = found.groups()
    interface = "::" if kind == "tcp6" else "0.0.0.0"
    for option in re.findall(r":([a-z]+)=((?:[^:\\]|\\.)*)", options):
        if option[0] == "interface":
            interface = _unescape(option[1])
        elif option[0] != "backlog":
            raise ValueError("--reuse-port: endpoint option %r is not supported" % option[0])
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    return family, interface, int(port)


def shared_socket(family: int, kind: int, interface: str, port: int) -> socket.socket:
    """A bound, non-blocking socket with SO_REUSEPORT (IPv6: dual-stack, as Twisted's)."""
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((interface, port))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise CannotListenError(interface, port, e)
    return sock


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    def __init__(self, reactor, description: str) -> None:
        self.reactor = reactor
        self.family, self.interface, self.port = parse_tcp(description)

    def listen(self, factory):
        try:
            sock = shared_socket(self.family, socket.SOCK_STREAM, self.interface, self.port)
        except CannotListenError:
            return fail()
        try:
            sock.listen(BACKLOG)
            return succeed(self.reactor.adoptStreamPort(sock.fileno(), self.family, factory))
        finally:
            sock.close()  # the reactor holds its own copy of the descriptor


class ReusePortUDPServer(UDPServer):
    """A UDPServer whose socket shares its port with other processes."""

    def _getPort(self):
        port, protocol = self.args
        interface = self.kwargs.get("interface", "") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        sock = shared_socket(family, socket.SOCK_DGRAM, interface, port)
        try:
            return self.reactor.adoptDatagramPort(sock.fileno(), family, protocol)
        finally:
            sock.close()
