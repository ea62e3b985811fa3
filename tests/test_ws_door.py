"""The WebSocket door (tracker/ws/door.py) with StringTransport: announces,
offers forwarded to other browsers, answers relayed only to the offerer that
was answered, scrape, a closed socket leaving its swarms, shared swarms with
the other doors, access rules, limits, ping and the slow reader."""
import json
import random

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from wsproto.events import BytesMessage, CloseConnection, Message, Ping

from browser_clients import HASH, Browser, binary, pid
from tracker.core import AnnounceRequest, TrackerCore, TrackerSettings
from tracker.core.browsers import BrowserPeers
from tracker.limits import REFUSED_PER_ADDRESS, AnnounceRateLimiter, ConnectionLimiter
from tracker.ws.door import WsDoorSettings, WsTrackerFactory

HASH2 = b"\x01" * 20


def offers(*ids: str):
    return [{"offer": {"type": "offer", "sdp": "sdp-" + i}, "offer_id": i} for i in ids]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def core():
    return TrackerCore(rng=random.Random(7))


@pytest.fixture
def door(core, clock):
    return WsTrackerFactory(core, clock, WsDoorSettings(),
                            BrowserPeers(core, rng=random.Random(3)))


def test_handshake_then_announce_reply(door):
    browser = Browser(door)
    assert browser.accepted
    browser.announce(pid(1), left=10, event="started", numwant=5, offers=[])
    assert browser.received() == [{"action": "announce", "interval": 120,
                                   "info_hash": binary(HASH), "complete": 0, "incomplete": 1}]
    assert door.core.stats.announces == {"ws": 1}
    assert door.browsers.counts(HASH) == (0, 1)


def test_each_offer_goes_to_a_different_browser_with_the_offerer_id(door):
    browsers = [Browser(door) for _ in range(4)]
    for n, browser in enumerate(browsers[1:], start=1):
        browser.announce(pid(n), left=10, event="started")
        browser.received()
    browsers[0].announce(pid(0), left=10, event="started", offers=offers("a", "b", "c"))
    assert browsers[0].received()[0]["incomplete"] == 4
    forwarded = [b.received() for b in browsers[1:]]
    assert sorted(len(f) for f in forwarded) == [1, 1, 1]
    got = sorted(f[0]["offer_id"] for f in forwarded)
    assert got == ["a", "b", "c"]
    for messages in forwarded:
        assert messages[0]["peer_id"] == binary(pid(0))
        assert messages[0]["info_hash"] == binary(HASH)
        assert messages[0]["offer"] == {"type": "offer", "sdp": "sdp-" + messages[0]["offer_id"]}
    assert door.stats.offers_relayed == 3


def test_more_offers_than_peers_sends_one_each_and_never_to_the_offerer(door):
    a, b = Browser(door), Browser(door)
    b.announce(pid(2), left=10)
    b.received()
    a.announce(pid(1), left=10, offers=offers("x", "y", "z"))
    assert len(a.received()) == 1       # its reply, no offer of its own
    assert len(b.received()) == 1       # one of the three


def test_a_seeders_offers_go_to_leechers_only(door):
    seeder, other_seeder, leecher = Browser(door), Browser(door), Browser(door)
    other_seeder.announce(pid(2), left=0)
    leecher.announce(pid(3), left=5)
    other_seeder.received(), leecher.received()
    seeder.announce(pid(1), left=0, offers=offers("a", "b"))
    assert other_seeder.received() == []
    assert [m["offer_id"] for m in leecher.received()] in (["a"], ["b"])


def offer_and_answer(door):
    offerer, answerer = Browser(door), Browser(door)
    answerer.announce(pid(2), left=10)
    answerer.received()
    offerer.announce(pid(1), left=10, offers=offers("o1"))
    offerer.received()
    assert answerer.received()[0]["offer_id"] == "o1"
    return offerer, answerer


def test_answer_is_relayed_to_the_offerer(door):
    offerer, answerer = offer_and_answer(door)
    answerer.announce(pid(2), answer={"type": "answer", "sdp": "ans"}, to_peer_id=binary(pid(1)),
                      offer_id="o1")
    assert answerer.received() == []    # no reply to an answer, as the reference server
    assert offerer.received() == [{"action": "announce", "answer": {"type": "answer", "sdp": "ans"},
                                   "offer_id": "o1", "peer_id": binary(pid(2)),
                                   "info_hash": binary(HASH)}]
    assert door.stats.answers_relayed == 1


