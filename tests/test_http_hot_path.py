"""The HTTP door's announce fast path: plain digits are read in place, and
anything else (escaped digits and words, empty or bad values) reads and is
refused exactly as the general parse would, over StringTransport."""
from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from clients import Client, q
from helpers import bdecode, info_hash, peer_id
from tracker.core import TrackerCore
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory


@pytest.fixture
def core():
    return TrackerCore(rng=random.Random(1))


@pytest.fixture
def factory(core):
    return HTTPTrackerFactory(core, Clock(), HTTPDoorSettings())


def announce(client, **raw):
    """An announce whose given parameters go on the wire exactly as given (bytes)."""
    params = {"info_hash": q(info_hash(1)), "peer_id": q(peer_id(1)), "port": b"6881",
              "uploaded": b"0", "downloaded": b"0", "left": b"100"}
    params.update(raw)
    target = b"/announce?" + b"&".join(k.encode() + b"=" + v for k, v in params.items() if v is not None)
    return client.get(target)


def the_peer(core, n=1):
    (view,) = [p for s in core.swarms.values() for p in s.views() if p.peer_id == peer_id(n)]
    return view


def test_escaped_digits_and_words_are_read_as_their_bytes(factory, core):
    status, _, body = announce(Client(factory), port=b"%37%30%30%30", uploaded=b"%31%32",
                               downloaded=b"%33", left=b"%30", event=b"st%61rted", numwant=b"%32")
    assert status == 200 and b"peers" in bdecode(body)
    peer = the_peer(core)
    assert peer.port == 7000 and peer.seeder  # left=0


@pytest.mark.parametrize("numwant,expected", [
    (b"%2D1", 12), (b"-1", 12), (None, 12),  # the default: more than the twelve there are
    (b"%33", 3), (b"3", 3), (b"0", 0),
    (b"9" * 12, 12),  # any size asks for as many as the tracker gives
])
def test_numwant_in_every_spelling(factory, numwant, expected):
    for n in range(2, 14):  # twelve other peers
        announce(Client(factory), peer_id=q(peer_id(n)), port=b"%d" % (7000 + n))
    reply = bdecode(announce(Client(factory), numwant=numwant)[2])
    assert len(reply[b"peers"]) // 6 == expected


@pytest.mark.parametrize("raw,reason,code", [
    ({"port": b"%2D5"}, b"port must be between 1 and 65535", "invalid_port"),
    ({"port": b""}, b"port must be between 1 and 65535", "invalid_port"),
    ({"port": b"%31%32%33%34%35%36"}, b"port must be between 1 and 65535", "invalid_port"),
    ({"uploaded": b""}, b"uploaded must be a non-negative integer", "invalid_counter"),
    ({"downloaded": b"%2B1"}, b"downloaded must be a non-negative integer", "invalid_counter"),
    ({"left": b"%2D1"}, b"left must be a non-negative integer", "invalid_counter"),
    ({"left": b"%39" * 30}, b"left must be a non-negative integer", "invalid_counter"),
    ({"event": b"%66"}, b"unknown event: use started, completed or stopped", "invalid_event"),
    ({"numwant": b""}, b"numwant must be a non-negative integer", "invalid_numwant"),
    ({"numwant": b"%2D2"}, b"numwant must be a non-negative integer", "invalid_numwant"),
])
def test_escaped_or_empty_bad_values_are_refused_as_plain_ones(factory, core, raw, reason, code):
    status, _, body = announce(Client(factory), **raw)
    assert status == 200
    assert bdecode(body) == {b"failure reason": reason}
    assert core.stats.failures == {("http", code): 1}
    assert not core.swarms or not list(core.swarms.values())[0].views()


def test_an_empty_event_is_a_regular_update(factory, core):
    assert b"peers" in bdecode(announce(Client(factory), event=b"")[2])
    assert the_peer(core).port == 6881


def test_keep_alive_reply_head_is_exactly_the_general_form(factory):
    client = Client(factory)
    client.send(b"GET /announce?info_hash=" + q(info_hash(1)) + b"&peer_id=" + q(peer_id(1))
                + b"&port=1&left=0 HTTP/1.1\r\nHost: t\r\n\r\n")
    data = client.transport.value()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d" % len(body)
    assert b"peers" in bdecode(body)
