"""Send a reply on a TCP connection at once, skipping Twisted's write buffer.

`ITransport.write` only buffers: it asks the reactor to watch the socket for
writability (one epoll_ctl), sends on the next reactor turn, then stops
watching (another epoll_ctl). A tracker reply is small and the socket's send
buffer is almost always empty, so sending it straight away saves two system
calls and a reactor turn per request. Anything the kernel does not take at
once, and every write while older data is still queued, goes through the
ordinary buffered path, so ordering and flow control are unchanged.
"""
from __future__ import annotations

from twisted.internet import tcp


def supports_send_now(transport) -> bool:
    """True for the reactor's own TCP connections, whose buffer state we can see."""
    return (isinstance(transport, tcp.Connection)
            and hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"))


def send_now(transport: tcp.Connection, data: bytes) -> None:
    if transport.dataBuffer or transport._tempDataLen or transport.disconnecting:
        transport.write(data)
        return
    sent = transport.writeSomeData(data)
    if not isinstance(sent, int):
        return  # the connection is lost; the reactor reports it on its next read
    if sent < len(data):
        transport.write(data[sent:])
