"""Access control: which content is tracked, which addresses are banned, which
nodes may register. Changes take effect at once; the admin API persists them."""
from __future__ import annotations

import ipaddress
from typing import Dict, List, Set

from tracker.addresses import Network, in_networks
from tracker.core.errors import TrackerError

MODE_OPEN = "open"    # every info hash is tracked except the denied ones
MODE_ALLOW = "allow"  # only the allowed info hashes are tracked


class AccessPolicy:
    def __init__(self) -> None:
        self.mode = MODE_OPEN
        self.allowed: Set[bytes] = set()
        self.denied: Set[bytes] = set()
        self.bans: Dict[str, Network] = {}
        # node id -> secret; empty: nodes need no token.
        self.node_tokens: Dict[str, str] = {}
        self._update()

    def _update(self) -> None:
        # The announce path checks one flag when nothing is restricted.
        self.active = self.mode == MODE_ALLOW or bool(self.denied) or bool(self.bans)
        self._ban_list: List[Network] = list(self.bans.values())

    # -- decisions -------------------------------------------------------------------

    def check(self, info_hash: bytes, ip: str) -> None:
        """Raise TrackerError if this announce must be refused."""
        if self.mode == MODE_ALLOW:
            if info_hash not in self.allowed:
                raise TrackerError("content_not_allowed", "this tracker does not track that content")
        elif info_hash in self.denied:
            raise TrackerError("content_denied", "this content is not tracked here")
        if self._ban_list and self.is_banned(ip):
            raise TrackerError("address_banned", "your address is banned from this tracker")

    def is_banned(self, ip: str) -> bool:
        return in_networks(ip, self._ban_list)

    # -- changes -----------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        if mode not in (MODE_OPEN, MODE_ALLOW):
            raise ValueError("mode must be 'open' or 'allow'")
        self.mode = mode
        self._update()

    def add(self, list_name: str, info_hash: bytes) -> bool:
        target = self._list(list_name)
        added = info_hash not in target
        target.add(info_hash)
        self._update()
        return added

    def remove(self, list_name: str, info_hash: bytes) -> bool:
        target = self._list(list_name)
        removed = info_hash in target
        target.discard(info_hash)
        self._update()
        return removed

    def ban(self, cidr: str) -> str:
        """Ban a network; returns its normal form (raises ValueError if not a CIDR)."""
        network = ipaddress.ip_network(cidr, strict=False)
        self.bans[str(network)] = network
        self._update()
        return str(network)

    def unban(self, cidr: str) -> bool:
        key = str(ipaddress.ip_network(cidr, strict=False))
        removed = self.bans.pop(key, None) is not None
        self._update()
        return removed

    def _list(self, name: str) -> Set[bytes]:
        if name == "allow":
            return self.allowed
        if name == "deny":
            return self.denied
        raise ValueError("the access lists are 'allow' and 'deny'")
