"""The WebSocket door end to end: the real twistd on loopback, and two clients of
the `bittorrent-tracker` npm package (version 9, the one WebTorrent uses) with
real WebRTC offers (@roamhq/wrtc): announce, an offer reaching the other
client, the answer relayed back, scrape of one and several hashes, completed,
stop, over ws:// and over wss:// (an ssl: endpoint); then the figures in /metrics. Node and the packages of tests/webtorrent
(`npm ci` there; .ci/run does it) are needed: without node the test skips."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest

from process import REPO, TrackerProcess, free_port

pytestmark = pytest.mark.e2e

NODE = shutil.which("node")
SCRIPTS = REPO / "tests" / "webtorrent"
HASH = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
OTHER = "00112233445566778899aabbccddeeff00112233"
A_ID = "2d5757303130352d616161616161616161616161"
B_ID = "2d5757303130352d626262626262626262626262"


def node_packages_installed() -> None:
    assert (SCRIPTS / "node_modules" / "bittorrent-tracker").is_dir(), (
        "the npm packages of tests/webtorrent are missing: run `npm ci --ignore-scripts` there")


def self_signed(directory):
    """A certificate for 127.0.0.1 (openssl's command line): (key path, cert path)."""
    if shutil.which("openssl") is None:
        pytest.skip("the wss:// case needs the openssl command")
    pytest.importorskip("OpenSSL", reason="ssl: endpoints need the tls extra (pyOpenSSL)")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


@pytest.fixture(params=["ws", "wss"])
def tracker(request, tmp_path):
    http_port, ws_port, admin_port = free_port(), free_port(), free_port()
    endpoint = "tcp:%d:interface=127.0.0.1" % ws_port
    env = None
    if request.param == "wss":
        key, cert = self_signed(tmp_path)
        endpoint = "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (ws_port, key, cert)
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert))  # node trusts it, nothing else
    process = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % http_port, "--udp", "off",
         "--line", "off", "--ws", endpoint,
         "--admin", "tcp:%d:interface=127.0.0.1" % admin_port, "--db", "off"],
        tmp_path, [("127.0.0.1", ws_port), ("127.0.0.1", admin_port)])
    process.ws_port, process.admin_port, process.http_port = ws_port, admin_port, http_port
    process.url = "%s://127.0.0.1:%d/announce" % (request.param, ws_port)
    process.node_env = env
    yield process
    assert process.stop()
    assert "Traceback" not in process.output()


def metrics(tracker) -> str:
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % tracker.admin_port,
                                timeout=10) as reply:
        return reply.read().decode()


@pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)")
def test_bittorrent_tracker_clients_announce_relay_scrape_and_stop(tracker):
    node_packages_installed()
    run = subprocess.run([NODE, "tracker_client.js", tracker.url,
                          "http://127.0.0.1:%d" % tracker.http_port], cwd=str(SCRIPTS),
                         env=tracker.node_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    reply = {"action": "announce", "interval": 120, "infoHash": HASH}
    # Announce: the reply counts the swarm, the client's own announce included.
    assert seen["first"] == dict(reply, info_hash=seen["first"]["info_hash"], complete=0,
                                 incomplete=1)
    assert bytes(ord(c) for c in seen["first"]["info_hash"]).hex() == HASH
    assert (seen["second"]["complete"], seen["second"]["incomplete"]) == (0, 2)
    # b's offer reached a (a answered: not the initiator) and a's answer reached b.
    assert {"id": B_ID, "initiator": False} in seen["a_peers"]
    assert {"id": A_ID, "initiator": True} in seen["b_peers"]
    assert seen["scrape_one"] == {HASH: {"complete": 0, "incomplete": 2, "downloaded": 0}}
    # The HTTP door counts the two browsers too.
    assert seen["http_scrape"] == {"complete": 0, "incomplete": 2}
    # completed: a seeder now, counted once in downloaded.
    assert (seen["completed"]["complete"], seen["completed"]["incomplete"]) == (1, 1)
    assert seen["scrape_many"] == {HASH: {"complete": 1, "incomplete": 1, "downloaded": 1},
                                   OTHER: {"complete": 0, "incomplete": 0, "downloaded": 0}}
    # stop: b left the swarm.
    assert (seen["stopped"]["complete"], seen["stopped"]["incomplete"]) == (0, 1)
    assert seen["scrape_after_stop"] == {HASH: {"complete": 0, "incomplete": 1, "downloaded": 1}}
    assert seen["a_warnings"] == [] and seen["b_warnings"] == []

    figures = metrics(tracker)
    assert 'tracker_announces_total{door="ws"}' in figures
    assert 'tracker_scrapes_total{door="ws"} 3.0' in figures  # one of them for two hashes
    relayed = [line for line in figures.splitlines()
               if line.startswith(("tracker_ws_offers_relayed_total",
                                   "tracker_ws_answers_relayed_total"))]
    assert len(relayed) == 2 and all(float(line.split()[-1]) >= 1 for line in relayed)
