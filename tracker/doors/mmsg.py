"""recvmmsg/sendmmsg for the UDP door: many datagrams read, and many replies sent, per system call.

Neither call is in Python's standard library. This binding uses cffi in ABI
mode (`ffi.dlopen(None)`: the C library the interpreter already loaded), so
installing the tracker needs no compiler; cffi is PyPy's own FFI and a wheel
on CPython. Where cffi, Linux or the two symbols are missing, `load()` says
why and the door answers one datagram per `recvfrom`/`sendto` as before.

A `DatagramBatch` owns fixed buffers, reused for every call: `size` receive
slots of `max_datagram` bytes with room for each sender's address, and a
slot of an arena per reply. A reply is sent to the address its request
came from without turning that address into Python objects: the send header
points at the receive slot's address bytes.
"""
from __future__ import annotations

import errno
import socket
import sys
from typing import Dict, List, Optional, Tuple

CDEF = """
typedef unsigned int socklen_t;
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; socklen_t msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout);
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

# Room for a sender's address: sockaddr_in6 is 28 bytes; 32 keeps slots aligned.
NAME_SIZE = 32
# Where the address bytes start in sockaddr_in (after family and port) and in
# sockaddr_in6 (after family, port and flow info), and their lengths.
_ADDRESS_AT = {socket.AF_INET: (4, 4, 16), socket.AF_INET6: (8, 16, 28)}
BATCH_SIZE = 64
# Bytes kept of each datagram, as Twisted's UDP port (maxPacketSize); longer ones are cut.
MAX_DATAGRAM = 8192
# Room for the replies of one batch: 4 KiB a reply at 64 a batch (an announce
# reply of 200 IPv6 peers is 3,620 bytes; a longer one is sent from its own bytes).
ARENA_SIZE = 256 * 1024

_AGAIN = frozenset((errno.EAGAIN, errno.EWOULDBLOCK))


class Binding:
    """The loaded functions and their FFI (one per process)."""

    def __init__(self, ffi, lib) -> None:
        self.ffi = ffi
        self.recvmmsg = lib.recvmmsg
        self.sendmmsg = lib.sendmmsg


_loaded: Optional[Tuple[Optional[Binding], str]] = None


def _load() -> Tuple[Optional[Binding], str]:
    if not sys.platform.startswith("linux"):
        return None, "recvmmsg/sendmmsg are used on Linux only (this is %s)" % sys.platform
    try:
        import cffi
    except ImportError:
        return None, "cffi is not installed"
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    try:
        lib = ffi.dlopen(None)
        return Binding(ffi, lib), ""
    except (OSError, AttributeError) as error:  # no C library, or no such symbol
        return None, "recvmmsg/sendmmsg not found in the C library: %s" % error


def load() -> Tuple[Optional[Binding], str]:
    """(the binding, "") where it works, else (None, why not); loaded once."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


class BatchStats:
    """Counters of the batched path for /metrics (one object per door)."""

    __slots__ = ("receive_calls", "received", "send_calls", "sent", "dropped")

    def __init__(self) -> None:
        self.receive_calls = 0  # recvmmsg calls that returned datagrams
        self.received = 0  # datagrams they returned
        self.send_calls = 0  # sendmmsg calls
        self.sent = 0  # replies they sent
        self.dropped = 0  # replies not sent: a full socket buffer, a refused address


