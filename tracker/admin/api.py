"""The admin API: JSON over HTTP (twisted.web), `/metrics`, and the status page.

Low volume, so it uses twisted.web. Every request needs the admin token when
one is configured (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a
browser); a wrong or missing one gets 401 and changes nothing.
"""
from __future__ import annotations

import heapq
import hmac
import ipaddress
import json
import secrets
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tracker.core import MODE_ALLOW, MODE_OPEN, Swarm, TrackerCore
from tracker.core.changes import (AccessRuleAdded, AccessRuleRemoved, BanAdded, BanRemoved, ModeSet,
                                  NodeTokenRemoved, NodeTokenSet, OperatorChange)
from tracker.cluster.status import cluster_status
from tracker.admin.guard import LOOPBACK_NAMES, HostRule, body_refusal, refusal
from tracker.core.swarm import PeerView
from tracker.line.protocol import NODE_ID, LineError, parse_info_hash
from tracker.startlog import build_info

log = Logger()
JSON = b"application/json"
SORT_KEYS: Dict[str, Callable[[Swarm], Any]] = {
    "peers": len,
    "seeders": lambda s: s.seeders,
    "leechers": lambda s: s.leechers,
    "completed": lambda s: s.completed,
    "first_seen": lambda s: s.first_seen,
}
MAX_PAGE = 1000
# Deepest page offset served: a page is found by keeping offset + limit swarms.
MAX_OFFSET = 10_000
# Swarms examined per reactor turn when a page of them is ordered.
SCAN_SLICE = 20_000
MAX_NOTE = 1000
# The door label of the admin listener's refusals in tracker_failures_total.
ADMIN_DOOR = "admin"
# Where a node token comes from: the settings (command line or file, reloaded
# on SIGHUP) or the admin API (kept in the database); the API's wins.
TOKEN_FROM_CONFIG, TOKEN_FROM_API = "config", "admin-api"


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_hash(text: str) -> bytes:
    """The line protocol's hash parser (hex or base32), with an admin error."""
    try:
        return parse_info_hash(text)
    except LineError as error:
        raise AdminError(400, error.message)


class AdminContext:
    """What the admin API reads and steers; built by makeService."""

    def __init__(self, core: TrackerCore, clock, token: Optional[str] = None,
                 persistence=None, sessions=None, totals=None,
                 host_rule: Optional[HostRule] = None) -> None:
        self.core = core
        self.clock = clock
        self.token = token
        # The Host names this listener answers to (loopback only unless told).
        self.host_rule = host_rule or HostRule(frozenset(LOOPBACK_NAMES))
        self.persistence = persistence
        # The line door's SessionRegistry (tracker/sessions.py), or None.
        self.sessions = sessions
        self.totals = totals
        self.started_at = clock.seconds()
        # (kind, subject) -> (note, added_at) for the access rules, bans and
        # tokens: the store's (loaded at start), or this run's only without one.
        self.notes = persistence.notes if persistence is not None else {}
        # The node tokens of the settings, as the line door has them now.
        self.config_tokens: Callable[[], Dict[str, str]] = dict
        # The WebSocket door (its figures in /api/status), or None.
        self.ws = None

    def noted(self, kind: str, subject: str, note: Optional[str] = None) -> float:
        """Remember an entry's note and when it was added (now, returned), for the lists."""
        now = self.clock.seconds()
        self.notes[(kind, subject)] = (note, now)
        return now

    def entry(self, kind: str, subject: str, key: str) -> Dict[str, Any]:
        note, added_at = self.notes.get((kind, subject), (None, None))
        return {key: subject, "note": note, "added_at": added_at}

    def record(self, change: OperatorChange) -> None:
        """Persist an admin change (through the change log, written off this thread)."""
        changes = self.core.changes
        if changes is not None:
            changes.operator_changed(change)


