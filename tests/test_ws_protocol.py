"""The WebTorrent protocol's messages (tracker/ws/protocol.py): parsing, its
refusals and the replies' shape, including property-based round trips."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from tracker.core import EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED
from tracker.ws.protocol import (
    Announce, Offer, Scrape, WsError, format_announce, format_answer, format_failure,
    format_offer, format_scrape, parse_message,
)

HASH = bytes(range(236, 256))           # bytes past 127: code points past ASCII
PEER = b"-WW0105-" + bytes(range(12))   # control characters too
OTHER = b"-WW0105-abcdefghijkl"


def binary(data: bytes) -> str:
    """How the JavaScript client writes bytes: one character per byte."""
    return data.decode("latin-1")


def announce(**fields):
    message = {"action": "announce", "info_hash": binary(HASH), "peer_id": binary(PEER)}
    message.update(fields)
    return json.dumps(message)


twenty_bytes = st.binary(min_size=20, max_size=20)


def test_announce_as_the_client_sends_it():
    offers = [{"offer": {"type": "offer", "sdp": "v=0"}, "offer_id": binary(OTHER)}]
    request = parse_message(announce(uploaded=0, downloaded=0, left=1000, event="started",
                                     numwant=1, offers=offers))
    assert isinstance(request, Announce)
    assert (request.info_hash, request.peer_id, request.left, request.event) == (
        HASH, PEER, 1000, EVENT_STARTED)
    assert [(o.offer, o.offer_id) for o in request.offers] == [
        ({"type": "offer", "sdp": "v=0"}, binary(OTHER))]
    assert request.answer is None


@pytest.mark.parametrize("event,code", [
    (None, EVENT_NONE), ("", EVENT_NONE), ("update", EVENT_NONE), ("paused", EVENT_NONE),
    ("started", EVENT_STARTED), ("completed", EVENT_COMPLETED), ("stopped", EVENT_STOPPED),
])
def test_events(event, code):
    fields = {} if event is None else {"event": event}
    assert parse_message(announce(**fields)).event == code


def test_left_unknown_is_none_and_numbers_as_javascript_reads_them():
    assert parse_message(announce()).left is None
    assert parse_message(announce(left=None)).left is None   # JSON's form of Infinity
    assert parse_message(announce(left=0)).left == 0
    assert parse_message(announce(left="42")).left == 42
    assert parse_message(announce(left=1.5)).left == 1


def test_a_stop_ignores_offers():
    offers = [{"offer": {"type": "offer"}, "offer_id": "x"}]
    assert parse_message(announce(event="stopped", offers=offers)).offers == []


def test_answer():
    request = parse_message(announce(answer={"type": "answer", "sdp": "v=0"},
                                     to_peer_id=binary(OTHER), offer_id="abc"))
    assert (request.answer, request.to_peer_id, request.offer_id) == (
        {"type": "answer", "sdp": "v=0"}, OTHER, "abc")


@pytest.mark.parametrize("value", [binary(HASH), [binary(HASH)], [binary(HASH), binary(OTHER)]])
def test_scrape_of_one_or_many_hashes(value):
    request = parse_message(json.dumps({"action": "scrape", "info_hash": value}))
    assert isinstance(request, Scrape)
    assert request.info_hashes == ([HASH] if value != [binary(HASH), binary(OTHER)]
                                   else [HASH, OTHER])


@pytest.mark.parametrize("text,code,action", [
    ("{", "ws_bad_json", None),
    ("[1, 2]", "ws_bad_json", None),
    ('{"action": "connect"}', "invalid_action", None),
    ('{"action": "announce", "info_hash": "short", "peer_id": "x"}', "invalid_info_hash",
     "announce"),
    (json.dumps({"action": "announce", "info_hash": "\u0100" * 20, "peer_id": "p" * 20}),
     "invalid_info_hash", "announce"),
    (announce(peer_id=None), "invalid_peer_id", "announce"),
    (announce(peer_id=12345), "invalid_peer_id", "announce"),
    (announce(event="finished"), "invalid_event", "announce"),
    (announce(event=3), "invalid_event", "announce"),
    (announce(left=-1), "invalid_counter", "announce"),
    (announce(left="many"), "invalid_counter", "announce"),
    (announce(left=[1]), "invalid_counter", "announce"),
    (announce(left=True), "invalid_counter", "announce"),
    (announce(offers={"offer": {}}), "invalid_offers", "announce"),
    (announce(offers=[{"offer": "sdp", "offer_id": "x"}]), "invalid_offers", "announce"),
    (announce(offers=[{"offer": {}, "offer_id": ""}]), "invalid_offer_id", "announce"),
    (announce(offers=[{"offer": {}, "offer_id": "x" * 65}]), "invalid_offer_id", "announce"),
    (announce(offers=[{"offer": {}, "offer_id": str(i)} for i in range(11)]),
     "too_many_offers", "announce"),
    (announce(answer={"sdp": "x"}, offer_id="x"), "invalid_to_peer_id", "announce"),
    (announce(answer={"sdp": "x"}, to_peer_id=binary(OTHER)), "invalid_offer_id", "announce"),
    (announce(answer="sdp", to_peer_id=binary(OTHER), offer_id="x"), "invalid_answer",
     "announce"),
    ('{"action": "scrape"}', "full_scrape_refused", "scrape"),
    ('{"action": "scrape", "info_hash": ["short"]}', "invalid_info_hash", "scrape"),
])
def test_bad_input_is_refused_with_a_code(text, code, action):
    with pytest.raises(WsError) as refused:
        parse_message(text)
    assert refused.value.code == code
    assert refused.value.action == action
    reply = json.loads(format_failure(refused.value))
    assert reply["failure reason"] == refused.value.message
    assert reply.get("action") == action


def test_a_refused_announce_names_its_info_hash():
    """The client drops an announce reply whose info_hash is not its own."""
    with pytest.raises(WsError) as refused:
        parse_message(announce(event="finished"))
    assert json.loads(format_failure(refused.value))["info_hash"] == binary(HASH)


def test_offer_limit_is_the_callers():
    offers = [{"offer": {}, "offer_id": str(i)} for i in range(3)]
    assert len(parse_message(announce(offers=offers), max_offers=3).offers) == 3
    with pytest.raises(WsError, match="at most 2 offers"):
        parse_message(announce(offers=offers), max_offers=2)


def test_replies_have_the_fields_the_client_reads():
    assert json.loads(format_announce(HASH, 3, 4, 120)) == {
        "action": "announce", "interval": 120, "info_hash": binary(HASH), "complete": 3,
        "incomplete": 4}
    assert json.loads(format_offer(HASH, PEER, Offer({"type": "offer"}, "id1"))) == {
        "action": "announce", "offer": {"type": "offer"}, "offer_id": "id1",
        "peer_id": binary(PEER), "info_hash": binary(HASH)}
    assert json.loads(format_answer(HASH, PEER, {"type": "answer"}, "id1")) == {
        "action": "announce", "answer": {"type": "answer"}, "offer_id": "id1",
        "peer_id": binary(PEER), "info_hash": binary(HASH)}
    assert json.loads(format_scrape([(HASH, 1, 2, 3)], 900)) == {
        "action": "scrape", "files": {binary(HASH): {"complete": 1, "incomplete": 2,
                                                     "downloaded": 3}},
        "flags": {"min_request_interval": 900}}


@settings(max_examples=200)
@given(info_hash=twenty_bytes, peer_id=twenty_bytes, left=st.one_of(st.none(), st.integers(0, 2 ** 63 - 1)))
def test_any_bytes_round_trip_through_the_json_text(info_hash, peer_id, left):
    text = json.dumps({"action": "announce", "info_hash": binary(info_hash),
                       "peer_id": binary(peer_id), "left": left})
    request = parse_message(text)
    assert (request.info_hash, request.peer_id, request.left) == (info_hash, peer_id, left)
    # And back: what the door writes decodes to the same bytes.
    reply = json.loads(format_offer(info_hash, peer_id, Offer({}, "x")))
    assert reply["info_hash"].encode("latin-1") == info_hash
    assert reply["peer_id"].encode("latin-1") == peer_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                     children, max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(fields=st.dictionaries(
    st.sampled_from(["action", "info_hash", "peer_id", "left", "event", "offers", "answer",
                     "to_peer_id", "offer_id", "numwant"]), json_values, max_size=8))
def test_any_json_object_parses_or_is_refused_with_a_failure_reason(fields):
    try:
        request = parse_message(json.dumps(fields))
    except WsError as error:
        reply = json.loads(format_failure(error))
        assert reply["failure reason"]
        return
    assert isinstance(request, (Announce, Scrape))
    if isinstance(request, Announce):
        assert len(request.info_hash) == 20 and len(request.peer_id) == 20


@settings(max_examples=200)
@given(text=st.text(max_size=200))
def test_any_text_parses_or_is_refused(text):
    try:
        parse_message(text)
    except WsError as error:
        assert error.code
