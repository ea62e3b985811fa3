"""`--redis` URLs: redis://HOST[:PORT][/DB], parsed once with a one-line error."""
from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORT = 6379


class RedisAddress(NamedTuple):
    host: str
    port: int
    db: int


def parse_redis_url(url: str) -> RedisAddress:
    """Raise ValueError (the option's message) for anything but redis://HOST[:PORT][/DB]."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError("must be redis://HOST[:PORT][/DB] (rediss:// is not supported yet)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise ValueError("must name a host: redis://HOST[:PORT][/DB]")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database must be a number: redis://HOST:PORT/DB")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("no user, password, query or fragment: redis://HOST[:PORT][/DB]")
    return RedisAddress(parts.hostname, port, int(path) if path else 0)