def peer_json(peer: PeerView, sessions) -> Dict[str, Any]:
    """A live peer. Its byte counts are not kept in memory: the database has the
    latest (`tracker-admin --db`)."""
    out = {"peer_id": peer.peer_id.hex(), "ip": peer.ip, "port": peer.port, "door": peer.door,
           "seeder": peer.seeder,
           "last_seen": None if peer.last_seen == float("inf") else peer.last_seen}
    if sessions is not None and peer.door == "line":
        node = sessions.by_peer_id(peer.peer_id)
        if node is not None:
            out["node"] = node.id
            out["region"] = node.region
    return out


def ordered_page(clock, swarms: Dict[bytes, Swarm], key: Callable[[Swarm], Any], descending: bool,
                 first: int, count: int, keep: Optional[Callable[[Swarm], bool]] = None) -> Deferred:
    """The swarms at places [first, first + count) in order of `key`, and how
    many swarms were considered, found SCAN_SLICE swarms per reactor turn so
    that a million swarms never hold the reactor for long. Only the page is
    ordered; swarms changing meanwhile make the order approximate, as any
    snapshot of a live tracker is."""
    candidates = list(swarms.values())
    pick = heapq.nlargest if descending else heapq.nsmallest
    done: Deferred = Deferred()
    state: Dict[str, Any] = {"best": [], "total": 0}

    def step(start: int) -> None:
        try:
            chunk = candidates[start:start + SCAN_SLICE]
            if keep is not None:
                chunk = [s for s in chunk if keep(s)]
            state["total"] += len(chunk)
            state["best"] = pick(first + count, state["best"] + chunk, key=key)
        except Exception:
            done.errback()
            return
        if start + SCAN_SLICE < len(candidates):
            clock.callLater(0, step, start + SCAN_SLICE)
        else:
            done.callback((state["best"][first:], state["total"]))

    step(0)
    return done


def first_peers(swarm: Swarm, limit: int) -> List[PeerView]:
    """Up to `limit` of a swarm's peers, building views of those only."""
    views: List[PeerView] = []
    for pool in swarm.pools():
        take = min(limit - len(views), len(pool))
        if take <= 0:
            break
        views.extend(pool.views_of([(0, take)]))
    return views


def swarm_json(swarm: Swarm) -> Dict[str, Any]:
    seeders = swarm.seeders
    return {"info_hash": swarm.info_hash.hex(), "seeders": seeders,
            "leechers": len(swarm) - seeders, "peers": len(swarm),
            "completed": swarm.completed, "first_seen": swarm.first_seen,
            "name": swarm.name, "size": swarm.size}


