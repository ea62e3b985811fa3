"""The admin listener against a browser: Host and Origin checks, JSON bodies only,
the loopback rule decided from the parsed endpoint, no token in the access log.
Raw HTTP bytes go through the real twisted.web Site over a StringTransport."""
from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from helpers import announce_request, info_hash
from tracker.admin import api as api_module
from tracker.admin.api import AdminContext, AdminRoot
from tracker.admin.guard import HostRule, endpoint_is_local, redacting_log_formatter
from tracker.admin.page import StatusPage
from tracker.core import ChangeLog, TrackerCore, TrackerSettings
from tracker.options import Options

ADMIN_PORT = 6971
H1 = info_hash(1).hex()


class Listener:
    """One admin Site, as makeService builds it, fed raw requests."""

    def __init__(self, tmp_path, token=None, endpoints=("tcp:6971:interface=127.0.0.1",),
                 extra_hosts=()):
        self.changes = ChangeLog()
        self.core = TrackerCore(TrackerSettings(), changes=self.changes)
        self.clock = Clock()
        context = AdminContext(self.core, self.clock, token,
                               host_rule=HostRule.for_endpoints(endpoints, extra_hosts))
        self.log_path = tmp_path / "access.log"
        self.site = Site(AdminRoot(context, Resource(), StatusPage()),
                         logPath=str(self.log_path), logFormatter=redacting_log_formatter)
        self.site.startFactory()

    def send(self, method, path, headers=(), body=b""):
        """Send a request; the connection's transport holds what is answered."""
        host = IPv4Address("TCP", "127.0.0.1", ADMIN_PORT)
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(hostAddress=host, peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        head = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % h for h in headers]
        if body:
            head.append("Content-Length: %d" % len(body))
        protocol.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return protocol, transport

    @staticmethod
    def answer(transport):
        head, _, body = transport.value().partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"chunked" in head.lower():  # an answer written later comes chunked
            size, _, rest = body.partition(b"\r\n")
            body = rest[:int(size, 16)]
        return status, json.loads(body) if b"application/json" in head.lower() else body

    def request(self, method, path, headers=(), body=b""):
        return self.answer(self.send(method, path, headers, body)[1])

    def access_log(self):
        self.site.stopFactory()
        return self.log_path.read_text()


LOCAL = ("Host", "127.0.0.1:%d" % ADMIN_PORT)


def test_cross_origin_text_plain_post_is_refused_and_changes_nothing(tmp_path):
    admin = Listener(tmp_path)
    body = json.dumps({"cidr": "0.0.0.0/0"}).encode()
    status, reply = admin.request("POST", "/api/bans", [LOCAL, ("Origin", "http://evil.example"),
                                                        ("Content-Type", "text/plain")], body)
    assert (status, reply) == (403, {"error": "changes are not accepted from another origin"})
    assert not admin.core.access.bans
    assert len(admin.changes) == 0
    assert admin.core.stats.failures == {("admin", "origin"): 1}


def test_a_body_not_declared_json_gets_415_and_changes_nothing(tmp_path):
    admin = Listener(tmp_path)
    body = json.dumps({"cidr": "0.0.0.0/0"}).encode()
    status, _ = admin.request("POST", "/api/bans", [LOCAL, ("Content-Type", "text/plain")], body)
    assert status == 415
    assert not admin.core.access.bans and len(admin.changes) == 0
    assert admin.core.stats.failures == {("admin", "content_type"): 1}


def test_same_origin_json_post_is_accepted(tmp_path):
    admin = Listener(tmp_path)
    status, reply = admin.request("POST", "/api/bans", [
        LOCAL, ("Origin", "http://127.0.0.1:%d" % ADMIN_PORT),
        ("Content-Type", "application/json; charset=utf-8")], b'{"cidr": "203.0.113.0/24"}')
    assert (status, reply) == (200, {"cidr": "203.0.113.0/24", "banned": True})
    assert admin.core.stats.failures == {}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6971", "10.0.0.9:6971", "",
                                  "127.0.0.1.evil.example"])
def test_a_foreign_host_is_refused_even_for_reading(tmp_path, host):
    admin = Listener(tmp_path)
    status, reply = admin.request("GET", "/api/status", [("Host", host)])
    assert status == 403 and "Host" in reply["error"]
    status, _ = admin.request("GET", "/", [("Host", host)])
    assert status == 403
    assert admin.core.stats.failures == {("admin", "host"): 2}


@pytest.mark.parametrize("host", ["localhost:6971", "127.0.0.1", "[::1]:6971", "admin.example",
                                  "ADMIN.example.:6971"])
def test_own_names_and_the_operators_extra_names_are_served(tmp_path, host):
    admin = Listener(tmp_path, extra_hosts=["admin.example"])
    status, reply = admin.request("GET", "/api/health", [("Host", host)])
    assert (status, reply) == (200, {"status": "ok"})


def test_a_listener_on_every_interface_answers_address_literals_only(tmp_path):
    admin = Listener(tmp_path, token="t", endpoints=["tcp:6971"])
    bearer = ("Authorization", "Bearer t")
    assert admin.request("GET", "/api/health", [("Host", "192.0.2.7:6971"), bearer])[0] == 200
    assert admin.request("GET", "/api/health", [("Host", "rebound.example:6971"), bearer])[0] == 403


