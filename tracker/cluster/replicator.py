"""The replicator: the change log's fast consumer, publishing to Redis and applying from it.

Every tick (250 ms) it takes the core's batch, hands it on to the store's log
(`StoreFeed`, taken by the store every flush interval as before: one take on
the hot side, two consumers), and publishes it, in one pipelined round trip
that also reads what the other instances published since the last tick:

    XADD tracker:changes MAXLEN ~ N * o <id> t <time> d <peers> [x <rare>]
    HSET/HDEL tracker:peers:N ..., SADD tracker:done:HEX ...   (the snapshot)
    HSET tracker:instances <id> <heartbeat>                      (once a second)
    XREAD COUNT 1000 STREAMS tracker:changes <last id read>

While Redis cannot be reached, changes gather in an outbox (by peer, the
latest state wins) and requests are answered from memory as always; on
reconnection the outbox goes out, and if Redis lost its data (its epoch
changed) the whole state is written again and the stream read from its start.
"""
from __future__ import annotations

import json
import os
from itertools import chain
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tracker.cluster import snapshot as keys
from tracker.cluster.apply import RemoteApplier, unrecorded
from tracker.cluster.codec import (
    decode_peers, decode_rare, encode_peers, encode_rare, snapshot_row,
)
from tracker.cluster.link import RedisLink
from tracker.cluster.nodes import NodeBindings, nodes_key
from tracker.cluster.resp import BlockingRedis, RedisError, RedisProtocol
from tracker.cluster.url import parse_redis_url, redacted
from tracker.core import ChangeLog, TrackerCore
from tracker.core.changes import ChangeBatch
from tracker.core.swarm import DOOR_CODES

log = Logger()

TICK_S = 0.25
HEARTBEAT_S = 1.0
# An instance whose heartbeat is this old is taken for dead: the CDN node
# entries it pinned start to age (the line door's grace period, elsewhere).
DEAD_AFTER_S = 10.0
# Batches the shared stream keeps (approximately): enough for an instance to
# catch up after a pause of minutes; one that falls further behind reloads.
STREAM_MAXLEN = 100_000
READ_COUNT = 1000
# A last-seen refresh is published at most once per this many seconds per
# peer (and at least 20 times per time to live), like the store's writes.
SEEN_RESOLUTION_S = 60.0
START_TIMEOUT_S = 5.0
# Between attempts to reach Redis again; the resync promise (5 s) builds on it.
RETRY_S = 0.5
STOP_WAIT_S = 2.0


class ReplicationStats:
    """Counters for /metrics and the status page."""

    __slots__ = ("published_batches", "published_changes", "received_batches", "lag_s",
                 "max_lag_s", "redis_up", "disconnects", "resyncs", "republished_peers",
                 "snapshot_peers", "snapshot_s", "decode_errors", "instances", "outbox")

    def __init__(self) -> None:
        self.published_batches = self.published_changes = self.received_batches = 0
        self.lag_s = self.max_lag_s = 0.0
        self.redis_up = False
        self.disconnects = self.resyncs = self.republished_peers = 0
        self.snapshot_peers = 0
        self.snapshot_s = 0.0
        self.decode_errors = 0
        self.outbox = 0
        # instance id -> its last heartbeat (time, peers, lag_s)
        self.instances: Dict[str, Dict[str, Any]] = {}


class StoreFeed(ChangeLog):
    """The store's change log when a replicator runs: filled by the replicator
    from the core's log (`absorb`), taken by the store as before."""

    def __init__(self, upstream: ChangeLog) -> None:
        super().__init__()
        self.upstream = upstream

    def forget_recent(self) -> None:
        # The coarsening happens where changes are recorded: in the core's log.
        self.upstream.forget_recent()
        super().forget_recent()


def wire_part(batch: ChangeBatch) -> Optional[ChangeBatch]:
    """A copy of what other instances need from a batch (not totals or node rows)."""
    if not (batch.peers or batch.seen or batch.removed or batch.content or batch.completions
            or batch.operator):
        return None
    out = ChangeBatch()
    out.peers = dict(batch.peers)
    out.seen = dict(batch.seen)
    out.removed = set(batch.removed)
    out.content = dict(batch.content)
    out.completions = list(batch.completions)
    out.operator = list(batch.operator)
    return out


