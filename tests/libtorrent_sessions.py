"""libtorrent sessions for the end-to-end tests: two sessions on loopback, a
torrent made on the spot, and waiting on libtorrent's alerts (never a sleep).
Importing it skips the importing test module where libtorrent has no wheel."""
from __future__ import annotations

import time
from urllib.parse import quote_from_bytes

import pytest

from e2e_clients import get
from helpers import bdecode

lt = pytest.importorskip("libtorrent", reason="libtorrent wheels exist for CPython only")

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