class ApiResource(Resource):
    """/api/...: a small router over (method, path) to handler methods."""

    isLeaf = True

    def __init__(self, context: AdminContext) -> None:
        super().__init__()
        self.context = context

    def render(self, request: Request) -> bytes:
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method.decode()
        try:
            handler, args = self._route(method, path)
            body = handler(request, *args)
        except Exception:
            return self._reply(request, method, path, Failure())
        if not isinstance(body, Deferred):
            return self._reply(request, method, path, body)
        # Answered over several reactor turns (a page ordered from many swarms).
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def reply(result) -> None:
            if not gone:
                request.write(self._reply(request, method, path, result))
                request.finish()

        body.addBoth(reply)
        return NOT_DONE_YET

    @staticmethod
    def _reply(request: Request, method: str, path: List[str], body) -> bytes:
        """The JSON reply for a handler's result, or for its failure."""
        status = 200
        if isinstance(body, Failure):
            if body.check(AdminError):
                status, body = body.value.status, {"error": body.value.message}
            else:
                log.failure("admin API error on {method} {path}", body, method=method,
                            path="/".join(path))
                status, body = 500, {"error": "internal error (logged)"}
        request.setResponseCode(status)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body, sort_keys=True).encode() + b"\n"

    def _route(self, method: str, path: List[str]) -> Tuple[Callable, tuple]:
        if not path:
            raise AdminError(404, "see the README for the admin API's paths")
        head, rest = path[0], path[1:]
        routes = {
            ("GET", "health"): self.health, ("GET", "status"): self.status,
            ("GET", "swarms"): self.swarms, ("GET", "nodes"): self.nodes,
            ("GET", "content"): self.content, ("GET", "totals"): self.series,
            ("GET", "mode"): self.get_mode, ("PUT", "mode"): self.set_mode,
            ("GET", "bans"): self.list_bans, ("POST", "bans"): self.add_ban,
            ("DELETE", "bans"): self.remove_ban,
            ("GET", "tokens"): self.list_tokens, ("POST", "tokens"): self.add_token,
            ("DELETE", "tokens"): self.remove_token,
            ("GET", "access"): self.list_access, ("POST", "access"): self.add_access,
            ("DELETE", "access"): self.remove_access,
        }
        if head == "swarms" and len(rest) == 1 and method == "GET":
            return self.swarm, (rest[0],)
        if head == "access" and len(rest) == 1:
            handler = routes.get((method, "access"))
            if handler is not None:
                return handler, (rest[0],)
        if rest and head != "access":
            raise AdminError(404, "no such path")
        handler = routes.get((method, head))
        if handler is None:
            known = {name for (_, name) in routes}
            raise AdminError(405 if head in known else 404,
                             "method not allowed" if head in known else "no such path")
        return handler, ()

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _arg(request: Request, name: str, default: Optional[str] = None) -> Optional[str]:
        values = request.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else default

    def _int_arg(self, request: Request, name: str, default: int, high: int) -> int:
        value = self._arg(request, name)
        if value is None:
            return default
        if not value.isdigit() or int(value) > high:
            raise AdminError(400, "%s must be a whole number up to %d" % (name, high))
        return int(value)

    @staticmethod
    def _body(request: Request) -> Dict[str, Any]:
        raw = request.content.read() if request.content is not None else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise AdminError(400, "the body must be JSON")
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        return body

    @staticmethod
    def _note(body: Dict[str, Any]) -> Optional[str]:
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise AdminError(400, "note must be text of at most %d characters" % MAX_NOTE)
        return note

    # -- reading --------------------------------------------------------------------

    def health(self, request: Request) -> Dict[str, Any]:
        return {"status": "ok"}

    def status(self, request: Request) -> Dict[str, Any]:
        context = self.context
        core = context.core
        out: Dict[str, Any] = dict(core.totals())
        out.update({
            "version": build_info()["version"],
            "uptime_s": round(context.clock.seconds() - context.started_at, 3),
            "announces": dict(core.stats.announces), "scrapes": dict(core.stats.scrapes),
            "failures": core.stats.failures_by_door(), "expired_peers": core.stats.expired_peers,
            "access_mode": core.access.mode,
            "interval_s": core.settings.interval_s,
        })
        sessions = context.sessions
        out["line"] = None if sessions is None else {
            "connections": sessions.connection_stats.open, "nodes": len(sessions),
            "connected_nodes": sessions.connected()}
        ws = context.ws
        out["ws"] = None if ws is None else {
            "connections": ws.stats.open, "peers": ws.browsers.peer_count,
            "swarms": len(ws.browsers.swarms), "offers_relayed": ws.stats.offers_relayed,
            "answers_relayed": ws.stats.answers_relayed}
        persistence = context.persistence
        if persistence is not None:
            stats = persistence.stats
            out["persistence"] = {
                "path": persistence.store.path, "flushes": stats.flushes,
                "failures": stats.failures, "rows": stats.rows, "backlog": persistence.backlog,
                "last_flush_s": stats.last_duration_s, "restore_s": stats.restore_s,
                "file_lost": stats.file_lost, "problem": stats.problem}
        else:
            out["persistence"] = None
        cluster = getattr(context, "cluster", None)  # --redis: this instance and the others
        out["cluster"] = None if cluster is None else cluster_status(cluster, context.clock.seconds())
        return out

    def swarms(self, request: Request) -> Dict[str, Any]:
        sort = self._arg(request, "sort", "peers")
        if sort not in SORT_KEYS:
            raise AdminError(400, "sort must be one of: " + ", ".join(sorted(SORT_KEYS)))
        order = self._arg(request, "order", "desc")
        if order not in ("asc", "desc"):
            raise AdminError(400, "order must be asc or desc")
        limit = self._int_arg(request, "limit", 50, MAX_PAGE)
        offset = self._int_arg(request, "offset", 0, MAX_OFFSET)
        found = ordered_page(self.context.clock, self.context.core.swarms, SORT_KEYS[sort],
                             order == "desc", offset, limit)
        return found.addCallback(lambda result: {
            "total": result[1], "offset": offset, "limit": limit, "sort": sort, "order": order,
            "swarms": [swarm_json(s) for s in result[0]]})

    def swarm(self, request: Request, text: str) -> Dict[str, Any]:
        swarm = self.context.core.swarms.get(parse_hash(text))
        if swarm is None:
            raise AdminError(404, "no such swarm")
        out = swarm_json(swarm)
        asked = self._int_arg(request, "limit", 200, 10 ** 9)
        # A page is capped so that no request holds the reactor for long.
        limit = min(asked, MAX_PAGE)
        if asked > limit:
            out["limit_capped"] = "at most %d peers are listed per request" % MAX_PAGE
        out["limit"] = limit
        out["peer_list"] = [peer_json(p, self.context.sessions) for p in first_peers(swarm, limit)]
        return out

    def nodes(self, request: Request) -> Dict[str, Any]:
        registry = self.context.sessions
        sessions = [] if registry is None else registry.sessions()
        return {"nodes": [{"node": s.id, "ip": s.ip, "port": s.port, "region": s.region,
                           "connected": s.connected, "entries": len(s.entries)}
                          for s in sessions]}

    def content(self, request: Request) -> Dict[str, Any]:
        limit = self._int_arg(request, "limit", 100, MAX_PAGE)
        offset = self._int_arg(request, "offset", 0, MAX_OFFSET)
        found = ordered_page(self.context.clock, self.context.core.swarms, SORT_KEYS["first_seen"],
                             False, offset, limit,
                             keep=lambda s: s.name is not None or s.size is not None or s.completed)
        return found.addCallback(lambda result: {
            "total": result[1], "content": [swarm_json(s) for s in result[0]]})

    def series(self, request: Request) -> Dict[str, Any]:
        minutes = self._int_arg(request, "minutes", 6 * 60, 24 * 60)
        totals = self.context.totals
        since = int(self.context.clock.seconds() // 60) - minutes
        return {"minutes": minutes, "series": [] if totals is None else totals.series(since)}

    # -- steering --------------------------------------------------------------------

    def get_mode(self, request: Request) -> Dict[str, Any]:
        return {"mode": self.context.core.access.mode}

    def set_mode(self, request: Request) -> Dict[str, Any]:
        body = self._body(request)
        mode = body.get("mode")
        if mode not in (MODE_OPEN, MODE_ALLOW):
            raise AdminError(400, "mode must be 'open' or 'allow'")
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise AdminError(400, "dry_run must be true or false")
        core = self.context.core
        if dry_run:
            return self._mode_preview(mode)
        core.access.set_mode(mode)
        self.context.record(ModeSet(mode))
        dropped = 0
        if mode == MODE_ALLOW:  # content that is no longer allowed leaves at once
            for info_hash in [h for h in core.swarms if h not in core.access.allowed]:
                dropped += core.drop_swarm(info_hash)
        return {"mode": mode, "peers_dropped": dropped}

    def _mode_preview(self, mode: str) -> Dict[str, Any]:
        """What switching to `mode` would do, changing nothing: the live peers it
        would drop (those of swarms not on the allow list), counted exactly from
        the allowed swarms' sizes, so it costs one lookup per allowed hash."""
        core = self.context.core
        allowed = core.access.allowed
        drop = 0
        if mode == MODE_ALLOW:
            swarms = core.swarms
            kept = sum(len(swarms[h]) for h in allowed if h in swarms)
            drop = core.peer_count - kept
        return {"mode": mode, "dry_run": True, "changed": False, "current": core.access.mode,
                "allowed": len(allowed), "peers": core.peer_count, "would_drop": drop}

    def list_access(self, request: Request, list_name: str) -> Dict[str, Any]:
        hashes = sorted(h.hex() for h in self._access_list(list_name))
        return {"list": list_name, "info_hashes": hashes,
                "entries": [self.context.entry(list_name, h, "info_hash") for h in hashes]}

    def _access_list(self, list_name: str):
        access = self.context.core.access
        if list_name == "allow":
            return access.allowed
        if list_name == "deny":
            return access.denied
        raise AdminError(404, "the access lists are allow and deny")

    def add_access(self, request: Request, list_name: str) -> Dict[str, Any]:
        self._access_list(list_name)
        body = self._body(request)
        info_hash = parse_hash(str(body.get("info_hash", "")))
        note = self._note(body)
        core = self.context.core
        added = core.access.add(list_name, info_hash)
        added_at = self.context.noted(list_name, info_hash.hex(), note)
        self.context.record(AccessRuleAdded(list_name, info_hash, note, added_at))
        # Refused content leaves its swarm at once.
        dropped = core.drop_swarm(info_hash) if list_name == "deny" else 0
        return {"list": list_name, "info_hash": info_hash.hex(), "added": added,
                "peers_dropped": dropped}

    def remove_access(self, request: Request, list_name: str) -> Dict[str, Any]:
        self._access_list(list_name)
        info_hash = parse_hash(self._arg(request, "info_hash", "") or "")
        core = self.context.core
        if not core.access.remove(list_name, info_hash):
            raise AdminError(404, "%s is not on the %s list" % (info_hash.hex(), list_name))
        self.context.record(AccessRuleRemoved(list_name, info_hash))
        self.context.notes.pop((list_name, info_hash.hex()), None)
        dropped = 0
        if list_name == "allow" and core.access.mode == MODE_ALLOW:
            dropped = core.drop_swarm(info_hash)
        return {"list": list_name, "info_hash": info_hash.hex(), "removed": True,
                "peers_dropped": dropped}

    def list_bans(self, request: Request) -> Dict[str, Any]:
        bans = sorted(self.context.core.access.bans)
        return {"bans": bans, "entries": [self.context.entry("ban", c, "cidr") for c in bans]}

    def add_ban(self, request: Request) -> Dict[str, Any]:
        body = self._body(request)
        note = self._note(body)
        try:
            cidr = self.context.core.access.ban(str(body.get("cidr", "")))
        except ValueError:
            raise AdminError(400, "cidr must be an address or network, like 192.0.2.0/24")
        self.context.record(BanAdded(cidr, note, self.context.noted("ban", cidr, note)))
        return {"cidr": cidr, "banned": True}

    def remove_ban(self, request: Request) -> Dict[str, Any]:
        try:
            cidr = str(ipaddress.ip_network(self._arg(request, "cidr", "") or "", strict=False))
            removed = self.context.core.access.unban(cidr)
        except ValueError:
            raise AdminError(400, "cidr must be an address or network, like 192.0.2.0/24")
        if not removed:
            raise AdminError(404, "%s is not banned" % cidr)
        self.context.record(BanRemoved(cidr))
        self.context.notes.pop(("ban", cidr), None)
        return {"cidr": cidr, "removed": True}

    def list_tokens(self, request: Request) -> Dict[str, Any]:
        """Every node token, from the settings and from this API, by node, with
        where it comes from and whether it is the one checked (the API's wins).
        Secrets are never shown again."""
        context = self.context
        from_api = context.core.access.node_tokens
        from_config = context.config_tokens()
        tokens = [dict(context.entry("token", node, "node"), source=TOKEN_FROM_API, in_use=True)
                  for node in from_api]
        tokens += [{"node": node, "source": TOKEN_FROM_CONFIG, "note": None, "added_at": None,
                    "in_use": node not in from_api} for node in from_config]
        tokens.sort(key=lambda t: (t["node"], t["source"]))
        return {"nodes": sorted(set(from_api) | set(from_config)), "tokens": tokens}

    def add_token(self, request: Request) -> Dict[str, Any]:
        body = self._body(request)
        node = str(body.get("node", ""))
        if not NODE_ID.match(node):
            raise AdminError(400, "node must be 1-64 letters, digits, '.', '_' or '-'")
        token = body.get("token") or secrets.token_urlsafe(24)
        if not isinstance(token, str) or len(token) > 256 or " " in token:
            raise AdminError(400, "token must be text without spaces, at most 256 characters")
        self.context.core.access.node_tokens[node] = token
        self.context.record(NodeTokenSet(node, token, self.context.noted("token", node)))
        return {"node": node, "token": token}

    def remove_token(self, request: Request) -> Dict[str, Any]:
        node = self._arg(request, "node", "") or ""
        if self.context.core.access.node_tokens.pop(node, None) is None:
            raise AdminError(404, "node %s has no token" % node)
        self.context.record(NodeTokenRemoved(node))
        self.context.notes.pop(("token", node), None)
        return {"node": node, "removed": True}


class Unauthorized(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"www-authenticate", b'Bearer realm="tracker-admin"')
        return b'{"error": "a valid admin token is needed"}\n'


class Refused(Resource):
    """A request refused before any token check or handler (see tracker/admin/guard.py)."""

    isLeaf = True

    def __init__(self, status: int, message: str) -> None:
        super().__init__()
        self.status = status
        self.message = message

    def render(self, request: Request) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps({"error": self.message}).encode() + b"\n"


class AdminRoot(Resource):
    """Checks the token, then serves /api, /metrics and the status page at /."""

    def __init__(self, context: AdminContext, metrics: Resource, page: Resource) -> None:
        super().__init__()
        self.context = context
        self.api = ApiResource(context)
        self.metrics = metrics
        self.page = page

    def authorised(self, request: Request) -> bool:
        token = self.context.token
        if not token:
            return True
        header = (request.getHeader(b"authorization") or b"").decode("utf-8", "replace")
        given = header[7:] if header.startswith("Bearer ") else None
        if given is None:
            values = request.args.get(b"token")
            given = values[0].decode("utf-8", "replace") if values else ""
        return hmac.compare_digest(given.encode(), token.encode())

    def gate(self, request: Request) -> Optional[Resource]:
        """What answers instead of the resource: a refusal (foreign Host or
        Origin, no valid token, a body not declared JSON), each counted."""
        refused = refusal(request, self.context.host_rule)
        if refused is None and not self.authorised(request):
            self.context.core.stats.count_failure("token", ADMIN_DOOR)
            return Unauthorized()
        refused = refused or body_refusal(request)
        if refused is not None:
            status, reason, message = refused
            # The guard's reasons start with the door's name, a label of its own here.
            self.context.core.stats.count_failure(reason[len("admin_"):] if reason.startswith(
                "admin_") else reason, ADMIN_DOOR)
            return Refused(status, message)
        return None

    def getChild(self, path: bytes, request: Request) -> Resource:
        gate = self.gate(request)
        if gate is not None:
            return gate
        if path == b"api":
            return self.api
        if path == b"metrics":
            return self.metrics
        if path == b"":
            return self.page
        return _NotFound()

    def render(self, request: Request) -> bytes:
        gate = self.gate(request)
        if gate is not None:
            return gate.render(request)
        return self.page.render(request)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", JSON)
        return b'{"error": "no such path"}\n'
