"""The admin API as operators script it: notes and times shown in the lists (kept
across a restart), every node token with its source and never its secret, the
exact dry run of `mode allow`, the version and the WebSocket door in /api/status."""
from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from helpers import announce_request, info_hash, tracker_config
from tracker import __version__
from tracker.admin import cli
from tracker.admin.api import AdminContext, AdminRoot
from tracker.admin.page import StatusPage
from tracker.core import MODE_OPEN, ChangeLog, TrackerCore, TrackerSettings
from tracker.core.changes import ModeSet
from tracker.service import makeService
from tracker.ws.door import WsTrackerFactory

H1, H2, H3 = (info_hash(n).hex() for n in (1, 2, 3))
LOCAL = ("Host", "127.0.0.1:6971")
JSON_BODY = ("Content-Type", "application/json")


def call(context, method, path, body=None):
    """One request to the admin Site over `context`: (status, decoded JSON)."""
    site = Site(AdminRoot(context, Resource(), StatusPage()))
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 6971),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    raw = json.dumps(body).encode() if body is not None else b""
    head = ["%s %s HTTP/1.1" % (method, path), "%s: %s" % LOCAL]
    if raw:
        head += ["%s: %s" % JSON_BODY, "Content-Length: %d" % len(raw)]
    protocol.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
    reply_head, _, reply = transport.value().partition(b"\r\n\r\n")
    return int(reply_head.split(b" ", 2)[1]), json.loads(reply)


def context_with_peers(clock=None):
    changes = ChangeLog()
    core = TrackerCore(TrackerSettings(), changes=changes)
    for swarm, peers in ((1, 2), (2, 3), (3, 4)):
        for peer in range(peers):
            core.announce(announce_request(swarm=swarm, peer=peer, port=1000 + peer), 1.0)
    return AdminContext(core, clock or Clock()), changes


def test_mode_allow_dry_run_counts_exactly_what_the_switch_drops_and_changes_nothing():
    context, changes = context_with_peers()
    core = context.core
    assert call(context, "POST", "/api/access/allow", {"info_hash": H2})[0] == 200
    changes.take()
    status, preview = call(context, "PUT", "/api/mode", {"mode": "allow", "dry_run": True})
    assert status == 200
    assert (preview["would_drop"], preview["peers"], preview["allowed"]) == (6, 9, 1)
    assert (preview["changed"], preview["current"]) == (False, MODE_OPEN)
    assert core.access.mode == MODE_OPEN and core.peer_count == 9 and len(core.swarms) == 3
    assert not any(isinstance(c, ModeSet) for c in changes.take().operator)  # nothing recorded
    status, done = call(context, "PUT", "/api/mode", {"mode": "allow"})
    assert done["peers_dropped"] == preview["would_drop"] and core.peer_count == 3


def test_mode_dry_run_flag_must_be_a_boolean():
    context, _ = context_with_peers()
    status, reply = call(context, "PUT", "/api/mode", {"mode": "allow", "dry_run": "yes"})
    assert status == 400 and reply["error"] == "dry_run must be true or false"
    assert context.core.access.mode == MODE_OPEN


def test_lists_show_each_entry_with_its_note_and_when_it_was_added():
    clock = Clock()
    clock.advance(1_800_000_000)
    context, _ = context_with_peers(clock)
    call(context, "POST", "/api/access/deny", {"info_hash": H1, "note": "takedown 114"})
    clock.advance(60)
    call(context, "POST", "/api/access/deny", {"info_hash": H3})
    call(context, "POST", "/api/bans", {"cidr": "192.0.2.0/24", "note": "abuse"})
    _, deny = call(context, "GET", "/api/access/deny")
    assert deny["info_hashes"] == [H1, H3]
    assert deny["entries"] == [
        {"info_hash": H1, "note": "takedown 114", "added_at": 1_800_000_000},
        {"info_hash": H3, "note": None, "added_at": 1_800_000_060}]
    _, bans = call(context, "GET", "/api/bans")
    assert bans["entries"] == [{"cidr": "192.0.2.0/24", "note": "abuse", "added_at": 1_800_000_060}]
    call(context, "DELETE", "/api/access/deny?info_hash=" + H1)
    call(context, "POST", "/api/access/deny", {"info_hash": H1})  # added again: no old note
    _, deny = call(context, "GET", "/api/access/deny")
    assert deny["entries"][0] == {"info_hash": H1, "note": None, "added_at": 1_800_000_060}


