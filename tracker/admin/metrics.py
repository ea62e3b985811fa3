"""Prometheus metrics, read from the live tracker at each scrape of /metrics."""
from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.twisted import MetricsResource


class TrackerCollector:
    def __init__(self, context) -> None:
        self.context = context

    def collect(self):
        context = self.context
        core = context.core
        stats = core.stats
        announces = CounterMetricFamily("tracker_announces", "Announces answered, by door",
                                        labels=["door"])
        for door, count in sorted(stats.announces.items()):
            announces.add_metric([door], count)
        yield announces
        scrapes = CounterMetricFamily("tracker_scrapes", "Scrapes answered, by door", labels=["door"])
        for door, count in sorted(stats.scrapes.items()):
            scrapes.add_metric([door], count)
        yield scrapes
        failures = CounterMetricFamily("tracker_failures", "Refused requests, by reason",
                                       labels=["reason"])
        for reason, count in sorted(stats.failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily("tracker_expired_peers", "Peers removed by the expiry sweep",
                                  value=stats.expired_peers)
        totals = core.totals()
        for name in ("swarms", "peers", "seeders", "leechers"):
            yield GaugeMetricFamily("tracker_" + name, "Current number of " + name, value=totals[name])
        sessions = context.sessions
        if sessions is not None:
            yield from line_metrics(sessions)
        persistence = context.persistence
        if persistence is not None:
            flush = persistence.stats
            yield CounterMetricFamily("tracker_flushes", "Writes of changed state to SQLite",
                                      value=flush.flushes)
            yield CounterMetricFamily("tracker_flush_failures", "Failed writes (retried)",
                                      value=flush.failures)
            yield GaugeMetricFamily("tracker_flush_duration_seconds", "Duration of the last write",
                                    value=flush.last_duration_s)
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


def metrics_resource(context) -> MetricsResource:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TrackerCollector(context))
    return MetricsResource(registry=registry)
