"""The push fan-out client: N subscribed line connections held by one epoll loop.

`measure_fanout` (tools/bench/measures.py) runs this module as its own process,
pinned to the load core, against a running tracker:

    python -m bench.fanout --line-port P --http-port Q --pid PID --subscribers 10000

It raises its own open-file limit, opens the connections with a bounded number
of handshakes in flight (HELLO, then SUBSCRIBE to the population's first
swarm), reads the tracker's resident memory before and after, then announces a
new peer over HTTP several times and times each announce until the last
subscriber has read its `* JOIN` line. It prints one `BENCH-JSON {...}` line.

The client must not be what is measured: one `select.epoll` over raw
non-blocking sockets, a socket looked up by its descriptor in a list, one
`recv` per readable socket and a substring test for the expected line. Each
push reports the client's own CPU time beside the wall time. Every wait has a
deadline, so the client always stops by itself.
"""
from __future__ import annotations

import argparse
import errno
import json
import resource
import select
import socket
import statistics
import sys
import time
from typing import Dict, List, Optional

from process import process_cpu_s, process_rss_bytes
from tracker.line.protocol import format_command, format_ok

from .population import announce_path, peer_left, peer_port, torrent_hash

HANDSHAKE_WINDOW = 48    # connections between connect() and their SUBSCRIBE reply
SETUP_TIMEOUT_S = 300.0  # to open and subscribe every connection
PUSH_TIMEOUT_S = 30.0    # for one event to reach every subscriber
PAUSE_S = 0.3            # between pushes: the tracker idle again
SPARE_FILES = 64         # descriptors beyond the subscribers (HTTP socket, epoll, stdio)


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; RuntimeError
    if even that cannot hold `needed` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError("%d connections need %d open files; the hard limit is %d "
                           "(raise it: ulimit -Hn, or LimitNOFILE= under systemd)"
                           % (needed - SPARE_FILES, needed, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class Subscribers:
    """`count` line connections, each registered (HELLO) and subscribed to one swarm."""

    def __init__(self, line_port: int, info_hash_hex: str, count: int) -> None:
        self.port = line_port
        self.info_hash_hex = info_hash_hex
        self.count = count
        self.epoll = select.epoll()
        self.socks: List[Optional[socket.socket]] = []  # by file descriptor
        self.open = 0

    def _add(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd >= len(self.socks):
            self.socks.extend([None] * (fd + 1 - len(self.socks)))
        self.socks[fd] = sock
        self.open += 1

    def subscribe_all(self, timeout_s: float = SETUP_TIMEOUT_S) -> None:
        """Open every connection; return once each has read `OK SUBSCRIBE`."""
        ok = format_ok("SUBSCRIBE", self.info_hash_hex).encode()
        pending: Dict[int, Optional[bytes]] = {}  # fd -> what it has read (None: not sent yet)
        started = 0
        deadline = time.monotonic() + timeout_s
        while started < self.count or pending:
            while started < self.count and len(pending) < HANDSHAKE_WINDOW:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex(("127.0.0.1", self.port))
                if code not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise RuntimeError("connect: %s" % errno.errorcode.get(code, code))
                self._add(sock)
                pending[sock.fileno()] = None
                self.epoll.register(sock.fileno(), select.EPOLLOUT)
                started += 1
            if time.monotonic() > deadline:
                raise RuntimeError("only %d of %d connections subscribed within %.0f s"
                                   % (started - len(pending), self.count, timeout_s))
            for fd, _ in self.epoll.poll(1.0):
                self._handshake(fd, pending, ok)

    def _handshake(self, fd: int, pending: Dict[int, Optional[bytes]], ok: bytes) -> None:
        sock = self.socks[fd]
        data = pending[fd]
        if data is None:  # writable: connected, or failed to
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise RuntimeError("connect: %s" % errno.errorcode.get(err, err))
            sock.send(("%s\n%s\n" % (format_command("HELLO", node="watcher-%d" % fd),
                                     format_command("SUBSCRIBE", self.info_hash_hex))).encode())
            self.epoll.modify(fd, select.EPOLLIN)
            pending[fd] = b""
            return
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the tracker closed a connection while subscribing: %r" % data)
        data += chunk
        if data.count(b"\n") < 2:
            pending[fd] = data
            return
        if data.split(b"\n")[1].rstrip(b"\r") != ok:
            raise RuntimeError("subscribe refused: %r" % data[:200])
        del pending[fd]

    def time_push(self, http: socket.socket, request: bytes, expected: bytes,
                  timeout_s: float = PUSH_TIMEOUT_S) -> float:
        """Send `request` (an announce) and return the seconds until every
        connection has read a line starting with `expected`."""
        socks = self.socks
        waiting = self.open
        seen = bytearray(len(socks))  # 1: this descriptor has its event
        partial: Dict[int, bytes] = {}
        http_fd = http.fileno()
        poll = self.epoll.poll
        self.epoll.register(http_fd, select.EPOLLIN)
        try:
            started = time.perf_counter()
            http.sendall(request)
            deadline = started + timeout_s
            while waiting:
                for fd, _ in poll(1.0):
                    if fd == http_fd:
                        http.recv(1 << 16)  # the announce reply; not what is timed
                        continue
                    data = socks[fd].recv(1 << 16)
                    if seen[fd]:
                        continue
                    if fd in partial:
                        data = partial.pop(fd) + data
                    at = data.find(expected)
                    if at >= 0 and data.find(b"\n", at) >= 0:
                        seen[fd] = 1
                        waiting -= 1
                    elif not data:
                        raise RuntimeError("the tracker closed a subscriber's connection")
                    else:
                        partial[fd] = data[-len(expected) - 200:]
                if time.perf_counter() > deadline:
                    raise RuntimeError("%d of %d subscribers never got the event"
                                       % (waiting, self.open))
            return time.perf_counter() - started
        finally:
            self.epoll.unregister(http_fd)

    def close(self) -> None:
        for sock in self.socks:
            if sock is not None:
                sock.close()
        self.socks = []
        self.epoll.close()


def run(line_port: int, http_port: int, pid: int, subscribers: int, pushes: int) -> Dict:
    """Open and subscribe `subscribers` connections, then time `pushes` + 1
    announces (the first, a warm-up, reported apart); the figures."""
    raise_open_file_limit(subscribers + SPARE_FILES)
    info_hash = torrent_hash(0)
    group = Subscribers(line_port, info_hash.hex(), subscribers)
    http = socket.create_connection(("127.0.0.1", http_port))
    try:
        rss_before = process_rss_bytes(pid)
        setup_started = time.monotonic()
        group.subscribe_all()
        setup_s = time.monotonic() - setup_started
        rss_after = process_rss_bytes(pid)
        times, client_cpu, server_cpu = [], [], []
        for n in range(pushes + 1):
            peer = 1000 + n
            request = b"GET %s HTTP/1.1\r\nHost: b\r\n\r\n" % announce_path(0, peer, numwant=0).encode()
            expected = b"* JOIN %s 127.0.0.1 %d %s " % (
                info_hash.hex().encode(), peer_port(peer), b"seeder" if peer_left(peer) == 0 else b"leecher")
            cpu, server = time.process_time(), process_cpu_s(pid)
            times.append(group.time_push(http, request, expected))
            client_cpu.append(time.process_time() - cpu)
            server_cpu.append(process_cpu_s(pid) - server)
            time.sleep(PAUSE_S)
            server_cpu[-1] = process_cpu_s(pid) - server  # the tracker's whole push, its tail included
    finally:
        http.close()
        group.close()
    measured = times[1:] or times
    return {"subscribers": subscribers, "pushes": len(measured), "setup_s": setup_s,
            "rss_before": rss_before, "rss_after": rss_after,
            "bytes_per_connection": (rss_after - rss_before) / subscribers,
            "first_ms": times[0] * 1000, "median_ms": statistics.median(measured) * 1000,
            "max_ms": max(measured) * 1000, "times_ms": [t * 1000 for t in measured],
            "client_cpu_ms_max": max(client_cpu[1:] or client_cpu) * 1000,
            "server_cpu_ms_median": statistics.median(server_cpu[1:] or server_cpu) * 1000}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--line-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the tracker's process id (its memory)")
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--pushes", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        figures = run(args.line_port, args.http_port, args.pid, args.subscribers, args.pushes)
    except (RuntimeError, OSError) as e:
        print("fanout: %s" % e, file=sys.stderr)
        return 1
    print("BENCH-JSON " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
