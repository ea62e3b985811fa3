"""Prometheus metrics, read from the live tracker at each scrape of /metrics; the
liveness answer at /healthz."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource

from tracker import tls
from tracker.cluster.status import cluster_metrics
from tracker.histogram import REQUEST_SAMPLE_EVERY
from tracker.startlog import build_info


def limits_metrics(limits):
    """The bounds the doors share (tracker/limits.py)."""
    connections = limits.connections
    yield GaugeMetricFamily("tracker_connections_open",
                            "Open connections over the stream doors (HTTP, line, WebSocket)",
                            value=connections.open)
    yield GaugeMetricFamily("tracker_connections_limit", "Most open stream connections (total)",
                            value=connections.max_total)
    yield GaugeMetricFamily("tracker_connections_per_address_limit",
                            "Most open stream connections from one address",
                            value=connections.max_per_address)
    refused = CounterMetricFamily("tracker_connections_refused",
                                  "Stream connections refused at a cap, by cap", labels=["reason"])
    for reason, count in sorted(connections.refused.items()):
        refused.add_metric([reason], count)
    yield refused
    yield GaugeMetricFamily("tracker_open_file_limit", "The process's open-file limit after start",
                            value=limits.open_file_limit)
    requests = limits.requests
    if requests is not None:
        yield GaugeMetricFamily("tracker_request_rate_limit",
                                "Announces and scrapes a second allowed per address",
                                value=requests.rate)
        yield GaugeMetricFamily("tracker_request_rate_addresses",
                                "Addresses whose request allowance is being tracked",
                                value=len(requests))


class TrackerCollector:
    def __init__(self, context) -> None:
        self.context = context

    def collect(self):
        context = self.context
        core = context.core
        stats = core.stats
        info = build_info()
        build = GaugeMetricFamily("tracker_build_info", "Version and Python running this tracker",
                                  labels=["version", "python", "implementation"])
        build.add_metric([info["version"], info["python"], info["implementation"]], 1)
        yield build
        # Every configured door from the start (zeros), so a rate() never sees a gap.
        doors = getattr(context, "doors", ())
        announces = CounterMetricFamily("tracker_announces", "Announces answered, by door",
                                        labels=["door"])
        for door, count in sorted(dict(dict.fromkeys(doors, 0), **stats.announces).items()):
            announces.add_metric([door], count)
        yield announces
        scrapes = CounterMetricFamily("tracker_scrapes", "Scrapes answered, by door", labels=["door"])
        for door, count in sorted(dict(dict.fromkeys(doors, 0), **stats.scrapes).items()):
            scrapes.add_metric([door], count)
        yield scrapes
        yield from request_metrics(context)
        yield from udp_batch_metrics(getattr(context, "door_factories", {}).get("udp"))
        failures = CounterMetricFamily("tracker_failures", "Refused requests, by door and reason",
                                       labels=["door", "reason"])
        for (door, reason), count in sorted(stats.failures.items()):
            failures.add_metric([door, reason], count)
        yield failures
        yield CounterMetricFamily("tracker_expired_peers", "Peers removed by the expiry sweep",
                                  value=stats.expired_peers)
        totals = core.totals()
        for name in ("swarms", "peers", "seeders", "leechers"):
            yield GaugeMetricFamily("tracker_" + name, "Current number of " + name, value=totals[name])
        # The caps beside the counts (--max-swarms, --max-peers; none: no sample).
        for name in ("swarms", "peers"):
            cap = getattr(core.settings, "max_" + name, None)
            if cap is not None:
                yield GaugeMetricFamily("tracker_max_" + name,
                                        "Most %s held in memory before new ones are refused" % name,
                                        value=cap)
        sessions = context.sessions
        if sessions is not None:
            yield from line_metrics(sessions)
        ws = getattr(context, "ws", None)
        if ws is not None:
            yield from ws_metrics(ws)
        cluster = getattr(context, "cluster", None)
        if cluster is not None:
            yield from cluster_metrics(cluster)
        limits = getattr(context, "limits", None)
        if limits is not None:
            yield from limits_metrics(limits)
        persistence = context.persistence
        if persistence is not None:
            flush = persistence.stats
            yield CounterMetricFamily("tracker_flushes", "Writes of changed state to SQLite",
                                      value=flush.flushes)
            yield CounterMetricFamily("tracker_flush_failures", "Failed writes (retried)",
                                      value=flush.failures)
            yield GaugeMetricFamily("tracker_flush_duration_seconds", "Duration of the last write",
                                    value=flush.last_duration_s)
            durations = getattr(persistence, "flush_durations", None)
            if durations is not None:
                yield histogram("tracker_flush_seconds", "Duration of each write to SQLite",
                                durations)
            yield GaugeMetricFamily("tracker_flush_backlog", "Changes waiting to be written",
                                    value=persistence.backlog)
            yield GaugeMetricFamily("tracker_restore_seconds", "Start-up restore time",
                                    value=flush.restore_s)
            yield CounterMetricFamily("tracker_database_file_lost",
                                      "Times the database file was found removed or replaced",
                                      value=flush.file_lost)
            yield GaugeMetricFamily("tracker_database_failing",
                                    "1 while changes cannot be written (see the log or status)",
                                    value=0 if flush.problem is None else 1)


def line_metrics(sessions):
    """The line door's figures, read from its session registry (tracker/sessions.py)."""
    stats = sessions.connection_stats
    yield GaugeMetricFamily("tracker_line_connections", "Open line-protocol connections",
                            value=stats.open)
    yield GaugeMetricFamily("tracker_line_nodes", "Registered CDN nodes (connected or in grace)",
                            value=len(sessions))
    yield GaugeMetricFamily("tracker_line_connected_nodes", "CDN nodes with a live connection",
                            value=sessions.connected())
    yield GaugeMetricFamily("tracker_line_entries", "HAVE and WANT entries of all CDN nodes",
                            value=sessions.entry_count())
    yield CounterMetricFamily("tracker_line_resyncs",
                              "Bursts of events coalesced into one RESYNC per swarm for a subscriber",
                              value=stats.resyncs)
    yield CounterMetricFamily("tracker_line_cut_off",
                              "Line connections dropped for reading nothing while events waited",
                              value=stats.cut_off)


