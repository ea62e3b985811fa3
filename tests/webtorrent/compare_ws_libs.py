"""Which WebSocket library for the WebSocket door: wsproto (sans-IO) on a lean
Protocol, or Autobahn's Twisted WebSocketServerProtocol. Measures, in-process
with a StringTransport, the door's message path without the tracker: masked
text frames in (an announce with one WebRTC offer, as bittorrent-tracker's
client sends it), JSON decoded, a JSON reply encoded and framed out.

    .venv/bin/python tests/webtorrent/compare_ws_libs.py [MESSAGES]

Then the door itself (tracker/ws/door.py, on wsproto) on the same messages.
"""
import json
import sys
import time

from twisted.internet.testing import StringTransport
from wsproto import ConnectionType, WSConnection
from wsproto.frame_protocol import FrameProtocol
from wsproto.events import AcceptConnection, Message, Request, TextMessage

ANNOUNCE = json.dumps({
    "action": "announce", "info_hash": "\u00ab" * 20, "peer_id": "-WW0105-" + "x" * 12,
    "uploaded": 0, "downloaded": 0, "left": 1000, "event": "started", "numwant": 1,
    "offers": [{"offer": {"type": "offer", "sdp": "v=0\r\n" + "a=candidate:1 1 udp 1 x\r\n" * 20},
                "offer_id": "\u00cd" * 20}]})
REPLY = {"action": "announce", "interval": 120, "info_hash": "\u00ab" * 20, "complete": 1,
         "incomplete": 3}


def client_bytes(count):
    client = WSConnection(ConnectionType.CLIENT)
    handshake = client.send(Request(host="localhost", target="/"))
    frame = FrameProtocol(client=True, extensions=[]).send_data(ANNOUNCE, True)  # masked
    return handshake, frame * count


def run_wsproto(handshake, frames, chunk):
    transport = StringTransport()
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(handshake)
    for event in ws.events():
        if isinstance(event, Request):
            transport.write(ws.send(AcceptConnection()))
    count = 0
    parts = []
    start = time.perf_counter()
    for at in range(0, len(frames), chunk):
        ws.receive_data(frames[at:at + chunk])
        for event in ws.events():
            if isinstance(event, TextMessage):
                if not event.message_finished:
                    parts.append(event.data)
                    continue
                if parts:
                    parts.append(event.data)
                    data, parts = "".join(parts), []
                else:
                    data = event.data
                json.loads(data)
                transport.write(ws.send(Message(data=json.dumps(REPLY))))
                count += 1
        transport.clear()
    return count, time.perf_counter() - start


def run_autobahn(handshake, frames, chunk):
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    done = [0]

    class Door(WebSocketServerProtocol):
        def onMessage(self, payload, is_binary):
            json.loads(payload)
            self.sendMessage(json.dumps(REPLY).encode("utf-8"))
            done[0] += 1

    factory = WebSocketServerFactory("ws://localhost:1")
    factory.protocol = Door
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake)
    start = time.perf_counter()
    for at in range(0, len(frames), chunk):
        protocol.dataReceived(frames[at:at + chunk])
        transport.clear()
    elapsed = time.perf_counter() - start
    return done[0], elapsed


def run_door(messages):
    """The whole door (tracker/ws/door.py on wsproto) in-process: 200 browsers
    in one swarm, each announce with one offer, answered and forwarded to
    another browser. Returns announces (each with an offer relayed) per second."""
    import random

    from twisted.internet.task import Clock

    from tracker.core import TrackerCore
    from tracker.ws.door import WsTrackerFactory

    core = TrackerCore(rng=random.Random(1))
    door = WsTrackerFactory(core, Clock())
    peers = []
    for n in range(200):
        protocol = door.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        client = WSConnection(ConnectionType.CLIENT)
        protocol.dataReceived(client.send(Request(host="localhost", target="/")))
        message = json.loads(ANNOUNCE)
        message["peer_id"] = "-WW0105-%012d" % n
        frame = FrameProtocol(client=True, extensions=[]).send_data(json.dumps(message), True)
        peers.append((protocol, transport, frame))
    for protocol, transport, frame in peers:   # everyone in the swarm first
        protocol.dataReceived(frame)
    start = time.perf_counter()
    for i in range(messages):
        protocol, _, frame = peers[i % 200]
        protocol.dataReceived(frame)
        if i % 200 == 199:
            for _, transport, _ in peers:
                transport.clear()
    elapsed = time.perf_counter() - start
    assert door.stats.offers_relayed >= messages
    return messages / elapsed


def main():
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    handshake, frames = client_bytes(messages)
    chunk = 16384
    print("%s, %d messages of %d bytes" % (sys.implementation.name, messages, len(ANNOUNCE)))
    for name, run in (("wsproto", run_wsproto), ("autobahn", run_autobahn)):
        best = None
        for _ in range(3):
            count, elapsed = run(handshake, frames, chunk)
            assert count == messages, (name, count)
            best = elapsed if best is None else min(best, elapsed)
        print("%-9s %8.0f messages/s" % (name, messages / best))
    print("the door: %.0f announces/s, each with an offer relayed"
          % max(run_door(messages) for _ in range(3)))


if __name__ == "__main__":
    main()
