"""Test clients of the HTTP and UDP doors, shared by the test modules: an
HTTP connection over StringTransport and a BEP 15 client over
FakeDatagramTransport."""
from __future__ import annotations

import struct
from urllib.parse import quote_from_bytes

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from helpers import bdecode, info_hash, peer_id
from tracker.doors.udp import PROTOCOL_ID


class Client:
    """One connection to the door: send bytes, read parsed responses."""

    def __init__(self, factory, host="10.1.2.3", ipv6=False):
        address = (IPv6Address("TCP", host, 50000) if ipv6 else IPv4Address("TCP", host, 50000))
        self.transport = StringTransport(peerAddress=address)
        self.protocol = factory.buildProtocol(address)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes):
        self.protocol.dataReceived(data)

    def responses(self):
        """Parse and consume everything written so far."""
        data = self.transport.value()
        self.transport.clear()
        out = []
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            version, status, _ = lines[0].split(b" ", 2)
            assert version == b"HTTP/1.1"
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers[b"content-length"])
            body, data = rest[:length], rest[length:]
            out.append((int(status), headers, body))
        return out

    def get(self, target: bytes, version=b"HTTP/1.1", headers=b""):
        self.send(b"GET " + target + b" " + version + b"\r\nHost: t\r\n" + headers + b"\r\n")
        (response,) = self.responses()
        return response

    def announce(self, **params):
        return bdecode(self.get(announce_target(**params))[2])

    @property
    def closed(self):
        return self.transport.disconnecting


def q(value) -> bytes:
    if isinstance(value, int):
        value = str(value).encode()
    elif isinstance(value, str):
        value = value.encode()
    return quote_from_bytes(value).encode()


def announce_target(**params) -> bytes:
    defaults = {"info_hash": info_hash(1), "peer_id": peer_id(1), "port": 6881,
                "uploaded": 0, "downloaded": 0, "left": 100}
    defaults.update(params)
    return b"/announce?" + b"&".join(
        k.encode() + b"=" + q(v) for k, v in defaults.items() if v is not None)


CLIENT = ("10.0.0.1", 40000)


class UDPClient:
    """Speaks BEP 15 to the door through a FakeDatagramTransport."""

    def __init__(self, door, transport, addr=CLIENT):
        self.door = door
        self.transport = transport
        self.addr = addr
        self.tid = 1000

    def send(self, packet: bytes):
        """Send one datagram; return the reply bytes, or None for silence."""
        before = len(self.transport.written)
        self.door.datagramReceived(packet, self.addr)
        replies = self.transport.written[before:]
        assert len(replies) <= 1
        if not replies:
            return None
        data, to = replies[0]
        assert to == self.addr
        return data

    def connect(self) -> bytes:
        self.tid += 1
        reply = self.send(PROTOCOL_ID + struct.pack(">II", 0, self.tid))
        action, tid, connection_id = struct.unpack(">II8s", reply)
        assert (action, tid) == (0, self.tid)
        return connection_id

    def announce_packet(self, connection_id, swarm=1, peer=1, left=100, event=0, port=6881,
                        numwant=-1, ip=0, uploaded=0, downloaded=0, options=b"", key=0):
        self.tid += 1
        return struct.pack(">8sII20s20sQQQIIIiH", connection_id, 1, self.tid, info_hash(swarm),
                           peer_id(peer), downloaded, left, uploaded, event, ip, key, numwant,
                           port) + options

    def announce(self, **kwargs):
        connection_id = kwargs.pop("connection_id", None) or self.connect()
        reply = self.send(self.announce_packet(connection_id, **kwargs))
        action, tid = struct.unpack_from(">II", reply)
        if action == 3:
            return {"error": reply[8:].decode()}
        assert (action, tid) == (1, self.tid)
        interval, leechers, seeders = struct.unpack_from(">III", reply, 8)
        return {"interval": interval, "leechers": leechers, "seeders": seeders, "peers": reply[20:]}

    def scrape(self, hashes, connection_id=None):
        connection_id = connection_id or self.connect()
        self.tid += 1
        reply = self.send(struct.pack(">8sII", connection_id, 2, self.tid) + b"".join(hashes))
        action, tid = struct.unpack_from(">II", reply)
        if action == 3:
            return {"error": reply[8:].decode()}
        assert tid == self.tid
        return [struct.unpack_from(">III", reply, 8 + 12 * i) for i in range(len(hashes))]


class Node:
    """A line connection: send lines, read reply lines and event lines."""

    def __init__(self, factory, host="10.0.0.1"):
        address = IPv4Address("TCP", host, 40000)
        self.transport = StringTransport(peerAddress=address)
        self.protocol = factory.buildProtocol(address)
        self.protocol.makeConnection(self.transport)
        self.clock = factory.clock
        self.events = []

    def send(self, line: str):
        """Send one line; return the reply lines (events are kept aside)."""
        self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")
        return self.read()

    def read(self):
        self.clock.advance(0)  # events raised so far go out at the end of the turn
        lines = self.transport.value().decode("utf-8").splitlines()
        self.transport.clear()
        self.events += [line for line in lines if line.startswith("*")]
        return [line for line in lines if not line.startswith("*")]

    def hello(self, node="edge-1", **options):
        words = ["HELLO", "node=" + node] + ["%s=%s" % kv for kv in options.items()]
        return self.send(" ".join(words))

    @property
    def closed(self):
        return self.transport.disconnecting

    def drop_connection(self):
        self.protocol.connectionLost(None)


# -- the line client library against the door, in memory -------------------------------

ADDRESS = IPv4Address("TCP", "10.0.0.1", 40000)


class Link:
    """A client protocol and a server protocol joined by two StringTransports."""

    def __init__(self, client, server_factory):
        self.clock = server_factory.clock
        self.client = client
        self.server = server_factory.buildProtocol(ADDRESS)
        self.client_transport = StringTransport()
        self.server_transport = StringTransport(peerAddress=ADDRESS)
        self.server.makeConnection(self.server_transport)
        self.client.makeConnection(self.client_transport)

    def pump(self):
        for _ in range(10):
            self.clock.advance(0)  # let the server send the events of this turn
            sent, self_sent = self.client_transport.value(), self.server_transport.value()
            if not sent and not self_sent:
                return
            self.client_transport.clear()
            self.server_transport.clear()
            if sent:
                self.server.dataReceived(sent)
            if self_sent:
                self.client.dataReceived(self_sent)

    def cut(self):
        self.server.connectionLost(Failure(Exception("cut")))
        self.client.connectionLost(Failure(Exception("cut")))


class FakeConnector:
    def __init__(self):
        self.attempts = 0

    def connect(self):
        self.attempts += 1

    def stopConnecting(self):
        pass
