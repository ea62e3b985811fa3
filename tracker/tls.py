"""TLS for every door: server endpoints that answer clients offering ALPN, log failed
handshakes, and turn a bad `ssl:` endpoint into one line; client contexts for the line tools.

Twisted's `ssl:` server endpoint installs an ALPN callback that, when the listening
factory names no protocol, answers with an empty name, which OpenSSL turns into a
fatal `internal error` alert: every client that offers ALPN (curl, browsers, Python
with ALPN) is refused. Here each TLS endpoint's context gets a callback that picks
the door's protocol when the client offers it and otherwise negotiates none, as a
server without ALPN would. Needs the `tls` extra (pyOpenSSL, service-identity).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.logger import Logger

log = Logger()

# What each door speaks over TLS, by ALPN name. The line protocol has none: a
# client offering ALPN gets a connection with no protocol negotiated.
DOOR_PROTOCOLS: Dict[str, Sequence[bytes]] = {
    "http": (b"http/1.1",),
    "ws": (b"http/1.1",),
    "admin": (b"http/1.1",),
}
# At most one log line per door in this many seconds; the rest are counted in it.
FAILURE_LOG_EVERY_S = 10.0

# Alert numbers (RFC 8446 section 6) a failed handshake most often ends with.
_ALERTS = {
    10: "unexpected message", 20: "bad record mac", 40: "handshake failure",
    42: "bad certificate", 43: "unsupported certificate", 44: "certificate revoked",
    45: "certificate expired", 46: "certificate unknown", 47: "illegal parameter",
    48: "unknown CA", 50: "decode error", 51: "decrypt error", 70: "protocol version",
    71: "insufficient security", 80: "internal error", 86: "inappropriate fallback",
    109: "missing extension", 112: "unrecognized name", 116: "certificate required",
    120: "no application protocol",
}
_FATAL = 2


class HandshakeFailures:
    """Failed TLS handshakes of one door: a count (for /metrics) and a rate-limited log."""

    def __init__(self, door: str, clock) -> None:
        self.door = door
        self.clock = clock
        self.count = 0
        self._logged_at: Optional[float] = None
        self._unlogged = 0

    def failed(self, peer: str, alert: str, sent: bool) -> None:
        self.count += 1
        now = self.clock.seconds()
        if self._logged_at is not None and now - self._logged_at < FAILURE_LOG_EVERY_S:
            self._unlogged += 1
            return
        log.warn("{door} door: TLS handshake with {peer} failed: {who} alert {alert}{more}",
                 door=self.door, peer=peer, who="sent" if sent else "received", alert=alert,
                 more=(" (and %d more since the last line)" % self._unlogged) if self._unlogged else "")
        self._logged_at = now
        self._unlogged = 0


# Per door, for /metrics (tracker_tls_handshake_failures_total{door}).
failures: Dict[str, HandshakeFailures] = {}


def _peer_text(connection) -> str:
    try:
        peer = connection.get_app_data().transport.getPeer()
        return "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))
    except Exception:  # a half-made connection: the address is only for the log line
        return "unknown peer"


def prepare_context(context, door: str, factory, clock) -> None:
    """ALPN that never refuses, and the handshake-failure log, on one door's context."""
    from OpenSSL import SSL

    negotiator = IProtocolNegotiationFactory(factory, None)
    ours = tuple(negotiator.acceptableProtocols()) if negotiator is not None else ()
    ours = ours or tuple(DOOR_PROTOCOLS.get(door, ()))

    def select(connection, offered):
        for name in ours:
            if name in offered:
                return name
        return SSL.NO_OVERLAPPING_PROTOCOLS

    context.set_alpn_select_callback(select)
    record = failures.setdefault(door, HandshakeFailures(door, clock))

    def info(connection, where, ret):
        if where & SSL.SSL_CB_ALERT and (ret >> 8) == _FATAL:
            code = ret & 0xFF
            record.failed(_peer_text(connection), _ALERTS.get(code, "number %d" % code),
                          sent=bool(where & SSL.SSL_CB_WRITE))

    context.set_info_callback(info)


def server_endpoint(reactor, description: str, door: str, factory):
    """`serverFromString`, with a one-line SystemExit for an endpoint that cannot be
    made (unknown type, missing key or certificate, TLS without the tls extra)."""
    try:
        endpoint = serverFromString(reactor, description)
    except ImportError as e:
        raise SystemExit("tracker: %s endpoint %s needs the tls extra (pip install "
                         "'cdn-tracker[tls]'): %s" % (door, description, e))
    except Exception as e:  # Twisted raises many kinds here; all are the operator's to fix
        raise SystemExit("tracker: %s endpoint %s: %s" % (door, description, _reason(e)))
    options = getattr(endpoint, "_sslContextFactory", None)
    if options is not None:
        try:
            context = options.getContext()  # cached by Twisted: the one every connection uses
        except Exception as e:
            raise SystemExit("tracker: %s endpoint %s: %s" % (door, description, _reason(e)))
        prepare_context(context, door, factory, reactor)
    return endpoint


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__


def client_options(hostname: str, ca_file: Optional[str] = None, verify: bool = True):
    """Twisted client TLS options for the line clients: the system's CAs, or the
    certificates in `ca_file` (a self-signed one), or, with `verify=False`, none."""
    from twisted.internet import ssl

    if not verify:
        return ssl.CertificateOptions(verify=False)
    trust = None  # the platform's trust store
    if ca_file is not None:
        trust = ssl.trustRootFromCertificates(load_certificates(ca_file))
    return ssl.optionsForClientTLS(hostname, trustRoot=trust)


def load_certificates(path: str) -> list:
    """Every certificate of a PEM file (Twisted `Certificate`s); ValueError if none."""
    from twisted.internet import ssl

    with open(path, "rb") as f:
        blocks = f.read().split(b"-----END CERTIFICATE-----")
    certificates = [ssl.Certificate.loadPEM(block + b"-----END CERTIFICATE-----")
                    for block in blocks if b"-----BEGIN CERTIFICATE-----" in block]
    if not certificates:
        raise ValueError("no certificate in %s" % path)
    return certificates
