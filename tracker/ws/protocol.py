"""The WebTorrent tracker protocol: its JSON messages parsed into values and its
replies formatted, as webtorrent's `bittorrent-tracker` client speaks them
(docs/websocket.md). No I/O here: the door (tracker/ws/door.py) does that.

Binary values (info hash, peer id) travel as 20-character strings whose
characters are the bytes (code points 0-255, JavaScript's 'binary' strings);
`offer_id` is opaque and echoed as it came.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

from tracker.core import EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED, MAX_COUNTER

# Offers in one announce: the bittorrent-tracker client sends at most 5
# (browsers' WebTorrent) and other clients at most 10.
MAX_OFFERS = 10
# An offer id is 20 characters from the reference client; allow some slack.
MAX_OFFER_ID = 64

EVENTS = {
    None: EVENT_NONE, "": EVENT_NONE, "update": EVENT_NONE, "empty": EVENT_NONE,
    # BEP 21 partial seeds: a regular update here, as on the HTTP door.
    "paused": EVENT_NONE,
    "started": EVENT_STARTED, "stopped": EVENT_STOPPED, "completed": EVENT_COMPLETED,
}

ANNOUNCE, SCRAPE = "announce", "scrape"


class WsError(Exception):
    """A message refused: answered with `failure reason`, nothing changed.
    `code` names the failure counter; `action` and `info_hash` go into the
    reply when known (the client drops an announce reply for another hash)."""

    def __init__(self, code: str, message: str, action: Optional[str] = None,
                 info_hash: Optional[bytes] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.action = action
        self.info_hash = info_hash


class Offer:
    __slots__ = ("offer", "offer_id")

    def __init__(self, offer: Dict[str, Any], offer_id: str) -> None:
        self.offer = offer
        self.offer_id = offer_id


class Announce:
    """An announce message: a state update (with offers to forward) or, when
    `answer` is set, only an answer to relay to `to_peer_id`."""

    __slots__ = ("info_hash", "peer_id", "left", "event", "offers", "answer", "to_peer_id",
                 "offer_id")

    def __init__(self, info_hash: bytes, peer_id: bytes) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.left: Optional[int] = None   # None: unknown (a magnet link): a leecher
        self.event = EVENT_NONE
        self.offers: List[Offer] = []
        self.answer: Optional[Dict[str, Any]] = None
        self.to_peer_id: Optional[bytes] = None
        self.offer_id: Optional[str] = None


class Scrape:
    __slots__ = ("info_hashes",)

    def __init__(self, info_hashes: List[bytes]) -> None:
        self.info_hashes = info_hashes


# -- parsing ------------------------------------------------------------------------------

def binary_string(value: Any, name: str, action: str,
                  info_hash: Optional[bytes] = None) -> bytes:
    """20 bytes from a 20-character 'binary' string."""
    if isinstance(value, str) and len(value) == 20:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            pass
    raise WsError("invalid_" + name, "invalid %s: 20 characters, each 0-255" % name,
                  action, info_hash)


def parse_message(text: str, max_offers: int = MAX_OFFERS):
    """An `Announce` or a `Scrape` from one text message; WsError otherwise."""
    try:
        message = json.loads(text)
    except ValueError:
        raise WsError("ws_bad_json", "message is not JSON")
    if not isinstance(message, dict):
        raise WsError("ws_bad_json", "message is not a JSON object")
    action = message.get("action")
    if action == ANNOUNCE:
        return parse_announce(message, max_offers)
    if action == SCRAPE:
        return parse_scrape(message)
    raise WsError("invalid_action", "invalid action: use announce or scrape")


def parse_announce(message: Dict[str, Any], max_offers: int = MAX_OFFERS) -> Announce:
    info_hash = binary_string(message.get("info_hash"), "info_hash", ANNOUNCE)
    announce = Announce(info_hash, binary_string(message.get("peer_id"), "peer_id", ANNOUNCE,
                                                 info_hash))
    if message.get("answer") is not None:
        return _parse_answer(announce, message)
    event = message.get("event")
    code = EVENTS.get(event) if isinstance(event, str) or event is None else None
    if code is None:
        raise WsError("invalid_event", "unknown event: use started, completed, stopped or none",
                      ANNOUNCE, info_hash)
    announce.event = code
    announce.left = _left(message.get("left"), info_hash)
    offers = message.get("offers")
    if offers is not None and code != EVENT_STOPPED:
        announce.offers = _parse_offers(offers, max_offers, info_hash)
    return announce


def _left(value: Any, info_hash: bytes) -> Optional[int]:
    """Bytes left: a number (or a numeric string, as JavaScript reads one);
    null or absent is unknown (JSON has no Infinity: a magnet link's client
    sends null)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value) if value.strip() else None
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (isinstance(value, int) or math.isfinite(value)) or value < 0:
        raise WsError("invalid_counter", "left must be a non-negative number", ANNOUNCE,
                      info_hash)
    return min(int(value), MAX_COUNTER)


