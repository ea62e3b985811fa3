"""The status page in a real browser: headless Chromium loads it from a running
tracker and the chart is drawn from the persisted time series."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from e2e_clients import announce_target, get
from process import TrackerProcess, free_port
from tracker.store import open_database

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HISTORY_MINUTES = 90


def test_status_page_draws_the_chart_with_data(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # Ninety minutes of history, as the tracker records it every minute.
    db = tmp_path / "tracker.sqlite3"
    conn = open_database(str(db))
    now_minute = int(time.time() // 60)
    conn.executemany("INSERT INTO totals VALUES (?, ?, ?, ?, ?, ?)",
                     [(now_minute - HISTORY_MINUTES + m, 10, 100 + m, 40, 60 + m, 300 + 2 * m)
                      for m in range(HISTORY_MINUTES)])
    conn.close()
    http, admin = free_port(), free_port()
    tracker = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http, "--udp", "off", "--line", "off", "--ws", "off",
         "--admin", "tcp:%d:interface=127.0.0.1" % admin, "--db", str(db)],
        tmp_path, [("127.0.0.1", http), ("127.0.0.1", admin)])
    try:
        get("127.0.0.1", http, announce_target())
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=%s" % (tmp_path / "profile"),
             "--virtual-time-budget=10000", "--dump-dom", "http://127.0.0.1:%d/" % admin],
            capture_output=True, text=True, timeout=120)
    finally:
        assert tracker.stop()
    dom = result.stdout
    assert "Tracker status" in dom, result.stderr[-2000:]
    points = re.search(r'<svg id="chart"[^>]*data-points="(\d+)"', dom)
    assert points and int(points.group(1)) == HISTORY_MINUTES
    paths = re.findall(r'<path d="M[^"]+" class="(peers|announces)"', dom)
    assert sorted(paths) == ["announces", "peers"]
    # The figures came from the live tracker: one swarm, one peer.
    assert re.search(r"<b>1</b><span>swarms</span>", dom)
    assert re.search(r"<b>1</b><span>peers</span>", dom)
