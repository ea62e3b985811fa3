"""Abuse of the stream doors and of request fields: pipelining, idle connections, numwant, line input."""
from __future__ import annotations

import resource
import select
import socket
import time

from process import poll_real_process

from .clients import (TCP_ESTABLISHED, LineConnection, announce_path, http_body, http_request,
                      open_idle, random_hash, tcp_state)
from .common import Env, Row, mib
from .target import MiB

PIPELINE_IDLE_TIMEOUT_S = 3.0
PROBE_TARGET_S = 0.010


def send_without_reading(sock: socket.socket, request: bytes, total: int, stall_s: float = 5.0) -> int:
    """Send `request` repeatedly up to `total` bytes, never reading; stop early when
    the tracker has taken nothing for `stall_s` (it stopped reading). Bytes sent."""
    sock.setblocking(False)
    payload = request * max(1, 65536 // len(request))
    sent = 0
    last_progress = time.monotonic()
    while sent < total and time.monotonic() - last_progress < stall_s:
        # Go on from where the last partial send stopped, so the stream stays
        # whole requests one after another.
        offset = sent % len(payload)
        try:
            n = sock.send(payload[offset:offset + total - sent])
        except BlockingIOError:
            select.select([], [sock], [], 0.5)
            continue
        except OSError:
            break  # the tracker closed it
        sent += n
        last_progress = time.monotonic()
    return sent


def pipelining(env: Env) -> Row:
    target = "adds ≤ 1 MiB; closed at the idle timeout (%.0f s here)" % PIPELINE_IDLE_TIMEOUT_S
    name = "one HTTP connection pipelines %d MiB of announces, never reads" % env.sizes["pipeline_mb"]
    with env.target("pipelining", ["--http-idle-timeout", str(PIPELINE_IDLE_TIMEOUT_S)]) as t:
        before = t.rss()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # we never read: keep it small
        sock.connect(("127.0.0.1", t.http_port))
        request = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % announce_path(random_hash(), 1).encode()
        sent = send_without_reading(sock, request, env.sizes["pipeline_mb"] * MiB)
        done = time.monotonic()
        # The tracker may still be working through what it read: take the peak over a moment.
        peak = max(t.rss() for _ in poll_samples(1.0))
        try:
            poll_real_process(lambda: tcp_state(sock) != TCP_ESTABLISHED,
                              timeout_s=2 * PIPELINE_IDLE_TIMEOUT_S + 5, what="connection closed")
            closed = "closed after %.1f s" % (time.monotonic() - done)
        except TimeoutError:
            closed = "still open %.0f s after the last byte" % (time.monotonic() - done)
        sock.close()
    added = peak - before
    held = added <= MiB and closed.startswith("closed")
    return Row(name, target, "+%s for %s sent; %s" % (mib(added), mib(sent), closed), held)


def poll_samples(seconds: float, interval_s: float = 0.1):
    """Yield once every `interval_s` for `seconds` (for sampling a real process)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield None
        time.sleep(interval_s)


def raise_own_file_limit(wanted: int) -> int:
    """Let this process hold `wanted` sockets (up to the hard limit); the soft limit before."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return soft


def idle_connections(env: Env) -> Row:
    count = env.sizes["idle_connections"]
    name = "%d idle connections from one address (tracker's soft fd limit 1024)" % count
    target = "a probe from another address (127.0.0.2) answered in < 10 ms, HTTP and admin"
    own_soft = raise_own_file_limit(count + 200)
    try:
        with env.target("idle", soft_nofile=1024) as t:
            socks = open_idle(t.http_port, count)
            try:
                probes = {"http": probe(t.http_port, announce_path(random_hash(), 2)),
                          "admin": probe(t.admin_port, "/api/health")}
            finally:
                for sock in socks:
                    sock.close()
    finally:  # the trackers of later cases inherit this process's limit: as it was
        resource.setrlimit(resource.RLIMIT_NOFILE, (own_soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    measured = "%d opened; " % len(socks) + ", ".join(
        "%s %s" % (door, "%.1f ms" % (s * 1000) if s is not None else "no answer")
        for door, s in probes.items())
    held = all(s is not None and s < PROBE_TARGET_S for s in probes.values())
    return Row(name, target, measured, held)


def probe(port: int, path: str):
    """Seconds until a GET from 127.0.0.2 is answered with HTTP, None if it is not (2 s)."""
    try:
        reply, seconds = http_request(port, path, timeout_s=2, source="127.0.0.2")
    except OSError:
        return None
    return seconds if reply.startswith(b"HTTP/1.1 ") else None


def numwant_huge(env: Env) -> Row:
    name = "HTTP announce with numwant=2^40"
    target = "capped at --max-numwant, not refused"
    info_hash = random_hash()
    with env.target("numwant") as t:
        for peer in range(5):
            http_request(t.http_port, announce_path(info_hash, peer))
        reply, _ = http_request(t.http_port, announce_path(info_hash, 99, numwant=str(2 ** 40)))
    body = http_body(reply)
    if b"14:failure reason" in body:
        length, _, rest = body.split(b"14:failure reason", 1)[1].partition(b":")
        reason = rest[:int(length)] if length.isdigit() else rest[:80]
        return Row(name, target, "refused: %s" % reason.decode("ascii", "replace"), False)
    peers = body.split(b"5:peers", 1)[1].split(b":", 1)[0] if b"5:peers" in body else b"0"
    return Row(name, target, "answered with %d peers" % (int(peers) // 6), True)


def line_reply(port: int, line: bytes) -> str:
    conn = LineConnection(port)
    try:
        reply = conn.command(line)
    finally:
        conn.close()
    return "(closed, no reply)" if reply is None else reply.decode("utf-8", "replace")[:60]


def line_lengths(env: Env) -> Row:
    name = "line protocol: a 4,096-byte line (the limit) with LF and with CRLF"
    target = "the same answer with LF and CRLF"
    line = b"PING" + b" " * 4092
    with env.target("line-lengths") as t:
        lf = line_reply(t.line_port, line)
        crlf = line_reply(t.line_port, line[:-1] + b"\r")  # 4,095 bytes + CRLF: 4,096 without the end
        crlf_full = line_reply(t.line_port, line + b"\r")
    too_long = [reply.startswith("ERR 413") for reply in (lf, crlf_full)]
    measured = "LF: %s; CRLF: %s" % (lf, crlf_full)
    return Row(name, target, measured, too_long[0] == too_long[1] and not crlf.startswith("ERR 413"))


def line_digits(env: Env) -> Row:
    name = "line protocol: HELLO port=١٢ (Arabic-Indic digits)"
    target = "refused: only ASCII digits are numbers"
    with env.target("line-digits") as t:
        reply = line_reply(t.line_port, "HELLO node=digits port=١٢".encode())
    return Row(name, target, reply, reply.startswith("ERR"))
