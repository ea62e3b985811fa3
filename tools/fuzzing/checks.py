"""What a well-formed reply of each door looks like; a bad one raises MalformedReply."""
from __future__ import annotations

import struct
from typing import List, Optional, Tuple


class MalformedReply(AssertionError):
    """A door wrote something its wire format does not allow."""


def _bdecode(body: bytes):
    import bencode
    return bencode.Bencode(encoding=None).decode(body)


def check_http_replies(data: bytes) -> List[Tuple[int, bytes]]:
    """Every reply written on a connection: status line, headers with a true
    Content-Length, and a bencoded dictionary as the body of every 200 with a body.
    A HEAD reply has no body: the next reply follows its head at once."""
    out = []
    while data:
        if not data.startswith(b"HTTP/1.1 "):
            raise MalformedReply("reply does not start with 'HTTP/1.1 ': %r" % data[:60])
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise MalformedReply("reply head never ends: %r" % data[:200])
        lines = head.split(b"\r\n")
        status = lines[0][9:12]
        if not status.isdigit() or lines[0][12:13] != b" ":
            raise MalformedReply("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise MalformedReply("bad header line %r" % line)
            headers[name.lower()] = value.strip()
        if not headers.get(b"content-length", b"").isdigit():
            raise MalformedReply("no Content-Length in %r" % head)
        length = int(headers[b"content-length"])
        if rest.startswith(b"HTTP/1.1 ") or (not rest and length):
            body, data = b"", rest  # the reply to a HEAD
        else:
            body, data = rest[:length], rest[length:]
            if len(body) != length:
                raise MalformedReply("body shorter than its Content-Length %d" % length)
        if int(status) == 500:
            raise MalformedReply("500 internal error: %r" % body[:200])
        if int(status) == 200 and body:
            try:
                decoded = _bdecode(body)
            except Exception as e:
                raise MalformedReply("200 body is not bencoded (%s): %r" % (e, body[:200]))
            if not isinstance(decoded, dict):
                raise MalformedReply("200 body is not a dictionary: %r" % body[:200])
        out.append((int(status), body))
    return out


UDP_ACTIONS = {0: "connect", 1: "announce", 2: "scrape", 3: "error"}


def check_udp_reply(reply: bytes, request: bytes, proved: bool) -> int:
    """One reply datagram: at least 8 bytes, a known action with the right size, the
    request's transaction id; never larger than the request from an address that has
    not proved itself with a valid connection id (no amplification). Its action."""
    if len(reply) < 8:
        raise MalformedReply("UDP reply of %d bytes" % len(reply))
    action, transaction_id = struct.unpack_from(">II", reply)
    if action not in UDP_ACTIONS:
        raise MalformedReply("UDP reply with action %d" % action)
    if len(request) >= 16 and transaction_id != struct.unpack_from(">I", request, 12)[0]:
        raise MalformedReply("UDP reply with another transaction id")
    peers = len(reply) - 20  # an announce reply: 6-byte IPv4 or 18-byte IPv6 peers
    size_ok = {0: len(reply) == 16, 1: peers >= 0 and (peers % 6 == 0 or peers % 18 == 0),
               2: (len(reply) - 8) % 12 == 0, 3: True}[action]
    if not size_ok:
        raise MalformedReply("UDP %s reply of %d bytes" % (UDP_ACTIONS[action], len(reply)))
    if action == 3:
        try:
            reply[8:].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedReply("UDP error message is not UTF-8: %r" % reply[8:80])
    if not proved and len(reply) > len(request):
        raise MalformedReply("%d-byte reply to an unproved %d-byte request" % (len(reply), len(request)))
    return action


LINE_REPLY_WORDS = (b"OK", b"ERR", b"PEER", b"END", b"SCRAPE", b"PONG", b"*")


def check_line_output(data: bytes, max_line: int) -> Optional[List[bytes]]:
    """Everything written on a line connection: whole LF-ended UTF-8 lines, each an
    OK/ERR/PEER/END/SCRAPE/PONG reply or a `*` event, of bounded length."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise MalformedReply("output does not end with a whole line: %r" % data[-80:])
    lines = data[:-1].split(b"\n")
    for line in lines:
        first = line.split(b" ", 1)[0]
        if first not in LINE_REPLY_WORDS:
            raise MalformedReply("line reply %r" % line[:120])
        if first == b"ERR" and not line[4:7].isdigit():
            raise MalformedReply("ERR without a code: %r" % line[:120])
        if len(line) > 2 * max_line + 256:  # replies may quote a line, never grow past that
            raise MalformedReply("a %d-byte reply line" % len(line))
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedReply("line reply is not UTF-8: %r" % line[:120])
    return lines
