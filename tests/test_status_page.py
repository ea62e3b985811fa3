"""The status page in a real browser: headless Chromium loads it from a running tracker
with ninety minutes of history, the test reads the DOM it built (figures, requests per
door, busiest swarms, database, access mode, two charts with time and value axes) and
takes a screenshot, checked for both series' colours."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import zlib

import pytest

from e2e_clients import announce_target, get
from process import TrackerProcess, free_port, poll_real_process
from tracker import __version__
from tracker.store import open_database

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HISTORY_MINUTES = 90
PEERS_RGB, ANNOUNCES_RGB = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)


def read_png(data: bytes):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), header
    size = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * size, [], bytearray(width * size)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append([tuple(line[x * size:x * size + 3]) for x in range(width)])
        previous = line
    return width, height, rows


def chromium(tmp_path, url, *mode):
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--user-data-dir=%s" % (tmp_path / "profile"), "--hide-scrollbars",
         "--window-size=1000,1500", "--virtual-time-budget=10000"] + list(mode) + [url],
        capture_output=True, text=True, timeout=120)


def test_status_page_shows_every_part_with_data(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # Ninety minutes of history, as the tracker records it every minute; the two
    # series differ by a factor of 100, so each needs its own scale.
    db = tmp_path / "tracker.sqlite3"
    conn = open_database(str(db))
    now_minute = int(time.time() // 60)
    conn.executemany("INSERT INTO totals VALUES (?, ?, ?, ?, ?, ?)",
                     [(now_minute - HISTORY_MINUTES + m, 10, 5 + m % 7, 2, 3, 3000 + 20 * m)
                      for m in range(HISTORY_MINUTES)])
    conn.close()
    http, admin = free_port(), free_port()
    tracker = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http, "--udp", "off", "--line", "off",
         "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % admin, "--db", str(db)],
        tmp_path, [("127.0.0.1", http), ("127.0.0.1", admin)])
    url = "http://127.0.0.1:%d/" % admin
    try:
        get("127.0.0.1", http, announce_target(swarm=1, peer=1))
        get("127.0.0.1", http, announce_target(swarm=1, peer=2, left=0))
        get("127.0.0.1", http, "/scrape?" + announce_target().split("?")[1].split("&")[0])
        dom = chromium(tmp_path, url, "--dump-dom").stdout
        shot = tmp_path / "status.png"
        chromium(tmp_path, url, "--screenshot=%s" % shot)
    finally:
        assert tracker.stop()

    assert "cdn-tracker %s" % __version__ in dom
    assert re.search(r"<b>1</b><span>swarms</span>", dom)
    assert re.search(r"<b>2</b><span>peers</span>", dom)
    assert re.search(r"<b>open</b><span>access mode</span>", dom)
    # Requests per door: the HTTP door's two announces and one scrape.
    assert re.search(r'<table id="doors">.*?<td class="text">http</td><td>2</td><td>1</td>', dom, re.S)
    # The busiest swarm, with its seeder and leecher.
    assert re.search(r'<table id="swarms">.*?<td>1</td><td>1</td><td>0</td>', dom, re.S)
    # The database part names the file and its backlog.
    assert re.search(r'<table id="database">.*?%s.*?backlog' % re.escape(str(db)), dom, re.S)
    for series in ("peers", "announces"):
        svg = re.search(r'<svg id="chart-%s"[^>]*data-points="(\d+)"[^>]*>(.*?)</svg>' % series, dom, re.S)
        assert svg and int(svg.group(1)) == HISTORY_MINUTES
        assert re.search(r'<path d="M[^"]+" class="%s"' % series, svg.group(2))
        times = re.findall(r'class="tick time">(\d\d:\d\d)<', svg.group(2))
        values = re.findall(r'class="tick value">([\d.]+)<', svg.group(2))
        assert len(times) == 6 and len(values) == 5
        top = float(values[-1])
        expected = 20 if series == "peers" else 5000  # each its own "nice" scale
        assert top == expected, (series, values)

    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (1000, 1500)
    colours = {pixel for row in rows for pixel in row}
    assert PEERS_RGB in colours and ANNOUNCES_RGB in colours  # both lines were drawn


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_status_page_lists_the_instances_sharing_swarms(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from cluster_processes import ADMIN_TOKEN, Instance, RedisServer

    redis = RedisServer(tmp_path)
    started = []
    try:
        started.append(Instance(tmp_path, "alpha", redis))
        started.append(Instance(tmp_path, "beta", redis))
        started[1].announce(3, 1, 7001)
        poll_real_process(lambda: len(started[0].admin_call("GET", "/api/status")["cluster"]
                                      ["instances"]) == 2, 10.0, "both heartbeats at alpha")
        url = "http://127.0.0.1:%d/?token=%s" % (started[0].admin, ADMIN_TOKEN)
        dom = chromium(tmp_path, url, "--dump-dom").stdout
    finally:
        for instance in started:
            instance.stop()
        redis.stop()
    assert re.search(r'<div id="cluster">', dom), dom  # shown: no `hidden` attribute
    assert re.search(r'this is alpha, via redis://127\.0\.0\.1:%d/0: up, lag' % redis.port, dom)
    rows = re.findall(r'<tr><td class="text">(alpha|beta)</td><td class="text">([\d.]+) s ago</td>'
                      r'<td>(\d+)</td>', dom)
    assert [r[0] for r in rows] == ["alpha", "beta"], dom
    assert all(float(age) < 10 for _, age, _ in rows)
    assert dict((name, int(peers)) for name, _, peers in rows)["beta"] == 1


def test_status_page_hides_the_instances_part_without_redis(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    http, admin = free_port(), free_port()
    tracker = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http, "--udp", "off", "--line", "off",
         "--ws", "off", "--admin", "tcp:%d:interface=127.0.0.1" % admin, "--db", "off"],
        tmp_path, [("127.0.0.1", http), ("127.0.0.1", admin)])
    try:
        dom = chromium(tmp_path, "http://127.0.0.1:%d/" % admin, "--dump-dom").stdout
    finally:
        assert tracker.stop()
    assert '<div id="cluster" hidden="">' in dom and "<b>0</b><span>swarms</span>" in dom
