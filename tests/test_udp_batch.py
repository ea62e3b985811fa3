"""Batched UDP I/O (--udp-batch): the recvmmsg/sendmmsg binding on real loopback
sockets, the UDP door reading through it, and the plain path it falls back to.

The door's port is driven by hand: datagrams sent on loopback are in the
server socket's queue when `sendto` returns, so the test calls the port's
`doRead` itself (a MemoryReactorClock holds the port; no real reactor, no sleeps).
"""
from __future__ import annotations

import errno
import random
import socket
import struct
import sys
from pathlib import Path

import pytest
from twisted.internet import udp
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from helpers import info_hash, parse_options, peer_id
from tracker.admin.metrics import udp_batch_metrics
from tracker.core import TrackerCore, TrackerSettings
from tracker.doors import mmsg
from tracker.doors.connection_ids import ConnectionIds
from tracker.doors.udp import PROTOCOL_ID, UDPDoorSettings, UDPTrackerProtocol, batch_size_for

BINDING, WHY_NOT = mmsg.load()
needs_binding = pytest.mark.skipif(BINDING is None, reason="no recvmmsg/sendmmsg: %s" % WHY_NOT)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [pytest.param((socket.AF_INET, "127.0.0.1"), id="ipv4"),
            pytest.param((socket.AF_INET6, "::1"), id="ipv6",
                         marks=pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback"))]


@pytest.fixture
def sockets(request):
    """A non-blocking server socket and two client sockets of one family on loopback."""
    family, host = request.param
    made = []

    def make(blocking: bool):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(blocking)
        if blocking:
            s.settimeout(5)  # a lost datagram fails the test instead of hanging it
        made.append(s)
        return s

    server = make(False)
    yield family, server, make(True), make(True)
    for s in made:
        s.close()


def packed(family: int, sockname) -> bytes:
    return socket.inet_pton(family, sockname[0])


# -- the binding on real sockets ---------------------------------------------------------


@needs_binding
@pytest.mark.parametrize("sockets", FAMILIES, indirect=True)
def test_one_recvmmsg_returns_every_waiting_datagram_with_its_sender(sockets):
    family, server, a, b = sockets
    sent = []
    for k in range(10):
        client = a if k % 3 else b
        client.sendto(b"datagram %d" % k, server.getsockname())
        sent.append((b"datagram %d" % k, client.getsockname()))
    batch = mmsg.DatagramBatch(BINDING, family, size=16)
    count = batch.receive(server.fileno())
    assert count == 10
    got = [(batch.datagrams[i], batch.source_tuple(i)[:2]) for i in range(count)]
    assert got == [(data, sender[:2]) for data, sender in sent]
    assert batch.senders == [packed(family, s) for _, s in sent]
    assert batch.receive(server.fileno()) == 0  # drained: no wait, no error
    assert (batch.stats.receive_calls, batch.stats.received) == (1, 10)


@needs_binding
@pytest.mark.parametrize("sockets", FAMILIES, indirect=True)
def test_a_batch_holds_at_most_its_size_and_the_rest_wait_for_the_next_call(sockets):
    family, server, a, _ = sockets
    for k in range(7):
        a.sendto(b"%d" % k, server.getsockname())
    batch = mmsg.DatagramBatch(BINDING, family, size=4)
    assert batch.receive(server.fileno()) == 4
    assert batch.datagrams == [b"0", b"1", b"2", b"3"]
    assert batch.receive(server.fileno()) == 3
    assert batch.datagrams == [b"4", b"5", b"6"]


@needs_binding
@pytest.mark.parametrize("sockets", FAMILIES, indirect=True)
def test_one_sendmmsg_delivers_each_reply_to_its_sender_in_order(sockets):
    family, server, a, b = sockets
    for k in range(6):
        (a if k % 2 else b).sendto(b"q%d" % k, server.getsockname())
    batch = mmsg.DatagramBatch(BINDING, family, size=8)
    count = batch.receive(server.fileno())
    for i in range(count):
        batch.queue(i, b"reply to " + batch.datagrams[i], server.fileno())
    assert batch.queued == 6
    assert batch.flush(server.fileno()) == 6
    assert (batch.stats.send_calls, batch.stats.sent, batch.queued) == (1, 6, 0)
    assert [b.recv(100) for _ in range(3)] == [b"reply to q0", b"reply to q2", b"reply to q4"]
    assert [a.recv(100) for _ in range(3)] == [b"reply to q1", b"reply to q3", b"reply to q5"]


@needs_binding
@pytest.mark.parametrize("sockets", FAMILIES, indirect=True)
def test_a_full_queue_is_sent_first_and_a_reply_longer_than_its_slot_goes_whole(sockets):
    family, server, a, b = sockets
    a.sendto(b"from a", server.getsockname())
    b.sendto(b"from b", server.getsockname())
    batch = mmsg.DatagramBatch(BINDING, family, size=2, arena_size=100)  # 50-byte reply slots
    assert batch.receive(server.fileno()) == 2
    batch.queue(0, b"x" * 60, server.fileno())  # longer than a slot: sent from its own bytes
    batch.queue(1, b"y" * 10, server.fileno())
    batch.queue(1, b"z" * 20, server.fileno())  # the queue is full: the two above go first
    assert (batch.stats.sent, batch.queued) == (2, 1)
    batch.queue(0, b"w" * 30, server.fileno())  # slot 1 now answers a, slot 0 is in the arena
    assert batch.flush(server.fileno()) == 2
    assert [a.recv(200) for _ in range(2)] == [b"x" * 60, b"w" * 30]
    assert [b.recv(200) for _ in range(2)] == [b"y" * 10, b"z" * 20]
    assert (batch.stats.send_calls, batch.stats.sent, batch.stats.dropped) == (2, 4, 0)


class FailingSend:
    """A sendmmsg that fails with `code` at the first reply of its first call,
    then sends what it is given."""

    def __init__(self, ffi, code: int) -> None:
        self.ffi, self.code, self.calls = ffi, code, []

    def __call__(self, fd, headers, count, flags):
        self.calls.append(count)
        if len(self.calls) == 1:
            self.ffi.errno = self.code
            return -1
        return count


@needs_binding
@pytest.mark.parametrize("code, sent, dropped, calls", [
    (errno.EAGAIN, 0, 3, [3]),  # the socket's buffer is full: the rest are dropped, no wait
    (errno.EHOSTUNREACH, 2, 1, [3, 2]),  # one refused address: skipped, the others go
])
def test_a_failed_sendmmsg_never_waits_and_counts_what_it_drops(code, sent, dropped, calls):
    batch = mmsg.DatagramBatch(BINDING, socket.AF_INET, size=4)
    batch._sendmmsg = failing = FailingSend(BINDING.ffi, code)
    for i in range(3):
        batch.queue(i, b"r", -1)
    assert batch.flush(-1) == sent
    assert (batch.stats.sent, batch.stats.dropped, failing.calls) == (sent, dropped, calls)


def test_without_cffi_the_binding_says_why(monkeypatch):
    monkeypatch.setattr(mmsg, "_loaded", None)
    monkeypatch.setitem(sys.modules, "cffi", None)  # import cffi fails
    assert mmsg.load() == (None, "cffi is not installed")


def test_off_linux_the_binding_is_not_loaded(monkeypatch):
    monkeypatch.setattr(mmsg, "_loaded", None)
    monkeypatch.setattr(mmsg.sys, "platform", "darwin")
    binding, why = mmsg.load()
    assert binding is None and "Linux only" in why


# -- the option ---------------------------------------------------------------------------


def test_udp_batch_on_without_the_binding_refuses_to_start_with_one_line(monkeypatch):
    monkeypatch.setattr(mmsg, "_loaded", (None, "cffi is not installed"))
    with pytest.raises(usage.UsageError) as refused:
        parse_options("--udp-batch", "on")
    assert str(refused.value) == ("option --udp-batch: 'on' is not valid (batched UDP is not "
                                  "available here: cffi is not installed)")
    assert batch_size_for(parse_options("--udp-batch", "auto")["udp-batch"]) == (
        0, "off (cffi is not installed)")


def test_udp_batch_values():
    assert parse_options()["udp-batch"] == "auto"
    assert batch_size_for("off") == (0, "off (--udp-batch off)")
    with pytest.raises(usage.UsageError):
        parse_options("--udp-batch", "sometimes")


@needs_binding
def test_udp_batch_auto_and_on_batch_where_the_binding_loads():
    assert parse_options("--udp-batch", "on")["udp-batch"] == "on"
    assert batch_size_for("auto") == batch_size_for("on") == (mmsg.BATCH_SIZE, "")


# -- the door over a real socket: batched and plain give the same replies -----------------


class Door:
    """A UDP door on a real loopback port held by a MemoryReactorClock; `exchange`
    sends datagrams from a client socket, runs the port's doRead once and
    returns the replies."""

    def __init__(self, family: int, host: str, batch_size: int) -> None:
        clock = Clock()
        clock.advance(1_000_000)
        core = TrackerCore(TrackerSettings(interval_s=1800, min_interval_s=900),
                           rng=random.Random(3))
        ids = ConnectionIds(clock, random_bytes=lambda n: b"k" * n)  # the same ids each time
        self.core = core
        self.protocol = UDPTrackerProtocol(core, clock, UDPDoorSettings(batch_size=batch_size),
                                           ids)
        self.reactor = MemoryReactorClock()
        self.port = udp.Port(0, self.protocol, interface=host, reactor=self.reactor)
        self.port.startListening()
        self.address = self.port.socket.getsockname()
        self.client = socket.socket(family, socket.SOCK_DGRAM)
        self.client.bind((host, 0))
        self.client.setblocking(False)

    def exchange(self, *datagrams: bytes):
        for datagram in datagrams:
            self.client.sendto(datagram, self.address)
        self.port.doRead()
        replies = []
        try:
            while True:
                replies.append(self.client.recv(65536))
        except BlockingIOError:  # every reply was sent, on loopback, before doRead returned
            return replies

    def close(self) -> None:
        self.client.close()
        self.port.stopListening()
        self.reactor.advance(0)  # the port closes its socket


def conversation(door: Door):
    """connect, then announces, a scrape and each kind of refusal in one read."""
    (connected,) = door.exchange(PROTOCOL_ID + struct.pack(">II", 0, 5))
    connection_id = connected[8:]

    def announce(tid, peer, **kw):
        return struct.pack(">8sII20s20sQQQIIIiH", kw.get("cid", connection_id), 1, tid,
                           info_hash(kw.get("swarm", 1)), peer_id(peer), 0, kw.get("left", 100),
                           0, kw.get("event", 0), 0, peer, -1, 6881 + peer)
    rest = door.exchange(
        announce(6, 1), announce(7, 2, left=0), announce(8, 3),
        struct.pack(">8sII", connection_id, 2, 9) + info_hash(1) + info_hash(2),  # scrape
        announce(10, 4, cid=b"\x00" * 8),  # a forged connection id
        struct.pack(">8sII", connection_id, 7, 11),  # an unknown action
        announce(12, 5, event=9),  # an impossible event
        announce(13, 6)[:60],  # a short announce
        b"short",  # silence
        b"\x00" * 8 + struct.pack(">II", 0, 14),  # a connect without the magic: silence
    )
    return [connected] + rest


def door_replies(family, host, batch_size):
    door = Door(family, host, batch_size)
    try:
        replies = conversation(door)
        return door, replies
    finally:
        door.close()


@needs_binding
@pytest.mark.parametrize("where", FAMILIES)
def test_batched_and_plain_doors_give_the_same_replies(where, monkeypatch):
    family, host = where
    batched, with_batches = door_replies(family, host, batch_size=64)
    assert batched.protocol.batch is not None
    stats = batched.protocol.batch_stats
    assert (stats.receive_calls, stats.received, stats.send_calls, stats.sent) == (2, 11, 2, 9)

    # The plain path: what the door does where the binding cannot load.
    monkeypatch.setattr(mmsg, "_loaded", (None, "forced off by the test"))
    plain, without = door_replies(family, host, batch_size=64)
    assert plain.protocol.batch is None
    assert plain.protocol.batch_stats.receive_calls == 0

    assert with_batches == without
    actions = [struct.unpack_from(">II", r) for r in with_batches]
    assert actions == [(0, 5), (1, 6), (1, 7), (1, 8), (2, 9), (3, 10), (3, 11), (3, 12), (3, 13)]
    # Peers of the requester's family: 6 bytes over IPv4, 18 over IPv6 (peers 1 and 2 for 3).
    assert len(with_batches[3]) == 20 + 2 * (6 if family == socket.AF_INET else 18)
    assert struct.unpack(">IIIIII", with_batches[4][8:]) == (1, 0, 2, 0, 0, 0)
    assert batched.core.stats.failures == plain.core.stats.failures == {
        ("udp", "bad_connection_id"): 1, ("udp", "unknown_action"): 1,
        ("udp", "invalid_event"): 1, ("udp", "short_announce"): 1, ("udp", "short_packet"): 1,
        ("udp", "bad_magic"): 1}


@needs_binding
def test_a_bug_while_answering_a_batch_is_logged_and_the_rest_are_answered(monkeypatch):
    door = Door(socket.AF_INET, "127.0.0.1", batch_size=64)
    try:
        (connected,) = door.exchange(PROTOCOL_ID + struct.pack(">II", 0, 1))
        calls = []

        def broken(request, now):
            calls.append(request)
            raise RuntimeError("boom")
        monkeypatch.setattr(door.core, "announce", broken)
        announce = struct.pack(">8sII20s20sQQQIIIiH", connected[8:], 1, 2, info_hash(1),
                               peer_id(1), 0, 100, 0, 0, 0, 1, -1, 6881)
        replies = door.exchange(announce, PROTOCOL_ID + struct.pack(">II", 0, 3))
        assert len(calls) == 1
        assert [struct.unpack_from(">II", r) for r in replies] == [(0, 3)]
    finally:
        door.close()


@needs_binding
def test_a_full_batch_reads_again_and_every_datagram_is_answered():
    door = Door(socket.AF_INET, "127.0.0.1", batch_size=4)
    try:
        replies = door.exchange(*[PROTOCOL_ID + struct.pack(">II", 0, t) for t in range(10)])
        assert [struct.unpack_from(">II", r)[1] for r in replies] == list(range(10))
        stats = door.protocol.batch_stats
        assert (stats.receive_calls, stats.received) == (3, 10)
    finally:
        door.close()


@needs_binding
def test_one_datagram_in_sixteen_is_timed_across_batches():
    door = Door(socket.AF_INET, "127.0.0.1", batch_size=64)
    try:
        door.protocol.until_sample = 3
        door.exchange(*[PROTOCOL_ID + struct.pack(">II", 0, t) for t in range(10)])
        assert sum(door.protocol.latency.counts) == 1  # the third
        assert door.protocol.until_sample == 9
        door.exchange(*[PROTOCOL_ID + struct.pack(">II", 0, t) for t in range(41)])
        assert sum(door.protocol.latency.counts) == 1 + 3  # the 9th, 25th and 41st
        assert door.protocol.until_sample == 16
    finally:
        door.close()


def test_metrics_show_the_batch_counters():
    door = UDPTrackerProtocol(TrackerCore(), Clock())
    door.batch_stats.receive_calls, door.batch_stats.received = 3, 150
    families = {f.name: f.samples[0].value for f in udp_batch_metrics(door)}
    assert families["tracker_udp_batch_enabled"] == 0  # not listening: no batch
    assert families["tracker_udp_recvmmsg_calls"] == 3
    assert families["tracker_udp_recvmmsg_datagrams"] == 150
    assert list(udp_batch_metrics(None)) == []


# -- the benchmark's scenario -------------------------------------------------------------


def test_the_benchmark_compares_udp_without_batches_with_opentrackers_udp():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from bench import report

    def summary(cpu_us):
        return report.summarise([{"rps": 1000.0, "p50_us": 1, "p99_us": 1,
                                  "cpu_us_per_request": cpu_us, "errors": 0}])
    table = report.markdown_table({
        "pypy": {"udp-announce": summary(20.0), "udp-announce-nobatch": summary(40.0)},
        "opentracker": {"udp-announce": summary(20.0)}})
    per_cpu = {row.split("|")[2].strip(): row.split("|")[6].strip()
               for row in table.splitlines() if row.startswith("| pypy")}
    assert per_cpu == {"udp-announce": "1.00", "udp-announce-nobatch": "0.50"}
    assert "udp-announce-nobatch" in report.SCENARIOS
