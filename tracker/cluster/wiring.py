"""How `--redis` plugs into the service (tracker/service.py calls these two)."""
from __future__ import annotations

import re
from typing import Optional

from tracker.cluster.connection_ids import SharedConnectionIds
from tracker.cluster.link import RedisLink
from tracker.cluster.replicator import Replicator, StoreFeed, default_instance_id
from tracker.cluster.url import parse_redis_url, redacted
from tracker.core import ChangeLog, TrackerCore
from tracker.doors.connection_ids import ConnectionIds


def _port(config) -> Optional[int]:
    """The port that names this instance by default: the first UDP one, else HTTP's."""
    if config["udp"]:
        return config["udp"][0][1]
    for endpoint in config["http"]:
        found = re.match(r"^(?:tcp6?:|ssl:)?(\d+)", endpoint)
        if found:
            return int(found.group(1))
    return None


def make_replicator(config, core: TrackerCore, changes: ChangeLog, reactor,
                    with_store: bool) -> Replicator:
    """The replicator for `--redis`; `replicator.store_feed` is the store's log."""
    instance_id = config["instance-id"] or default_instance_id(_port(config))
    feed = StoreFeed(changes) if with_store else None
    try:
        link = RedisLink(parse_redis_url(config["redis"]), config["redis-ca"],
                         config["redis-cert"], config["redis-key"], config["redis-cluster"])
    except ValueError as e:
        raise SystemExit("tracker: --redis %s: %s" % (redacted(config["redis"]), e))
    return Replicator(core, changes, reactor, config["redis"], instance_id, feed, link=link)


def make_connection_ids(reactor, max_age_s: float,
                        replicator: Optional[Replicator]) -> ConnectionIds:
    if replicator is None:
        return ConnectionIds(reactor, max_age_s=max_age_s)
    return SharedConnectionIds(reactor, lambda: replicator.udp_secret, max_age_s=max_age_s)