class Replicator(Service):
    name = "cluster"

    def __init__(self, core: TrackerCore, changes: ChangeLog, reactor, url: str,
                 instance_id: str, store_feed: Optional[StoreFeed] = None,
                 tick_s: float = TICK_S, link: Optional[RedisLink] = None) -> None:
        self.core = core
        self.changes = changes
        self.reactor = reactor
        # How to reach Redis (TLS, AUTH, Redis Cluster): tracker/cluster/link.py.
        self.link = link if link is not None else RedisLink(parse_redis_url(url))
        self.address = self.link.address
        self.url = redacted(url)  # as logs, heartbeats and status show it
        self.instance_id = instance_id
        self.store_feed = store_feed
        self.tick_s = tick_s
        self.stats = ReplicationStats()
        ttl = core.settings.effective_peer_ttl_s
        self.seen_resolution_s = min(SEEN_RESOLUTION_S, ttl / 20)
        # A removal of a copy within this of its expiry is left to the expiry.
        self.applier = RemoteApplier(core, store_feed, self.seen_resolution_s + 5 * tick_s + 5.0)
        self.outbox = ChangeLog()
        # CDN node ids and the address each is registered from, across instances.
        self.node_bindings = NodeBindings(instance_id)
        self.epoch: Optional[bytes] = None
        self.udp_secret: Optional[bytes] = None
        self.last_id = b"$"
        self._redis: Optional[RedisProtocol] = None
        self._busy = False
        self._loaded = False
        self._republish = None
        self._next_beat = 0.0
        self._down_logged = False
        self._loop: Optional[LoopingCall] = None
        self._retry = None
        self._inflight: Optional[Deferred] = None
        self._factory = Factory.forProtocol(RedisProtocol)
        self._factory.noisy = False
        # The node given by --redis; a Redis Cluster may redirect us to another
        # (MOVED), and we come back here when that one cannot be reached. With
        # --redis-cluster, every node the cluster named at start is tried in turn.
        self.seed_address = self.address
        self.cluster_nodes: List[Tuple[str, int]] = []

    # -- start and stop ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.changes.coarsen_last_seen(self.seen_resolution_s)
        self._load_at_start()
        self._connect()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.reactor
        self._loop.start(self.tick_s, now=False)

    def stopService(self) -> Deferred:
        """Publish the last changes (waiting at most STOP_WAIT_S), then close."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self.tick()  # the last changes: to the store, and to Redis if it is there
        pending = self._inflight if self._inflight is not None else succeed(None)
        pending.addTimeout(STOP_WAIT_S, self.reactor)
        pending.addBoth(lambda _: self._close())
        return pending

    def _close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None and redis.transport is not None:
            redis.transport.loseConnection()

    def _load_at_start(self) -> None:
        """Before any door serves: the shared state, read with a blocking client."""
        try:
            redis = self.link.blocking(self.address.host, self.address.port, START_TIMEOUT_S)
            if self.link.cluster and not self.cluster_nodes:
                if self._find_owner(redis):
                    redis.close()
                    redis = self.link.blocking(self.address.host, self.address.port,
                                               START_TIMEOUT_S)
        except RedisError as e:
            log.error("Redis at {url} refused this instance ({error}): serving from this "
                      "instance's memory", url=self.url, error=str(e))
            self._down_logged = True
            return
        except OSError as e:
            log.error("Redis at {url} cannot be reached ({error}): serving from this "
                      "instance's memory; will load the shared state when it can",
                      url=self.url, error=str(e))
            self._down_logged = True
            return
        try:
            self._load(redis)
        except RedisError as e:
            moved = moved_to(e)
            if moved is None or (moved[0], moved[1]) == (self.address.host, self.address.port):
                log.error("loading the shared state from Redis at {url} failed ({error}): "
                          "serving from this instance's memory", url=self.url, error=str(e))
                return
            if not self.link.cluster:
                log.warn("Redis at {url} is a node of a Redis Cluster: following it to "
                         "{host}:{port}; give --redis-cluster so that the other nodes are "
                         "tried when that one fails", url=self.url, host=moved[0], port=moved[1])
            self.address = self.address.at(*moved)
            redis.close()
            self._load_at_start()  # the node that holds our keys (Redis Cluster)
        except OSError as e:
            log.error("loading the shared state from Redis at {url} failed ({error}): serving "
                      "from this instance's memory", url=self.url, error=str(e))
        finally:
            redis.close()

    def _find_owner(self, redis: BlockingRedis) -> bool:
        """--redis-cluster: ask the node given which node holds the tracker's slot and
        remember every node for when that one is lost. True when it is another node."""
        try:
            found = self.link.cluster_nodes(redis)
        except ValueError as e:
            log.error("{error}: using it as a single Redis", error=str(e))
            return False
        self.cluster_nodes = found.nodes
        log.info("Redis Cluster of {n} nodes: the tracker's keys are at {host}:{port}",
                 n=len(found.nodes), host=found.owner[0], port=found.owner[1])
        if found.owner == (self.address.host, self.address.port):
            return False
        self.address = self.address.at(*found.owner)
        return True

    def _next_seed(self):
        """Where to connect after a failure: the node given by --redis, or with
        --redis-cluster the next node the cluster named (a MOVED reply from it then
        leads to whichever node holds the tracker's slot now)."""
        if not self.cluster_nodes:
            return self.seed_address
        here = (self.address.host, self.address.port)
        at = self.cluster_nodes.index(here) + 1 if here in self.cluster_nodes else 0
        return self.address.at(*self.cluster_nodes[at % len(self.cluster_nodes)])

    def _load(self, redis: BlockingRedis) -> None:
        redis.command("SET", keys.EPOCH, os.urandom(8).hex(), "NX")
        self.epoch = redis.command("GET", keys.EPOCH)
        redis.command("SET", keys.UDP_SECRET, os.urandom(32), "NX")
        self.udp_secret = redis.command("GET", keys.UDP_SECRET)
        # The stream position first, then the snapshot: a change made between
        # the two is read again from the stream, and applying it twice is harmless.
        last = redis.command("XREVRANGE", keys.STREAM, "+", "-", "COUNT", 1)
        self.last_id = last[0][0] if last else b"0-0"
        with unrecorded(self.core):
            report = keys.load_snapshot(redis, self.applier, self.reactor.seconds())
        self.stats.snapshot_peers = report.peers
        self.stats.snapshot_s = report.seconds
        self._load_node_bindings(redis)
        self._loaded = True
        log.info("loaded {peers} shared peers ({expired} expired) and {completions} completions "
                 "from Redis at {url} in {seconds:.3f} s; instance {instance}",
                 peers=report.peers, expired=report.expired, completions=report.completions,
                 url=self.url, seconds=report.seconds, instance=self.instance_id)

    def _load_node_bindings(self, redis: BlockingRedis) -> None:
        """The CDN node ids other live instances hold (tracker/cluster/nodes.py)."""
        flat = redis.command("HGETALL", keys.INSTANCES)
        now = self.reactor.seconds()
        for i in range(0, len(flat) - 1, 2):
            instance = flat[i].decode("utf-8", "replace")
            beat = keys.decode_heartbeat(flat[i + 1])
            if instance == self.instance_id or beat is None:
                continue
            if now - float(beat.get("time", 0)) <= DEAD_AFTER_S:
                self.node_bindings.load(instance, redis.command("HGETALL", nodes_key(instance)))

    # -- the connection -------------------------------------------------------------------

    def _connect(self) -> None:
        """Connect (again); retried every RETRY_S while Redis cannot be reached,
        logged once per outage."""
        self._retry = None
        if not self.running:
            return
        endpoint = self.link.endpoint(self.reactor, self.address.host, self.address.port,
                                      START_TIMEOUT_S)
        d = endpoint.connect(self._factory)
        d.addCallback(self._prepare)
        d.addErrback(self._connect_failed)

    def _connect_failed(self, failure) -> None:
        moved = moved_to(failure.value)
        if moved is not None and self.running:
            self.address = self.address.at(*moved)
            log.info("Redis Cluster: the tracker's keys are at {host}:{port}", host=moved[0],
                     port=moved[1])
            self._retry = self.reactor.callLater(0, self._connect)
            return
        self.address = self._next_seed()
        if not self._down_logged:
            log.error("Redis at {url} cannot be reached ({error}): serving from memory, "
                      "keeping changes to publish when it can", url=self.url,
                      error=failure.getErrorMessage())
            self._down_logged = True
        if self.running:
            self._retry = self.reactor.callLater(RETRY_S, self._connect)

    def _prepare(self, redis: RedisProtocol) -> Deferred:
        """A new connection: select the database, compare epochs, then use it."""
        commands = self.link.hello()  # AUTH, SELECT
        commands.append([b"SET", keys.EPOCH, os.urandom(8).hex(), b"NX"])
        commands.append([b"GET", keys.EPOCH])
        commands.append([b"SET", keys.UDP_SECRET, os.urandom(32), b"NX"])
        commands.append([b"GET", keys.UDP_SECRET])
        d = gatherResults(redis.pipeline(commands), consumeErrors=True)
        d.addCallback(self._ready, redis)

        def unusable(failure):
            if redis.transport is not None:
                redis.transport.abortConnection()
            return failure
        return d.addErrback(unusable)

    def _ready(self, results: List[Any], redis: RedisProtocol) -> None:
        epoch, secret = results[-3], results[-1]
        if self.udp_secret is None:
            self.udp_secret = secret
        if epoch != self.epoch:
            lost = self.epoch is not None
            if lost:
                log.warn("Redis lost the shared state (new epoch): writing this instance's "
                         "state again")
            if not lost and not self._loaded:
                self._load_at_start()  # started while Redis was away: load it now
            else:
                self.epoch = epoch
                self.last_id = b"0-0"
            self.stats.resyncs += 1
            self._republish = chain([self.node_bindings.republish_commands()],
                                    keys.republish_commands(self.core))
            self._loaded = True
        self._redis = redis
        self.stats.redis_up = True
        redis.lost.addCallback(self._lost, redis)
        if self._down_logged:
            log.info("Redis at {url} reachable again: replicating", url=self.url)
            self._down_logged = False

    def _lost(self, _: Any, redis: RedisProtocol) -> None:
        if self._redis is not redis:
            return
        self._redis = None
        self.stats.redis_up = False
        self.stats.disconnects += 1
        if not self.running:
            return
        if not self._down_logged:
            log.error("lost Redis at {url}: serving from memory, keeping changes to publish "
                      "on reconnection", url=self.url)
            self._down_logged = True
        self._retry = self.reactor.callLater(RETRY_S, self._connect)

    # -- every tick ---------------------------------------------------------------------

    def tick(self) -> None:
        batch = self.changes.take()
        if batch:
            self.applier.local_changes(batch)
            wire = wire_part(batch)
            if wire is not None:
                self.outbox.absorb(wire)
            if self.store_feed is not None:
                self.store_feed.absorb(batch)
        if self.applier.reassert:
            self._reassert()
        self.stats.outbox = len(self.outbox)
        redis = self._redis
        if redis is None or self._busy:
            return
        now = self.reactor.seconds()
        if self._republish is not None:
            self._republish_step(redis)
        out = self.outbox.take()
        nodes = self.node_bindings.take()
        commands = self._publish_commands(out, now, nodes) if out or nodes else []
        beat = now >= self._next_beat
        if beat:
            self._next_beat = now + HEARTBEAT_S
            commands.append([b"HSET", keys.INSTANCES, self.instance_id, self._heartbeat(now)])
            commands.append([b"HGETALL", keys.INSTANCES])
            # The stream's oldest entry: past our position means entries were trimmed unread.
            commands.append([b"XRANGE", keys.STREAM, b"-", b"+", b"COUNT", 1])
        commands.append([b"XREAD", b"COUNT", READ_COUNT, b"STREAMS", keys.STREAM, self.last_id])
        self._busy = True
        d = gatherResults(redis.pipeline(commands), consumeErrors=True)
        d.addCallbacks(self._published, self._failed, callbackArgs=(out, beat),
                       errbackArgs=(out, nodes))
        self._inflight = d

    def _reassert(self) -> None:
        """Publish again this instance's pinned entries that another dropped."""
        for info_hash, peer_id in self.applier.reassert:
            swarm = self.core.swarms.get(info_hash)
            peer = swarm.get(peer_id) if swarm is not None else None
            if peer is not None and peer.last_seen == float("inf"):
                self.outbox.peer_updated(info_hash, peer_id, (
                    peer.ip, peer.port, 0 if peer.seeder else 1, 0, 0, peer.last_seen, peer.door))
        self.applier.reassert = set()

    def _published(self, results: List[Any], out: ChangeBatch, beat: bool) -> None:
        self._busy = False
        self._inflight = None
        if out:
            self.stats.published_batches += 1
            self.stats.published_changes += len(out)
        if beat:
            self._read_instances(results[-3])
            if self._trimmed_past_us(results[-2]):
                return
        full = self._apply_stream(results[-1])
        if full and self._redis is not None:
            self.reactor.callLater(0, self.tick)  # more to read: no need to wait a tick

    def _trimmed_past_us(self, oldest: Any) -> bool:
        """True (and the shared state loaded again) when the stream no longer
        holds the entries after our position: we fell further behind than
        STREAM_MAXLEN batches (a long pause or partition)."""
        if not oldest or self.last_id in (b"$", b"0-0"):
            return False
        if stream_id(oldest[0][0]) <= stream_id(self.last_id):
            return False
        self.stats.resyncs += 1
        log.warn("the shared stream was trimmed past this instance's position ({position}): "
                 "loading the shared state again", position=self.last_id.decode())
        self._load_at_start()
        return True

    def _failed(self, failure, out: ChangeBatch, nodes: Dict[str, Optional[str]]) -> None:
        self._busy = False
        self._inflight = None
        self.outbox.give_back(out)
        self.node_bindings.give_back(nodes)
        if not self._down_logged and self.running:
            log.error("publishing to Redis failed ({error}); will retry",
                      error=failure.getErrorMessage())
            self._down_logged = True

    def _heartbeat(self, now: float) -> bytes:
        return json.dumps({"time": now, "peers": self.core.peer_count,
                           "lag_s": round(self.stats.lag_s, 4), "url": self.url}).encode()

    def _read_instances(self, flat: List[bytes]) -> None:
        now = self.reactor.seconds()
        instances = {}
        for i in range(0, len(flat) - 1, 2):
            beat = keys.decode_heartbeat(flat[i + 1])
            if beat is not None:
                instances[flat[i].decode("utf-8", "replace")] = beat
        self.stats.instances = instances
        for owner in {owner for owner, _ in self.node_bindings.remote.values()}:
            beat = instances.get(owner)
            if now - (float(beat.get("time", 0)) if beat else 0.0) > DEAD_AFTER_S:
                self.node_bindings.forget_instance(owner)
        for origin in list(self.applier.pinned):
            beat = instances.get(origin)
            last = float(beat.get("time", 0)) if beat else 0.0
            if now - last > DEAD_AFTER_S:
                count = self.applier.unpin_origin(origin, last or now)
                if count:
                    log.warn("instance {origin} silent for {age:.0f} s: its {count} CDN node "
                             "entries now age out", origin=origin, age=now - last, count=count)

    def _publish_commands(self, out: ChangeBatch, now: float,
                          nodes: Dict[str, Optional[str]]) -> List[List[Any]]:
        """The stream entry and the snapshot writes for one outgoing batch."""
        core = self.core
        entry: List[Any] = [b"XADD", keys.STREAM, b"MAXLEN", b"~", STREAM_MAXLEN, b"*",
                            b"o", self.instance_id, b"t", repr(now),
                            b"d", encode_peers(out, core.compact_address)]
        rare = encode_rare(out)
        if rare is not None:
            entry += [b"x", rare]
        node_field, node_commands = self.node_bindings.commands(nodes)
        if node_field is not None:
            entry += [b"n", node_field]
        commands = [entry] + node_commands
        sets: Dict[bytes, List[Any]] = {}
        for (info_hash, peer_id), row in out.peers.items():
            ip, port, left, _up, _down, seen, door = row
            flags = DOOR_CODES.get(door, 0) | (0x80 if left == 0 else 0)
            sets.setdefault(keys.shard_key(info_hash), []).extend(
                (info_hash + peer_id, snapshot_row(seen, flags, core.compact_address(ip, port))))
        for shard, fields in sets.items():
            commands.append([b"HSET", shard] + fields)
        dels: Dict[bytes, List[bytes]] = {}
        for info_hash, peer_id in out.removed:
            dels.setdefault(keys.shard_key(info_hash), []).append(info_hash + peer_id)
        for shard, fields in dels.items():
            commands.append([b"HDEL", shard] + fields)
        for info_hash, peer_id, _at in out.completions:
            commands.append([b"SADD", keys.done_key(info_hash), keys.fingerprint(peer_id)])
        for info_hash, (first_seen, _done, name, size) in out.content.items():
            commands.append([b"HSET", keys.CONTENT, info_hash.hex(),
                             json.dumps([first_seen, name, size])])
        return commands

    def _republish_step(self, redis: RedisProtocol) -> None:
        """Write the next part of the whole state (after Redis lost its data)."""
        commands: List[List[Any]] = []
        for chunk in self._republish:
            commands.extend(chunk)
            if len(commands) >= keys.CHUNK // 10:
                break
        else:
            self._republish = None
        if commands:
            self.stats.republished_peers += sum((len(c) - 2) // 2 for c in commands
                                                if c[1].startswith(keys.PREFIX + b"peers:"))
            for d in redis.pipeline(commands):
                d.addErrback(lambda f: None)  # a lost connection starts it all again

    def _apply_stream(self, reply: Any) -> bool:
        """Apply the entries read; True when the read was full (more may wait)."""
        if not reply:
            return False
        entries = reply[0][1]
        now = self.reactor.seconds()
        with unrecorded(self.core):
            for entry_id, flat in entries:
                self.last_id = entry_id
                fields = {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
                origin = fields.get(b"o", b"").decode("utf-8", "replace")
                if origin == self.instance_id:
                    continue
                self.stats.received_batches += 1
                try:
                    at = float(fields.get(b"t", b"0"))
                    self._apply_entry(origin, at, fields)
                except (ValueError, TypeError, KeyError, IndexError):
                    self.stats.decode_errors += 1
                    continue
                self.stats.lag_s = lag = max(0.0, now - at)
                if lag > self.stats.max_lag_s:
                    self.stats.max_lag_s = lag
        return len(entries) >= READ_COUNT

    def _apply_entry(self, origin: str, at: float, fields: Dict[bytes, bytes]) -> None:
        applier = self.applier
        bindings = fields.get(b"n")
        if bindings:
            self.node_bindings.apply(origin, bindings)
        rare = fields.get(b"x")
        if rare:
            for item in decode_rare(rare):
                if isinstance(item, tuple):
                    applier.content(*item[1:])
                else:
                    applier.operator(item)
        for kind, info_hash, peer_id, detail in decode_peers(fields.get(b"d", b"")):
            if kind == b"U":
                applier.upsert(origin, info_hash, peer_id, *detail)
            elif kind == b"S":
                applier.seen(origin, info_hash, peer_id, detail)
            elif kind == b"R":
                applier.removed(origin, info_hash, peer_id, at)
            else:
                applier.completed(info_hash, peer_id, detail)


def moved_to(error: Any) -> Optional[tuple]:
    """(host, port) of a Redis Cluster `MOVED slot host:port` error, else None."""
    if isinstance(error, FirstError):
        error = error.subFailure.value
    text = str(error)
    if not text.startswith("MOVED "):
        return None
    host, _, port = text.split()[-1].rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def stream_id(entry_id: bytes) -> tuple:
    """A stream entry id (b"MS-SEQ") as a comparable pair."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def default_instance_id(port: Optional[int]) -> str:
    import socket

    return "%s:%s" % (socket.gethostname(), port if port is not None else os.getpid())
