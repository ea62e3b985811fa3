"""The tracker's domain logic: swarms, peers, announce, scrape, expiry.

Pure Python: no network imports, and time is always passed in.
"""
from tracker.core.access import MODE_ALLOW, MODE_OPEN, AccessPolicy
from tracker.core.changes import ChangeBatch, ChangeLog
from tracker.core.errors import TrackerError
from tracker.core.swarm import (
    DOOR_HTTP, DOOR_LINE, DOOR_UDP, EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED,
    EVENT_STOPPED, NO_KEY, PeerPool, PeerView, Swarm,
)
from tracker.core.tracker import (
    MAX_COUNTER, AnnounceRequest, AnnounceResult, ScrapeEntry, TrackerCore, TrackerSettings,
    TrackerStats,
)

__all__ = [
    "ChangeBatch", "ChangeLog", "AccessPolicy", "MODE_ALLOW", "MODE_OPEN",
    "DOOR_HTTP", "DOOR_LINE", "DOOR_UDP", "EVENT_COMPLETED", "EVENT_NONE",
    "EVENT_STARTED", "EVENT_STOPPED", "PeerPool", "PeerView", "Swarm",
    "AnnounceRequest", "AnnounceResult", "ScrapeEntry", "TrackerCore",
    "TrackerError", "TrackerSettings", "TrackerStats", "MAX_COUNTER", "NO_KEY",
]
