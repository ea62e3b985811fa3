"""`--redis` URLs: redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB], parsed once with a
one-line error; `rediss://` is Redis over TLS, a password is sent with AUTH."""
from __future__ import annotations

from typing import NamedTuple, Optional
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 6379
FORM = "redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]"


class RedisAddress(NamedTuple):
    host: str
    port: int
    db: int
    tls: bool = False
    username: Optional[str] = None
    password: Optional[str] = None

    def at(self, host: str, port: int) -> "RedisAddress":
        """The same database, credentials and TLS at another node (Redis Cluster)."""
        return self._replace(host=host, port=port)


def parse_redis_url(url: str) -> RedisAddress:
    """Raise ValueError (the option's message) for anything but the form above."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must be " + FORM)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise ValueError("must name a host: " + FORM)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database must be a number: " + FORM)
    if parts.query or parts.fragment:
        raise ValueError("no query or fragment: " + FORM)
    if parts.username and parts.password is None:
        raise ValueError("a user needs a password: redis://USER:PASSWORD@HOST")
    return RedisAddress(parts.hostname, port, int(path) if path else 0, parts.scheme == "rediss",
                        unquote(parts.username) if parts.username else None,
                        unquote(parts.password) if parts.password is not None else None)


def redacted(url: str) -> str:
    """The URL as logs, status and heartbeats show it: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc="%s:***@%s" % (user, host)).geturl()
