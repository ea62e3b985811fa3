"""Operating a real tracker: every tracker-admin command against the running
twistd and against its stopped database, the 401 path, /metrics, and the
admin listener's safety rule."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from e2e_clients import ADMIN_TOKEN as TOKEN, AdminTracker as Tracker, LineSocket, announce_target, get
from helpers import bdecode, info_hash
from process import REPO, free_port, source_env, twistd_command

pytestmark = pytest.mark.e2e

H1, H2 = info_hash(1).hex(), info_hash(2).hex()


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(tmp_path)
    yield t
    t.process.stop()


def ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_admin_command_on_a_running_tracker_then_on_its_database(tracker):
    get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=1, left=0))
    get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=2, port=7002))
    get("127.0.0.1", tracker.http, announce_target(swarm=2, peer=3, port=7003).replace(
        "uploaded=0&downloaded=0", "uploaded=1234&downloaded=5678"))
    node = LineSocket(tracker.line)
    node.command("HELLO node=edge-1 port=8080 region=eu")
    node.command("HAVE %s size=2048 name=movie.mkv" % H2)

    status = json.loads(ok(tracker.admin_cli("--json", "status")))
    assert (status["swarms"], status["peers"], status["seeders"]) == (2, 4, 2)
    assert status["announces"]["http"] == 3 and status["line"]["connected_nodes"] == 1
    assert "peers" in ok(tracker.admin_cli("status"))
    from tracker import __version__
    assert status["version"] == __version__
    assert "version      %s" % __version__ in ok(tracker.admin_cli("status")).splitlines()

    table = ok(tracker.admin_cli("swarms", "--top", "1", "--sort", "peers")).splitlines()
    assert table[0].split() == ["INFO_HASH", "SEEDERS", "LEECHERS", "COMPLETED", "NAME"]
    assert len(table) == 2 and (table[1].startswith(H1) or table[1].startswith(H2))
    swarm = json.loads(ok(tracker.admin_cli("--json", "swarm", H2)))
    assert {p.get("node") for p in swarm["peer_list"]} == {"edge-1", None}
    assert swarm["name"] == "movie.mkv"
    assert "edge-1" in ok(tracker.admin_cli("nodes"))
    assert "movie.mkv" in ok(tracker.admin_cli("content"))
    missing = tracker.admin_cli("swarm", "00" * 20)
    assert missing.returncode == 1 and missing.stderr.strip() == "tracker-admin: tracker says: no such swarm"

    # Refusing content: the swarm goes at once and announces are refused.
    assert "1 peers dropped" not in ok(tracker.admin_cli("deny", "add", H1, "--note", "dmca"))
    listed = ok(tracker.admin_cli("deny", "list")).splitlines()
    assert listed[0].split() == ["INFO_HASH", "ADDED", "NOTE"]
    assert listed[1].startswith(H1) and listed[1].endswith("UTC  dmca") and len(listed) == 2
    entry, = json.loads(ok(tracker.admin_cli("deny", "list", "--json")))["entries"]
    assert entry["info_hash"] == H1 and entry["note"] == "dmca" and entry["added_at"] > 1.7e9
    reply = bdecode(get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=5))[1])
    assert reply == {b"failure reason": b"this content is not tracked here"}
    ok(tracker.admin_cli("deny", "remove", H1))
    assert b"peers" in bdecode(get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=5))[1])
    not_listed = tracker.admin_cli("deny", "remove", H1)
    assert not_listed.returncode == 1

    # Allow-list mode.
    ok(tracker.admin_cli("allow", "add", H2))
    assert ok(tracker.admin_cli("mode", "allow", "--yes")).strip() == "mode allow (1 peers dropped)"
    reply = bdecode(get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=6))[1])
    assert reply == {b"failure reason": b"this tracker does not track that content"}
    assert ok(tracker.admin_cli("allow", "list")).splitlines()[1].split()[0] == H2
    ok(tracker.admin_cli("mode", "open"))
    ok(tracker.admin_cli("allow", "remove", H2))

    # Bans.
    assert ok(tracker.admin_cli("ban", "add", "127.0.0.0/8", "--note", "abuse 7")).strip() == (
        "banned 127.0.0.0/8")
    reply = bdecode(get("127.0.0.1", tracker.http, announce_target(swarm=1, peer=7))[1])
    assert reply == {b"failure reason": b"your address is banned from this tracker"}
    listed = ok(tracker.admin_cli("ban", "list")).splitlines()
    assert listed[0].split() == ["CIDR", "ADDED", "NOTE"]
    assert listed[1].startswith("127.0.0.0/8") and listed[1].endswith("UTC  abuse 7")
    ok(tracker.admin_cli("ban", "remove", "127.0.0.0/8"))
    bad = tracker.admin_cli("ban", "add", "not-a-net")
    assert bad.returncode == 1 and "cidr must be" in bad.stderr

    # Node tokens take effect at once.
    added = json.loads(ok(tracker.admin_cli("--json", "tokens", "add", "edge-9", "tok9")))
    assert added == {"node": "edge-9", "token": "tok9"}
    # Every token, the settings' too, with its source; never a secret.
    listed = ok(tracker.admin_cli("tokens", "list"))
    rows = [line.split()[:3] for line in listed.splitlines()]
    assert rows == [["NODE", "SOURCE", "IN_USE", ], ["edge-9", "admin-api", "yes"],
                    ["edge-cfg", "config", "yes"]]
    assert "tok9" not in listed and "cfg-secret" not in listed
    assert "cfg-secret" not in ok(tracker.admin_cli("tokens", "list", "--json"))
    fresh = LineSocket(tracker.line)
    assert fresh.command("HELLO node=edge-9 token=wrong")[0].startswith("ERR 401")
    fresh.close()
    fresh = LineSocket(tracker.line)
    assert fresh.command("HELLO node=edge-9 token=tok9") == ["OK HELLO edge-9 entries=0"]
    fresh.close()
    node.close()

    # Metrics.
    request = urllib.request.Request("http://127.0.0.1:%d/metrics" % tracker.admin,
                                     headers={"Authorization": "Bearer " + TOKEN})
    metrics = urllib.request.urlopen(request, timeout=10).read().decode()
    assert 'tracker_announces_total{door="http"}' in metrics
    assert 'tracker_failures_total{door="http",reason="content_denied"} 1.0' in metrics
    assert "tracker_flush_backlog" in metrics

    # Now stop the tracker; the same commands read its database.
    assert tracker.process.stop()
    status = json.loads(ok(tracker.admin_cli("--json", "status", db=True)))
    # Left in the file: swarm 2 (an HTTP peer and edge-1); swarm 1 was emptied
    # when allow-list mode refused it.
    assert status["running"] is False
    assert (status["swarms"], status["peers"], status["seeders"]) == (1, 2, 1)
    assert "edge-1" in ok(tracker.admin_cli("nodes", db=True))
    assert "movie.mkv" in ok(tracker.admin_cli("content", db=True))
    assert H2 in ok(tracker.admin_cli("swarms", "--top", "5", db=True))
    assert json.loads(ok(tracker.admin_cli("--json", "swarm", H2, db=True)))["name"] == "movie.mkv"
    # The byte counters of each peer's last announce, kept in the file only.
    stored = ok(tracker.admin_cli("swarm", H2, db=True)).splitlines()
    assert stored[1].split() == ["IP", "PORT", "DOOR", "SEEDER", "LEFT", "UPLOADED", "DOWNLOADED"]
    assert ["127.0.0.1", "7003", "http", "False", "100", "1234", "5678"] in [
        line.split() for line in stored[2:]]
    tokens = ok(tracker.admin_cli("tokens", "list", db=True)).splitlines()
    assert [line.split()[:3] for line in tokens[1:]] == [["edge-9", "admin-api", "yes"]]
    assert ok(tracker.admin_cli("ban", "list", db=True)).strip() == "(none)"
    assert ok(tracker.admin_cli("deny", "list", db=True)).strip() == "(none)"
    assert ok(tracker.admin_cli("mode", db=True)).strip() == "mode open"
    write = tracker.admin_cli("deny", "add", H1, db=True)
    assert write.returncode == 2 and "read-only" in write.stderr


def test_wrong_or_missing_token_gets_401_and_changes_nothing(tracker):
    for token in (None, "guess"):
        result = tracker.admin_cli("deny", "add", H1, token=token)
        assert result.returncode == 1  # refused (the README's exit status 1)
        assert result.stderr.strip() == ("tracker-admin: the tracker refused the admin token "
                                         "(use --token or $TRACKER_ADMIN_TOKEN)")
    request = urllib.request.Request("http://127.0.0.1:%d/api/access/deny" % tracker.admin,
                                     data=json.dumps({"info_hash": H1}).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 401
    assert ok(tracker.admin_cli("deny", "list")).strip() == "(none)"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen("http://127.0.0.1:%d/metrics" % tracker.admin, timeout=10)
    assert caught.value.code == 401


def test_the_admin_token_is_not_written_to_the_log(tracker):
    page = "http://127.0.0.1:%d/?token=%s" % (tracker.admin, TOKEN)
    with urllib.request.urlopen(page, timeout=10) as response:
        assert response.status == 200
    request = urllib.request.Request("http://127.0.0.1:%d/api/status?token=%s" % (tracker.admin, TOKEN),
                                     headers={"Referer": page})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert tracker.process.stop()
    log = tracker.process.output()
    assert "GET /?token=REDACTED" in log and "GET /api/status?token=REDACTED" in log
    assert TOKEN not in log


def test_cross_origin_post_from_a_page_changes_nothing(tracker):
    # What a web page in the operator's browser can send without asking (a "simple" request).
    request = urllib.request.Request(
        "http://127.0.0.1:%d/api/bans" % tracker.admin, data=b'{"cidr": "0.0.0.0/0"}', method="POST",
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain",
                 "Authorization": "Bearer " + TOKEN})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    assert ok(tracker.admin_cli("ban", "list")).strip() == "(none)"
    metrics = urllib.request.Request("http://127.0.0.1:%d/metrics" % tracker.admin,
                                     headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(metrics, timeout=10) as response:
        assert 'tracker_failures_total{door="admin",reason="origin"} 1.0' in response.read().decode()


def test_cli_errors_are_one_line(tmp_path):
    env = source_env()
    cli = [sys.executable, str(REPO / "tools" / "tracker_admin.py")]
    down = subprocess.run(cli + ["--admin-url", "http://127.0.0.1:%d" % free_port(), "status"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert down.returncode == 2 and down.stderr.startswith("tracker-admin: cannot reach the tracker")
    assert len(down.stderr.strip().splitlines()) == 1
    missing = subprocess.run(cli + ["--db", str(tmp_path / "nope.sqlite3"), "status"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "tracker-admin: database %s does not exist" % (tmp_path / "nope.sqlite3")


def test_admin_beyond_loopback_needs_a_token(tmp_path):
    result = subprocess.run(
        twistd_command() + ["-n", "--pidfile=", "tracker", "--admin", "tcp:%d" % free_port(),
                            "--http", "tcp:%d:interface=127.0.0.1" % free_port(), "--udp", "off",
                            "--line", "off", "--ws", "off", "--db", "off"],
        cwd=str(tmp_path), env=source_env(), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert "is reachable beyond this machine: set --admin-token" in output
    assert "Traceback" not in output
