"""A real transfer: two libtorrent sessions move a file through the tracker alone.

DHT, local peer discovery, peer exchange, UPnP and NAT-PMP are off, so the
only way the leecher can learn the seeder's address is the tracker's reply.
"""
from __future__ import annotations

import hashlib
import os
import socket
import time
from urllib.parse import quote_from_bytes

import pytest

from e2e_clients import get
from helpers import bdecode
from process import TrackerProcess, free_port

lt = pytest.importorskip("libtorrent", reason="libtorrent wheels exist for CPython only")

pytestmark = [
    pytest.mark.e2e, pytest.mark.libtorrent,
    # file_storage-based torrent creation works on libtorrent 2.0 and 2.1 alike.
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]

TRANSFER_TIMEOUT_S = 90.0
FILE_SIZE = 3 * 1024 * 1024 + 12345


def make_session(listen_port: int):
    settings = {
        "listen_interfaces": "127.0.0.1:%d" % listen_port,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        # Both sessions share 127.0.0.1: let them talk over loopback freely.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": (lt.alert.category_t.status_notification
                       | lt.alert.category_t.error_notification
                       | lt.alert.category_t.storage_notification),
    }
    # flags=0: no default plugins, so no ut_pex (peer exchange) and no ut_metadata.
    return lt.session(settings, 0)


def make_torrent(source_dir, name: str, announce_url: str):
    storage = lt.file_storage()
    lt.add_files(storage, str(source_dir / name))
    creator = lt.create_torrent(storage, 64 * 1024)
    creator.add_tracker(announce_url)
    lt.set_piece_hashes(creator, str(source_dir))
    return lt.torrent_info(lt.bencode(creator.generate()))


def add_torrent(session, info, save_path):
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(save_path)
    return session.add_torrent(params)


def wait_until(session, condition, what: str, timeout_s: float = TRANSFER_TIMEOUT_S,
               pop: bool = True):
    """Wait on libtorrent's alerts (not a sleep) until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        session.wait_for_alert(200)
        if pop:
            session.pop_alerts()


def flushed_alert_seen(session, seen) -> bool:
    seen.extend(a for a in session.pop_alerts() if isinstance(a, lt.cache_flushed_alert))
    return bool(seen)


def scrape(port: int, info_hash: bytes):
    body = get("127.0.0.1", port, "/scrape?info_hash=" + quote_from_bytes(info_hash))[1]
    return bdecode(body)[b"files"][info_hash]


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_libtorrent_leecher_downloads_from_seeder_through_the_tracker(tmp_path, scheme):
    """The torrent names one tracker URL, http:// or udp://; the test itself
    watches the swarm through the HTTP scrape."""
    tracker_port = free_port()
    udp_port = free_port(kind=socket.SOCK_DGRAM)
    tracker = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % tracker_port,
         "--udp", "127.0.0.1:%d" % udp_port, "--line", "off", "--ws", "off", "--admin", "off", "--interval", "5",
         "--min-interval", "1"],
        tmp_path, [("127.0.0.1", tracker_port)])
    announce_url = ("http://127.0.0.1:%d/announce" % tracker_port if scheme == "http"
                    else "udp://127.0.0.1:%d/announce" % udp_port)
    seed_dir = tmp_path / "seed"
    leech_dir = tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    payload = os.urandom(FILE_SIZE)
    (seed_dir / "payload.bin").write_bytes(payload)
    info = make_torrent(seed_dir, "payload.bin", announce_url)
    info_hash = bytes.fromhex(str(info.info_hash()))

    seeder = make_session(free_port())
    leecher = make_session(free_port())
    try:
        seed_handle = add_torrent(seeder, info, seed_dir)
        wait_until(seeder, lambda: seed_handle.status().is_seeding, "the seeder to check its file")
        seed_handle.force_reannounce()
        wait_until(seeder, lambda: scrape(tracker_port, info_hash)[b"complete"] == 1,
                   "the tracker to list the seeder")

        leech_handle = add_torrent(leecher, lt.torrent_info(info), leech_dir)
        wait_until(leecher, lambda: leech_handle.status().is_seeding, "the leecher to finish")
        # Every piece is verified; make sure the bytes are on disk before reading them.
        leech_handle.flush_cache()
        flushed = []
        wait_until(leecher, lambda: flushed_alert_seen(leecher, flushed), "the disk cache flush",
                   pop=False)

        copy = (leech_dir / "payload.bin").read_bytes()
        assert hashlib.sha256(copy).hexdigest() == hashlib.sha256(payload).hexdigest()
        # The leecher announced `completed`: the tracker counted it.
        wait_until(leecher, lambda: scrape(tracker_port, info_hash)[b"downloaded"] == 1,
                   "the tracker to count the completion")
    finally:
        del seeder, leecher
        assert tracker.stop()
