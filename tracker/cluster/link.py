"""How this instance reaches Redis: plain TCP or TLS (`rediss://`, with `--redis-ca`,
`--redis-cert`, `--redis-key`), AUTH and SELECT first on every connection, and with
`--redis-cluster` which node of a Redis Cluster holds the tracker's keys.

Both clients of tracker/cluster/resp.py go through here: the blocking one (start-up)
and the Twisted one (the replicator's connection), so they trust the same CAs and
present the same client certificate.
"""
from __future__ import annotations

import ssl
from functools import partial
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

from tracker.cluster.resp import BlockingRedis, RedisError
from tracker.cluster.url import RedisAddress
from tracker.tls import load_certificates

# Every key of the tracker carries this hash tag (tracker/cluster/snapshot.py), so
# they share one slot of a Redis Cluster: the stream and the snapshot move together.
HASH_TAG = b"{tracker}"


class ClusterNodes(NamedTuple):
    """What `CLUSTER SLOTS` says: the node holding the tracker's slot, and every node
    (tried in turn to ask again when that one is lost)."""
    owner: Tuple[str, int]
    nodes: List[Tuple[str, int]]


class RedisLink:
    def __init__(self, address: RedisAddress, ca_file: Optional[str] = None,
                 cert_file: Optional[str] = None, key_file: Optional[str] = None,
                 cluster: bool = False) -> None:
        self.address = address
        self.cluster = cluster
        self._ca, self._cert, self._key = ca_file, cert_file, key_file or cert_file
        self._twisted_tls = None
        if address.tls:
            self._python_tls = self._python_context()  # a bad file fails at start
            self._twisted_tls = self._twisted_trust()

    # -- what every connection starts with ------------------------------------------------

    def hello(self) -> List[List[Any]]:
        """AUTH when the URL has a password, then SELECT for a database other than 0."""
        commands: List[List[Any]] = []
        if self.address.password is not None:
            auth: List[Any] = [b"AUTH"]
            if self.address.username:
                auth.append(self.address.username)
            commands.append(auth + [self.address.password])
        if self.address.db:
            commands.append([b"SELECT", self.address.db])
        return commands

    # -- the two clients ----------------------------------------------------------------------

    def blocking(self, host: str, port: int, timeout_s: float) -> BlockingRedis:
        wrap = None
        if self.address.tls:
            context = self._python_tls
            wrap = partial(context.wrap_socket, server_hostname=host)
        hello = [c for c in self.hello() if c[0] != b"SELECT"]
        return BlockingRedis(host, port, self.address.db, timeout_s, wrap=wrap, hello=hello)

    def endpoint(self, reactor, host: str, port: int, timeout_s: float):
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout_s)
        if not self.address.tls:
            return endpoint
        from twisted.internet import ssl as twisted_ssl

        trust, client = self._twisted_tls
        options = twisted_ssl.optionsForClientTLS(host, trustRoot=trust, clientCertificate=client)
        return wrapClientTLS(options, endpoint)

    # -- Redis Cluster --------------------------------------------------------------------------

    def cluster_nodes(self, redis: BlockingRedis) -> ClusterNodes:
        """Ask any node which one serves the tracker's slot. ValueError (one line)
        when this Redis is not a cluster."""
        try:
            slot = redis.command("CLUSTER", "KEYSLOT", HASH_TAG)
            ranges = redis.command("CLUSTER", "SLOTS")
        except RedisError as e:
            raise ValueError("--redis-cluster: Redis at %s:%d is not a Redis Cluster node (%s)"
                             % (self.address.host, self.address.port, e))
        return parse_cluster_slots(ranges, slot)

    # -- TLS material -----------------------------------------------------------------------------

    def _python_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self._ca)
            if self._cert:
                context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError("rediss://: cannot use the TLS files (%s)" % (e.strerror or e))
        return context

    def _twisted_trust(self):
        try:
            from twisted.internet import ssl as twisted_ssl
        except ImportError as e:  # pyOpenSSL missing
            raise ValueError("rediss:// needs the tls extra (pip install 'cdn-tracker[tls]'): %s" % e)
        trust = None  # the platform's trust store
        if self._ca:
            try:
                found = load_certificates(self._ca)
            except ValueError as e:
                raise ValueError("rediss://: --redis-ca: %s" % e)
            trust = twisted_ssl.trustRootFromCertificates(found)
        client = None
        if self._cert:
            with open(self._cert, "rb") as f:
                pem = f.read()
            if self._key != self._cert:
                with open(self._key, "rb") as f:
                    pem += b"\n" + f.read()
            client = twisted_ssl.PrivateCertificate.loadPEM(pem)
        return trust, client


def parse_cluster_slots(ranges: Sequence[Any], slot: int) -> ClusterNodes:
    """`CLUSTER SLOTS` is a list of [first, last, master, replica...], each node
    [ip, port, id, ...]; the master of the range holding `slot` owns our keys."""
    owner = None
    nodes: List[Tuple[str, int]] = []
    for entry in ranges:
        first, last = int(entry[0]), int(entry[1])
        members = [(_text(node[0]), int(node[1])) for node in entry[2:] if node and node[0]]
        for member in members:
            if member not in nodes:
                nodes.append(member)
        if first <= slot <= last and members:
            owner = members[0]
    if owner is None:
        raise ValueError("--redis-cluster: no node of the Redis Cluster serves slot %d "
                         "(is the cluster complete? redis-cli --cluster check)" % slot)
    return ClusterNodes(owner, nodes)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
