"""Addresses and networks, in one place: the text a socket gives, the packed
bytes the wire carries, the compact peer form, and network membership.

Used by the core (compact peers, bans) and by every door (client addresses,
trusted proxies), so no door has to import another for them.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Tuple, Union

from tracker.cache import BoundedCache

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def normalise_ip(host: str) -> str:
    """IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; a link-local
    IPv6 address may carry a %scope suffix, which peers elsewhere cannot use."""
    if "%" in host:
        host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def pack_ip(ip: str) -> bytes:
    """4 (IPv4) or 16 (IPv6) address bytes; OSError if `ip` is neither."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def compact_address(ip: str, port: int) -> bytes:
    """The BEP 23 / BEP 7 compact form: 4 or 16 address bytes, then the port."""
    return pack_ip(ip) + port.to_bytes(2, "big")


# (ip, port, "ip port") of recently shown compact addresses: PEERS replies and
# events show the same peers again and again.
_address_text: BoundedCache = BoundedCache()


def address_text(compact: bytes) -> Tuple[str, int, str]:
    """(ip, port, "ip port") back from a compact address."""
    text = _address_text.get(compact)
    if text is None:
        family = socket.AF_INET if len(compact) == 6 else socket.AF_INET6
        ip = socket.inet_ntop(family, compact[:-2])
        port = int.from_bytes(compact[-2:], "big")
        text = _address_text.put(compact, (ip, port, "%s %d" % (ip, port)))
    return text


def address_words(compact: bytes) -> str:
    """"IP PORT" of a compact address, as the line protocol shows a peer."""
    text = _address_text.get(compact)
    return text[2] if text is not None else address_text(compact)[2]


def in_networks(ip: str, networks: Iterable[Network]) -> bool:
    """Whether the address `ip` (text) lies in one of `networks`; False for
    text that is not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    version = address.version
    return any(address in network for network in networks if network.version == version)
