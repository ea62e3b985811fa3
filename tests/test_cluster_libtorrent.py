"""A real transfer across instances: a libtorrent seeder announcing only to
instance A and a leecher announcing only to instance B find each other through
the tracker alone (DHT, local discovery, peer exchange, UPnP and NAT-PMP off)."""
from __future__ import annotations

import hashlib
import os
import shutil
from urllib.parse import quote_from_bytes

import pytest

from e2e_clients import get
from helpers import bdecode
from cluster_processes import Instance, RedisServer
from libtorrent_sessions import add_torrent, make_session, make_torrent, wait_until
from process import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.libtorrent,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed"),
              pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")]

def _seeders(instance, info) -> int:
    info_hash = bytes.fromhex(str(info.info_hash()))
    body = get("127.0.0.1", instance.http, "/scrape?info_hash=" + quote_from_bytes(info_hash))[1]
    return bdecode(body)[b"files"].get(info_hash, {}).get(b"complete", 0)


def test_a_seeder_at_one_instance_and_a_leecher_at_the_other_complete_the_file(tmp_path):
    redis = RedisServer(tmp_path)
    a = b = None
    try:
        a = Instance(tmp_path, "a", redis, "--interval", "60", "--min-interval", "1")
        b = Instance(tmp_path, "b", redis, "--interval", "60", "--min-interval", "1")
        seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
        seed_dir.mkdir()
        leech_dir.mkdir()
        payload = os.urandom(2 * 1024 * 1024 + 777)
        (seed_dir / "payload.bin").write_bytes(payload)
        # The same content, each copy naming one instance only.
        at_a = make_torrent(seed_dir, "payload.bin", "http://127.0.0.1:%d/announce" % a.http)
        at_b = make_torrent(seed_dir, "payload.bin", "udp://127.0.0.1:%d/announce" % b.udp)
        assert str(at_a.info_hash()) == str(at_b.info_hash())

        seeder, leecher = make_session(free_port()), make_session(free_port())
        seed = add_torrent(seeder, at_a, seed_dir)
        wait_until(seeder, lambda: seed.status().is_seeding, "the seeder to check its file")
        seed.force_reannounce()
        # The seeder announced to A only; the leecher asks B once B knows it
        # (libtorrent announces again only minutes later).
        wait_until(seeder, lambda: _seeders(b, at_b) == 1, "B to list the seeder")
        leech = add_torrent(leecher, at_b, leech_dir)
        wait_until(leecher, lambda: leech.status().is_seeding, "the leecher to finish")
        leech.flush_cache()
        # Every piece was verified against its hash by libtorrent; the file matches.
        wait_until(leecher, lambda: (leech_dir / "payload.bin").exists()
                   and hashlib.sha256((leech_dir / "payload.bin").read_bytes()).digest()
                   == hashlib.sha256(payload).digest(), "the file on disk")
        seeder = leecher = None  # the sessions end here, not at the next collection
    finally:
        for instance in (a, b):
            if instance is not None:
                instance.stop()
        redis.stop()
