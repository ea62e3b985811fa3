"""The UDP door: BEP 15 (connect, announce, scrape, error) with BEP 41 options.

What each kind of bad datagram gets (no reply is ever larger than the request
unless the sender proved its address with a valid connection id):

| datagram                                         | answer                              |
|--------------------------------------------------|-------------------------------------|
| shorter than 16 bytes                            | silence (no transaction id to echo) |
| connect (action 0) without the protocol magic    | silence (not a BEP 15 client)       |
| announce/scrape with a bad or expired id         | error "connection id ...", cut to the request's size |
| unknown action                                   | error "unknown action", cut to the request's size    |
| announce shorter than 98 bytes                   | error (the sender holds a valid id) |
| scrape with no hash, a partial hash or > 74      | error (the sender holds a valid id) |
| announce the core refuses (port 0, a peer id     | error with the core's reason        |
| announced from another address without its key) |                                     |
| a bug while answering                            | silence, logged once with the cause |
"""
from __future__ import annotations

import errno
import socket
import struct
from time import perf_counter
from typing import Optional, Tuple

import attr
from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from tracker.addresses import normalise_ip, pack_ip
from tracker.cache import BoundedCache
from tracker.core import DOOR_UDP, AnnounceRequest, TrackerCore, TrackerError
from tracker.doors import mmsg
from tracker.doors.connection_ids import ConnectionIds
from tracker.histogram import REQUEST_BUCKETS_S, REQUEST_SAMPLE_EVERY, Histogram
from tracker.limits import RATE_LIMITED, RATE_LIMITED_MESSAGE, AnnounceRateLimiter

log = Logger()

PROTOCOL_ID = (0x41727101980).to_bytes(8, "big")
ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3
# BEP 15: "up to about 74 torrents can be scraped at once", so that a request
# (16 + 20 x 74 = 1,496 bytes) fits one Ethernet frame. A limit of the packet,
# not a setting: HTTP's is --max-scrape-hashes.
MAX_SCRAPE_HASHES = 74
ANNOUNCE_SIZE = 98

_HEAD = struct.Struct(">8sII")  # connection id (or magic), action, transaction id
_ANNOUNCE = struct.Struct(">8sII20s20sQQQIIIiH")
_CONNECT_REPLY = struct.Struct(">II8s")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_ACTION_TID = struct.Struct(">II")
_SCRAPE_ENTRY = struct.Struct(">III")

# BEP 41 option types.
OPTION_END = 0x0
OPTION_NOP = 0x1
OPTION_URL_DATA = 0x2


def parse_options(data: bytes) -> bytes:
    """BEP 41: the URL data of an announce's options, concatenated.

    Unknown option types carry a length byte and are skipped; a truncated
    option ends parsing (what came before it is kept)."""
    url_data = []
    i = 0
    n = len(data)
    while i < n:
        kind = data[i]
        if kind == OPTION_END:
            break
        if kind == OPTION_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = data[i + 1]
        end = i + 2 + length
        if end > n:
            break
        if kind == OPTION_URL_DATA:
            url_data.append(data[i + 2:end])
        i = end
    return b"".join(url_data)


@attr.s(slots=True, frozen=True)
class UDPDoorSettings:
    allow_ip_field = attr.ib(default=False)
    connection_id_max_age_s = attr.ib(default=300.0)
    # Datagrams read per recvmmsg (their replies go out with one sendmmsg);
    # 0: one recvfrom and one sendto per datagram (--udp-batch off).
    batch_size = attr.ib(default=0)


# recvmmsg calls per readable event before the reactor serves other sockets
# (Twisted's own port reads up to 256 KiB per event).
BATCHES_PER_READ = 4


def batch_size_for(mode: str) -> Tuple[int, str]:
    """--udp-batch `mode` (auto, on, off) to (datagrams per batch, why
    batching is off): auto is on where the binding loads."""
    if mode == "off":
        return 0, "off (--udp-batch off)"
    binding, why = mmsg.load()
    if binding is None:
        return 0, "off (%s)" % why
    return mmsg.BATCH_SIZE, ""


def error_packet(transaction_id: int, message: str, limit: Optional[int] = None) -> bytes:
    packet = _ACTION_TID.pack(ACTION_ERROR, transaction_id) + message.encode("utf-8")
    return packet if limit is None else packet[:limit]