@pytest.mark.parametrize("change", ["offer_id", "to_peer_id", "info_hash", "twice", "stranger"])
def test_an_answer_to_an_offer_not_sent_to_that_peer_is_refused(door, change):
    offerer, answerer = offer_and_answer(door)
    fields = dict(answer={"type": "answer"}, to_peer_id=binary(pid(1)), offer_id="o1")
    sender, info_hash, peer_id = answerer, HASH, pid(2)
    if change == "offer_id":
        fields["offer_id"] = "o2"
    elif change == "to_peer_id":
        fields["to_peer_id"] = binary(pid(9))
    elif change == "info_hash":
        info_hash = HASH2
    elif change == "twice":
        answerer.announce(pid(2), **fields)
        assert len(offerer.received()) == 1
    else:  # another browser, which never got the offer, answers in pid(2)'s name
        sender, peer_id = Browser(door), pid(2)
    sender.announce(peer_id, info_hash, **fields)
    reply = sender.received()
    assert [m.get("failure reason") for m in reply] == [
        "no offer with this offer_id was sent to this peer_id from to_peer_id"]
    assert offerer.received() == []
    assert door.core.stats.failures[("ws", "unexpected_answer")] == 1


def test_an_answer_after_the_offerer_left_is_refused(door):
    offerer, answerer = offer_and_answer(door)
    offerer.drop()
    answerer.announce(pid(2), answer={"type": "answer"}, to_peer_id=binary(pid(1)), offer_id="o1")
    assert answerer.received()[0]["failure reason"] == "the peer that made this offer has left"


def test_the_table_of_offers_awaiting_an_answer_is_bounded(core, clock):
    door = WsTrackerFactory(core, clock, WsDoorSettings(max_pending_offers=2))
    answerer = Browser(door)
    answerer.announce(pid(2), left=10)
    offerer = Browser(door)
    for n in range(3):
        offerer.announce(pid(1), left=10, offers=offers("o%d" % n))
    assert len(answerer.received()) == 4
    answerer.announce(pid(2), answer={}, to_peer_id=binary(pid(1)), offer_id="o0")
    assert "failure reason" in answerer.received()[0]     # the oldest was forgotten
    answerer.announce(pid(2), answer={}, to_peer_id=binary(pid(1)), offer_id="o2")
    assert answerer.received() == []
    assert offerer.received()[-1]["answer"] == {}


def test_scrape_one_and_many(door):
    a, b = Browser(door), Browser(door)
    a.announce(pid(1), left=0)
    b.announce(pid(2), left=3, event="completed")
    b.announce(pid(2), left=0, event="completed")
    a.received()
    a.send(action="scrape", info_hash=binary(HASH))
    assert a.received()[0]["files"] == {binary(HASH): {"complete": 2, "incomplete": 0,
                                                       "downloaded": 1}}
    a.send(action="scrape", info_hash=[binary(HASH), binary(HASH2)])
    files = a.received()[0]["files"]
    assert files[binary(HASH2)] == {"complete": 0, "incomplete": 0, "downloaded": 0}
    assert door.core.stats.scrapes == {"ws": 2}


def test_stop_leaves_the_swarm_and_a_closed_socket_leaves_all_at_once(door):
    a, b = Browser(door), Browser(door)
    a.announce(pid(1), HASH, left=1)
    a.announce(pid(1), HASH2, left=1)
    a.announce(pid(7), HASH2, left=0)        # a second client of the same page
    b.announce(pid(2), HASH, left=1)
    assert door.browsers.peer_count == 4
    b.announce(pid(2), HASH, event="stopped")
    assert b.received()[-1]["incomplete"] == 1
    assert door.browsers.counts(HASH) == (0, 1)
    a.drop()
    assert door.browsers.peer_count == 0 and door.browsers.swarms == {}
    assert [s.peer_id for s in door.sessions.sessions()] == [pid(2)]  # b is still open
    b.drop()
    assert len(door.sessions) == 0


def test_a_peer_id_is_bound_to_its_socket(door):
    a, b = Browser(door), Browser(door)
    a.announce(pid(1), left=1)
    b.announce(pid(1), left=1)
    assert b.received()[0]["failure reason"] == "this peer_id is in use on another connection"
    assert door.browsers.peer_count == 1
    a.drop()
    b.announce(pid(1), left=1)
    assert "failure reason" not in b.received()[-1]


