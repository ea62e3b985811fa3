"""Every setting of the tracker in one place: its default, its type and its help.

Settings come from the command line (`twistd -n tracker --interval 900`), from a
TOML file (`--config PATH`, else `$TRACKER_CONFIG`, else `./tracker.toml` when it
exists), or from the defaults below. The command line beats the file, and the
file beats the default. Keys in the file are the long option names
(`min-interval = 600`; underscores work too).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from twisted.python import usage

from tracker.admin.guard import endpoint_is_local

if sys.version_info >= (3, 11):
    import tomllib
else:  # PyPy 3.9
    import tomli as tomllib

_SETTINGS_HELP = __doc__
CONFIG_ENV = "TRACKER_CONFIG"
DEFAULT_CONFIG_PATH = "tracker.toml"
# One dual-stack socket: IPv6 clients, and IPv4 clients as ::ffff:a.b.c.d.
DEFAULT_HTTP = "tcp6:6969:interface=\\:\\:"
DEFAULT_LINE = "tcp6:6970:interface=\\:\\:"
DEFAULT_ADMIN = "tcp:6971:interface=127.0.0.1"
DEFAULT_WS = "tcp6:6972:interface=\\:\\:"


def physical_memory_bytes() -> int:
    """This machine's memory (4 GiB when the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 4 * 2 ** 30


# Half the machine's memory for swarms and peers at the worst cost measured for
# each (RSS): a swarm of one peer, about 0.6 KiB on CPython and 1.4 KiB on PyPy;
# a peer of a large swarm, under 0.2 KiB on either.
DEFAULT_MAX_SWARMS = physical_memory_bytes() // 2 // 1536
DEFAULT_MAX_PEERS = physical_memory_bytes() // 2 // 192


class Setting(NamedTuple):
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str


def _positive_int(value: Any) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be zero or more")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _optional_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return str(value)


def _endpoints(value: Any) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("must be an endpoint string or a list of them")
    return list(value)


def _udp_addresses(value: Any) -> List[Tuple[str, int]]:
    from tracker.doors.udp import parse_udp_address

    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("must be [HOST:]PORT or a list of them")
    if [str(v) for v in value] in (["off"], ["none"], [""]):
        return []
    return [parse_udp_address(str(v)) for v in value]


def _udp_batch(value: Any) -> str:
    from tracker.doors.mmsg import load

    mode = str(value).lower()
    if mode not in ("auto", "on", "off"):
        raise ValueError("must be auto, on or off")
    why = load()[1] if mode == "on" else ""
    if why:
        raise ValueError("batched UDP is not available here: %s" % why)
    return mode


def _endpoints_or_off(value: Any) -> List[str]:
    # `--ws off` given twice (a script adding it to a command line that has it) is still off.
    if value == "off" or (isinstance(value, list) and value and set(value) == {"off"}):
        return []
    return _endpoints(value)


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be zero or more")
    return number


