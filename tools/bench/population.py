"""The benchmark's population (torrents x peers) and the requests drawn from it."""
from __future__ import annotations

import hashlib
import random
from typing import List
from urllib.parse import quote_from_bytes

from tracker.line.protocol import format_command


def torrent_hash(n: int) -> bytes:
    return hashlib.sha1(b"bench-torrent-%d" % n).digest()


def bench_peer_id(n: int) -> bytes:
    return b"-BN0001-%012d" % n


def peer_port(n: int) -> int:
    return 10000 + n


def peer_left(n: int) -> int:
    """Half the peers seed, half leech."""
    return 0 if n % 2 == 0 else 1000


def announce_path(torrent: int, peer: int, numwant: int = 50) -> str:
    return ("/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d"
            "&compact=1&numwant=%d" % (quote_from_bytes(torrent_hash(torrent), safe=""),
                                       bench_peer_id(peer).decode(), peer_port(peer),
                                       peer_left(peer), numwant))


def hashes_blob(torrents: int) -> bytes:
    """The population's info hashes back to back: the C loaders' hash file."""
    return b"".join(torrent_hash(t) for t in range(torrents))


WRK_TEMPLATE = """
local hashes = {
%s
}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end
request = function()
  local t = math.random(1, #hashes)
  local p = math.random(0, %d)
  return wrk.format("GET", %s)
end
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH-JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"errors\\": %%d, \\"non2xx\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def wrk_script(torrents: int, peers: int, kind: str) -> str:
    """A wrk Lua script drawing a random (torrent, peer) of the population per request."""
    hashes = ",\n".join('"%s"' % quote_from_bytes(torrent_hash(t), safe="") for t in range(torrents))
    if kind == "announce":
        path = ('"/announce?info_hash=" .. hashes[t] .. "&peer_id=-BN0001-" .. '
                'string.format("%012d", p) .. "&port=" .. (10000 + p) .. '
                '"&uploaded=0&downloaded=0&left=" .. ((p % 2 == 0) and 0 or 1000) .. '
                '"&compact=1&numwant=50"')
    else:
        path = '"/scrape?info_hash=" .. hashes[t]'
    return WRK_TEMPLATE % (hashes, peers - 1, path)


def line_command_mix(torrents: int) -> List[bytes]:
    """The commands the line benchmark cycles through: SCRAPE and PEERS of
    random population torrents, and PING."""
    rng = random.Random(7)
    out = []
    for i in range(1024):
        h = torrent_hash(rng.randrange(torrents)).hex()
        command = (format_command("PEERS", h, numwant=50) if i % 3 == 0 else
                   format_command("SCRAPE", h) if i % 3 == 1 else format_command("PING"))
        out.append(command.encode() + b"\n")
    return out
