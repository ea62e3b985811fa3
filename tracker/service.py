"""`makeService(config, reactor)`: wires the core, the doors and the timers.

The twistd plugin (`twistd -n tracker`) and `tracker.tac` both call it, so
the two ways in build the very same service.
"""
from __future__ import annotations

import ipaddress
from typing import Optional

from twisted.application.internet import StreamServerEndpointService, TimerService, UDPServer
from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted.web.server import Site

from tracker.admin.api import AdminContext, AdminRoot
from tracker.admin.guard import HostRule, redacting_log_formatter
from tracker.admin.metrics import WithLiveness, metrics_resource
from tracker.admin.page import StatusPage
from tracker.core import ChangeLog, TrackerCore, TrackerSettings
from tracker.core.tracker import fix_malloc_threshold
from tracker.cluster.reuseport import ReusePortEndpoint, ReusePortUDPServer
from tracker.cluster.wiring import make_connection_ids, make_replicator
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory
from tracker.line.door import LineDoorSettings, LineTrackerFactory
from tracker.doors.udp import UDPDoorSettings, UDPTrackerProtocol, batch_size_for
from tracker.expiry import ExpiryService
from tracker.limits import DoorLimits
from tracker.options import Options
from tracker.sessions import SessionRegistry
from tracker.ws.door import WsDoorSettings, WsTrackerFactory
from tracker.startlog import log_started
from tracker.tls import server_endpoint
from tracker.totals import TotalsRecorder
from tracker.store import PersistenceService, SQLiteStore, open_database

__all__ = ["Options", "makeService", "core_settings", "http_settings"]

log = Logger()

# How often the HTTP and line doors check their connections' timeouts.
TIMEOUT_CHECK_S = 1.0


def core_settings(config: Options) -> TrackerSettings:
    return TrackerSettings(
        interval_s=config["interval"],
        min_interval_s=config["min-interval"],
        peer_ttl_s=config["peer-ttl"],
        default_numwant=config["numwant"],
        max_numwant=config["max-numwant"],
        max_scrape_hashes=config["max-scrape-hashes"],
        max_swarms=config["max-swarms"],
        max_peers=config["max-peers"], max_write_backlog=config["max-write-backlog"],
    )


def http_settings(config: Options) -> HTTPDoorSettings:
    def utf8(text: Optional[str]) -> Optional[bytes]:
        return text.encode("utf-8") if text else None

    return HTTPDoorSettings(
        allow_ip_param=config["allow-ip-param"],
        tracker_id=utf8(config["tracker-id"]),
        warning_message=utf8(config["warning-message"]),
        trusted_proxies=tuple(ipaddress.ip_network(c) for c in config["trusted-proxy"]),
        proxy_header=config["proxy-header"].lower().encode("ascii"),
        idle_timeout_s=config["http-idle-timeout"],
        request_timeout_s=config["http-request-timeout"],
    )


def ws_settings(config: Options) -> WsDoorSettings:
    return WsDoorSettings(
        interval_s=config["ws-interval"], max_message=config["ws-max-message"],
        max_offers=config["ws-max-offers"], max_swarms=config["ws-max-swarms"],
        max_peer_ids=config["ws-max-peer-ids"],
        idle_timeout_s=config["ws-idle-timeout"],
        trusted_proxies=tuple(ipaddress.ip_network(c) for c in config["trusted-proxy"]),
        proxy_header=config["proxy-header"].lower().encode("ascii"))