def ws_metrics(door):
    """The WebSocket door's figures (tracker/ws/door.py); its announces and
    scrapes are in tracker_announces/tracker_scrapes with door="ws"."""
    stats = door.stats
    yield GaugeMetricFamily("tracker_ws_connections", "Open WebSocket connections",
                            value=stats.open)
    yield GaugeMetricFamily("tracker_ws_peers", "Browser peers (WebSocket) in all swarms",
                            value=door.browsers.peer_count)
    yield CounterMetricFamily("tracker_ws_offers_relayed", "WebRTC offers forwarded to a browser",
                              value=stats.offers_relayed)
    yield CounterMetricFamily("tracker_ws_answers_relayed",
                              "WebRTC answers relayed back to the browser that offered",
                              value=stats.answers_relayed)
    yield CounterMetricFamily("tracker_ws_offers_dropped",
                              "Offers not forwarded because the chosen browser was not reading",
                              value=stats.offers_dropped)
    yield CounterMetricFamily("tracker_ws_cut_off",
                              "WebSocket connections aborted for reading nothing",
                              value=stats.cut_off)


def histogram(name: str, documentation: str, source, labels=(), values=()) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(values), source.cumulative(), source.sum)
    return family


def request_metrics(context):
    """Per door: TLS handshakes that failed, and request latencies where the door records them."""
    failed = CounterMetricFamily("tracker_tls_handshake_failures",
                                 "TLS handshakes that ended in a fatal alert, by door",
                                 labels=["door"])
    for door, record in sorted(tls.failures.items()):
        failed.add_metric([door], record.count)
    yield failed
    # Every configured door's histogram from the start (zeros before its first request).
    latency = HistogramMetricFamily(
        "tracker_request_seconds", "Time from a request's arrival to its reply, by door "
        "(HTTP and UDP: one read or datagram in %d)" % REQUEST_SAMPLE_EVERY, labels=["door"])
    for door, factory in sorted(getattr(context, "door_factories", {}).items()):
        latency.add_metric([door], factory.latency.cumulative(), factory.latency.sum)
    yield latency


def udp_batch_metrics(door):
    """The UDP door's batched I/O (--udp-batch): recvmmsg calls and the datagrams
    they read (their ratio: datagrams per call), sendmmsg calls, replies dropped."""
    if door is None:
        return
    stats = door.batch_stats
    yield GaugeMetricFamily("tracker_udp_batch_enabled",
                            "1 when the UDP door reads with recvmmsg and answers with sendmmsg",
                            value=0 if door.batch is None else 1)
    for name, text, value in (
            ("recvmmsg_calls", "recvmmsg calls that returned datagrams", stats.receive_calls),
            ("recvmmsg_datagrams", "Datagrams read by recvmmsg", stats.received),
            ("sendmmsg_calls", "sendmmsg calls", stats.send_calls),
            ("sendmmsg_replies", "Replies sent by sendmmsg", stats.sent),
            ("replies_dropped", "Batched replies not sent (socket buffer full, address "
                                "refused)", stats.dropped)):
        yield CounterMetricFamily("tracker_udp_" + name, text, value=value)


class Liveness(Resource):
    """GET /healthz: 200 "ok" while the reactor answers. No token, no Host rule:
    a load balancer's check can reach it, and it says nothing else."""

    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return b"ok\n"

    def render_HEAD(self, request) -> bytes:
        return self.render_GET(request)


class WithLiveness(Resource):
    """The admin root with /healthz answered before its token and Host checks."""

    def __init__(self, root: Resource) -> None:
        super().__init__()
        self.root = root
        self.liveness = Liveness()

    def getChildWithDefault(self, path: bytes, request) -> Resource:
        if path == b"healthz" and not request.postpath:
            return self.liveness
        return self.root.getChildWithDefault(path, request)

    def render(self, request):
        return self.root.render(request)


def metrics_resource(context) -> MetricsResource:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TrackerCollector(context))
    # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)  # python_info{implementation,version}
    return MetricsResource(registry=registry)
