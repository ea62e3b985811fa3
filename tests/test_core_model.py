"""The core against a plain model: a rule-based state machine (hypothesis) drives
`TrackerCore.announce`, `scrape` and `expire` with any mix of joins, stops,
completions, seeder/leecher flips and IPv4 <-> IPv6 moves, and checks every
answer against dicts that hold the same swarms the obvious way."""
from __future__ import annotations

import random
import socket

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helpers import info_hash, peer_id
from tracker.core import (
    EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED, AnnounceRequest, TrackerCore,
    TrackerSettings,
)

TTL_S = 100
MAX_NUMWANT = 6
SWARMS = 3
PEERS = 8


def address(peer: int, family: int) -> str:
    return "10.0.0.%d" % (peer + 1) if family == 4 else "2001:db8::%x" % (peer + 1)


def compact(ip: str, port: int) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    return packed + port.to_bytes(2, "big")


class Peer:
    """What the model knows of one peer in one swarm."""

    def __init__(self, ip: str, port: int, seeder: bool, seen: float) -> None:
        self.ip, self.port, self.seeder, self.seen = ip, port, seeder, seen

    @property
    def compact(self) -> bytes:
        return compact(self.ip, self.port)


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

    # -- rules -----------------------------------------------------------------------

    @rule(swarm=st.integers(0, SWARMS - 1), peer=st.integers(0, PEERS - 1),
          family=st.sampled_from([4, 6]), port=st.sampled_from([6881, 6882]),
          seeder=st.booleans(),
          event=st.sampled_from([EVENT_NONE, EVENT_STARTED, EVENT_COMPLETED]),
          numwant=st.one_of(st.none(), st.integers(0, 10)),
          wanted_family=st.sampled_from([0, 4, 6]), compact_reply=st.booleans())
    def announce(self, swarm, peer, family, port, seeder, event, numwant, wanted_family,
                 compact_reply):
        ip = address(peer, family)
        request = AnnounceRequest(info_hash(swarm), peer_id(peer), ip, port,
                                  left=0 if seeder else 100, event=event, numwant=numwant,
                                  family=wanted_family, compact=compact_reply)
        result = self.core.announce(request, self.now)

        peers = self.swarms.setdefault(swarm, {})
        peers[peer] = Peer(ip, port, seeder, self.now)
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
          family=st.sampled_from([4, 6]))
    def stop(self, swarm, peer, family):
        request = AnnounceRequest(info_hash(swarm), peer_id(peer), address(peer, family), 6881,
                                  event=EVENT_STOPPED)
        result = self.core.announce(request, self.now)
        self.swarms.get(swarm, {}).pop(peer, None)
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