class TrackerService(MultiService):
    """The whole tracker: `core` is reachable for tests and later doors."""

    def __init__(self, core: TrackerCore) -> None:
        super().__init__()
        self.core = core
        self.persistence: Optional[PersistenceService] = None
        # The replicator when --redis is given (tracker/cluster/), else None.
        self.cluster = None
        # --reuse-port: the doors' ports are shared with other processes.
        self.reuse_port = False
        # The first UDP socket's protocol; every UDP socket shares its latency histogram.
        self.udp_protocol: Optional[UDPTrackerProtocol] = None
        # Why the UDP door answers one datagram per system call ("": it reads in batches).
        self.udp_batch_off = ""
        # The HTTP door's shared state: a SIGHUP reload swaps its settings.
        self.http_factory: Optional[HTTPTrackerFactory] = None
        # The parsed options (makeService sets them): start-up lines, SIGHUP reload.
        self.config: Optional[Options] = None
        self.line_factory: Optional[LineTrackerFactory] = None
        # The line door's node sessions, read by the admin API and /metrics.
        self.line_sessions: Optional[SessionRegistry] = None
        self.totals: Optional[TotalsRecorder] = None
        # The WebSocket door (browser peers), read by /metrics.
        self.ws_factory: Optional[WsTrackerFactory] = None
        # Connection caps and request allowances shared by the doors.
        self.limits: Optional[DoorLimits] = None

    def privilegedStartService(self) -> None:
        # Every listener binds here, before any service starts. If one cannot,
        # those already bound are closed again and start-up stops with one line
        # naming the door, the endpoint and the cause: never a tracker running
        # with a door missing, never a traceback.
        Service.privilegedStartService(self)
        bound = []
        for child in self:
            try:
                child.privilegedStartService()
            except Exception as e:
                for listener in bound:
                    listener.stopService()
                cause = e if isinstance(e, CannotListenError) else "%s: %s" % (type(e).__name__, e)
                raise SystemExit("tracker: cannot start %s: %s" % (child.name, cause))
            if isinstance(child, (StreamServerEndpointService, UDPServer)):
                bound.append(child)

    def startService(self) -> None:
        super().startService()  # persistence first: the swarms are restored before requests
        if self.config is not None:
            log_started(self, self.config)  # version, settings file, database, bound doors
        log.info("tracker started: {swarms} swarms, {peers} peers in memory",
                 swarms=len(self.core.swarms), peers=self.core.peer_count)


def _listen(top: TrackerService, reactor, door: str, descriptions, factory) -> None:
    """A listener per endpoint string, each a child service of `top`."""
    for description in descriptions:
        # serverFromString, with TLS that answers ALPN clients and a one-line error.
        if top.reuse_port and door != "admin":  # --reuse-port: shared with other processes
            endpoint = ReusePortEndpoint(reactor, description)
        else:
            endpoint = server_endpoint(reactor, description, door, factory)
        listener = StreamServerEndpointService(endpoint, factory)
        # Fail start-up (with the endpoint's error) rather than run without the door.
        listener._raiseSynchronously = True
        listener.setName("%s %s" % (door, description))
        listener.setServiceParent(top)


def _every(top: TrackerService, reactor, interval_s: float, call) -> None:
    timer = TimerService(interval_s, call)
    timer.clock = reactor
    timer.setServiceParent(top)


def _udp_door(top: TrackerService, reactor, config: Options, replicator) -> None:
    """The UDP door: one protocol per --udp address, sharing connection ids,
    the latency histogram and the batch counters."""
    core, limits = top.core, top.limits
    # --udp-batch: datagrams per recvmmsg (0: off; the start-up log says why).
    batch_size, top.udp_batch_off = batch_size_for(config["udp-batch"])
    udp_settings = UDPDoorSettings(allow_ip_field=config["allow-ip-param"],
                                   connection_id_max_age_s=config["udp-connection-id-max-age"],
                                   batch_size=batch_size)
    connection_ids = make_connection_ids(reactor, udp_settings.connection_id_max_age_s,
                                         replicator)
    for host, port in config["udp"]:
        protocol = UDPTrackerProtocol(core, reactor, udp_settings, connection_ids)
        protocol.noisy = False  # no 'Starting protocol <repr>' line; startlog names the door
        protocol.rate_limiter = limits.requests
        if top.udp_protocol is None:
            top.udp_protocol = protocol
        protocol.latency = top.udp_protocol.latency  # one histogram for the door
        protocol.batch_stats = top.udp_protocol.batch_stats  # and one set of batch counters
        protocol.batch_off = top.udp_batch_off
        server = ReusePortUDPServer if top.reuse_port else UDPServer
        listener = server(port, protocol, interface=host, reactor=reactor)
        listener.setName("udp %s:%d" % (host, port))
        listener.setServiceParent(top)


def _ws_door(top: TrackerService, reactor, config: Options) -> None:
    """The WebSocket door for browser peers (tracker/ws/)."""
    top.ws_factory = WsTrackerFactory(top.core, reactor, ws_settings(config))
    top.ws_factory.limiter, top.ws_factory.rate_limiter = top.limits.connections, top.limits.requests
    _listen(top, reactor, "ws", config["ws"], top.ws_factory)
    _every(top, reactor, TIMEOUT_CHECK_S, top.ws_factory.tick)


