"""Which address each CDN node id is registered from, across instances (open line mode).

On one instance an id registered without a token stays bound to the address it
first registered from while its entries live (tracker/sessions.py). With
`--redis` the line door's session registry asks this table too, so the rule
holds across instances: a node registered at A from 10.0.0.5 is refused at B
from 10.0.0.9 (`ERR 409`), and may move to B from 10.0.0.5.

Each instance publishes its own bindings: in the stream entry of its next tick
(field `n`, JSON `[[id, origin or null], ...]`; null: released) and in the hash
`tracker:nodes:<instance>` (for an instance that starts later). What comes
from the others is kept here by id; the bindings of an instance that stops
beating are dropped with it. An instance's first publish starts with
`["*", null]` (no node id has a `*`): whatever it held before a restart is void.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from tracker.cluster import snapshot as keys

# In the `n` field: "forget every binding of this instance" (its first publish).
ALL = "*"


def nodes_key(instance_id: str) -> bytes:
    return keys.PREFIX + b"nodes:" + instance_id.encode("utf-8")


class NodeBindings:
    """The session registry's `bindings`: `elsewhere`, `bound`, `released`."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        # This instance's bindings (id -> origin), published again after Redis lost them.
        self.local: Dict[str, str] = {}
        # Not yet published: id -> origin, or None for released; first, ALL.
        self.pending: Dict[str, Optional[str]] = {ALL: None}
        # Other instances' bindings: id -> (instance, origin).
        self.remote: Dict[str, Tuple[str, str]] = {}
        # Called (node id, instance) when another instance took an id this one
        # holds: the session registry closes its connection, as one instance
        # closes the older connection of an id that registers again.
        self.on_taken: Optional[Callable[[str, str], None]] = None

    # -- what the session registry calls ------------------------------------------------

    def elsewhere(self, node_id: str) -> Optional[str]:
        """The address `node_id` is registered from at another instance, if any."""
        found = self.remote.get(node_id)
        return found[1] if found is not None else None

    def bound(self, node_id: str, origin: str) -> None:
        if self.local.get(node_id) != origin:
            self.local[node_id] = origin
            self.pending[node_id] = origin

    def released(self, node_id: str) -> None:
        if self.local.pop(node_id, None) is not None:
            self.pending[node_id] = None

    # -- publishing -----------------------------------------------------------------------

    def take(self) -> Dict[str, Optional[str]]:
        out, self.pending = self.pending, {}
        return out

    def give_back(self, out: Dict[str, Optional[str]]) -> None:
        """A publish failed: what was taken goes out next time (newer changes
        win), in the order taken: ALL first."""
        newer, self.pending = self.pending, dict(out)
        self.pending.update(newer)

    def commands(self, out: Dict[str, Optional[str]]) -> Tuple[Optional[bytes], List[List[Any]]]:
        """The stream field and the hash writes for bindings taken with `take`."""
        if not out:
            return None, []
        key = nodes_key(self.instance_id)
        sets: List[Any] = []
        dels: List[Any] = []
        commands: List[List[Any]] = []
        for node_id, origin in out.items():
            if node_id == ALL:
                commands.append([b"DEL", key])
            elif origin is None:
                dels.append(node_id)
            else:
                sets += [node_id, origin]
        if sets:
            commands.append([b"HSET", key] + sets)
        if dels:
            commands.append([b"HDEL", key] + dels)
        field = json.dumps([[node_id, origin] for node_id, origin in out.items()]).encode()
        return field, commands

    def republish_commands(self) -> List[List[Any]]:
        """Every binding of this instance (Redis lost its data)."""
        if not self.local:
            return []
        fields: List[Any] = []
        for node_id, origin in self.local.items():
            fields += [node_id, origin]
        return [[b"HSET", nodes_key(self.instance_id)] + fields]

    # -- what the others say --------------------------------------------------------------

    def apply(self, origin_instance: str, field: bytes) -> None:
        """A stream entry's `n` field from another instance. ValueError when damaged."""
        for node_id, address in json.loads(field.decode("utf-8")):
            if not isinstance(node_id, str) or not (address is None or isinstance(address, str)):
                raise ValueError("damaged node binding")
            if node_id == ALL:
                self.forget_instance(origin_instance)
            elif address is not None:
                self.remote[node_id] = (origin_instance, address)
                if node_id in self.local and self.on_taken is not None:
                    self.on_taken(node_id, origin_instance)
            elif self.remote.get(node_id, ("",))[0] == origin_instance:
                del self.remote[node_id]

    def load(self, instance: str, flat: List[bytes]) -> int:
        """`HGETALL tracker:nodes:<instance>` of another instance, at start."""
        count = 0
        for i in range(0, len(flat) - 1, 2):
            node_id = flat[i].decode("utf-8", "replace")
            self.remote.setdefault(node_id, (instance, flat[i + 1].decode("utf-8", "replace")))
            count += 1
        return count

    def forget_instance(self, instance: str) -> int:
        """`instance` stopped beating: its nodes are disconnected; their ids are free."""
        gone = [n for n, (owner, _) in self.remote.items() if owner == instance]
        for node_id in gone:
            del self.remote[node_id]
        return len(gone)
