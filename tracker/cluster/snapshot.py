"""The shared keys in Redis and the snapshot: what a new instance loads before it serves.

(each name starts with `{tracker}:`, written tracker: here)

    tracker:epoch            a random value; a different one means Redis lost its data
    tracker:changes          the stream of batches (XADD ... MAXLEN ~)
    tracker:peers:N          16 hashes: info_hash+peer_id -> snapshot row (codec.py)
    tracker:content          info_hash -> JSON [first_seen, name, size]
    tracker:done:HEX         a swarm's completion fingerprints (8 bytes each)
    tracker:instances        instance id -> JSON heartbeat (time, peers, lag)
    tracker:udp-secret       the secret UDP connection ids are made from
    tracker:nodes:<instance> CDN node id -> address it registered from (nodes.py)

The snapshot is kept current by every publish (each instance writes the rows
of the changes it publishes); an instance whose Redis lost its data writes
its whole state again (`republish_commands`).
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator, List, Optional, Sequence

from tracker.cluster.apply import RemoteApplier
from tracker.cluster.codec import KEY_WIDTH, parse_snapshot_row, peer_flags, snapshot_row
from tracker.core import TrackerCore
from tracker.core.swarm import completion_key

# One hash tag: on a Redis Cluster every key of the tracker is in one slot, so
# a tick's pipeline (and the stream read) goes to one node.
PREFIX = b"{tracker}:"
EPOCH = PREFIX + b"epoch"
STREAM = PREFIX + b"changes"
CONTENT = PREFIX + b"content"
INSTANCES = PREFIX + b"instances"
UDP_SECRET = PREFIX + b"udp-secret"
DONE_PREFIX = PREFIX + b"done:"
SHARDS = 16
SHARD_KEYS = [PREFIX + b"peers:%d" % n for n in range(SHARDS)]
# Rows per HSCAN / HSET while loading or writing everything.
CHUNK = 5000


def shard_key(info_hash: bytes) -> bytes:
    return SHARD_KEYS[info_hash[0] % SHARDS]


def done_key(info_hash: bytes) -> bytes:
    return DONE_PREFIX + info_hash.hex().encode("ascii")


class SnapshotReport:
    __slots__ = ("peers", "expired", "swarms", "completions", "seconds")

    def __init__(self) -> None:
        self.peers = self.expired = self.swarms = self.completions = 0
        self.seconds = 0.0


def load_snapshot(redis, applier: RemoteApplier, now: float) -> SnapshotReport:
    """Read every shared row into the core through `applier` (newest wins;
    rows past the time to live are skipped). `redis` is a BlockingRedis."""
    started = time.perf_counter()
    report = SnapshotReport()
    core = applier.core
    cutoff = now - core.settings.effective_peer_ttl_s
    for key in SHARD_KEYS:
        for field, value in _hscan(redis, key):
            if len(field) != KEY_WIDTH:
                continue
            try:
                seen, flags, compact = parse_snapshot_row(value)
            except ValueError:
                continue
            if seen < cutoff:
                report.expired += 1
                continue
            if applier.upsert("snapshot", field[:20], field[20:], seen, flags, compact):
                report.peers += 1
    for field, value in _hscan(redis, CONTENT):
        try:
            first_seen, name, size = json.loads(value.decode("utf-8"))
            applier.content(bytes.fromhex(field.decode("ascii")), float(first_seen), name, size)
        except (ValueError, TypeError):
            continue
    report.completions = _load_completions(redis, applier)
    report.swarms = len(core.swarms)
    report.seconds = time.perf_counter() - started
    return report


def _load_completions(redis, applier: RemoteApplier) -> int:
    count = 0
    cursor = b"0"
    while True:
        cursor, keys = redis.command("SCAN", cursor, "MATCH", DONE_PREFIX + b"*", "COUNT", 1000)
        for key in keys:
            try:
                info_hash = bytes.fromhex(key[len(DONE_PREFIX):].decode("ascii"))
            except ValueError:
                continue
            for member in redis.command("SMEMBERS", key):
                if len(member) == 8 and applier.completed_key(info_hash,
                                                              int.from_bytes(member, "big")):
                    count += 1
        if cursor == b"0":
            return count


def _hscan(redis, key: bytes) -> Iterator[Sequence[bytes]]:
    cursor = b"0"
    while True:
        cursor, items = redis.command("HSCAN", key, cursor, "COUNT", CHUNK)
        for i in range(0, len(items) - 1, 2):
            yield items[i], items[i + 1]
        if cursor == b"0":
            return


def republish_commands(core: TrackerCore) -> Iterator[List[List[Any]]]:
    """The whole state as snapshot writes, a chunk of commands at a time (one
    chunk per reactor turn, so requests keep being answered)."""
    for info_hash in list(core.swarms):
        swarm = core.swarms.get(info_hash)
        if swarm is None:
            continue
        fields: List[Any] = []
        for peer in swarm.views():
            fields.append(info_hash + peer.peer_id)
            fields.append(snapshot_row(peer.last_seen, peer_flags(peer.door, peer.seeder),
                                       peer.compact))
        commands: List[List[Any]] = []
        if fields:
            commands.append([b"HSET", shard_key(info_hash)] + fields)
        commands.append([b"HSET", CONTENT, info_hash.hex(),
                         json.dumps([swarm.first_seen, swarm.name, swarm.size])])
        if swarm.completed_by is not None and len(swarm.completed_by):
            commands.append([b"SADD", done_key(info_hash)]
                            + [k.to_bytes(8, "big") for k in swarm.completed_by])
        yield commands


def fingerprint(peer_id: bytes) -> bytes:
    """A completion as stored in tracker:done:HEX."""
    return completion_key(peer_id).to_bytes(8, "big")


def decode_heartbeat(value: bytes) -> Optional[dict]:
    try:
        beat = json.loads(value.decode("utf-8"))
    except ValueError:
        return None
    return beat if isinstance(beat, dict) else None