def test_every_token_is_listed_with_its_source_and_none_of_the_secrets():
    context, _ = context_with_peers()
    context.config_tokens = lambda: {"edge-a": "secret-a", "edge-b": "secret-b"}
    call(context, "POST", "/api/tokens", {"node": "edge-b", "token": "api-secret-b"})
    call(context, "POST", "/api/tokens", {"node": "edge-c", "token": "api-secret-c"})
    status, reply = call(context, "GET", "/api/tokens")
    assert status == 200 and reply["nodes"] == ["edge-a", "edge-b", "edge-c"]
    assert [(t["node"], t["source"], t["in_use"]) for t in reply["tokens"]] == [
        ("edge-a", "config", True), ("edge-b", "admin-api", True), ("edge-b", "config", False),
        ("edge-c", "admin-api", True)]
    assert "secret" not in json.dumps(reply)


def test_tracker_admin_prints_notes_times_and_token_sources(capsys):
    class Tracker:
        def call(self, method, path, query=None, body=None):
            if path == "tokens":
                return {"nodes": ["a"], "tokens": [
                    {"node": "a", "source": "config", "in_use": True, "added_at": None}]}
            return {"list": "deny", "info_hashes": [H1],
                    "entries": [{"info_hash": H1, "note": "takedown", "added_at": 0}]}

    assert cli.run(cli.parser().parse_args(["deny", "list"]), Tracker()) == cli.EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "INFO_HASH                                 ADDED                    NOTE",
        H1 + "  1970-01-01 00:00:00 UTC  takedown"]
    assert cli.run(cli.parser().parse_args(["tokens", "list"]), Tracker()) == cli.EXIT_OK
    assert capsys.readouterr().out.split() == ["NODE", "SOURCE", "IN_USE", "ADDED", "a", "config", "yes"]


def test_mode_allow_is_refused_with_an_empty_allow_list_even_with_yes(capsys):
    calls = []

    class Tracker:
        def call(self, method, path, query=None, body=None):
            calls.append((method, body))
            return {"mode": "allow", "dry_run": True, "changed": False, "allowed": 0, "peers": 21,
                    "would_drop": 21}

    assert cli.main.__module__  # the same entry the console script runs
    args = cli.parser().parse_args(["mode", "allow", "--yes"])
    try:
        cli.run(args, Tracker())
    except cli.CliError as e:
        assert e.status == cli.EXIT_REFUSED and "allow list is empty" in str(e)
    else:
        raise AssertionError("mode allow with an empty allow list was not refused")
    assert calls == [("PUT", {"mode": "allow", "dry_run": True})]  # never the real switch


def test_status_has_the_version_and_the_websocket_door():
    context, _ = context_with_peers()
    _, status = call(context, "GET", "/api/status")
    assert status["version"] == __version__ and status["ws"] is None
    context.ws = WsTrackerFactory(context.core, Clock())
    _, status = call(context, "GET", "/api/status")
    assert status["ws"] == {"connections": 0, "peers": 0, "swarms": 0, "offers_relayed": 0,
                            "answers_relayed": 0}


@pytest_twisted.inlineCallbacks
def test_notes_and_times_are_kept_across_a_restart(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    try:
        context = AdminContext(service.core, reactor, persistence=service.persistence)
        call(context, "POST", "/api/access/deny", {"info_hash": H1, "note": "takedown 114"})
        call(context, "POST", "/api/bans", {"cidr": "198.51.100.7", "note": "scraper"})
        call(context, "POST", "/api/tokens", {"node": "edge-1"})
        _, before = call(context, "GET", "/api/access/deny")
    finally:
        yield service.stopService()

    again = makeService(tracker_config(db), reactor)
    again.startService()
    try:
        context = AdminContext(again.core, reactor, persistence=again.persistence)
        _, after = call(context, "GET", "/api/access/deny")
        _, bans = call(context, "GET", "/api/bans")
        _, tokens = call(context, "GET", "/api/tokens")
    finally:
        yield again.stopService()
    assert after == before and after["entries"][0]["note"] == "takedown 114"
    assert [(b["cidr"], b["note"]) for b in bans["entries"]] == [("198.51.100.7/32", "scraper")]
    assert tokens["tokens"][0]["added_at"] is not None


@pytest_twisted.inlineCallbacks
def test_a_new_database_file_gets_the_notes_again(tmp_path):
    db = tmp_path / "t.sqlite3"
    service = makeService(tracker_config(db), reactor)
    service.startService()
    try:
        context = AdminContext(service.core, reactor, persistence=service.persistence)
        call(context, "POST", "/api/access/deny", {"info_hash": H1, "note": "takedown 114"})
        yield service.persistence.flush()
        db.unlink()
        yield service.persistence.flush()  # notices, makes a new file, records the state again
    finally:
        yield service.stopService()
    reader = cli.StoppedTracker(str(db))
    assert reader.call("GET", "access/deny")["entries"][0]["note"] == "takedown 114"