class UDPTrackerProtocol(DatagramProtocol):
    """One UDP socket (IPv4, IPv6 or dual-stack) onto the core."""

    def __init__(self, core: TrackerCore, clock, settings: Optional[UDPDoorSettings] = None,
                 connection_ids: Optional[ConnectionIds] = None) -> None:
        self.core = core
        self.clock = clock
        self.settings = settings or UDPDoorSettings()
        self.connection_ids = connection_ids or ConnectionIds(
            clock, max_age_s=self.settings.connection_id_max_age_s)
        self._sendto = None
        # Source host text -> (normalised ip, packed address), for recent hosts.
        self._hosts = BoundedCache()
        # The same from a sender's packed address bytes, when reading in batches.
        self._sources = BoundedCache()
        # recvmmsg/sendmmsg buffers and their socket, when reading in batches.
        self.batch: Optional[mmsg.DatagramBatch] = None
        self._fd = -1
        # Counters of the batched path, shared by every UDP socket of the door.
        self.batch_stats = mmsg.BatchStats()
        # Why this socket reads one datagram per system call, for the start-up log.
        self.batch_off = "off"
        # Announces and scrapes per second per proven address (None: no limit).
        self.rate_limiter: Optional[AnnounceRateLimiter] = None
        # Request latencies for /metrics, one datagram in REQUEST_SAMPLE_EVERY
        # (the service gives every UDP socket the same histogram).
        self.latency = Histogram(REQUEST_BUCKETS_S)
        self.until_sample = REQUEST_SAMPLE_EVERY

    def startProtocol(self) -> None:
        # Twisted's Port.write checks the address three times per datagram;
        # the socket's own sendto does not (the address came from recvfrom).
        port = self.transport
        if isinstance(port, udp.Port) and getattr(port, "socket", None):
            self._sendto = port.socket.sendto
            binding = mmsg.load()[0] if self.settings.batch_size else None
            if binding is not None:
                self.batch = mmsg.DatagramBatch(
                    binding, port.addressFamily, self.settings.batch_size,
                    max_datagram=port.maxPacketSize, stats=self.batch_stats)
                self._fd = port.socket.fileno()
                # The reactor calls the port's doRead when the socket is
                # readable: this one reads and answers whole batches.
                port.doRead = self.read_batches

    @property
    def io_note(self) -> str:
        """How this socket reads and answers, for the start-up log line."""
        if self.batch is not None:
            return "recvmmsg/sendmmsg, up to %d datagrams a call" % self.batch.size
        return "recvfrom/sendto, batching %s" % self.batch_off

    def read_batches(self) -> None:
        """Read waiting datagrams a batch per recvmmsg, answering each batch
        with one sendmmsg, until the socket is drained or BATCHES_PER_READ."""
        batch, fd = self.batch, self._fd
        for _ in range(BATCHES_PER_READ):
            try:
                count = batch.receive(fd)
            except OSError as error:
                if error.errno == errno.ECONNREFUSED:  # as Twisted's port: ignored
                    return
                raise
            if not count:
                return
            self.answer_batch(batch, count, fd)
            if count < batch.size:
                return

    def answer_batch(self, batch: mmsg.DatagramBatch, count: int, fd: int) -> None:
        """Answer the `count` datagrams of the last `batch.receive`, in order."""
        # One datagram in REQUEST_SAMPLE_EVERY is timed, from the batch's
        # start to its sendmmsg (its time behind the others counts).
        left = self.until_sample
        samples = 0
        if count >= left:
            samples = 1 + (count - left) // REQUEST_SAMPLE_EVERY
            self.until_sample = REQUEST_SAMPLE_EVERY - (count - left) % REQUEST_SAMPLE_EVERY
            started = perf_counter()
        else:
            self.until_sample = left - count
        datagrams, senders, known_sources = batch.datagrams, batch.senders, self._sources
        answer, queue = self.answer_from, batch.queue
        for i in range(count):
            known = known_sources.get(senders[i])
            try:
                if known is None:
                    known = self._learn_source(senders[i], batch.family)
                reply = answer(datagrams[i], known)
            except Exception:
                log.failure("unexpected error answering a UDP datagram from {host}",
                            host=batch.source_tuple(i)[0])
                continue
            if reply is not None:
                queue(i, reply, fd)
        if batch.queued:
            batch.flush(fd)
        if samples:
            self.latency.observe_many(perf_counter() - started, samples)

    def _learn_source(self, raw: bytes, family: int) -> Tuple[str, bytes]:
        ip = normalise_ip(socket.inet_ntop(family, raw))
        return self._sources.put(raw, (ip, pack_ip(ip)))

    def datagramReceived(self, data: bytes, addr: Tuple) -> None:
        self.until_sample -= 1
        started = 0.0
        if not self.until_sample:  # this one is timed: from here to the reply sent
            self.until_sample = REQUEST_SAMPLE_EVERY
            started = perf_counter()
        try:
            reply = self.answer(data, addr[0])
        except Exception:
            log.failure("unexpected error answering a UDP datagram from {host}", host=addr[0])
            return
        if reply is None:
            return
        if self._sendto is not None:
            try:
                self._sendto(reply, addr)
            except OSError:
                pass  # a full buffer or an unreachable client: UDP may drop it
        else:
            self.transport.write(reply, addr)
        if started:
            self.latency.observe(perf_counter() - started)

    def answer(self, data: bytes, host: str) -> Optional[bytes]:
        """The reply to one datagram from `host`, or None for silence."""
        known = self._hosts.get(host)
        if known is None:
            ip = normalise_ip(host)
            known = self._hosts.put(host, (ip, pack_ip(ip)))
        return self.answer_from(data, known)

    def answer_from(self, data: bytes, known: Tuple[str, bytes]) -> Optional[bytes]:
        """The reply to one datagram from `known`: (normalised ip, packed address)."""
        size = len(data)
        if size < 16:
            self.core.stats.count_failure("short_packet", DOOR_UDP)
            return None
        if size >= ANNOUNCE_SIZE:
            # Most datagrams this long are announces: one unpack reads the
            # header and the announce's fields together.
            fields = _ANNOUNCE.unpack_from(data)
            connection_id, action, transaction_id = fields[0], fields[1], fields[2]
        else:
            fields = None
            connection_id, action, transaction_id = _HEAD.unpack_from(data)
        ip, address = known
        if action == ACTION_CONNECT:
            if connection_id != PROTOCOL_ID:
                self.core.stats.count_failure("bad_magic", DOOR_UDP)
                return None
            return _CONNECT_REPLY.pack(ACTION_CONNECT, transaction_id,
                                       self.connection_ids.issue(address))
        if action != ACTION_ANNOUNCE and action != ACTION_SCRAPE:
            self.core.stats.count_failure("unknown_action", DOOR_UDP)
            return error_packet(transaction_id, "unknown action", limit=size)
        if not self.connection_ids.check(connection_id, address):
            self.core.stats.count_failure("bad_connection_id", DOOR_UDP)
            return error_packet(transaction_id, "connection id expired or invalid: connect again",
                                limit=size)
        try:
            limiter = self.rate_limiter
            if limiter is not None and not limiter.allow(ip, self.clock.seconds()):
                raise TrackerError(RATE_LIMITED, RATE_LIMITED_MESSAGE)
            if action == ACTION_ANNOUNCE:
                if fields is None:
                    raise TrackerError("short_announce", "announce packet too short: 98 bytes needed")
                return self._announce(data, fields, ip, address)
            return self._scrape(data, transaction_id)
        except TrackerError as error:
            self.core.stats.count_failure(error.code, DOOR_UDP)
            return error_packet(transaction_id, error.message)

    def _announce(self, data: bytes, fields: Tuple, ip: str, address: bytes) -> bytes:
        (_, _, transaction_id, info_hash, peer_id, downloaded, left, uploaded, event, ip_field, key,
         numwant, port) = fields
        if event > 3:
            raise TrackerError("invalid_event", "unknown event: use 0 to 3")
        v4 = len(address) == 4
        source_ip = ""
        if ip_field and v4 and self.settings.allow_ip_field:
            source_ip, ip = ip, socket.inet_ntoa(ip_field.to_bytes(4, "big"))
        # All fields by position (the announce path is hot): ..., door, BEP 41
        # URL data, the family of the peers wanted (6 bytes each over IPv4, 18
        # over IPv6), compact, the key that proves the entry is the client's
        # if its address changes (0: none), the source of a declared ip.
        request = AnnounceRequest(
            info_hash, peer_id, ip, port, uploaded, downloaded, left, event,
            None if numwant < 0 else numwant, DOOR_UDP,
            parse_options(data[ANNOUNCE_SIZE:]) if len(data) > ANNOUNCE_SIZE else b"",
            4 if v4 else 6, True, key, source_ip)
        result = self.core.announce(request, self.clock.seconds())
        return _ANNOUNCE_REPLY.pack(ACTION_ANNOUNCE, transaction_id, result.interval_s,
                                    result.incomplete, result.complete) + (
            result.peers if v4 else result.peers6)

    def _scrape(self, data: bytes, transaction_id: int) -> bytes:
        body = memoryview(data)[16:]
        if not body or len(body) % 20:
            raise TrackerError("bad_scrape", "scrape needs whole 20-byte info hashes")
        if len(body) > 20 * MAX_SCRAPE_HASHES:
            raise TrackerError("too_many_hashes", "at most %d info hashes per scrape"
                               % MAX_SCRAPE_HASHES)
        hashes = [bytes(body[i:i + 20]) for i in range(0, len(body), 20)]
        files = self.core.scrape(hashes, DOOR_UDP)
        return _ACTION_TID.pack(ACTION_SCRAPE, transaction_id) + b"".join(
            _SCRAPE_ENTRY.pack(e.complete, e.downloaded, e.incomplete)
            for e in (files[h] for h in hashes))


def parse_udp_address(spec: str) -> Tuple[str, int]:
    """`[HOST:]PORT` (an IPv6 host in brackets) to (interface, port).

    A bare port listens on `::`, which takes IPv4 and IPv6 on a dual-stack host."""
    spec = spec.strip()
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError("expected [IPV6]:PORT")
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    elif ":" in spec:
        raise ValueError("put an IPv6 address in brackets: [::1]:6969")
    else:
        host, port = "::", spec
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("port must be 1 to 65535")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError("%r is not an IP address" % host)
    return host, int(port)