def _parse_offers(offers: Any, max_offers: int, info_hash: bytes) -> List[Offer]:
    if not isinstance(offers, list):
        raise WsError("invalid_offers", "offers must be a list", ANNOUNCE, info_hash)
    if len(offers) > max_offers:
        raise WsError("too_many_offers", "at most %d offers per announce" % max_offers,
                      ANNOUNCE, info_hash)
    parsed = []
    for item in offers:
        if not isinstance(item, dict) or not isinstance(item.get("offer"), dict):
            raise WsError("invalid_offers", "each offer must be {offer: {...}, offer_id}",
                          ANNOUNCE, info_hash)
        parsed.append(Offer(item["offer"], _offer_id(item.get("offer_id"), info_hash)))
    return parsed


def _offer_id(value: Any, info_hash: bytes) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_OFFER_ID:
        raise WsError("invalid_offer_id", "offer_id must be a string of 1 to %d characters"
                      % MAX_OFFER_ID, ANNOUNCE, info_hash)
    return value


def _parse_answer(announce: Announce, message: Dict[str, Any]) -> Announce:
    info_hash = announce.info_hash
    answer = message["answer"]
    if not isinstance(answer, dict):
        raise WsError("invalid_answer", "answer must be an object", ANNOUNCE, info_hash)
    announce.answer = answer
    announce.to_peer_id = binary_string(message.get("to_peer_id"), "to_peer_id", ANNOUNCE,
                                        info_hash)
    announce.offer_id = _offer_id(message.get("offer_id"), info_hash)
    return announce


def parse_scrape(message: Dict[str, Any]) -> Scrape:
    """One info hash or a list of them (the client sends either)."""
    value = message.get("info_hash")
    if value is None:
        raise WsError("full_scrape_refused", "scrape needs at least one info_hash", SCRAPE)
    values = value if isinstance(value, list) else [value]
    return Scrape([binary_string(v, "info_hash", SCRAPE) for v in values])


# -- formatting ---------------------------------------------------------------------------

def text(binary: bytes) -> str:
    return binary.decode("latin-1")


def format_announce(info_hash: bytes, complete: int, incomplete: int, interval_s: int) -> str:
    return json.dumps({"action": ANNOUNCE, "interval": interval_s, "info_hash": text(info_hash),
                       "complete": complete, "incomplete": incomplete})


def format_offer(info_hash: bytes, from_peer_id: bytes, offer: Offer) -> str:
    """An offer forwarded to a peer of the swarm, with who made it."""
    return json.dumps({"action": ANNOUNCE, "offer": offer.offer, "offer_id": offer.offer_id,
                       "peer_id": text(from_peer_id), "info_hash": text(info_hash)})


def format_answer(info_hash: bytes, from_peer_id: bytes, answer: Dict[str, Any],
                  offer_id: str) -> str:
    """An answer relayed to the peer that made the offer, with who answered."""
    return json.dumps({"action": ANNOUNCE, "answer": answer, "offer_id": offer_id,
                       "peer_id": text(from_peer_id), "info_hash": text(info_hash)})


def format_scrape(rows: Iterable[Tuple[bytes, int, int, int]], min_interval_s: int) -> str:
    """From (info_hash, complete, incomplete, downloaded) rows."""
    files = {text(h): {"complete": c, "incomplete": i, "downloaded": d} for h, c, i, d in rows}
    return json.dumps({"action": SCRAPE, "files": files,
                       "flags": {"min_request_interval": min_interval_s}})


def format_failure(error: WsError) -> str:
    reply: Dict[str, Any] = {"failure reason": error.message}
    if error.action is not None:
        reply["action"] = error.action
    if error.info_hash is not None:
        reply["info_hash"] = text(error.info_hash)
    return json.dumps(reply)
