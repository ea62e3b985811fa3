"""tracker.line.protocol: the one parser and formatter of the line protocol."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given, strategies as st

from helpers import info_hash
from tracker.line.protocol import (
    ERROR, EVENT, LAST, PART, LineError, PeerLine, format_command, format_event, format_hello,
    format_peer, format_peers, format_resync, format_scrape, format_stats, is_multiline,
    parse_event, parse_hash_and_options, parse_hello, parse_info_hash, parse_number,
    parse_options, parse_peer_line, parse_scrape_line, reply_kind, split_command,
)

H1 = info_hash(1)


def test_split_command_drops_cr_and_upper_cases_the_name():
    assert split_command(b"peers abc numwant=3\r") == ["PEERS", "abc", "numwant=3"]
    assert split_command(b"  \r") is None
    with pytest.raises(LineError) as error:
        split_command(b"HELLO \xff")
    assert (error.value.code, error.value.message) == (415, "the line is not UTF-8")


def test_info_hash_in_hex_either_case_or_base32():
    assert parse_info_hash(H1.hex()) == H1
    assert parse_info_hash(H1.hex().upper()) == H1
    assert parse_info_hash(base64.b32encode(H1).decode().lower()) == H1
    for bad in ("abc", "g" * 40, "é" * 40, "1" * 41):
        with pytest.raises(LineError) as error:
            parse_info_hash(bad)
        assert error.value.code == 400 and "bad info hash" in error.value.message


@pytest.mark.parametrize("value", ["١٢", "１２", "12.0", "-1", "+1", " 1", "", "²"])
def test_only_ascii_digits_are_numbers(value):
    with pytest.raises(LineError) as error:
        parse_number({"port": value}, "port", 0, 65535)
    assert error.value.message == "port must be a whole number from 0 to 65535"


def test_numbers_in_range():
    assert parse_number({"port": "12"}, "port", 1, 65535) == 12
    assert parse_number({}, "port", 1, 65535) is None
    with pytest.raises(LineError):
        parse_number({"port": "65536"}, "port", 1, 65535)


def test_options_are_percent_decoded_and_checked():
    assert parse_options(["name=a%20b", "size=3"], ("size", "name")) == {"name": "a b", "size": "3"}
    with pytest.raises(LineError) as error:
        parse_options(["colour=red"], ("size",))
    assert error.value.message == "unexpected argument 'colour=red' (options: size)"
    with pytest.raises(LineError) as error:
        parse_options(["name=%ff"], ("name",))
    assert error.value.message == "a %-escape in an option is not UTF-8"
    with pytest.raises(LineError) as error:
        parse_hash_and_options([])
    assert error.value.message == "missing info hash"


def test_hello_defaults_and_refusals():
    hello = parse_hello(["node=edge-1"])
    assert (hello.node_id, hello.port, hello.ip, hello.region, hello.token) == (
        "edge-1", 6881, None, None, None)
    for words in (["node=a/b"], ["node=a\n"], ["node=" + "a" * 65], ["port=1"]):
        with pytest.raises(LineError) as error:
            parse_hello(words)
        assert error.value.message.startswith("HELLO needs node=<id>")
    with pytest.raises(LineError):
        parse_hello(["node=a", "region=x/y"])


def test_error_lines_both_ways():
    error = LineError(409, "node edge-1 is registered from another address", close=False)
    assert error.line() == "ERR 409 node edge-1 is registered from another address"
    assert error.reason == "line_409"
    back = LineError.from_line(error.line())
    assert (back.code, back.message) == (409, error.message)
    assert LineError.from_line("ERR ٤٠٤ x").code == 0
    assert LineError(400, "x", reason="line_entry_cap").reason == "line_entry_cap"


def test_replies_and_events_format_and_parse_back():
    peer = format_peer("10.0.0.1 8080", True, "line", "edge-1", "eu")
    assert peer == "10.0.0.1 8080 seeder door=line node=edge-1 region=eu"
    assert format_peer("192.0.2.5 51413", False, "http") == "192.0.2.5 51413 leecher door=http"
    block = format_peers([peer])
    assert block == "PEER %s\nEND\n" % peer
    assert parse_peer_line(block.splitlines()[0]) == PeerLine("10.0.0.1", 8080, True, "line", "edge-1", "eu")
    event = format_event(True, H1, peer)
    assert event == "* JOIN %s %s" % (H1.hex(), peer)
    assert parse_event(event).peer.node == "edge-1"
    assert parse_event(format_resync(H1)) == ("RESYNC", H1, None)
    scrape = format_scrape([(H1, 1, 2, 3)])
    assert scrape == "SCRAPE %s seeders=1 leechers=2 completed=3\nEND\n" % H1.hex()
    assert parse_scrape_line(scrape.splitlines()[0]) == (H1, 1, 2, 3)
    assert format_hello("edge-1", 2) == "OK HELLO edge-1 entries=2"
    assert format_stats(dict(swarms=1, peers=2, seeders=1, leechers=1, nodes=0, connections=3)) == (
        "OK STATS swarms=1 peers=2 seeders=1 leechers=1 nodes=0 connections=3")


def test_reply_kinds_for_a_client_matching_replies():
    assert [reply_kind(line) for line in (
        "* JOIN x", b"* RESYNC x", "ERR 400 x", "PEER 1.2.3.4 1 seeder door=http",
        b"SCRAPE x seeders=1 leechers=0 completed=0", "END", "PONG", "OK HAVE x",
        b"ERR 404 x", b"PEER 1.2.3.4 1 seeder door=udp", b"END", b"OK STATS")] == [
        EVENT, EVENT, ERROR, PART, PART, LAST, LAST, LAST, ERROR, PART, LAST, LAST]
    assert is_multiline("peers x") and is_multiline("SCRAPE x y") and not is_multiline("PING")
    assert not is_multiline("")


@given(st.text(min_size=1, max_size=40))
def test_command_option_values_survive_the_round_trip(value):
    line = format_command("HAVE", H1.hex(), size=10, name=value)
    words = split_command(line.encode("utf-8"))
    assert words[0] == "HAVE"
    assert parse_hash_and_options(words[1:], ("size", "name")) == (H1, {"size": "10", "name": value})


def test_format_command_leaves_out_none():
    assert format_command("HELLO", node="edge-1", port=None, region="eu") == "HELLO node=edge-1 region=eu"
