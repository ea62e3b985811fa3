"""The UDP door (BEP 15, BEP 41) over FakeDatagramTransport, with task.Clock."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from clients import UDPClient
from helpers import info_hash, peer_id
from tracker.core import TrackerCore, TrackerSettings
from tracker.doors.connection_ids import WINDOW_S, ConnectionIds
from tracker.doors.udp import (
    PROTOCOL_ID, UDPDoorSettings, UDPTrackerProtocol, parse_options,
)

@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


@pytest.fixture
def core():
    return TrackerCore(TrackerSettings(interval_s=1800, min_interval_s=900), rng=random.Random(3))


@pytest.fixture
def transport():
    return FakeDatagramTransport()


@pytest.fixture
def door(core, clock, transport):
    protocol = UDPTrackerProtocol(core, clock, UDPDoorSettings())
    protocol.makeConnection(transport)
    return protocol


@pytest.fixture
def client(door, transport):
    return UDPClient(door, transport)


# -- connect ------------------------------------------------------------------------


def test_connect_reply_is_16_bytes_with_the_transaction_id(client):
    reply = client.send(PROTOCOL_ID + struct.pack(">II", 0, 77))
    assert len(reply) == 16
    assert struct.unpack(">II", reply[:8]) == (0, 77)


def test_connect_without_magic_is_silent(client, core):
    assert client.send(b"\x00" * 8 + struct.pack(">II", 0, 77)) is None
    assert core.stats.failures == {("udp", "bad_magic"): 1}


def test_short_datagram_is_silent(client):
    for size in range(16):
        assert client.send(PROTOCOL_ID[:size]) is None


# -- announce -------------------------------------------------------------------------


def test_announce_returns_counts_interval_and_ipv4_peers(door, transport, core):
    other = UDPClient(door, transport, ("10.0.0.2", 40001))
    other.announce(peer=2, port=7000, left=0)
    reply = UDPClient(door, transport).announce(peer=1, port=6881)
    assert reply["interval"] == 1800
    assert (reply["seeders"], reply["leechers"]) == (1, 1)
    assert reply["peers"] == bytes([10, 0, 0, 2]) + (7000).to_bytes(2, "big")


def test_ipv6_request_gets_18_byte_peers_only(door, transport):
    UDPClient(door, transport, ("2001:db8::2", 1, 0, 0)).announce(peer=2, port=7000)
    UDPClient(door, transport, ("10.0.0.3", 1)).announce(peer=3, port=7001)
    reply = UDPClient(door, transport, ("2001:db8::9", 2, 0, 0)).announce(peer=9)
    assert reply["peers"] == bytes.fromhex("20010db8000000000000000000000002") + b"\x1b\x58"
    reply = UDPClient(door, transport, ("10.0.0.4", 2)).announce(peer=4)
    assert reply["peers"] == bytes([10, 0, 0, 3]) + b"\x1b\x59"


def test_link_local_client_with_scope(door, transport, core):
    reply = UDPClient(door, transport, ("fe80::7%eth0", 5, 0, 2)).announce(peer=1, port=7000)
    assert "error" not in reply
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "fe80::7"


def test_ipv4_mapped_client_is_an_ipv4_peer(door, transport, core):
    UDPClient(door, transport, ("::ffff:10.1.1.1", 5, 0, 0)).announce(peer=1, port=7000)
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert (peer.ip, peer.compact) == ("10.1.1.1", bytes([10, 1, 1, 1]) + b"\x1b\x58")


def test_requester_never_gets_itself_and_seeder_gets_no_seeders(door, transport):
    for n in range(2, 6):
        UDPClient(door, transport, ("10.0.0.%d" % n, 1)).announce(peer=n, port=7000 + n, left=0)
    UDPClient(door, transport, ("10.0.0.9", 1)).announce(peer=9, port=7009, left=5)
    seeder = UDPClient(door, transport, ("10.0.0.2", 1)).announce(peer=2, port=7002, left=0)
    assert seeder["peers"] == bytes([10, 0, 0, 9]) + (7009).to_bytes(2, "big")
    leecher = UDPClient(door, transport, ("10.0.0.9", 1)).announce(peer=9, port=7009, left=5)
    assert len(leecher["peers"]) == 4 * 6
    assert bytes([10, 0, 0, 9]) not in [leecher["peers"][i:i + 4] for i in range(0, 24, 6)]


def test_num_want_minus_one_means_default_and_positive_limits(door, transport, core):
    for n in range(2, 80):
        UDPClient(door, transport, ("10.0.1.%d" % n, 1)).announce(peer=n, port=7000 + n)
    assert len(UDPClient(door, transport).announce(numwant=-1)["peers"]) == 50 * 6
    assert len(UDPClient(door, transport).announce(numwant=5)["peers"]) == 5 * 6


@pytest.mark.parametrize("event,effect", [(2, "joins"), (0, "joins"), (1, "completes"), (3, "leaves")])
def test_event_codes(client, core, event, effect):
    client.announce(peer=1, left=0 if effect == "completes" else 10)
    client.announce(peer=1, event=event, left=0 if effect == "completes" else 10)
    swarm = core.swarms[info_hash(1)]
    assert (peer_id(1) in swarm) == (effect != "leaves")
    assert swarm.completed == (1 if effect == "completes" else 0)


def test_peer_comes_in_by_the_udp_door(client, core):
    client.announce()
    assert core.swarms[info_hash(1)].get(peer_id(1)).door == "udp"
    assert core.stats.announces == {"udp": 1}


def test_ip_field_is_ignored_unless_allowed(core, clock, transport):
    door = UDPTrackerProtocol(core, clock, UDPDoorSettings())
    door.makeConnection(transport)
    UDPClient(door, transport).announce(ip=0x01020304)
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "10.0.0.1"
    door = UDPTrackerProtocol(core, clock, UDPDoorSettings(allow_ip_field=True))
    door.makeConnection(transport)
    UDPClient(door, transport).announce(ip=0x01020304, peer=2)
    assert core.swarms[info_hash(1)].get(peer_id(2)).ip == "1.2.3.4"


def test_a_declared_ip_field_does_not_make_a_stranger_the_owner(core, clock, transport):
    door = UDPTrackerProtocol(core, clock, UDPDoorSettings(allow_ip_field=True))
    door.makeConnection(transport)
    UDPClient(door, transport, ("10.0.0.5", 6881)).announce()
    stranger = UDPClient(door, transport, ("10.0.0.9", 6881))
    refused = stranger.announce(ip=0x0A000005, event=3)
    assert refused["error"].startswith("this peer id is announced from another address")
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "10.0.0.5"


def test_bep41_url_data_reaches_the_core(client, core, monkeypatch):
    seen = []
    real = core.announce
    monkeypatch.setattr(core, "announce", lambda req, now: (seen.append(req.url_data), real(req, now))[1])
    options = b"\x01\x02\x05/anno\x01\x02\x08unce?x=1\x00\x02\x03zzz"
    assert "error" not in client.announce(options=options)
    assert seen == [b"/announce?x=1"]


@pytest.mark.parametrize("options,expected", [
    (b"", b""),
    (b"\x00\x02\x03abc", b""),
    (b"\x01\x01\x02\x03abc", b"abc"),
    (b"\x02\x02ab\x02\x02cd", b"abcd"),
    (b"\x09\x02xx\x02\x01y", b"y"),      # unknown type 9 with length 2 is skipped
    (b"\x02\x05ab", b""),                # truncated: stop
    (b"\x02\x01a\x02", b"a"),            # truncated length byte: keep what came before
])
def test_parse_options(options, expected):
    assert parse_options(options) == expected


# -- scrape -------------------------------------------------------------------------------


def test_scrape_many_hashes(door, transport, client):
    UDPClient(door, transport, ("10.0.0.2", 1)).announce(swarm=1, peer=2, left=0, event=1)
    UDPClient(door, transport, ("10.0.0.3", 1)).announce(swarm=2, peer=3, left=9)
    assert client.scrape([info_hash(1), info_hash(2), info_hash(3)]) == [
        (1, 1, 0), (0, 0, 1), (0, 0, 0)]


def test_scrape_of_74_hashes_is_answered_and_75_refused(client):
    assert len(client.scrape([info_hash(n) for n in range(74)])) == 74
    assert client.scrape([info_hash(n) for n in range(75)]) == {
        "error": "at most 74 info hashes per scrape"}


@pytest.mark.parametrize("body", [b"", b"x" * 19, b"x" * 41])
def test_scrape_with_partial_hashes_is_an_error(client, body):
    connection_id = client.connect()
    reply = client.send(struct.pack(">8sII", connection_id, 2, 5) + body)
    assert reply[:8] == struct.pack(">II", 3, 5)
    assert reply[8:] == b"scrape needs whole 20-byte info hashes"


# -- connection ids --------------------------------------------------------------------------


def test_announce_with_a_forged_connection_id_gets_a_short_error(client, core):
    packet = client.announce_packet(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    reply = client.send(packet)
    assert struct.unpack(">II", reply[:8]) == (3, client.tid)
    assert reply[8:].startswith(b"connection id expired")
    assert len(reply) <= len(packet)
    assert core.swarms == {}


def test_connection_id_is_bound_to_the_address(door, transport, core):
    connection_id = UDPClient(door, transport, ("10.0.0.1", 1)).connect()
    other = UDPClient(door, transport, ("10.0.0.2", 1))
    assert "error" in other.announce(connection_id=connection_id)
    assert core.swarms == {}


def test_connection_id_from_a_new_port_of_the_same_host_is_accepted(door, transport):
    connection_id = UDPClient(door, transport, ("10.0.0.1", 1)).connect()
    assert "error" not in UDPClient(door, transport, ("10.0.0.1", 2)).announce(
        connection_id=connection_id)


def test_connection_id_accepted_for_its_max_age_then_refused(client, clock):
    connection_id = client.connect()
    clock.advance(300)  # the default accepted age: 5 minutes
    assert "error" not in client.announce(connection_id=connection_id)
    clock.advance(WINDOW_S + 1)
    assert client.announce(connection_id=connection_id)["error"].startswith("connection id expired")


def test_connection_id_accepted_for_two_minutes_with_the_strictest_setting(core, transport):
    clock = Clock()
    clock.advance(12345.6)
    door = UDPTrackerProtocol(core, clock, UDPDoorSettings(connection_id_max_age_s=120))
    door.makeConnection(transport)
    client = UDPClient(door, transport)
    connection_id = client.connect()
    clock.advance(120)
    assert "error" not in client.announce(connection_id=connection_id)
    clock.advance(2 * WINDOW_S)
    assert "error" in client.announce(connection_id=connection_id)


def test_connection_ids_survive_a_key_rotation():
    clock = Clock()
    ids = ConnectionIds(clock, max_age_s=300, rotate_s=600)
    address = bytes([10, 0, 0, 1])
    for step in range(200):
        connection_id = ids.issue(address)
        clock.advance(17)  # crosses many window and key boundaries
        assert ids.check(connection_id, address), step
    assert len(ids._keys) <= 2


def test_connection_ids_before_a_restart_are_refused():
    clock = Clock()
    clock.advance(1000)
    address = bytes([10, 0, 0, 1])
    old = ConnectionIds(clock).issue(address)
    assert not ConnectionIds(clock).check(old, address)


def test_a_remembered_id_still_expires_and_stays_bound_to_its_address():
    clock = Clock()
    clock.advance(1000)
    ids = ConnectionIds(clock, max_age_s=300)
    here, there = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    connection_id = ids.issue(here)
    assert ids.issue(here) == connection_id  # same window: the remembered id
    assert ids.check(connection_id, here)
    assert not ids.check(connection_id, there)
    clock.advance(300 + WINDOW_S + 1)
    assert not ids.check(connection_id, here)


def test_an_older_id_stays_valid_after_a_newer_one_is_remembered():
    clock = Clock()
    clock.advance(1000)
    ids = ConnectionIds(clock, max_age_s=300)
    address = bytes([10, 0, 0, 1])
    older = ids.issue(address)
    clock.advance(WINDOW_S * 3)
    newer = ids.issue(address)
    assert newer != older
    assert ids.check(older, address) and ids.check(newer, address)
    forged = newer[:2] + bytes(6)
    assert not ids.check(forged, address)


def test_remembered_ids_are_bounded():
    ids = ConnectionIds(Clock(), max_age_s=300)
    ids._recent.limit = 10
    issued = [(n.to_bytes(4, "big"), ids.issue(n.to_bytes(4, "big"))) for n in range(25)]
    assert len(ids._recent) <= 10
    assert all(ids.check(connection_id, address) for address, connection_id in issued)


def test_max_age_below_bep15_minimum_is_refused():
    with pytest.raises(ValueError):
        ConnectionIds(Clock(), max_age_s=60)


# -- who may change an entry ---------------------------------------------------------------


@pytest.mark.parametrize("stranger", ["127.0.0.2", "::1"])
def test_a_stop_or_repoint_from_another_address_is_refused_and_counted(door, transport, core,
                                                                       stranger):
    owner = UDPClient(door, transport, ("127.0.0.1", 40000))
    assert "error" not in owner.announce(event=2, key=0xCAFE)
    attacker = UDPClient(door, transport, (stranger, 40001))
    for fields in ({"event": 3}, {"port": 7777}, {"port": 7777, "key": 0xBEEF}):
        reply = attacker.announce(**fields)
        assert reply["error"].startswith("this peer id is announced from another address")
    assert core.stats.failures[("udp", "peer_not_owner")] == 3
    (peer,) = core.swarms[info_hash(1)].views()
    assert (peer.ip, peer.port) == ("127.0.0.1", 6881)


def test_a_client_that_moves_keeps_its_entry_with_its_key(door, transport, core):
    assert "error" not in UDPClient(door, transport, ("127.0.0.1", 40000)).announce(key=0xCAFE)
    moved = UDPClient(door, transport, ("127.0.0.2", 40000))
    assert moved.announce(port=7000, key=0xCAFE)["leechers"] == 1
    (peer,) = core.swarms[info_hash(1)].views()
    assert (peer.ip, peer.port) == ("127.0.0.2", 7000)
    assert "error" not in moved.announce(event=3)
    assert core.peer_count == 0


def test_without_a_key_an_entry_is_bound_to_its_address(door, transport, core):
    assert "error" not in UDPClient(door, transport, ("127.0.0.1", 40000)).announce()
    reply = UDPClient(door, transport, ("127.0.0.2", 40000)).announce(key=0xCAFE)
    assert "error" in reply
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "127.0.0.1"


# -- other bad input -------------------------------------------------------------------------


def test_unknown_action_gets_an_error_no_longer_than_the_request(client):
    packet = struct.pack(">8sII", b"\x00" * 8, 9, 42)
    reply = client.send(packet)
    assert reply == struct.pack(">II", 3, 42) + b"unknown action"[:8]
    long_packet = packet + b"\x00" * 30
    assert client.send(long_packet) == struct.pack(">II", 3, 42) + b"unknown action"


def test_short_announce_from_a_verified_client_is_an_error(client, core):
    connection_id = client.connect()
    packet = client.announce_packet(connection_id)[:97]
    reply = client.send(packet)
    assert reply[8:] == b"announce packet too short: 98 bytes needed"
    assert core.swarms == {}


@pytest.mark.parametrize("fields,message", [
    ({"port": 0}, "port must be between 1 and 65535"),
    ({"event": 4}, "unknown event: use 0 to 3"),
    ({"left": 2 ** 63}, "left, uploaded and downloaded must be 0 to 2^63-1"),
])
def test_impossible_fields_get_an_error_and_change_nothing(client, core, fields, message):
    assert client.announce(**fields) == {"error": message}
    assert core.swarms == {}


def test_a_bug_is_logged_and_answered_with_silence(door, core, client, monkeypatch):
    def broken(req, now):
        raise RuntimeError("boom")
    monkeypatch.setattr(core, "announce", broken)
    connection_id = client.connect()
    assert client.send(client.announce_packet(connection_id)) is None


@settings(max_examples=500, deadline=None)
@given(datagram=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda action, rest: b"\x00" * 8 + struct.pack(">I", action) + rest,
              st.integers(0, 5), st.binary(max_size=120)),
    st.builds(lambda rest: PROTOCOL_ID + rest, st.binary(max_size=40)),
), host=st.sampled_from(["10.0.0.1", "::1", "::ffff:10.0.0.2", "2001:db8::1"]))
def test_random_datagrams_never_raise_or_amplify(datagram, host):
    """An unverified source never gets more bytes back than it sent."""
    core = TrackerCore()
    transport = FakeDatagramTransport()
    door = UDPTrackerProtocol(core, Clock())
    door.makeConnection(transport)
    door.datagramReceived(datagram, (host, 1234))
    for reply, _ in transport.written:
        assert len(reply) <= len(datagram)
    assert core.swarms == {}


def test_the_parsed_form_of_recent_hosts_is_bounded_and_normalised(door, transport, core):
    door._hosts.limit = 3
    for n in range(10):
        host = "::ffff:10.0.1.%d" % n if n % 2 else "10.0.1.%d" % n
        client = UDPClient(door, transport, (host, 4000 + n))
        assert "error" not in client.announce(connection_id=client.connect(), peer=n)
        assert len(door._hosts) <= 3
    assert sorted(p.ip for p in core.swarms[info_hash(1)].views()) == sorted(
        "10.0.1.%d" % n for n in range(10))
