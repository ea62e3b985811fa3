"""TLS on every door with a self-signed certificate made here: curl and Python over https
(with and without ALPN), the admin listener, tracker-line --tls, NodeClientFactory, libtorrent."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import ssl
import subprocess
import sys

import pytest

pytest.importorskip("OpenSSL", reason="TLS needs the tls extra (pyOpenSSL, service-identity)")

from certificates import make_certificate  # noqa: E402  (cryptography comes with pyOpenSSL)
from e2e_clients import announce_target  # noqa: E402
from helpers import bdecode  # noqa: E402
from process import REPO, TrackerProcess, free_port, poll_real_process, source_env  # noqa: E402

pytestmark = pytest.mark.e2e


def ssl_endpoint(port, key, cert):
    return "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (port, key, cert)


@pytest.fixture(scope="module")
def tls_tracker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    key, cert = make_certificate(directory)
    ports = {name: free_port() for name in ("https", "line", "admin", "http")}
    tracker = TrackerProcess(
        ["tracker", "--http", ssl_endpoint(ports["https"], key, cert),
         "--http", "tcp:%d:interface=127.0.0.1" % ports["http"],
         "--line", ssl_endpoint(ports["line"], key, cert),
         "--admin", ssl_endpoint(ports["admin"], key, cert),
         "--udp", "off", "--ws", "off", "--db", "off", "--interval", "5", "--min-interval", "1"],
        directory, [("127.0.0.1", p) for p in ports.values()])
    yield tracker, ports, cert
    assert tracker.stop()


def https_get(port, target, cert, alpn=None):
    context = ssl.create_default_context(cafile=str(cert))
    if alpn:
        context.set_alpn_protocols(alpn)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read(), conn.sock.selected_alpn_protocol()
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_its_default_options_announces_over_https(tls_tracker):
    tracker, ports, cert = tls_tracker
    url = "https://localhost:%d%s" % (ports["https"], announce_target(peer=7))
    result = subprocess.run(["curl", "-sS", "--cacert", str(cert), url], capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert bdecode(result.stdout)[b"incomplete"] >= 1


@pytest.mark.parametrize("alpn, chosen", [(None, None), (["h2", "http/1.1"], "http/1.1"),
                                          (["h2"], None)])
def test_announce_and_scrape_over_https_with_and_without_alpn(tls_tracker, alpn, chosen):
    tracker, ports, cert = tls_tracker
    status, body, selected = https_get(ports["https"], announce_target(peer=8), cert, alpn)
    assert status == 200 and bdecode(body)[b"interval"] == 5
    assert selected == chosen  # an offer without http/1.1 still connects, with no protocol
    scrape = "/scrape?" + announce_target(peer=8).split("?", 1)[1].split("&")[0]
    status, body, _ = https_get(ports["https"], scrape, cert, alpn)
    assert status == 200 and len(bdecode(body)[b"files"]) == 1


def test_the_admin_listener_over_tls(tls_tracker):
    tracker, ports, cert = tls_tracker
    status, body, _ = https_get(ports["admin"], "/api/health", cert, ["h2", "http/1.1"])
    assert status == 200 and b"ok" in body


def test_a_failed_handshake_is_logged(tls_tracker):
    tracker, ports, cert = tls_tracker
    with pytest.raises(ssl.SSLError):
        https_get(ports["https"], "/scrape", REPO / "tests" / "helpers.py")  # no such CA
    poll_real_process(lambda: "TLS handshake with 127.0.0.1" in tracker.output(), 10,
                      "the handshake failure in the log")


def tracker_line(*args):
    return subprocess.run([sys.executable, "-m", "tracker.line.cli"] + list(args),
                          capture_output=True, text=True, timeout=30, env=source_env())


def test_tracker_line_talks_to_a_tls_line_door(tls_tracker):
    tracker, ports, cert = tls_tracker
    port = str(ports["line"])
    result = tracker_line("--tls", "--cafile", str(cert), "--port", port, "STATS")
    assert result.returncode == 0 and result.stdout.startswith("OK STATS"), result.stderr
    insecure = tracker_line("--tls", "--insecure", "--host", "127.0.0.1", "--port", port, "PING")
    assert insecure.returncode == 0, insecure.stderr
    untrusted = tracker_line("--tls", "--port", port, "STATS")  # self-signed: not trusted
    assert untrusted.returncode == 2 and "certificate verify failed" in untrusted.stderr
    assert tracker_line("--cafile", str(cert), "STATS").returncode == 2  # --cafile needs --tls


def test_node_client_factory_registers_over_tls(tls_tracker):
    tracker, ports, cert = tls_tracker
    script = (
        "import sys\n"
        "from twisted.internet import task\n"
        "from tracker.line.client import NodeClientFactory\n"
        "from tracker.tls import client_options\n"
        "def main(reactor):\n"
        "    node = NodeClientFactory('edge-tls', port=8080)\n"
        "    node.connect(reactor, 'localhost', %d, tls=client_options('localhost', %r))\n"
        "    d = node.when_registered()\n"
        "    d.addCallback(lambda client: node.scrape('%s'))\n"
        "    d.addCallback(lambda figures: print('scraped', figures))\n"
        "    d.addCallback(lambda _: node.stopTrying() or node.client.transport.loseConnection())\n"
        "    return d\n"
        "task.react(main)\n" % (ports["line"], str(cert), "00" * 20))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=30, env=source_env())
    assert result.returncode == 0, result.stderr
    assert "scraped {'%s': (0, 0, 0)}" % ("00" * 20) in result.stdout


@pytest.mark.libtorrent
@pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")
def test_libtorrent_transfers_through_an_https_tracker(tls_tracker, tmp_path):
    lt = pytest.importorskip("libtorrent", reason="libtorrent wheels exist for CPython only")
    import libtorrent_sessions as transfer

    tracker, ports, cert = tls_tracker
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    payload = os.urandom(transfer.FILE_SIZE)
    (seed_dir / "payload.bin").write_bytes(payload)
    info = transfer.make_torrent(seed_dir, "payload.bin",
                                 "https://127.0.0.1:%d/announce" % ports["https"])
    info_hash = bytes.fromhex(str(info.info_hash()))
    sessions = []
    for _ in range(2):
        session = transfer.make_session(free_port())
        # libtorrent checks https trackers against the system's CAs; this
        # certificate is the test's own.
        session.apply_settings({"validate_https_trackers": False})
        sessions.append(session)
    seeder, leecher = sessions
    try:
        seed_handle = transfer.add_torrent(seeder, info, seed_dir)
        transfer.wait_until(seeder, lambda: seed_handle.status().is_seeding, "the seeder's check")
        seed_handle.force_reannounce()
        transfer.wait_until(seeder, lambda: transfer.scrape(ports["http"], info_hash)[b"complete"] == 1,
                            "the seeder's https announce")
        leech_handle = transfer.add_torrent(leecher, lt.torrent_info(info), leech_dir)
        transfer.wait_until(leecher, lambda: leech_handle.status().is_seeding, "the download")
        leech_handle.flush_cache()
        flushed = []
        transfer.wait_until(leecher, lambda: transfer.flushed_alert_seen(leecher, flushed),
                            "the disk cache flush", pop=False)
        copy = (leech_dir / "payload.bin").read_bytes()
        assert hashlib.sha256(copy).digest() == hashlib.sha256(payload).digest()
    finally:
        seeder = leecher = None  # the sessions end here, not at the next collection
        sessions.clear()
