"""Raw-bytes query parsing, and the hand-written announce encoder against the codec."""
from __future__ import annotations

from urllib.parse import quote_from_bytes

import bencode
from hypothesis import given, strategies as st

from tracker.addresses import compact_address
from tracker.core import AnnounceResult, PeerView
from tracker.doors.query import parse_query, unquote
from tracker.doors.responses import announce_trailer, encode_announce_compact


def test_unquote_decodes_escapes_in_any_case():
    assert unquote(b"%41%4a%4A%ff%FF%fF") == b"AJJ\xff\xff\xff"


def test_unquote_keeps_plus_and_invalid_escapes():
    assert unquote(b"a+b") == b"a+b"
    assert unquote(b"100%") == b"100%"
    assert unquote(b"%zz%4") == b"%zz%4"
    assert unquote(b"%%41") == b"%A"


@given(st.binary(max_size=64))
def test_unquote_inverts_percent_encoding(raw):
    assert unquote(quote_from_bytes(raw, safe="").encode()) == raw


@given(st.binary(max_size=64))
def test_unquote_of_bytes_without_percent_is_identity(raw):
    raw = raw.replace(b"%", b"")
    assert unquote(raw) == raw


def test_parse_query_keeps_every_info_hash_and_last_value_of_others():
    params, hashes = parse_query(b"info_hash=a&port=1&info_hash=%62&port=2&flag&=x")
    assert hashes == [b"a", b"b"]
    assert params[b"port"] == b"2"
    assert params[b"flag"] == b""
    assert params[b""] == b"x"


def test_parse_query_of_nothing():
    assert parse_query(b"") == ({}, [])


def test_parse_query_decodes_escaped_keys():
    params, hashes = parse_query(b"info%5Fhash=x")
    assert hashes == [b"x"]


peer_strategy = st.builds(
    lambda pid, ip, port: PeerView(pid, compact_address(ip, port), False, 0.0, "http"),
    st.binary(min_size=20, max_size=20),
    st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    st.integers(1, 65535),
)


@given(
    peers=st.lists(peer_strategy, max_size=20),
    complete=st.integers(0, 10 ** 9), incomplete=st.integers(0, 10 ** 9),
    interval=st.integers(1, 10 ** 5), min_interval=st.integers(1, 10 ** 5),
    external_ip=st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)),
    tracker_id=st.one_of(st.none(), st.binary(min_size=1, max_size=10)),
    warning=st.one_of(st.none(), st.binary(min_size=1, max_size=30)),
)
def test_hand_written_compact_reply_equals_the_codec(peers, complete, incomplete, interval,
                                                      min_interval, external_ip, tracker_id, warning):
    result = AnnounceResult(complete, incomplete,
                            b"".join(p.compact for p in peers if not p.is_ipv6),
                            b"".join(p.compact for p in peers if p.is_ipv6), interval, min_interval)
    expected = {
        b"complete": complete, b"incomplete": incomplete, b"interval": interval,
        b"min interval": min_interval, b"external ip": external_ip,
        b"peers": b"".join(p.compact for p in peers if not p.is_ipv6),
    }
    v6 = b"".join(p.compact for p in peers if p.is_ipv6)
    if v6:
        expected[b"peers6"] = v6
    if tracker_id:
        expected[b"tracker id"] = tracker_id
    if warning:
        expected[b"warning message"] = warning
    encoded = encode_announce_compact(result, external_ip, announce_trailer(tracker_id, warning))
    assert encoded == bencode.encode(expected)
