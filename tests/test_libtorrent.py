"""A real transfer: two libtorrent sessions move a file through the tracker alone.

DHT, local peer discovery, peer exchange, UPnP and NAT-PMP are off, so the
only way the leecher can learn the seeder's address is the tracker's reply.
"""
from __future__ import annotations

import hashlib
import os
import socket

import pytest

from libtorrent_sessions import (
    FILE_SIZE, add_torrent, flushed_alert_seen, lt, make_session, make_torrent, scrape, wait_until,
)
from process import TrackerProcess, free_port

pytestmark = [
    pytest.mark.e2e, pytest.mark.libtorrent,
    # file_storage-based torrent creation works on libtorrent 2.0 and 2.1 alike.
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]


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
        seeder = leecher = None  # the sessions end here, not at the next collection
        assert tracker.stop()
