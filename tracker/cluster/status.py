"""What the admin API's status and /metrics show of the replicator."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def cluster_status(replicator, now: float) -> Dict[str, Any]:
    """The `cluster` part of /api/status: this instance, Redis, and every
    instance's last heartbeat (age in seconds) and replication lag."""
    stats = replicator.stats
    instances = {}
    for name, beat in sorted(stats.instances.items()):
        seen = float(beat.get("time", 0.0))
        instances[name] = {"heartbeat_age_s": round(now - seen, 3), "peers": beat.get("peers"),
                           "lag_s": beat.get("lag_s")}
    return {
        "instance": replicator.instance_id, "redis": replicator.url,
        "redis_up": stats.redis_up, "lag_s": round(stats.lag_s, 4),
        "max_lag_s": round(stats.max_lag_s, 4),
        "published_batches": stats.published_batches, "received_batches": stats.received_batches,
        "outbox": stats.outbox, "disconnects": stats.disconnects, "resyncs": stats.resyncs,
        "snapshot_peers": stats.snapshot_peers, "instances": instances,
    }


def cluster_metrics(replicator) -> Iterator[Any]:
    stats = replicator.stats
    applier = replicator.applier
    yield GaugeMetricFamily("tracker_cluster_redis_up", "1 while Redis is reachable",
                            value=1 if stats.redis_up else 0)
    yield GaugeMetricFamily("tracker_cluster_lag_seconds",
                            "Age of the last batch applied from another instance when applied",
                            value=stats.lag_s)
    yield GaugeMetricFamily("tracker_cluster_max_lag_seconds", "Largest lag seen since start",
                            value=stats.max_lag_s)
    yield GaugeMetricFamily("tracker_cluster_outbox_changes",
                            "Changes waiting to be published (grows while Redis is away)",
                            value=stats.outbox)
    yield GaugeMetricFamily("tracker_cluster_instances", "Instances with a heartbeat in Redis",
                            value=len(stats.instances))
    for name, help_text, value in (
            ("published_batches", "Batches published to Redis", stats.published_batches),
            ("published_changes", "Changes published to Redis", stats.published_changes),
            ("received_batches", "Batches read from other instances", stats.received_batches),
            ("applied_changes", "Remote changes applied to this instance", applier.applied),
            ("ignored_changes", "Remote changes older than what this instance holds",
             applier.ignored),
            ("decode_errors", "Stream entries that could not be read", stats.decode_errors),
            ("disconnects", "Connections to Redis lost", stats.disconnects),
            ("resyncs", "Times Redis had lost the shared state and it was written again",
             stats.resyncs)):
        yield CounterMetricFamily("tracker_cluster_" + name, help_text, value=value)


def cluster_lines(cluster: Optional[Dict[str, Any]]) -> List[str]:
    """`tracker-admin status` lines for the `cluster` part of /api/status."""
    if not cluster:
        return []
    lines = ["%-12s %s via %s (%s, lag %.3f s, outbox %s)" % (
        "cluster", cluster["instance"], cluster["redis"],
        "up" if cluster["redis_up"] else "REDIS UNREACHABLE", cluster["lag_s"], cluster["outbox"])]
    for name, beat in sorted(cluster.get("instances", {}).items()):
        lines.append("%-12s %s: heartbeat %.1f s ago, %s peers, lag %s s" % (
            "instance", name, beat["heartbeat_age_s"], beat.get("peers"), beat.get("lag_s")))
    return lines