def test_bad_json_gets_a_failure_reason_and_changes_nothing(door):
    browser = Browser(door)
    browser.send_text("{nope")
    browser.announce(b"short", left=1)
    replies = browser.received()
    assert [r["failure reason"] for r in replies] == ["message is not JSON",
                                                      "invalid peer_id: 20 characters, each 0-255"]
    assert door.browsers.peer_count == 0 and door.core.stats.announces == {}


def test_swarms_per_socket_and_peer_ids_per_socket(core, clock):
    door = WsTrackerFactory(core, clock, WsDoorSettings(max_swarms=2, max_peer_ids=2))
    browser = Browser(door)
    browser.announce(pid(1), bytes([1]) * 20, left=1)
    browser.announce(pid(2), bytes([2]) * 20, left=1)
    browser.announce(pid(1), bytes([3]) * 20, left=1)
    browser.announce(pid(3), bytes([4]) * 20, left=1)
    replies = browser.received()
    assert replies[2]["failure reason"] == "at most 2 swarms per connection"
    assert replies[3]["failure reason"] == "at most 2 peer ids per connection"
    assert door.browsers.peer_count == 2
    browser.announce(pid(1), bytes([1]) * 20, event="stopped")
    browser.announce(pid(1), bytes([3]) * 20, left=1)
    assert "failure reason" not in browser.received()[-1]


def test_a_message_too_big_closes_with_1009(core, clock):
    door = WsTrackerFactory(core, clock, WsDoorSettings(max_message=100))
    browser = Browser(door)
    browser.announce(pid(1), left=1, offers=offers("x" * 60))
    browser.received()
    assert browser.close_code() == 1009
    assert browser.transport.disconnecting
    assert door.browsers.peer_count == 0
    assert core.stats.failures == {("ws", "message_too_big"): 1}


def test_a_binary_message_closes_with_1003(door):
    browser = Browser(door)
    browser.protocol.dataReceived(browser.ws.send(BytesMessage(data=b"\x00\x01")))
    browser.received()
    assert browser.close_code() == 1003