def _admin_door(top: TrackerService, reactor, config: Options) -> None:
    """The admin listener: API, /metrics, /healthz and the status page."""
    context = AdminContext(top.core, reactor, config["admin-token"], top.persistence,
                           top.line_sessions, top.totals,
                           host_rule=HostRule.for_endpoints(config["admin"], config["admin-host"]))
    context.ws = top.ws_factory  # the WebSocket door's figures for /metrics and /api/status
    if top.line_factory is not None:  # the settings' node tokens, as reloaded (/api/tokens)
        context.config_tokens = lambda: top.line_factory.settings.tokens
    context.cluster = top.cluster  # the replicator's figures (--redis), or None
    context.limits = top.limits  # connection caps and request allowances
    # Every configured door's series from the start; latencies where a door records them.
    context.doors = tuple(door for door in ("http", "udp", "line", "ws") if config[door])
    context.door_factories = {door: factory for door, factory in (
        ("http", top.http_factory), ("udp", top.udp_protocol), ("line", top.line_factory),
        ("ws", top.ws_factory)) if factory is not None and door in context.doors}
    # /healthz answers before the token and Host checks (a load balancer's probe).
    site = Site(WithLiveness(AdminRoot(context, metrics_resource(context), StatusPage())),
                logFormatter=redacting_log_formatter)
    site.noisy = False
    _listen(top, reactor, "admin", config["admin"], site)


def makeService(config: Options, reactor=None) -> TrackerService:
    """Build the tracker service from parsed options. Opens the database (so a
    bad file fails at once, with StoreError) but touches no socket until started."""
    if reactor is None:
        from twisted.internet import reactor
    changes = ChangeLog() if config["db"] != "off" or config["redis"] else None
    core = TrackerCore(core_settings(config), changes=changes)
    fix_malloc_threshold()  # freed swarm tables go back to the system (see there)
    top = TrackerService(core)
    top.config = config
    top.limits = limits = DoorLimits.from_settings(
        config["max-connections"], config["max-connections-per-address"],
        config["request-rate"], config["request-burst"])

    store = None
    top.reuse_port = config["reuse-port"]
    replicator = store_log = None
    if config["redis"]:  # several instances sharing swarms (docs/cluster.md)
        replicator = top.cluster = make_replicator(config, core, changes, reactor,
                                                   with_store=config["db"] != "off")
        store_log = replicator.store_feed
    if config["db"] != "off":
        # First child: restores the swarms before any door starts, stops after them.
        store = SQLiteStore(open_database(config["db"]), config["db"])
        core.store_log = changes if store_log is None else store_log
        top.persistence = PersistenceService(core, core.store_log, store, reactor,
                                             config["flush-interval"])
        top.persistence.setServiceParent(top)
    if replicator is not None:
        # Next: loads the shared swarms (after the database's) before any door serves.
        replicator.setServiceParent(top)
    top.totals = TotalsRecorder(core, reactor, changes, store)
    top.totals.setServiceParent(top)

    http_factory = top.http_factory = HTTPTrackerFactory(core, reactor, http_settings(config))
    http_factory.limiter, http_factory.rate_limiter = limits.connections, limits.requests
    _listen(top, reactor, "http", config["http"], http_factory)
    if config["udp"]:
        _udp_door(top, reactor, config, replicator)

    _every(top, reactor, TIMEOUT_CHECK_S, http_factory.tick)

    if config["line"]:
        settings = LineDoorSettings(
            grace_s=config["line-grace"], idle_timeout_s=config["line-idle-timeout"],
            max_line=config["line-max-length"], tokens=config["node-token"],
            auth=config["line-auth"], allow_ip_param=config["allow-ip-param"],
            max_entries=config["line-max-entries"], max_event_backlog=config["line-event-backlog"],
            stall_timeout_s=config["line-stall-timeout"],
            max_subscriptions=config["line-max-subscriptions"])
        top.line_sessions = SessionRegistry(core, reactor, settings.grace_s, settings.max_entries)
        if replicator is not None:  # node ids bound across instances (tracker/cluster/nodes.py)
            top.line_sessions.bindings = replicator.node_bindings
            replicator.node_bindings.on_taken = top.line_sessions.taken_elsewhere
        line_factory = LineTrackerFactory(core, reactor, settings, top.line_sessions)
        top.line_factory = line_factory
        line_factory.limiter = limits.connections
        _listen(top, reactor, "line", config["line"], line_factory)
        _every(top, reactor, TIMEOUT_CHECK_S, line_factory.tick)

    if config["ws"]:
        _ws_door(top, reactor, config)

    if config["admin"]:
        _admin_door(top, reactor, config)

    ExpiryService(core, reactor, config["sweep-interval"], config["sweep-slice"]).setServiceParent(top)
    return top