def _node_tokens(value: Any) -> Dict[str, str]:
    """`ID=SECRET` strings (command line, TOML list) or a TOML table {ID = SECRET}."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        if isinstance(value, str):
            value = [value]
        pairs = []
        for item in value:
            node, sep, secret = str(item).partition("=")
            if not sep:
                raise ValueError("expected ID=SECRET")
            pairs.append((node, secret))
    tokens = {}
    for node, secret in pairs:
        if not node or not secret:
            raise ValueError("expected ID=SECRET with both parts")
        tokens[str(node)] = str(secret)
    return tokens


def _networks(value: Any) -> List[str]:
    import ipaddress

    if isinstance(value, str):
        value = [value]
    return [str(ipaddress.ip_network(str(v), strict=False)) for v in value]


def _proxy_header(value: Any) -> str:
    if str(value).lower() not in ("x-forwarded-for", "x-real-ip"):
        raise ValueError("must be X-Forwarded-For or X-Real-IP")
    return str(value)


def admin_is_local(endpoint: str) -> bool:
    """True for an endpoint reachable from this machine only (unix socket or
    loopback), decided from what Twisted would bind, not from the text."""
    return endpoint_is_local(endpoint)


def _host_names(value: Any) -> List[str]:
    names = [str(v).strip() for v in (value if isinstance(value, list) else [value])]
    for name in names:
        if not re.match(r"^[A-Za-z0-9._-]+$|^\[?[0-9A-Fa-f:.]+\]?$", name):
            raise ValueError("%r is not a host name or address" % name)
    return names


def _line_auth(value: Any) -> str:
    if value not in ("open", "token"):
        raise ValueError("must be open or token")
    return value


def _redis_url(value: Any) -> Optional[str]:
    """redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB], checked here so a typo fails at start."""
    if value is None or value == "":
        return None
    from tracker.cluster.url import parse_redis_url

    parse_redis_url(str(value))
    return str(value)


def _check_redis(options) -> None:
    """The Redis options that make sense only together."""
    url = options["redis"]
    for name in ("redis-cluster", "redis-ca", "redis-cert", "redis-key"):
        if options[name] and not url:
            raise usage.UsageError("--%s needs --redis" % name)
    for name in ("redis-ca", "redis-cert", "redis-key"):
        if options[name] and not url.startswith("rediss:"):
            raise usage.UsageError("--%s is for TLS: give --redis rediss://..." % name)
    if options["redis-key"] and not options["redis-cert"]:
        raise usage.UsageError("--redis-key needs --redis-cert")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


SETTINGS: List[Setting] = [
    Setting("http", [DEFAULT_HTTP], _endpoints,
            "HTTP tracker endpoint (Twisted endpoint string); repeat for several"),
    Setting("udp", ["6969"], _udp_addresses,
            "UDP tracker address [HOST:]PORT; repeat for several; 'off' for none"),
    Setting("line", [DEFAULT_LINE], _endpoints_or_off,
            "CDN line-protocol endpoint (Twisted endpoint string); repeat for several; 'off' for none"),
    Setting("line-grace", 60.0, _non_negative_float,
            "seconds a disconnected node's entries stay in their swarms"),
    Setting("line-idle-timeout", 300.0, _positive_float,
            "seconds a line connection may stay silent before it is closed"),
    Setting("line-max-length", 4096, _positive_int, "longest line accepted, bytes"),
    Setting("line-max-entries", 100_000, _positive_int,
            "most HAVE and WANT entries one CDN node may hold"),
    Setting("line-event-backlog", 1 << 20, _positive_int,
            "bytes of events held for a subscriber that is not reading before they coalesce "
            "into one RESYNC per swarm"),
    Setting("line-max-subscriptions", 1024, _positive_int,
            "most swarms one line connection may SUBSCRIBE to"),
    Setting("line-stall-timeout", 60.0, _positive_float,
            "seconds a line connection may read nothing while events wait before it is dropped"),
    Setting("ws", [DEFAULT_WS], _endpoints_or_off,
            "WebSocket (WebTorrent) endpoint for browser peers; an ssl: endpoint for wss://; "
            "repeat for several; 'off' for none"),
    Setting("ws-interval", 120, _positive_int,
            "announce interval sent to WebSocket peers, seconds (each announce brings new offers)"),
    Setting("ws-idle-timeout", 300.0, _positive_float,
            "seconds a WebSocket may stay silent (it is pinged at half) or read nothing before "
            "it is closed"),
    Setting("ws-max-message", 64 * 1024, _positive_int,
            "longest WebSocket message accepted, characters"),
    Setting("ws-max-offers", 10, _positive_int, "most WebRTC offers in one WebSocket announce"),
    Setting("ws-max-swarms", 100, _positive_int, "most swarms one WebSocket may join"),
    Setting("ws-max-peer-ids", 8, _positive_int,
            "most peer ids one WebSocket may announce with (a page's WebTorrent clients share "
            "one socket)"),
    Setting("node-token", [], _node_tokens,
            "ID=SECRET: node ID must say HELLO token=SECRET (repeat; none: no tokens needed)"),
    Setting("line-auth", None, _line_auth,
            "who may register a node id: 'token' (every node needs a valid token) or 'open' "
            "(any id; one with a token needs it; an id stays bound to the address it first "
            "registered from while its entries live) [default: token when --node-token is "
            "given, else open]"),
    Setting("admin", [DEFAULT_ADMIN], _endpoints_or_off,
            "admin API, metrics and status page endpoint; repeat for several; 'off' for none"),
    Setting("admin-token", None, _optional_text,
            "token the admin API requires (needed when it listens beyond loopback)"),
    Setting("admin-host", [], _host_names,
            "another Host name the admin listener answers to, beside loopback and its "
            "interface (repeatable)"),
    Setting("trusted-proxy", [], _networks,
            "CIDR of a reverse proxy whose client-address header is believed (repeatable)"),
    Setting("proxy-header", "X-Forwarded-For", _proxy_header,
            "header with the client address: X-Forwarded-For or X-Real-IP"),
    Setting("interval", 1800, _positive_int, "announce interval sent to clients, seconds"),
    Setting("min-interval", 900, _positive_int, "minimum announce interval sent to clients, seconds"),
    Setting("peer-ttl", None, lambda v: None if v is None else _positive_int(v),
            "seconds a peer stays without announcing (default: 2 x interval)"),
    Setting("numwant", 50, _non_negative_int, "peers returned when the client does not say"),
    Setting("max-numwant", 200, _non_negative_int, "most peers returned to one announce"),
    Setting("max-scrape-hashes", 100, _positive_int, "most info hashes in one scrape"),
    Setting("max-swarms", DEFAULT_MAX_SWARMS, _positive_int,
            "most swarms held; an announce that would add one more is refused "
            "(default: from this machine's memory)"),
    Setting("max-peers", DEFAULT_MAX_PEERS, _positive_int,
            "most peers held; an announce that would add one more is refused "
            "(default: from this machine's memory)"),
    Setting("max-write-backlog", 50000, _positive_int,
            "changes waiting to be written to the database at most; while this many wait, "
            "an announce that would add a peer is refused (a slow or failing disk)"),
    Setting("allow-ip-param", False, _flag,
            "honour the announce 'ip' parameter (HTTP), IP field (UDP) and HELLO ip= "
            "without a node token (line)"),
    Setting("tracker-id", None, _optional_text, "'tracker id' sent in every announce reply"),
    Setting("warning-message", None, _optional_text,
            "'warning message' sent in every announce reply (for example a planned move)"),
    Setting("udp-connection-id-max-age", 300.0, _positive_float,
            "seconds a UDP connection id stays valid (BEP 15 asks for at least 120)"),
    Setting("udp-batch", "auto", _udp_batch,
            "read UDP datagrams and send their replies many per system call (recvmmsg/"
            "sendmmsg through cffi, Linux): auto (where available), on (refuse to start "
            "without it) or off (one recvfrom and sendto per datagram)"),
    Setting("db", "tracker.sqlite3", str,
            "SQLite file (relative to --data-dir); ':memory:' to keep nothing, 'off' for no persistence"),
    Setting("data-dir", ".", str, "directory for the database file"),
    Setting("flush-interval", 1.0, _positive_float,
            "seconds between writes of changed swarm state to the database"),
    Setting("sweep-interval", 60.0, _positive_float, "seconds between expiry sweeps"),
    Setting("sweep-slice", 10000, _positive_int,
            "peers examined per reactor turn during an expiry sweep"),
    Setting("http-idle-timeout", 30.0, _positive_float,
            "seconds an idle keep-alive HTTP connection stays open"),
    Setting("http-request-timeout", 10.0, _positive_float,
            "seconds a client has to send a whole request head"),
    Setting("max-connections", 0, _non_negative_int,
            "most open connections over all stream doors (HTTP, line, WebSocket); 0: the "
            "open-file limit less a reserve of 128 for the admin listener and the database"),
    Setting("max-connections-per-address", 1024, _positive_int,
            "most open stream connections from one client address"),
    Setting("request-rate", 100.0, _non_negative_float,
            "announces and scrapes per second one client address (an IPv6 /64) may make on "
            "average over HTTP, UDP and WebSocket; 0 for no limit"),
    Setting("request-burst", 2000, _positive_int,
            "announces and scrapes one client address may make at once before --request-rate "
            "applies"),
    Setting("redis", None, _redis_url,
            "share swarms with other tracker processes through Redis at this URL "
            "(redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]; rediss: over TLS; "
            "docs/cluster.md); none: one process on its own"),
    Setting("redis-cluster", False, _flag,
            "--redis names one node of a Redis Cluster: ask it which node holds the "
            "tracker's keys, and try the others when that one is lost"),
    Setting("redis-ca", None, _optional_text,
            "rediss:// only: trust the CA certificates in this PEM file instead of the "
            "system's"),
    Setting("redis-cert", None, _optional_text,
            "rediss:// only: present this client certificate (PEM; with its key unless "
            "--redis-key is given)"),
    Setting("redis-key", None, _optional_text,
            "rediss:// only: the private key (PEM) of --redis-cert"),
    Setting("instance-id", None, _optional_text,
            "this process's name among the instances sharing --redis [default: host name:HTTP port]"),
    Setting("reuse-port", False, _flag,
            "bind the HTTP, UDP, line and WebSocket ports with SO_REUSEPORT, so several "
            "processes (sharing --redis) serve the same ports; plain tcp: endpoints only"),
]

_BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
_FLAGS = {s.name for s in SETTINGS if s.convert is _flag}
_REPEATABLE = {"http", "udp", "line", "ws", "node-token", "admin", "admin-host", "trusted-proxy"}


def _describe(setting: Setting) -> str:
    if setting.default is None or setting.convert is _flag:
        return setting.help
    default = setting.default
    if isinstance(default, list):
        default = " ".join(default)
    return "%s [default: %s]" % (setting.help, default)


def load_config_file(path: str) -> Dict[str, Any]:
    """Read a TOML settings file; raise UsageError with a one-line reason."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError("cannot read config file %s: %s" % (path, e.strerror))
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError("config file %s is not valid TOML: %s" % (path, e))
    values = {}
    for key, value in raw.items():
        name = key.replace("_", "-")
        if name not in _BY_NAME:
            raise usage.UsageError("unknown setting %r in config file %s" % (key, path))
        values[name] = value
    return values


