"""The CDN line protocol, parsed and formatted in one place (docs/line-protocol.md).

The door (`tracker.line.door`), the client library (`tracker.line.client`), the
`tracker-line` CLI and the benchmark all read and write the protocol through
this module: commands and their options, numbers, info hashes, the `OK`/`ERR`
replies, `PEER` and `SCRAPE` lines, and the `*` events. It imports nothing from
Twisted, so any program can use it.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import quote, unquote

DEFAULT_PORT = 6970          # the tracker's line door
DEFAULT_NODE_PORT = 6881     # where a node serves content when HELLO gives no port=
MAX_LINE = 4096              # bytes of a line, without its LF or CRLF
MAX_NAME = 1024
MAX_NUMWANT = 1_000_000
NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
REGION = NODE_ID
NODE_ID_RULE = "1-64 letters, digits, '.', '_' or '-'"
# Commands answered by several lines ending with END.
MULTILINE = frozenset({"PEERS", "SCRAPE"})
END = "END"
PONG = "PONG"


class LineError(Exception):
    """A refused command, `ERR <code> <message>`, on both sides of the wire.

    The door raises it (`close`: end the connection after the reply; `reason`:
    the failure counter, `line_<code>` when not given); the client library
    fails a command's Deferred with it (`LineError.from_line`)."""

    def __init__(self, code: int, message: str, close: bool = False,
                 reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        self.reason = reason or "line_%d" % code

    def line(self) -> str:
        return "ERR %d %s" % (self.code, self.message)

    @classmethod
    def from_line(cls, line: str) -> "LineError":
        """The error an `ERR <code> <message>` reply carries (code 0 if unreadable)."""
        parts = line.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and is_ascii_number(parts[1]) else 0
        return cls(code, parts[2] if len(parts) > 2 else line)


# -- reading commands (the door's side) --------------------------------------------------


def is_ascii_number(text: str) -> bool:
    """Only 0-9: `str.isdigit` also accepts other scripts' digits (`١٢`)."""
    return text.isascii() and text.isdigit()


def split_command(raw: bytes, max_line: int = MAX_LINE) -> Optional[List[str]]:
    """A received line (LF already removed; a CR before it is dropped here) as
    its words, the command name upper-cased; None for a blank line. Longer
    than `max_line` bytes without its ending: LineError 413 (close)."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > max_line:
        raise LineError(413, "line too long (limit %d bytes)" % max_line, close=True)
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError(415, "the line is not UTF-8")
    words = line.split()
    if not words:
        return None
    words[0] = words[0].upper()
    return words


def parse_options(words: List[str], allowed: Tuple[str, ...]) -> Dict[str, str]:
    """`key=value` words (percent-decoded as UTF-8) with keys from `allowed`."""
    options = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in allowed:
            raise LineError(400, "unexpected argument %r (options: %s)"
                            % (word[:80], ", ".join(allowed) or "none"))
        if "%" in value:  # most values have no escape: skip the call
            try:
                value = unquote(value, errors="strict")
            except UnicodeDecodeError:
                raise LineError(400, "a %-escape in an option is not UTF-8")
        options[key] = value
    return options


def parse_number(options: Dict[str, str], key: str, low: int, high: int) -> Optional[int]:
    """The whole number `options[key]` (ASCII digits only) in [low, high], or None if absent."""
    value = options.get(key)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise LineError(400, "%s must be a whole number from %d to %d" % (key, low, high))
    return int(value)


def parse_info_hash(text: str) -> bytes:
    """40 hex digits (any case) or 32 base32 characters, to 20 bytes."""
    try:  # non-ASCII text raises ValueError in both decoders
        if len(text) == 40:
            return binascii.unhexlify(text)
        if len(text) == 32:
            return base64.b32decode(text.upper())
    except (binascii.Error, ValueError):
        pass
    raise LineError(400, "bad info hash %r: use 40 hex digits or 32 base32 characters" % text[:80])


def parse_hash_and_options(args: List[str], allowed: Tuple[str, ...] = ()
                           ) -> Tuple[bytes, Dict[str, str]]:
    """`<info_hash> [key=value ...]`, the shape of HAVE, WANT, PEERS and the rest."""
    if not args:
        raise LineError(400, "missing info hash")
    return parse_info_hash(args[0]), parse_options(args[1:], allowed)


def parse_scrape_hashes(args: List[str]) -> List[bytes]:
    if not args:
        raise LineError(400, "SCRAPE needs at least one info hash")
    # How many: the core's scrape limit (--max-scrape-hashes), as on every door;
    # the line length bounds the parsing before it.
    return [parse_info_hash(a) for a in args]


class Hello(NamedTuple):
    node_id: str
    port: int
    ip: Optional[str]
    region: Optional[str]
    token: Optional[str]


def parse_hello(args: List[str]) -> Hello:
    """HELLO's options, checked for form (the door checks addresses and tokens)."""
    options = parse_options(args, ("node", "port", "ip", "region", "token"))
    node_id = options.get("node")
    if node_id is None or not NODE_ID.fullmatch(node_id):
        raise LineError(400, "HELLO needs node=<id>: " + NODE_ID_RULE)
    port = parse_number(options, "port", 1, 65535) or DEFAULT_NODE_PORT
    region = options.get("region")
    if region is not None and not REGION.fullmatch(region):
        raise LineError(400, "region must be " + NODE_ID_RULE)
    return Hello(node_id, port, options.get("ip"), region, options.get("token"))


# -- writing replies and events (the door's side) ----------------------------------------


def format_peer(address_words: str, seeder: bool, door: str, node: Optional[str] = None,
                region: Optional[str] = None) -> str:
    """How a peer is shown after `PEER` and in events:
    `<ip> <port> <seeder|leecher> door=<door> [node=<id>] [region=<tag>]`."""
    text = "%s %s door=%s" % (address_words, "seeder" if seeder else "leecher", door)
    if node is not None:
        text += " node=" + node
        if region:
            text += " region=" + region
    return text


def format_event(joined: bool, info_hash: bytes, peer_text: str) -> str:
    return "* %s %s %s" % ("JOIN" if joined else "LEAVE", info_hash.hex(), peer_text)


def format_resync(info_hash: bytes) -> str:
    """Events for this swarm were too many to queue: ask PEERS again."""
    return "* RESYNC " + info_hash.hex()


def format_peers(peer_texts: Iterable[str]) -> str:
    """A whole PEERS reply, END included, as one block of lines."""
    return "".join(["PEER %s\n" % text for text in peer_texts]) + "END\n"


def format_scrape(rows: Iterable[Tuple[bytes, int, int, int]]) -> str:
    """A whole SCRAPE reply from (info_hash, seeders, leechers, completed) rows."""
    return "".join(["SCRAPE %s seeders=%d leechers=%d completed=%d\n" % (h.hex(), s, l, c)
                    for h, s, l, c in rows]) + "END\n"


def format_ok(command: str, detail: str = "") -> str:
    return "OK %s %s" % (command, detail) if detail else "OK " + command


def format_hello(node_id: str, entries_kept: int) -> str:
    return "OK HELLO %s entries=%d" % (node_id, entries_kept)


def format_stats(figures: Dict[str, int]) -> str:
    return "OK STATS " + " ".join("%s=%d" % (key, figures[key]) for key in
                                  ("swarms", "peers", "seeders", "leechers", "nodes", "connections"))


# -- writing commands and reading replies (the client's side) ----------------------------


def format_command(command: str, *args: str, **options: Union[str, int, None]) -> str:
    """A command line: `format_command("HAVE", h, size=10, name="a b")` is
    `HAVE h size=10 name=a%20b` (option values are percent-encoded; None is left out)."""
    words = [command] + list(args)
    for key, value in options.items():
        if value is not None:
            words.append("%s=%s" % (key, quote(str(value), safe="")))
    return " ".join(words)


def is_multiline(command: str) -> bool:
    """Whether the reply to `command` is several lines ending with END."""
    words = command.split(None, 1)
    return bool(words) and words[0].upper() in MULTILINE


# What a received line is, for a client matching replies to its commands.
EVENT, ERROR, PART, LAST = "event", "error", "part", "last"


def reply_kind(line: Union[str, bytes]) -> str:
    """EVENT (`*`, pushed at any time), ERROR (`ERR`, the whole reply), PART (a
    `PEER` or `SCRAPE` line of a multi-line reply) or LAST (`END`, or any
    other one-line reply)."""
    # Bytes are classified as they are (a load generator reads many lines).
    prefixes = _BYTE_PREFIXES if isinstance(line, bytes) else _TEXT_PREFIXES
    if line.startswith(prefixes[0]):
        return EVENT
    if line.startswith(prefixes[1]):
        return ERROR
    if line.startswith(prefixes[2]):
        return PART
    return LAST


_TEXT_PREFIXES = ("*", "ERR ", ("PEER ", "SCRAPE "))
_BYTE_PREFIXES = (b"*", b"ERR ", (b"PEER ", b"SCRAPE "))


class PeerLine(NamedTuple):
    ip: str
    port: int
    seeder: bool
    door: str
    node: Optional[str]
    region: Optional[str]


class Event(NamedTuple):
    kind: str                   # JOIN, LEAVE or RESYNC
    info_hash: bytes
    peer: Optional[PeerLine]    # None for RESYNC


def parse_peer(words: List[str]) -> PeerLine:
    """The words `format_peer` writes, back to their fields."""
    if len(words) < 4 or not is_ascii_number(words[1]) or words[2] not in ("seeder", "leecher"):
        raise LineError(0, "not a peer: %r" % " ".join(words)[:200])
    options = parse_options(words[3:], ("door", "node", "region"))
    return PeerLine(words[0], int(words[1]), words[2] == "seeder", options.get("door", ""),
                    options.get("node"), options.get("region"))


def parse_peer_line(line: str) -> PeerLine:
    """A `PEER ...` line of a PEERS reply."""
    words = line.split()
    if not words or words[0] != "PEER":
        raise LineError(0, "not a PEER line: %r" % line[:200])
    return parse_peer(words[1:])


def parse_event(line: str) -> Event:
    """A `* JOIN|LEAVE <info_hash> <peer>` or `* RESYNC <info_hash>` line."""
    words = line.split()
    if len(words) < 3 or words[0] != "*" or words[1] not in ("JOIN", "LEAVE", "RESYNC"):
        raise LineError(0, "not an event: %r" % line[:200])
    info_hash = parse_info_hash(words[2])
    if words[1] == "RESYNC":
        return Event("RESYNC", info_hash, None)
    return Event(words[1], info_hash, parse_peer(words[3:]))


def parse_scrape_line(line: str) -> Tuple[bytes, int, int, int]:
    """A `SCRAPE <info_hash> seeders= leechers= completed=` line, to its numbers."""
    words = line.split()
    if len(words) != 5 or words[0] != "SCRAPE":
        raise LineError(0, "not a SCRAPE line: %r" % line[:200])
    figures = parse_options(words[2:], ("seeders", "leechers", "completed"))
    numbers = [parse_number(figures, key, 0, 2 ** 63) for key in ("seeders", "leechers", "completed")]
    if None in numbers:
        raise LineError(0, "not a SCRAPE line: %r" % line[:200])
    return (parse_info_hash(words[1]),) + tuple(numbers)  # type: ignore[return-value]
