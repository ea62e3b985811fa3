"""tracker-admin as scripts use it: flags after the command, exit codes exactly as documented
(0 done, 1 refused or not found, 2 usage or unreachable), and `mode allow` that says what it
would drop and needs --yes."""
from __future__ import annotations

import json

import pytest

from e2e_clients import ADMIN_TOKEN as TOKEN, AdminTracker as Tracker, announce_target, get
from helpers import info_hash

pytestmark = pytest.mark.e2e

H1, H2 = info_hash(1).hex(), info_hash(2).hex()


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    t = Tracker(tmp_path_factory.mktemp("admin-cli"))
    yield t
    t.process.stop()


def test_flags_after_the_command_work_like_flags_before_it(tracker):
    before = tracker.admin_cli("--json", "status")
    after = tracker.admin_cli("status", "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(after.stdout)["swarms"] == json.loads(before.stdout)["swarms"]


@pytest.mark.parametrize("args, token, status", [
    (["status"], TOKEN, 0),
    (["status"], "wrong", 1),                       # a refused token: refused, not unreachable
    (["swarm", "00" * 20], TOKEN, 1),                # not found
    (["deny", "remove", "11" * 20], TOKEN, 1),       # not on the list
    (["mode", "sideways"], TOKEN, 2),                # usage
    (["deny", "add"], TOKEN, 2),                     # usage: no value
    ([], TOKEN, 2),                                  # usage: no command
])
def test_exit_codes(tracker, args, token, status):
    result = tracker.admin_cli(*args, token=token)
    assert result.returncode == status, result.stderr
    if status:
        assert result.stderr.strip()  # and it says why


def test_unreachable_tracker_and_missing_database_exit_2(tracker, tmp_path):
    unreachable = tracker.admin_cli("status", "--admin-url", "http://127.0.0.1:1")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
    missing = tracker.admin_cli("--db", str(tmp_path / "none.sqlite3"), "status", token=None)
    assert missing.returncode == 2


def test_mode_allow_says_what_it_would_drop_and_needs_yes(tracker):
    for swarm, peer in ((1, 1), (2, 2), (2, 3)):
        assert get("127.0.0.1", tracker.http, announce_target(swarm=swarm, peer=peer))[0] == 200
    empty = tracker.admin_cli("mode", "allow")
    assert empty.returncode == 1 and "allow list is empty" in empty.stderr
    assert tracker.admin_cli("allow", "add", H1).returncode == 0
    preview = tracker.admin_cli("mode", "allow", "--json")
    assert preview.returncode == 1
    figures = json.loads(preview.stdout)
    assert (figures["would_drop"], figures["peers"], figures["changed"]) == (2, 3, False)
    assert json.loads(tracker.admin_cli("mode", "--json").stdout)["mode"] == "open"
    done = tracker.admin_cli("mode", "allow", "--yes")
    assert done.returncode == 0 and "2 peers dropped" in done.stdout
    assert json.loads(tracker.admin_cli("status", "--json").stdout)["peers"] == 1
    assert tracker.admin_cli("mode", "open").returncode == 0