def test_not_websocket_gets_http_400_with_a_hint(door):
    protocol = door.buildProtocol(IPv4Address("TCP", "192.0.2.10", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /announce?info_hash=x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400")
    assert b"use a ws:// or wss:// announce URL" in transport.value()
    assert transport.disconnecting


def test_close_from_the_browser_is_answered_and_leaves_swarms(door):
    browser = Browser(door)
    browser.announce(pid(1), left=1)
    browser.protocol.dataReceived(browser.ws.send(CloseConnection(code=1000)))
    browser.received()
    assert browser.close_code() == 1000
    assert browser.transport.disconnecting
    browser.protocol.connectionLost(None)
    assert door.browsers.peer_count == 0


def test_silence_brings_a_ping_then_a_close(door, clock):
    browser = Browser(door)
    clock.advance(151)
    door.tick()
    browser.received()
    assert any(isinstance(e, Ping) for e in browser.events)
    clock.advance(150)
    door.tick()
    browser.received()
    assert browser.close_code() == 1001


def test_a_pong_keeps_the_socket(door, clock):
    browser = Browser(door)
    clock.advance(151)
    door.tick()
    browser.received()
    ping = [e for e in browser.events if isinstance(e, Ping)][0]
    browser.protocol.dataReceived(browser.ws.send(ping.response()))
    clock.advance(200)
    door.tick()
    browser.received()
    assert browser.close_code() is None and not browser.transport.disconnecting


def test_a_socket_that_reads_nothing_gets_no_offers_and_is_cut_off(door, clock):
    slow, offerer = Browser(door), Browser(door)
    slow.announce(pid(2), left=1)
    slow.received()
    slow.protocol.pauseProducing()               # its send buffer is full
    assert slow.transport.producerState == "paused"
    offerer.announce(pid(1), left=1, offers=offers("o"))
    assert slow.transport.value() == b""
    assert door.stats.offers_dropped == 1
    clock.advance(300)
    door.tick()
    assert slow.transport.disconnecting and door.stats.cut_off == 1
    assert door.core.stats.failures == {("ws", "slow_reader"): 1}


def test_handshake_must_come_in_time(door, clock):
    protocol = door.buildProtocol(IPv4Address("TCP", "192.0.2.10", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    clock.advance(10)
    door.tick()
    assert transport.disconnecting


def test_client_address_from_a_trusted_proxy(core, clock):
    import ipaddress
    door = WsTrackerFactory(core, clock, WsDoorSettings(
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)))
    behind = Browser(door, ip="10.1.2.3", headers=[(b"X-Forwarded-For", b"198.51.100.7, 10.9.9.9")])
    behind.announce(pid(1), left=1)
    assert door.sessions.by_peer_id(pid(1)).ip == "198.51.100.7"
    direct = Browser(door, ip="203.0.113.5", headers=[(b"X-Forwarded-For", b"198.51.100.7")])
    direct.announce(pid(2), left=1)
    assert door.sessions.by_peer_id(pid(2)).ip == "203.0.113.5"
    unreadable = Browser(door, ip="10.1.2.3", headers=[(b"X-Forwarded-For", b"not-an-ip")])
    assert not unreadable.accepted and unreadable.transport.disconnecting


# -- shared swarms ----------------------------------------------------------------------------

def test_access_rules_apply(door, core):
    browser = Browser(door)
    core.access.add("deny", HASH)
    browser.announce(pid(1), left=1)
    core.access.ban("192.0.2.0/24")
    browser.announce(pid(1), HASH2, left=1)
    assert [r["failure reason"] for r in browser.received()] == [
        "this content is not tracked here", "your address is banned from this tracker"]
    assert door.browsers.peer_count == 0


def capped_door(clock, **caps):
    core = TrackerCore(TrackerSettings(**caps), rng=random.Random(7))
    core.announce(AnnounceRequest(HASH, b"i" * 20, "10.0.0.1", 6881, left=1), clock.seconds())
    return WsTrackerFactory(core, clock, WsDoorSettings(), BrowserPeers(core, rng=random.Random(3)))


def test_max_peers_counts_browser_peers(clock):
    door = capped_door(clock, max_peers=3)  # one IP peer already
    a, b, c = Browser(door), Browser(door), Browser(door)
    a.announce(pid(1), left=1)
    b.announce(pid(2), HASH2, left=1)
    c.announce(pid(3), HASH2, left=1)            # a fourth peer: refused, changing nothing
    assert a.received()[0]["incomplete"] == 2 and b.received()[0]["incomplete"] == 1
    assert [r["failure reason"] for r in c.received()] == [
        "this tracker holds as many peers as it may (--max-peers): try again later"]
    assert door.browsers.counts(HASH2) == (0, 1) and door.browsers.peer_count == 2
    assert door.core.stats.failures[("ws", "peer_limit")] == 1
    a.announce(pid(1), left=0)                   # a browser peer already in: still served
    assert a.received()[0]["complete"] == 1


def test_max_swarms_counts_browser_only_swarms_once(clock):
    door = capped_door(clock, max_swarms=2)  # HASH: an IP peer's swarm
    a, b, c = Browser(door), Browser(door), Browser(door)
    a.announce(pid(1), left=1)                   # HASH again: not a new swarm
    b.announce(pid(2), HASH2, left=1)            # the second swarm
    c.announce(pid(3), b"\x02" * 20, left=1)     # a third: refused
    assert "failure reason" not in a.received()[0] and "failure reason" not in b.received()[0]
    assert [r["failure reason"] for r in c.received()] == [
        "this tracker tracks as many torrents as it may (--max-swarms): try again later"]
    assert set(door.core.browser_swarms) == {HASH, HASH2}
    assert door.core.stats.failures[("ws", "swarm_limit")] == 1


def test_browsers_count_for_ip_peers_but_are_never_handed_to_them(door, core):
    browser = Browser(door)
    browser.announce(pid(1), left=0)
    result = core.announce(AnnounceRequest(HASH, b"-qB0000-000000000001", "198.51.100.1", 6881,
                                           left=5), 0.0)
    assert result.peers == b""
    complete, incomplete = door.counts(HASH)
    assert (complete, incomplete) == (1, 1)
    browser.received()
    # An IP:port peer counts for a browser, but is not handed to it either.
    browser.announce(pid(1), left=0, offers=offers("o"))
    assert browser.received() == [{"action": "announce", "interval": 120,
                                   "info_hash": binary(HASH), "complete": 1, "incomplete": 1}]


class Watcher:
    def __init__(self):
        self.events = []

    def swarm_changed(self, info_hash, peer, joined):
        self.events.append((info_hash, peer.peer_id, peer.door, peer.seeder, joined))


def test_swarm_watchers_see_browsers_join_and_leave(door, core):
    watcher = Watcher()
    core.watch(HASH, watcher)
    browser = Browser(door)
    browser.announce(pid(1), left=0)
    browser.drop()
    assert watcher.events == [(HASH, pid(1), "ws", True, True), (HASH, pid(1), "ws", True, False)]


# -- property: the relay's invariants ---------------------------------------------------------

steps = st.lists(st.tuples(st.sampled_from(["announce", "offer", "answer", "stop", "drop"]),
                           st.integers(0, 4), st.integers(0, 1), st.booleans()), max_size=40)


@settings(max_examples=100, deadline=None)
@given(steps=steps)
def test_relay_invariants(steps):
    """Whatever browsers do: counts match the sockets' entries, an offer never
    goes to its offerer, an answer reaches only the offerer it names, and
    every answer relayed answers an offer forwarded to the one answering."""
    core = TrackerCore(rng=random.Random(1))
    door = WsTrackerFactory(core, Clock(), WsDoorSettings(), BrowserPeers(core, random.Random(2)))
    browsers = {n: Browser(door) for n in range(5)}
    forwarded = set()   # (to peer, offer id, from peer)
    for action, n, swarm, seeder in steps:
        info_hash, me = (HASH, HASH2)[swarm], pid(n)
        if action == "drop":
            browsers[n].drop()
            browsers[n] = Browser(door)
        elif action == "stop":
            browsers[n].announce(me, info_hash, event="stopped")
        elif action in ("announce", "offer"):
            offer_ids = ["%d-%d" % (n, len(forwarded) + i) for i in range(2)]
            browsers[n].announce(me, info_hash, left=0 if seeder else 1,
                                 offers=offers(*offer_ids) if action == "offer" else [])
        else:
            for to, offer_id, sender in sorted(forwarded):
                if to == me:
                    browsers[n].announce(me, info_hash, answer={"a": offer_id},
                                         to_peer_id=binary(sender), offer_id=offer_id)
                    break
        for m, browser in browsers.items():
            for message in browser.received():
                if "offer" in message:
                    assert message["peer_id"] != binary(pid(m))
                    forwarded.add((pid(m), message["offer_id"], message["peer_id"].encode("latin-1")))
                if "answer" in message:
                    offer_id = message["offer_id"]
                    assert offer_id.startswith("%d-" % m)
                    assert (message["peer_id"].encode("latin-1"), offer_id, pid(m)) in forwarded
    held = sum(len(s.entries) for b in browsers.values() for s in b.protocol.sessions.values())
    assert door.browsers.peer_count == held
    for info_hash in (HASH, HASH2):
        seeders, leechers = door.browsers.counts(info_hash)
        swarm = door.browsers.swarms.get(info_hash)
        assert seeders + leechers == (len(swarm) if swarm else 0)


def test_completed_makes_a_seeder_and_unknown_left_keeps_the_state(door):
    browser = Browser(door)
    browser.announce(pid(1), event="started")              # left unknown: a leecher
    assert door.browsers.counts(HASH) == (0, 1)
    browser.announce(pid(1), event="completed")            # as the client sends it: no left
    assert door.browsers.counts(HASH) == (1, 0)
    browser.announce(pid(1))                               # an update that does not say
    assert door.browsers.counts(HASH) == (1, 0)
    browser.announce(pid(1), left=100)
    assert door.browsers.counts(HASH) == (0, 1)


def test_a_re_announce_after_the_rules_changed_is_refused(door, core):
    browser = Browser(door)
    browser.announce(pid(1), left=1)
    core.access.add("deny", HASH)
    browser.announce(pid(1), left=1)
    assert browser.received()[-1]["failure reason"] == "this content is not tracked here"
    assert door.browsers.counts(HASH) == (0, 0)      # and it left the swarm
    assert door.core.stats.announces == {"ws": 1}     # a refused announce is not counted
    core.access.remove("deny", HASH)
    browser.announce(pid(1), left=1)
    assert door.browsers.counts(HASH) == (0, 1)


def test_a_re_announce_that_changes_state_after_the_rules_changed_leaves_too(door, core):
    browser = Browser(door)
    browser.announce(pid(1), left=1)
    core.access.add("deny", HASH)
    browser.announce(pid(1), left=0, event="completed")
    assert browser.received()[-1]["failure reason"] == "this content is not tracked here"
    assert door.browsers.counts(HASH) == (0, 0)


def test_an_oversized_handshake_gets_400(door):
    protocol = door.buildProtocol(IPv4Address("TCP", "192.0.2.10", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000)
    assert transport.value().startswith(b"HTTP/1.1 400") and transport.disconnecting


def test_line_subscribers_see_a_browser_with_door_ws(door, core, clock):
    from tracker.line.door import LineTrackerFactory
    line = LineTrackerFactory(core, clock)
    events = []

    class Subscriber:
        def swarm_changed(self, info_hash, peer, joined):
            events.append(line.event_line(info_hash, peer, joined)[0])

    core.watch(HASH, Subscriber())
    browser = Browser(door)
    browser.announce(pid(1), left=0)
    browser.drop()
    assert events == ["* JOIN %s 192.0.2.10 0 seeder door=ws" % HASH.hex(),
                      "* LEAVE %s 192.0.2.10 0 seeder door=ws" % HASH.hex()]


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(1, 400), max_size=8), fragments=st.integers(1, 4))
def test_a_message_split_anywhere_is_the_same_message(cuts, fragments):
    """TCP may cut the bytes anywhere, and a client may send a message as
    several WebSocket fragments: the door answers the same."""
    core = TrackerCore(rng=random.Random(1))
    door = WsTrackerFactory(core, Clock(), WsDoorSettings())
    browser = Browser(door)
    text = json.dumps({"action": "announce", "info_hash": binary(HASH), "peer_id": binary(pid(1)),
                       "left": 0, "offers": offers("o1", "o2")})
    step = -(-len(text) // fragments)
    pieces = [text[i:i + step] for i in range(0, len(text), step)]
    data = b"".join(browser.ws.send(Message(data=piece, message_finished=n == len(pieces) - 1))
                    for n, piece in enumerate(pieces))
    at = 0
    for cut in cuts:
        browser.protocol.dataReceived(data[at:at + cut])
        at += cut
    browser.protocol.dataReceived(data[at:])
    assert browser.received() == [{"action": "announce", "interval": 120,
                                   "info_hash": binary(HASH), "complete": 1, "incomplete": 0}]


def test_every_door_counts_browsers_in_replies_and_scrapes(door, core):
    browser = Browser(door)
    browser.announce(pid(1), left=0)
    browser.announce(pid(2), left=5)
    http = AnnounceRequest(HASH, b"-qB0000-000000000001", "198.51.100.1", 6881, left=5)
    result = core.announce(http, 0.0)
    assert (result.complete, result.incomplete, result.peers) == (1, 2, b"")
    http.compact = False   # the other reply path (BEP 3 dicts)
    result = core.announce(http, 0.0)
    assert (result.complete, result.incomplete) == (1, 2) and not result.peer_list
    entry = core.scrape([HASH, HASH2], "http")
    assert (entry[HASH].complete, entry[HASH].incomplete) == (1, 2)
    assert (entry[HASH2].complete, entry[HASH2].incomplete) == (0, 0)
    http.event = 3  # stopped
    result = core.announce(http, 0.0)
    assert (result.complete, result.incomplete) == (1, 1)
    browser.drop()
    entry = core.scrape([HASH], "udp")[HASH]
    assert (entry.complete, entry.incomplete) == (0, 0)


# -- the bounds shared with the other stream doors ----------------------------------------


def test_a_socket_past_the_connection_cap_gets_503_before_the_handshake(door):
    limiter = door.limiter = ConnectionLimiter(max_total=100, max_per_address=1)
    first = Browser(door, ip="192.0.2.10")
    address = IPv4Address("TCP", "192.0.2.10", 50001)
    refused = door.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    refused.makeConnection(transport)
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert transport.disconnecting and limiter.refused[REFUSED_PER_ADDRESS] == 1
    first.drop()
    assert limiter.open == 0
    assert Browser(door, ip="192.0.2.10").accepted


def test_announces_past_the_allowance_get_a_failure_and_join_nothing(door, core):
    door.rate_limiter = AnnounceRateLimiter(rate=1.0, burst=1)
    browser = Browser(door)
    browser.announce(pid(1))
    assert "failure reason" not in browser.received()[0]
    browser.announce(pid(2), info_hash=HASH2)
    reply = browser.received()[0]
    assert reply["failure reason"].startswith("too many requests from your address")
    assert core.stats.failures[("ws", "rate_limited")] == 1
    assert core.scrape([HASH2])[HASH2].incomplete == 0


def test_a_socket_that_never_reads_its_close_is_aborted(door, clock):
    browser = Browser(door)
    clock.advance(301)
    door.tick()  # idle: closed with 1001
    browser.received()
    assert browser.close_code() == 1001
    # The browser neither reads nor answers the close: a polite close would wait forever.
    for _ in range(2):
        clock.advance(301)
        door.tick()
    assert browser.transport.disconnected
