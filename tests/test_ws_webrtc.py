"""A real WebRTC file transfer between two WebTorrent (v1) clients that find each
other only through the tracker's WebSocket door. libwebrtc ignores loopback
addresses, so the tracker and both clients run in a network namespace this
test makes itself (`unshare -n`, a veth pair on 198.18.0.0/24, default route
inside; tests/webtorrent/in_namespace.py). Needs node, the npm packages of
tests/webtorrent, and root (CI runs as root)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from process import REPO

pytestmark = pytest.mark.e2e

SCRIPTS = REPO / "tests" / "webtorrent"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="making a network namespace needs root, unshare and ip (iproute2)")
def test_two_webtorrent_clients_move_a_file_over_webrtc_through_the_tracker():
    assert (SCRIPTS / "node_modules" / "webtorrent").is_dir(), (
        "the npm packages of tests/webtorrent are missing: run `npm ci --ignore-scripts` there")
    size = 4 * 1024 * 1024
    run = subprocess.run(["unshare", "-n", sys.executable, str(SCRIPTS / "in_namespace.py"),
                          str(size)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert result["bytes"] == size
    # Every byte came over a WebRTC wire from the other client.
    assert result["wire_types"] == ["webrtc"] and result["received"] >= size
    metrics = dict(line.rsplit(" ", 1) for line in result["metrics"])
    assert float(metrics["tracker_ws_offers_relayed_total"]) >= 1
    assert float(metrics["tracker_ws_answers_relayed_total"]) >= 1
    assert float(metrics['tracker_announces_total{door="ws"}']) >= 2
    # Both clients had closed their sockets: their peers left with them.
    assert float(metrics["tracker_ws_peers"]) == 0
    assert result["tracker_stopped"] and not result["traceback"]
