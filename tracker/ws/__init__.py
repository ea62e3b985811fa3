"""The WebSocket door for browser peers (WebTorrent): the protocol's messages
(protocol.py) and the door that relays WebRTC offers and answers (door.py)."""