class Options(usage.Options):
    """`twistd tracker` options; the `.tac` parses the same with no arguments."""

    synopsis = "[options]"
    longdesc = _SETTINGS_HELP
    optParameters = [
        ["config", "c", None, "TOML settings file (default: $%s, else ./%s if it exists)"
         % (CONFIG_ENV, DEFAULT_CONFIG_PATH)],
    ] + [
        [s.name, None, None, _describe(s)]
        for s in SETTINGS if s.name not in _FLAGS and s.name not in _REPEATABLE
    ]
    optFlags = [[name, None, _describe(_BY_NAME[name])] for name in sorted(_FLAGS)]

    def __init__(self) -> None:
        super().__init__()
        for name in _REPEATABLE:
            self[name] = None

    def opt_version(self) -> None:
        """print the tracker's version and build, then exit"""
        from tracker.startlog import version_line

        print(version_line())
        sys.exit(0)

    def _append(self, name: str, value: str) -> None:
        if self[name] is None:
            self[name] = []
        self[name].append(value)

    def opt_http(self, endpoint: str) -> None:
        """HTTP endpoint (Twisted endpoint string, e.g. tcp:6969:interface=127.0.0.1); repeat for several [default: tcp6:6969:interface=\\:\\:, i.e. IPv4 and IPv6]"""
        self._append("http", endpoint)

    def opt_udp(self, address: str) -> None:
        """UDP tracker address [HOST:]PORT, an IPv6 host in brackets; repeat for several; 'off' for none [default: 6969 on :: , i.e. IPv4 and IPv6]"""
        self._append("udp", address)

    def opt_line(self, endpoint: str) -> None:
        """CDN line-protocol endpoint (Twisted endpoint string); repeat for several; 'off' for none [default: tcp6:6970:interface=\\:\\:, i.e. IPv4 and IPv6]"""
        self._append("line", endpoint)

    def opt_ws(self, endpoint: str) -> None:
        """WebSocket (WebTorrent) endpoint for browser peers (an ssl: endpoint for wss://); repeat for several; 'off' for none [default: tcp6:6972:interface=\\:\\:, i.e. IPv4 and IPv6]"""
        self._append("ws", endpoint)

    def opt_admin(self, endpoint: str) -> None:
        """admin API, metrics and status page endpoint; repeat for several; 'off' for none [default: tcp:6971:interface=127.0.0.1]"""
        self._append("admin", endpoint)

    def opt_admin_host(self, name: str) -> None:
        """another Host name the admin listener answers to, beside loopback and its interface (repeatable)"""
        self._append("admin-host", name)

    def opt_trusted_proxy(self, cidr: str) -> None:
        """CIDR of a reverse proxy whose client-address header is believed (repeatable)"""
        self._append("trusted-proxy", cidr)

    def opt_node_token(self, pair: str) -> None:
        """ID=SECRET: node ID must say HELLO token=SECRET; repeat for each node (with none, no token is needed)"""
        self._append("node-token", pair)

    def postOptions(self) -> None:
        path = self["config"] or os.environ.get(CONFIG_ENV)
        if path is None and os.path.exists(DEFAULT_CONFIG_PATH):
            path = DEFAULT_CONFIG_PATH
        from_file = load_config_file(path) if path else {}
        self["config"] = path
        # Kept for SIGHUP: a reload re-reads the file but never overrides these.
        self.from_command_line = set()
        for setting in SETTINGS:
            name = setting.name
            given = self[name]
            if name in _FLAGS and not given:
                given = None
            if given is not None:
                self.from_command_line.add(name)
                source, value = "option --%s" % name, given
            elif name in from_file:
                source, value = "%s in %s" % (name, path), from_file[name]
            else:
                self[name] = setting.convert(setting.default) if setting.default is not None else None
                continue
            try:
                self[name] = setting.convert(value)
            except (TypeError, ValueError) as e:
                raise usage.UsageError("%s: %r is not valid (%s)" % (source, value, e))
        if self["line-auth"] is None:
            # Decided once, at start: a token the admin API adds later does not
            # turn the whole door to tokens.
            self["line-auth"] = "token" if self["node-token"] else "open"
        if self["db"] not in ("off", ":memory:"):
            self["db"] = os.path.join(self["data-dir"], self["db"])
        exposed = [e for e in self["admin"] if not admin_is_local(e)]
        if exposed and not self["admin-token"]:
            raise usage.UsageError("the admin API on %s is reachable beyond this machine: "
                                   "set --admin-token" % exposed[0])
        _check_redis(self)
        if self["reuse-port"]:
            from tracker.cluster.reuseport import parse_tcp

            for endpoint in self["http"] + self["line"] + self["ws"]:
                try:
                    parse_tcp(endpoint)
                except ValueError as e:
                    raise usage.UsageError(str(e))
        if self["min-interval"] > self["interval"]:
            raise usage.UsageError("min-interval (%d) must not exceed interval (%d)"
                                   % (self["min-interval"], self["interval"]))