class DatagramBatch:
    """Reusable buffers and headers for one socket of `family` (AF_INET or AF_INET6).

    `receive` fills `datagrams` and `senders` (packed address bytes); `queue`
    copies a reply into its slot of the arena and `flush` sends the queue."""

    def __init__(self, binding: Binding, family: int, size: int = BATCH_SIZE,
                 max_datagram: int = MAX_DATAGRAM, arena_size: int = ARENA_SIZE,
                 stats: Optional[BatchStats] = None) -> None:
        ffi = self.ffi = binding.ffi
        self._recvmmsg = binding.recvmmsg
        self._sendmmsg = binding.sendmmsg
        # cffi's own functions, not FFI's Python-level wrappers of them (one
        # call less each); the wrappers where a cffi has no such backend.
        backend = getattr(ffi, "_backend", ffi)
        self._unpack = getattr(backend, "unpack", ffi.unpack)
        self._memmove = getattr(backend, "memmove", ffi.memmove)
        self.size = size
        self.family = family
        at, self.address_size, name_size = _ADDRESS_AT[family]
        self._name_size = name_size
        self._in = ffi.new("struct mmsghdr[]", size)
        in_iov = self._in_iov = ffi.new("struct iovec[]", size)
        self._data = ffi.new("char[]", size * max_datagram)
        self._names = ffi.new("char[]", size * NAME_SIZE)
        self._out = ffi.new("struct mmsghdr[]", size)
        out_iov = self._out_iov = ffi.new("struct iovec[]", size)
        # Each queued reply has a slot of the arena; a longer one is sent from
        # its own bytes (kept in _long until sent).
        self.reply_slot = arena_size // size
        self._arena = ffi.new("char[]", arena_size)
        self._long: Dict[int, object] = {}
        # Made once, per slot: where its datagram, its sender's name and the
        # sender's address bytes are, and where its reply goes.
        self._slots = [self._data + i * max_datagram for i in range(size)]
        self._names_list = [self._names + i * NAME_SIZE for i in range(size)]
        self._sources = [name + at for name in self._names_list]
        self._reply_at = [self._arena + n * self.reply_slot for n in range(size)]
        # The headers' length fields as arrays of integers: reading or writing
        # one is a single indexing, not a struct access and a field access.
        words = ffi.sizeof("struct mmsghdr") // ffi.sizeof("unsigned int")
        length_at = ffi.offsetof("struct mmsghdr", "msg_len") // ffi.sizeof("unsigned int")
        self._lengths = ffi.cast("unsigned int *", self._in)
        self._length_index = [i * words + length_at for i in range(size)]
        self._reply_lengths = ffi.cast("size_t *", out_iov)  # iov_len is word 1 of 2
        # Which datagram's sender each queued reply goes to (its name is set only when it changes).
        self._reply_to = list(range(size))
        for i in range(size):
            in_iov[i].iov_base = self._slots[i]
            in_iov[i].iov_len = max_datagram
            header = self._in[i].msg_hdr
            header.msg_iov = in_iov + i
            header.msg_iovlen = 1
            header.msg_name = self._names_list[i]
            header.msg_namelen = name_size
            out_iov[i].iov_base = self._reply_at[i]
            out = self._out[i].msg_hdr
            out.msg_iov = out_iov + i
            out.msg_iovlen = 1
            out.msg_name = self._names_list[i]
            out.msg_namelen = name_size
        self.datagrams: List[bytes] = []
        self.senders: List[bytes] = []
        self.queued = 0
        self.stats = stats if stats is not None else BatchStats()

    def receive(self, fd: int) -> int:
        """Read up to `size` datagrams without waiting: how many came (0: none
        waiting), their bytes in `datagrams` and their senders' packed
        addresses (4 or 16 bytes) in `senders`. Raises OSError for an error
        other than "nothing to read"."""
        # The kernel writes each sender's address length back into the
        # header; on one socket it is always the same, so none is reset.
        count = self._recvmmsg(fd, self._in, self.size, 0, self.ffi.NULL)
        if count <= 0:
            code = self.ffi.errno
            if not count or code in _AGAIN or code == errno.EINTR:
                return 0
            raise OSError(code, "recvmmsg: " + errno.errorcode.get(code, str(code)))
        stats = self.stats
        stats.receive_calls += 1
        stats.received += count
        unpack, slots, lengths, at = self._unpack, self._slots, self._lengths, self._length_index
        self.datagrams = [unpack(slots[i], lengths[at[i]]) for i in range(count)]
        sources, size = self._sources, self.address_size
        self.senders = [unpack(sources[i], size) for i in range(count)]
        return count

    def source_tuple(self, i: int) -> Tuple:
        """The `i`th sender as Python's socket module gives it: (host, port[, flow, scope])."""
        name = self._unpack(self._names_list[i], self._name_size)
        port = int.from_bytes(name[2:4], "big")
        if self.family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, name[4:8]), port
        return (socket.inet_ntop(socket.AF_INET6, name[8:24]), port,
                int.from_bytes(name[4:8], "big"), int.from_bytes(name[24:28], sys.byteorder))

    def queue(self, i: int, reply: bytes, fd: int) -> None:
        """Queue `reply` to the sender of the `i`th datagram of the last
        `receive` (sent by `flush`, or at once when the queue is full)."""
        n = self.queued
        if n == self.size:
            self.flush(fd)
            n = 0
        size = len(reply)
        if size <= self.reply_slot:
            self._memmove(self._reply_at[n], reply, size)
        else:
            self._long[n] = kept = self.ffi.from_buffer(reply)
            self._out_iov[n].iov_base = kept
        self._reply_lengths[2 * n + 1] = size
        if self._reply_to[n] != i:
            self._reply_to[n] = i
            self._out[n].msg_hdr.msg_name = self._names_list[i]
        self.queued = n + 1

    def flush(self, fd: int) -> int:
        """Send every queued reply, in order, without waiting: how many went.

        A reply the kernel refuses (an unreachable address) is skipped; when
        the socket's buffer is full the rest are dropped, as the network may
        drop any datagram. Both count in `dropped`."""
        queued, start, went, stats = self.queued, 0, 0, self.stats
        self.queued = 0
        while start < queued:
            count = self._sendmmsg(fd, self._out + start, queued - start, 0)
            stats.send_calls += 1
            if count < 0:
                code = self.ffi.errno
                if code == errno.EINTR:
                    continue
                if code in _AGAIN or code == errno.ENOBUFS:
                    stats.dropped += queued - start
                    break
                stats.dropped += 1  # this reply's address is refused: skip it
                start += 1
                continue
            went += count
            start += count
        stats.sent += went
        if self._long:  # long replies sent: their slots point at the arena again
            for n in self._long:
                self._out_iov[n].iov_base = self._reply_at[n]
            self._long.clear()
        return went
