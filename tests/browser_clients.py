"""A browser's WebSocket to the tracker's WebSocket door, in memory: a wsproto
client over a StringTransport, for the door's tests and the metrics tests."""
import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

from tracker.ws.door import WsTrackerFactory

HASH = bytes(range(200, 220))


def pid(n: int) -> bytes:
    return b"-WW0105-%012d" % n


def binary(data: bytes) -> str:
    return data.decode("latin-1")


class Browser:
    """A browser's socket to the door: a wsproto client over a StringTransport."""

    def __init__(self, factory: WsTrackerFactory, ip: str = "192.0.2.10",
                 headers=()) -> None:
        address = IPv4Address("TCP", ip, 50000)
        self.protocol = factory.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.protocol.dataReceived(self.ws.send(Request(host="tracker", target="/announce",
                                                        extra_headers=list(headers))))
        self.events = self._read()
        self.accepted = any(isinstance(e, AcceptConnection) for e in self.events)

    def _read(self):
        self.ws.receive_data(self.transport.value())
        self.transport.clear()
        return list(self.ws.events())

    def send(self, **message) -> None:
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.protocol.dataReceived(self.ws.send(Message(data=text)))

    def announce(self, peer_id: bytes, info_hash: bytes = HASH, **fields) -> None:
        self.send(action="announce", info_hash=binary(info_hash), peer_id=binary(peer_id),
                  **fields)

    def received(self):
        """JSON messages received since the last call."""
        self.events = self._read()
        return [json.loads(e.data) for e in self.events if isinstance(e, TextMessage)]

    def close_code(self):
        codes = [e.code for e in self.events if isinstance(e, CloseConnection)]
        return codes[0] if codes else None

    def drop(self) -> None:
        self.transport.loseConnection()
        self.protocol.connectionLost(None)
