"""The core against a plain model: a rule-based state machine (hypothesis) drives
`TrackerCore.announce`, `scrape` and `expire` with any mix of joins, stops,
completions, seeder/leecher flips, IPv4 <-> IPv6 moves and announces from
strangers (another address, with or without the owner's key), and checks every
answer against dicts that hold the same swarms the obvious way."""
from __future__ import annotations

import random
import socket

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helpers import info_hash, peer_id
from tracker.core import (
    EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED, AnnounceRequest, TrackerCore,
    TrackerError, TrackerSettings,
)

TTL_S = 100
MAX_NUMWANT = 6
SWARMS = 3
PEERS = 8


def address(peer: int, where: str) -> str:
    """The peer's own IPv4 or IPv6 address, or one that several peers share."""
    if where == "v4":
        return "10.0.0.%d" % (peer + 1)
    if where == "v6":
        return "2001:db8::%x" % (peer + 1)
    return "127.0.0.99"


def key_of(peer: int, choice: str) -> int:
    return {"own": peer + 1, "none": 0, "wrong": 999}[choice]


def compact(ip: str, port: int) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    return packed + port.to_bytes(2, "big")


class Peer:
    """What the model knows of one peer in one swarm."""

    def __init__(self, ip: str, port: int, seeder: bool, seen: float, key: int) -> None:
        self.ip, self.port, self.seeder, self.seen, self.key = ip, port, seeder, seen, key

    @property
    def compact(self) -> bytes:
        return compact(self.ip, self.port)

    def owned_by(self, ip: str, key: int) -> bool:
        return ip == self.ip or (key != 0 and key == self.key)


class CoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = TrackerCore(TrackerSettings(peer_ttl_s=TTL_S, default_numwant=4,
                                                max_numwant=MAX_NUMWANT),
                                rng=random.Random(0))
        self.now = 1000.0
        # swarm number -> {peer number: Peer}; a swarm is here while the core keeps it.
        self.swarms = {}
        self.completed = {}  # swarm number -> set of peer numbers that completed
        self.result = None

    # -- rules -----------------------------------------------------------------------

    def refused(self, request) -> bool:
        """Send `request`; True if the core refused it as not from the entry's owner."""
        try:
            self.result = self.core.announce(request, self.now)
        except TrackerError as error:
            assert error.code == "peer_not_owner"
            return True
        return False

    @rule(swarm=st.integers(0, SWARMS - 1), peer=st.integers(0, PEERS - 1),
          where=st.sampled_from(["v4", "v6", "shared"]), port=st.integers(0, 1),
          key=st.sampled_from(["own", "none", "wrong"]), seeder=st.booleans(),
          event=st.sampled_from([EVENT_NONE, EVENT_STARTED, EVENT_COMPLETED]),
          numwant=st.one_of(st.none(), st.integers(0, 10)),
          wanted_family=st.sampled_from([0, 4, 6]), compact_reply=st.booleans())
    def announce(self, swarm, peer, where, port, key, seeder, event, numwant, wanted_family,
                 compact_reply):
        ip, port, key = address(peer, where), 6000 + 2 * peer + port, key_of(peer, key)
        request = AnnounceRequest(info_hash(swarm), peer_id(peer), ip, port,
                                  left=0 if seeder else 100, event=event, numwant=numwant,
                                  family=wanted_family, compact=compact_reply, key=key)
        known = self.swarms.get(swarm, {}).get(peer)
        refused = self.refused(request)
        assert refused == (known is not None and not known.owned_by(ip, key))
        if refused:
            return
        result = self.result
        peers = self.swarms.setdefault(swarm, {})
        peers[peer] = Peer(ip, port, seeder, self.now, key or (known.key if known else 0))
        if event == EVENT_COMPLETED:
            self.completed.setdefault(swarm, set()).add(peer)
        self.check_counts(swarm, result)

        chosen = self.chosen_peers(swarm, result, compact_reply)
        assert len(chosen) == len(set(chosen)), "a peer returned twice"
        assert peer not in chosen, "the requester was returned"
        if seeder:
            assert not any(peers[p].seeder for p in chosen), "a seeder was sent seeders"
        eligible = [p for p, known in peers.items() if p != peer
                    and not (seeder and known.seeder)
                    and (not wanted_family or (":" in known.ip) == (wanted_family == 6))]
        want = 4 if numwant is None else min(numwant, MAX_NUMWANT)
        assert len(chosen) == min(want, len(eligible))
        assert set(chosen) <= set(eligible)

    @rule(swarm=st.integers(0, SWARMS - 1), peer=st.integers(0, PEERS - 1),
          where=st.sampled_from(["v4", "v6", "shared"]),
          key=st.sampled_from(["own", "none", "wrong"]))
    def stop(self, swarm, peer, where, key):
        ip, key = address(peer, where), key_of(peer, key)
        request = AnnounceRequest(info_hash(swarm), peer_id(peer), ip, 6881,
                                  event=EVENT_STOPPED, key=key)
        known = self.swarms.get(swarm, {}).get(peer)
        refused = self.refused(request)
        assert refused == (known is not None and not known.owned_by(ip, key))
        if refused:
            return
        self.swarms.get(swarm, {}).pop(peer, None)
        result = self.result
        assert (result.peers, result.peers6, result.peer_list) == (b"", b"", None)
        self.check_counts(swarm, result)

    @rule(seconds=st.sampled_from([1, 30, 60, TTL_S]))
    def time_passes(self, seconds):
        self.now += seconds

    @rule(budget=st.integers(1, 5))
    def expire(self, budget):
        for _ in self.core.expire(self.now, budget):
            pass
        cutoff = self.now - TTL_S
        for swarm in list(self.swarms):
            peers = self.swarms[swarm]
            for peer in [p for p, known in peers.items() if known.seen < cutoff]:
                del peers[peer]
            if not peers and not self.completed.get(swarm):
                del self.swarms[swarm]

    @rule(swarms=st.lists(st.integers(0, SWARMS), min_size=1, max_size=4))
    def scrape(self, swarms):
        files = self.core.scrape([info_hash(s) for s in swarms])
        for s in swarms:
            peers = self.swarms.get(s, {})
            seeders = sum(1 for known in peers.values() if known.seeder)
            entry = files[info_hash(s)]
            assert (entry.complete, entry.incomplete, entry.downloaded) == (
                seeders, len(peers) - seeders, len(self.completed.get(s, ())))

    # -- checks ----------------------------------------------------------------------

    def check_counts(self, swarm, result):
        peers = self.swarms.get(swarm, {})
        seeders = sum(1 for known in peers.values() if known.seeder)
        assert (result.complete, result.incomplete) == (seeders, len(peers) - seeders)

    def chosen_peers(self, swarm, result, compact_reply):
        """The peer numbers a reply names (compact addresses or BEP 3 dicts)."""
        by_address = {known.compact: p for p, known in self.swarms[swarm].items()}
        if not compact_reply:
            assert result.peers == result.peers6 == b""
            return [by_address[view.compact] for view in result.peer_list or ()]
        chunks = [result.peers[i:i + 6] for i in range(0, len(result.peers), 6)]
        chunks += [result.peers6[i:i + 18] for i in range(0, len(result.peers6), 18)]
        return [by_address[chunk] for chunk in chunks]

    @invariant()
    def same_swarms_and_peers(self):
        core = self.core
        assert set(core.swarms) == {info_hash(s) for s in self.swarms}
        assert core.peer_count == sum(len(peers) for peers in self.swarms.values())
        for s, peers in self.swarms.items():
            swarm = core.swarms[info_hash(s)]
            assert swarm.completed == len(self.completed.get(s, ()))
            got = {view.peer_id: (view.compact, view.seeder, view.last_seen)
                   for view in swarm.views()}
            assert got == {peer_id(p): (known.compact, known.seeder, known.seen)
                           for p, known in peers.items()}


CoreModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                       deadline=None)
test_core_against_a_dict_model = CoreModel.TestCase
