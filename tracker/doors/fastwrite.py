"""Send a reply on a TCP connection at once, skipping Twisted's write buffer,
and end a connection in the same reactor turn as its last reply.

`ITransport.write` only buffers: it asks the reactor to watch the socket for
writability (one epoll_ctl), sends on the next reactor turn, then stops
watching (another epoll_ctl). A tracker reply is small and the socket's send
buffer is almost always empty, so sending it straight away saves two system
calls and a reactor turn per request. Anything the kernel does not take at
once, and every write while older data is still queued, goes through the
ordinary buffered path, so ordering and flow control are unchanged.

The same holds for closing: `loseConnection` stops reading, watches for
writability, and closes on the next turn once the buffer is empty. When the
last reply has already gone out in full, `send_and_close` instead has the read
that carried the request end the connection as it returns, exactly as
Twisted ends one whose final write has drained (`ConnectionDone`, an orderly
shutdown), which saves a reactor turn and two epoll_ctl calls per
connection-per-request client.
"""
from __future__ import annotations

import platform

from twisted.internet import main, tcp

# Whether the HTTP door ends connections within the read by default. Measured
# per server CPU-second on a connection-per-request load (wrk, same-run A/B,
# 3 runs): PyPy 9 % less CPU a request (33.4 -> 30.3 us), CPython 25 % MORE
# (53 -> 66 us) although it makes two fewer system calls a connection (strace);
# the cause under CPython was not found (not the class change below: setting
# doRead on the instance instead costs the same), so only PyPy uses it.
CLOSE_IN_READ_BY_DEFAULT = platform.python_implementation() == "PyPy"


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


class _ServerClosingInRead(tcp.Server):
    """A `tcp.Server` whose protocol may ask, from `dataReceived`, that the
    connection end when the read returns."""

    close_after_read = False

    def doRead(self):
        why = tcp.Server.doRead(self)
        if why is None and self.close_after_read:
            # What `doWrite` returns once a closing connection's buffer has
            # drained: the reactor unregisters the socket, shuts it down and
            # closes it, and the protocol's connectionLost sees ConnectionDone.
            return main.CONNECTION_DONE
        return why


def can_close_in_read(transport) -> bool:
    """Let `send_and_close` end this connection within the read, if it is a
    plain reactor TCP connection (TLS and other transports close as usual).

    The reactor builds every accepted connection as a `tcp.Server`; its class
    is changed to the subclass above, which adds one method and no state,
    rather than replacing the listening port's machinery."""
    if type(transport) is not tcp.Server:
        return False
    transport.__class__ = _ServerClosingInRead
    return True


def send_and_close(transport: tcp.Connection, data: bytes) -> bool:
    """From `dataReceived` of a connection `can_close_in_read` accepted: send
    `data` now and end the connection as the read returns. False (and nothing
    done) when older data is still queued; the caller then writes and calls
    `loseConnection` as usual."""
    if transport.dataBuffer or transport._tempDataLen or transport.disconnecting:
        return False
    sent = transport.writeSomeData(data)
    if isinstance(sent, int) and sent < len(data):
        transport.write(data[sent:])
        transport.loseConnection()
    else:  # all sent, or the connection is already lost: end it now either way
        transport.close_after_read = True
    return True
