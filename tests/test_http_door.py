"""The HTTP door over StringTransport: HTTP framing, announce, scrape, bad input, timeouts."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock

from clients import Client, announce_target, q
from helpers import announce_request, bdecode, info_hash, peer_id
from tracker.core import TrackerCore, TrackerSettings
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory, owner_key


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def core():
    return TrackerCore(TrackerSettings(interval_s=1800, min_interval_s=900), rng=random.Random(1))


@pytest.fixture
def factory(core, clock):
    return HTTPTrackerFactory(core, clock, HTTPDoorSettings())


# -- announce -------------------------------------------------------------------


def test_compact_announce_is_the_default(factory):
    Client(factory, "10.0.0.2").announce(peer_id=peer_id(2), port=7000, left=0)
    reply = Client(factory, "10.1.2.3").announce()
    assert reply[b"peers"] == bytes([10, 0, 0, 2]) + (7000).to_bytes(2, "big")
    assert reply[b"complete"] == 1 and reply[b"incomplete"] == 1
    assert reply[b"interval"] == 1800 and reply[b"min interval"] == 900
    assert reply[b"external ip"] == bytes([10, 1, 2, 3])


def test_compact_zero_gives_a_list_of_dicts(factory):
    Client(factory, "10.0.0.2").announce(peer_id=peer_id(2), port=7000)
    reply = Client(factory).announce(compact=0)
    assert reply[b"peers"] == [{b"ip": b"10.0.0.2", b"peer id": peer_id(2), b"port": 7000}]


def test_no_peer_id_is_honoured(factory):
    Client(factory, "10.0.0.2").announce(peer_id=peer_id(2), port=7000)
    reply = Client(factory).announce(compact=0, no_peer_id=1)
    assert reply[b"peers"] == [{b"ip": b"10.0.0.2", b"port": 7000}]


def test_ipv6_peers_come_in_peers6(factory):
    Client(factory, "2001:db8::5", ipv6=True).announce(peer_id=peer_id(2), port=7000)
    Client(factory, "10.0.0.3").announce(peer_id=peer_id(3), port=7001)
    reply = Client(factory, "2001:db8::9", ipv6=True).announce()
    assert reply[b"peers6"] == bytes.fromhex("20010db8000000000000000000000005") + b"\x1b\x58"
    assert reply[b"peers"] == bytes([10, 0, 0, 3]) + b"\x1b\x59"
    assert reply[b"external ip"] == bytes.fromhex("20010db8000000000000000000000009")


def test_ipv4_mapped_address_is_an_ipv4_peer(factory, core):
    Client(factory, "::ffff:10.9.8.7", ipv6=True).announce()
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert peer.ip == "10.9.8.7" and len(peer.compact) == 6


def test_link_local_address_with_scope_is_usable(factory, core):
    reply = Client(factory, "fe80::1%eth0", ipv6=True).announce()
    peer = core.swarms[info_hash(1)].get(peer_id(1))
    assert peer.ip == "fe80::1" and len(peer.compact) == 18
    assert reply[b"external ip"] == bytes.fromhex("fe800000000000000000000000000001")


def test_literal_plus_is_byte_2b_not_space(factory, core):
    raw_hash = b"+" * 20
    target = (b"/announce?info_hash=" + raw_hash + b"&peer_id=" + q(peer_id(1))
              + b"&port=1&left=1")
    reply = bdecode(Client(factory).get(target)[2])
    assert b"failure reason" not in reply
    assert raw_hash in core.swarms


def test_mixed_literal_and_escaped_bytes(factory, core):
    wanted = b"ab\x00\xffcd%+~" + b"z" * 11
    target = (b"/announce?info_hash=ab%00%FFcd%25+~" + b"z" * 11 + b"&peer_id="
              + q(peer_id(1)) + b"&port=1&left=1")
    assert b"failure reason" not in bdecode(Client(factory).get(target)[2])
    assert wanted in core.swarms


def test_ip_parameter_is_ignored_by_default(factory, core):
    Client(factory, "10.0.0.1").announce(ip="1.2.3.4")
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "10.0.0.1"


def test_ip_parameter_is_used_when_allowed(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(allow_ip_param=True))
    reply = Client(factory, "10.0.0.1").announce(ip="1.2.3.4")
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "1.2.3.4"
    assert reply[b"external ip"] == bytes([1, 2, 3, 4])
    assert b"failure reason" in Client(factory).announce(ip="not-an-ip")


def test_a_declared_ip_does_not_make_a_stranger_the_owner(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(allow_ip_param=True))
    Client(factory, "10.0.0.5").announce()
    # The attacker knows the victim's peer id and address (compact=0 replies show both).
    refused = Client(factory, "10.0.0.9").announce(ip="10.0.0.5", event="stopped")
    assert refused[b"failure reason"].startswith(b"this peer id is announced from another address")
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "10.0.0.5"
    assert core.stats.failures[("http", "peer_not_owner")] == 1


def test_a_client_declaring_its_ip_keeps_its_entry_with_its_key(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(allow_ip_param=True))
    Client(factory, "10.0.0.1").announce(ip="1.2.3.4", key="1a2b3c4d")
    reply = Client(factory, "10.0.0.7").announce(ip="1.2.3.4", key="1a2b3c4d", left=0)
    assert b"failure reason" not in reply
    assert core.swarms[info_hash(1)].seeders == 1


def test_tracker_id_and_warning_message_when_configured(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(
        tracker_id=b"trk-1", warning_message=b"moving soon"))
    for compact in (1, 0):
        reply = Client(factory).announce(compact=compact)
        assert reply[b"tracker id"] == b"trk-1"
        assert reply[b"warning message"] == b"moving soon"


def test_stopped_event_removes_the_peer(factory, core):
    client = Client(factory)
    client.announce(event="started")
    assert core.peer_count == 1
    client.announce(event="stopped")
    assert core.peer_count == 0


@pytest.mark.parametrize("stranger,ipv6", [("127.0.0.2", False), ("::1", True)])
def test_a_stop_or_repoint_from_another_address_is_refused_and_counted(factory, core,
                                                                       stranger, ipv6):
    Client(factory, "127.0.0.1").announce(event="started", port=6881, key="1a2b3c4d")
    attacker = Client(factory, stranger, ipv6=ipv6)
    for params in ({"event": "stopped"}, {"port": 7777}, {"port": 7777, "key": "00000001"}):
        reply = attacker.announce(**params)
        assert reply[b"failure reason"].startswith(b"this peer id is announced from another")
    assert core.stats.failures[("http", "peer_not_owner")] == 3
    (peer,) = core.swarms[info_hash(1)].views()
    assert (peer.ip, peer.port) == ("127.0.0.1", 6881)


def test_a_client_that_moves_keeps_its_entry_with_its_key(factory, core):
    Client(factory, "127.0.0.1").announce(event="started", key="1A2B3C4D")
    reply = Client(factory, "127.0.0.2").announce(port=7000, key="1a2b3c4d")
    assert reply[b"incomplete"] == 1 and b"failure reason" not in reply
    (peer,) = core.swarms[info_hash(1)].views()
    assert (peer.ip, peer.port) == ("127.0.0.2", 7000)
    assert b"failure reason" in Client(factory, "127.0.0.1").announce(event="stopped")
    Client(factory, "127.0.0.2").announce(event="stopped")
    assert core.peer_count == 0


def test_without_a_key_an_entry_is_bound_to_its_address(factory, core):
    Client(factory, "127.0.0.1").announce(event="started")
    assert b"failure reason" in Client(factory, "127.0.0.2").announce(key="1a2b3c4d")
    assert core.swarms[info_hash(1)].get(peer_id(1)).ip == "127.0.0.1"


@pytest.mark.parametrize("raw,key", [
    (b"1a2b3c4d", 0x1A2B3C4D), (b"1A2B3C4D", 0x1A2B3C4D), (b"ff", 0xFF), (b"", 0),
    (b"00000000", 0),
])
def test_owner_key_reads_hex_as_its_number(raw, key):
    assert owner_key(raw) == key


def test_owner_key_hashes_any_other_text_to_32_bits():
    assert owner_key(b"not hex at all") == owner_key(b"not hex at all")
    assert owner_key(b"not hex at all") != owner_key(b"not hex at all!")
    assert 0 <= owner_key(b"123456789") < 2 ** 32


def test_completed_event_counts_in_scrape(factory):
    client = Client(factory)
    client.announce(event="completed", left=0)
    client.announce(event="completed", left=0)
    reply = bdecode(client.get(b"/scrape?info_hash=" + q(info_hash(1)))[2])
    assert reply[b"files"][info_hash(1)][b"downloaded"] == 1


@pytest.mark.parametrize("numwant", ["201", "100000", str(2 ** 40), "9" * 50])
def test_numwant_above_the_cap_is_capped_whatever_its_size(core, numwant):
    factory = HTTPTrackerFactory(core, Clock(), HTTPDoorSettings())
    for n in range(2, 260):
        core.announce(announce_request(peer=n, port=1000 + n), 0.0)
    reply = Client(factory).announce(numwant=numwant)
    assert len(reply[b"peers"]) == 200 * 6  # the default --max-numwant


def test_a_full_write_backlog_refuses_new_peers_with_a_reason_and_a_count(clock):
    from tracker.core import ChangeLog

    core = TrackerCore(TrackerSettings(max_write_backlog=1), changes=ChangeLog(),
                       rng=random.Random(1))
    core.store_log = core.changes
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings())
    assert b"peers" in Client(factory, "10.0.0.1").announce(peer_id=peer_id(1))
    reply = Client(factory, "10.0.0.2").announce(peer_id=peer_id(2))
    assert reply[b"failure reason"] == b"this tracker is behind with writing its database: try again later"
    assert core.stats.failures[("http", "write_backlog")] == 1 and core.peer_count == 1


def test_over_the_memory_caps_new_swarms_and_peers_are_refused(clock):
    core = TrackerCore(TrackerSettings(max_swarms=1, max_peers=2), rng=random.Random(1))
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings())
    assert b"peers" in Client(factory, "10.0.0.1").announce(peer_id=peer_id(1))
    reply = Client(factory, "10.0.0.2").announce(info_hash=info_hash(2), peer_id=peer_id(2))
    assert reply[b"failure reason"].startswith(b"this tracker tracks as many torrents as it may")
    assert b"peers" in Client(factory, "10.0.0.2").announce(peer_id=peer_id(2))
    reply = Client(factory, "10.0.0.3").announce(peer_id=peer_id(3))
    assert reply[b"failure reason"].startswith(b"this tracker holds as many peers as it may")
    assert (core.stats.failures[("http", "swarm_limit")], core.stats.failures[("http", "peer_limit")]) == (1, 1)
    assert (len(core.swarms), core.peer_count) == (1, 2)
    # Known peers keep announcing, and a stop makes room.
    assert b"peers" in Client(factory, "10.0.0.1").announce(peer_id=peer_id(1), left=0)
    Client(factory, "10.0.0.1").announce(peer_id=peer_id(1), event="stopped")
    assert b"peers" in Client(factory, "10.0.0.3").announce(peer_id=peer_id(3))


def test_numwant_limits_the_peers(factory):
    for n in range(2, 12):
        Client(factory, "10.0.0.%d" % n).announce(peer_id=peer_id(n), port=1000 + n)
    assert len(Client(factory).announce(numwant=3)[b"peers"]) == 3 * 6
    assert len(Client(factory).announce()[b"peers"]) == 10 * 6


# -- bad input: HTTP 200 with a failure reason, counted, nothing changed ---------


@pytest.mark.parametrize("params,reason,code", [
    ({"info_hash": b"short"}, b"info_hash must be 20 bytes", "invalid_info_hash"),
    ({"info_hash": b"x" * 21}, b"info_hash must be 20 bytes", "invalid_info_hash"),
    ({"info_hash": None}, b"missing info_hash", "missing_info_hash"),
    ({"peer_id": b"p" * 19}, b"peer_id must be 20 bytes", "invalid_peer_id"),
    ({"peer_id": None}, b"missing peer_id", "missing_peer_id"),
    ({"port": None}, b"missing port", "missing_port"),
    ({"port": 0}, b"port must be between 1 and 65535", "invalid_port"),
    ({"port": 65536}, b"port must be between 1 and 65535", "invalid_port"),
    ({"port": b"http"}, b"port must be between 1 and 65535", "invalid_port"),
    ({"port": b"-5"}, b"port must be between 1 and 65535", "invalid_port"),
    ({"uploaded": b"lots"}, b"uploaded must be a non-negative integer", "invalid_counter"),
    ({"downloaded": b"1e9"}, b"downloaded must be a non-negative integer", "invalid_counter"),
    ({"left": b"-1"}, b"left must be a non-negative integer", "invalid_counter"),
    ({"left": b"9" * 30}, b"left must be a non-negative integer", "invalid_counter"),
    ({"left": None}, b"missing left", "missing_left"),
    ({"event": b"finished"}, b"unknown event: use started, completed or stopped", "invalid_event"),
    ({"numwant": b"many"}, b"numwant must be a non-negative integer", "invalid_numwant"),
])
def test_bad_announce_gets_a_failure_reason_and_changes_nothing(factory, core, params, reason, code):
    Client(factory, "10.0.0.2").announce(peer_id=peer_id(2), port=7000)
    before = {h: sorted((p.peer_id, p.compact, p.seeder, p.last_seen) for p in s.views()) for h, s in core.swarms.items()}
    client = Client(factory)
    status, headers, body = client.get(announce_target(**params))
    assert status == 200
    assert bdecode(body) == {b"failure reason": reason}
    assert core.stats.failures == {("http", code): 1}
    assert {h: sorted((p.peer_id, p.compact, p.seeder, p.last_seen) for p in s.views()) for h, s in core.swarms.items()} == before
    # The server keeps answering on the same connection.
    assert b"peers" in client.announce(peer_id=peer_id(3))


def test_garbage_query_gets_a_failure_reason(factory):
    status, _, body = Client(factory).get(b"/announce?&&==&%%%%&\xff\xfe=\x00")
    assert status == 200
    assert b"failure reason" in bdecode(body)


def test_huge_query_is_refused_with_414(factory):
    client = Client(factory)
    client.send(b"GET /announce?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
    ((status, _, _),) = client.responses()
    assert status == 414
    assert client.closed


# -- scrape -------------------------------------------------------------------------


def test_scrape_many_hashes_keyed_by_raw_hash(factory):
    Client(factory).announce(info_hash=info_hash(1), left=0)
    Client(factory).announce(info_hash=info_hash(2), peer_id=peer_id(2))
    target = b"/scrape?info_hash=" + q(info_hash(1)) + b"&info_hash=" + q(info_hash(2)) \
        + b"&info_hash=" + q(info_hash(3))
    reply = bdecode(Client(factory).get(target)[2])
    files = reply[b"files"]
    assert files[info_hash(1)] == {b"complete": 1, b"downloaded": 0, b"incomplete": 0}
    assert files[info_hash(2)] == {b"complete": 0, b"downloaded": 0, b"incomplete": 1}
    assert files[info_hash(3)] == {b"complete": 0, b"downloaded": 0, b"incomplete": 0}


def test_scrape_without_hash_is_a_failure(factory, core):
    reply = bdecode(Client(factory).get(b"/scrape")[2])
    assert reply == {b"failure reason": b"scrape needs at least one info_hash"}
    assert core.stats.failures == {("http", "full_scrape_refused"): 1}


def test_scrape_with_bad_hash_is_a_failure(factory):
    reply = bdecode(Client(factory).get(b"/scrape?info_hash=abc")[2])
    assert reply == {b"failure reason": b"info_hash must be 20 bytes"}


# -- HTTP framing -------------------------------------------------------------------


def test_keep_alive_is_the_http11_default(factory):
    client = Client(factory)
    status, headers, _ = client.get(announce_target())
    assert status == 200 and b"connection" not in headers
    assert not client.closed


def test_connection_close_closes_after_the_reply(factory):
    client = Client(factory)
    status, headers, _ = client.get(announce_target(), headers=b"Connection: close\r\n")
    assert status == 200 and headers[b"connection"] == b"close"
    assert client.closed


def test_http10_closes_unless_keep_alive(factory):
    client = Client(factory)
    _, headers, _ = client.get(announce_target(), version=b"HTTP/1.0")
    assert headers[b"connection"] == b"close" and client.closed
    client = Client(factory)
    _, headers, _ = client.get(announce_target(), version=b"HTTP/1.0",
                               headers=b"Connection: Keep-Alive\r\n")
    assert headers[b"connection"] == b"keep-alive" and not client.closed


def test_pipelined_requests_are_answered_in_order(factory):
    client = Client(factory)
    requests = [
        b"GET " + announce_target(info_hash=info_hash(n)) + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        for n in range(1, 4)
    ] + [b"GET /scrape?info_hash=" + q(info_hash(2)) + b" HTTP/1.1\r\n\r\n"]
    client.send(b"".join(requests))
    responses = client.responses()
    assert [status for status, _, _ in responses] == [200] * 4
    assert info_hash(2) in bdecode(responses[3][2])[b"files"]


def test_request_split_across_reads(factory):
    client = Client(factory)
    raw = b"GET " + announce_target() + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    for i in range(len(raw)):
        client.send(raw[i:i + 1])
    ((status, _, body),) = client.responses()
    assert status == 200 and b"peers" in bdecode(body)


def test_head_gets_headers_only(factory):
    client = Client(factory)
    client.send(b"HEAD " + announce_target() + b" HTTP/1.1\r\n\r\n")
    raw = client.transport.value()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: " in head and body == b""


def test_absolute_form_target(factory):
    status, _, body = Client(factory).get(b"http://tracker.example:6969" + announce_target())
    assert status == 200 and b"peers" in bdecode(body)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /favicon.ico HTTP/1.1\r\n\r\n", 404),
    (b"GET / HTTP/1.1\r\n\r\n", 404),
    (b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
    (b"DELETE /announce HTTP/1.1\r\n\r\n", 405),
    (b"GET /announce HTTP/2.0\r\n\r\n", 505),
    (b"GET /announce\r\n\r\n", 400),
    (b"GET  /announce HTTP/1.1\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    (b"GET /announce HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /announce HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET /announce HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
    (b"GET /announce HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /announce HTTP/1.1\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", 431),
    (b"GET /announce HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
])
def test_non_tracker_requests_get_the_right_status(factory, request_bytes, status):
    client = Client(factory)
    client.send(request_bytes)
    responses = client.responses()
    assert responses[0][0] == status
    if status == 405:
        assert responses[0][1][b"allow"] == b"GET, HEAD"
    if status != 404:
        assert client.closed


def test_404_keeps_the_connection(factory):
    client = Client(factory)
    assert client.get(b"/nope")[0] == 404
    assert client.get(announce_target())[0] == 200


def test_oversized_partial_head_is_refused_before_it_ends(factory):
    client = Client(factory)
    client.send(b"GET /announce HTTP/1.1\r\nX: " + b"y" * 17000)
    assert client.responses()[0][0] == 431
    assert client.closed
    client = Client(factory)
    client.send(b"GET /" + b"a" * 9000)
    assert client.responses()[0][0] == 414


def test_nothing_is_read_after_a_refusal(factory, core):
    client = Client(factory)
    client.send(b"DELETE / HTTP/1.1\r\n\r\nGET " + announce_target() + b" HTTP/1.1\r\n\r\n")
    assert [r[0] for r in client.responses()] == [405]
    client.send(b"GET " + announce_target() + b" HTTP/1.1\r\n\r\n")
    assert client.transport.value() == b""
    assert core.peer_count == 0


# -- timeouts (task.Clock, no sleeping) -----------------------------------------


def test_idle_keep_alive_connection_is_closed(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(idle_timeout_s=30))
    client = Client(factory)
    client.get(announce_target())
    clock.advance(29)
    factory.tick()
    assert not client.closed
    clock.advance(2)
    factory.tick()
    assert client.closed
    assert client.transport.value() == b""


def test_activity_keeps_a_connection_open(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(idle_timeout_s=30))
    client = Client(factory)
    for _ in range(5):
        clock.advance(20)
        factory.tick()
        client.get(announce_target())
    assert not client.closed


def test_half_sent_request_times_out_with_408(core, clock):
    factory = HTTPTrackerFactory(core, clock, HTTPDoorSettings(request_timeout_s=10,
                                                               idle_timeout_s=60))
    client = Client(factory)
    client.send(b"GET /announce?info_hash=")
    for _ in range(9):
        clock.advance(1)
        factory.tick()
        client.send(b"a")  # a trickle of bytes does not extend the deadline
    assert not client.closed
    clock.advance(1.5)
    factory.tick()
    assert client.responses()[0][0] == 408
    assert client.closed


def test_closed_connections_leave_the_factory(factory):
    client = Client(factory)
    assert client.protocol in factory.connections
    client.protocol.connectionLost(None)
    assert client.protocol not in factory.connections


# -- property: random bytes never break the door -------------------------------


def _valid_http_stream(data: bytes) -> bool:
    """Every byte written is a sequence of complete HTTP/1.1 responses."""
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return False
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) != 3 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            return False
        lengths = [line.split(b":", 1)[1].strip() for line in lines[1:]
                   if line.lower().startswith(b"content-length:")]
        if len(lengths) != 1:
            return False
        data = rest[int(lengths[0]):]
    return True


request_pieces = st.sampled_from([
    b"GET ", b"HEAD ", b"POST ", b"/announce?", b"/scrape?", b"info_hash=", b"peer_id=",
    b"&", b"=", b"%", b"%4", b"%ff", b"+", b"port=6881", b"left=0", b"compact=0",
    b" HTTP/1.1", b" HTTP/1.0", b"\r\n", b"\r\n\r\n", b"Connection: close",
    b"Content-Length: 2", b"\x00", b"\xff", b" ",
])


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.one_of(st.binary(max_size=64), request_pieces), max_size=40))
def test_random_bytes_never_raise_and_always_get_valid_http(chunks):
    core = TrackerCore(rng=random.Random(0))
    factory = HTTPTrackerFactory(core, Clock(), HTTPDoorSettings())
    client = Client(factory)
    for chunk in chunks:
        client.send(chunk)
    assert _valid_http_stream(client.transport.value())