def test_token_check_still_applies_after_the_host_check(tmp_path):
    admin = Listener(tmp_path, token="s3cret")
    assert admin.request("GET", "/api/health", [LOCAL])[0] == 401
    assert admin.request("GET", "/api/health", [LOCAL, ("Authorization", "Bearer s3cret")])[0] == 200
    assert admin.core.stats.failures == {("admin", "token"): 1}


def test_the_token_never_reaches_the_access_log(tmp_path):
    admin = Listener(tmp_path, token="s3cret-value")
    assert admin.request("GET", "/?token=s3cret-value", [LOCAL])[0] == 200
    assert admin.request("GET", "/api/status?token=s3cret-value", [
        LOCAL, ("Referer", "http://127.0.0.1:6971/?x=1&token=s3cret-value")])[0] == 200
    log = admin.access_log()
    assert log.count("token=REDACTED") == 3 and "s3cret-value" not in log


@pytest.mark.parametrize("endpoint, local", [
    ("tcp:6971:interface=127.0.0.1", True),
    ("tcp6:6971:interface=\\:\\:1", True),
    ("unix:/run/tracker-admin.sock", True),
    ("tcp:6971:interface=127.0.0.1:interface=0.0.0.0", False),  # Twisted keeps the last
    ("tcp:6971", False),
    ("tcp:6971:interface=10.0.0.5", False),
    ("no-such-endpoint:6971", False),
])
def test_loopback_is_decided_from_the_parsed_endpoint(endpoint, local):
    assert endpoint_is_local(endpoint) is local


def test_doubled_interface_needs_a_token_at_start():
    config = Options()
    with pytest.raises(usage.UsageError, match="reachable beyond this machine: set --admin-token"):
        config.parseOptions(["--admin", "tcp:6971:interface=127.0.0.1:interface=0.0.0.0"])


def test_a_swarm_page_is_capped_and_says_so(tmp_path):
    admin = Listener(tmp_path)
    for n in range(1500):
        admin.core.announce(announce_request(peer=n, port=1000 + n), 1.0)
    status, reply = admin.request("GET", "/api/swarms/%s?limit=100000" % H1, [LOCAL])
    assert status == 200 and len(reply["peer_list"]) == 1000 and reply["limit"] == 1000
    assert reply["limit_capped"] == "at most 1000 peers are listed per request"
    status, reply = admin.request("GET", "/api/swarms/%s?limit=10" % H1, [LOCAL])
    assert len(reply["peer_list"]) == 10 and "limit_capped" not in reply
    assert reply["peers"] == 1500


def test_tracker_admin_status_shows_a_database_problem(capsys):
    from tracker.admin import cli

    class Tracker:
        def call(self, method, path, query=None, body=None):
            return {"swarms": 1, "peers": 2, "seeders": 1, "leechers": 1, "access_mode": "open",
                    "announces": {"udp": 5}, "uptime_s": 10.0, "line": None,
                    "persistence": {"path": "/data/t.sqlite3", "backlog": 7, "flushes": 3,
                                    "problem": "the database file /data/t.sqlite3 was removed"}}

    assert cli.run(cli.parser().parse_args(["status"]), Tracker()) == cli.EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["database     /data/t.sqlite3 (backlog 7, 3 flushes)",
                        "PROBLEM      the database file /data/t.sqlite3 was removed"]


def test_a_page_of_swarms_is_ordered_a_slice_per_reactor_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(api_module, "SCAN_SLICE", 10)
    admin = Listener(tmp_path)
    for swarm in range(1, 36):  # swarm n has n % 7 + 1 peers
        for peer in range(swarm % 7 + 1):
            admin.core.announce(announce_request(swarm=swarm, peer=peer, port=1000 + peer), 1.0)
    _, transport = admin.send("GET", "/api/swarms?limit=5&sort=peers", [LOCAL])
    assert transport.value() == b""  # 35 swarms: one slice now, the rest on later turns
    for _ in range(3):
        admin.clock.advance(0)
    status, reply = admin.answer(transport)
    assert status == 200 and reply["total"] == 35
    assert [s["peers"] for s in reply["swarms"]] == [7, 7, 7, 7, 7]
    assert {s["info_hash"] for s in reply["swarms"]} == {info_hash(n).hex() for n in (6, 13, 20, 27, 34)}


def test_a_client_gone_before_its_page_is_ready_is_not_written_to(tmp_path, monkeypatch):
    monkeypatch.setattr(api_module, "SCAN_SLICE", 10)
    admin = Listener(tmp_path)
    for swarm in range(1, 36):
        admin.core.announce(announce_request(swarm=swarm), 1.0)
    protocol, transport = admin.send("GET", "/api/content", [LOCAL])
    protocol.connectionLost(Failure(ConnectionDone()))
    for _ in range(3):
        admin.clock.advance(0)
    assert transport.value() == b""


def test_a_page_beyond_the_deepest_offset_is_refused(tmp_path):
    admin = Listener(tmp_path)
    status, reply = admin.request("GET", "/api/swarms?offset=10001", [LOCAL])
    assert status == 400 and reply["error"] == "offset must be a whole number up to 10000"
