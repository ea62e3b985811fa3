"""A real client whose address changes keeps its entry: a libtorrent session
announces from 127.0.0.1, moves its listen and outgoing interface to
127.0.0.2, and announces again with the same peer id and key. The tracker
moves its entry (another client is handed the new address), where an announce
without the key from the new address would be refused."""
from __future__ import annotations

import os
import socket
import time

import pytest

from e2e_clients import get
from helpers import bdecode
from process import TrackerProcess, free_port

lt = pytest.importorskip("libtorrent", reason="libtorrent wheels exist for CPython only")

pytestmark = [
    pytest.mark.e2e, pytest.mark.libtorrent,
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]

TIMEOUT_S = 30.0


def session_on(address: str, port: int):
    return lt.session({
        "listen_interfaces": "%s:%d" % (address, port),
        "outgoing_interfaces": address,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    }, 0)


def tracker_lists(tracker_port: int, info_hash: bytes, address: str, port: int,
                  session, errors) -> bool:
    """Whether a probe announcing at the tracker is handed (address, port); the
    session's alerts are read meanwhile (tracker errors kept in `errors`)."""
    session.wait_for_alert(200)
    for alert in session.pop_alerts():
        if isinstance(alert, lt.tracker_error_alert):
            errors.append(alert.message())
    target = ("/announce?info_hash=%s&peer_id=-PROBE-0000000000000&port=1&left=1&compact=1"
              % "".join("%%%02x" % b for b in info_hash))
    reply = bdecode(get("127.0.0.1", tracker_port, target)[1])
    peers = reply.get(b"peers", b"")
    wanted = socket.inet_aton(address) + port.to_bytes(2, "big")
    return any(peers[i:i + 6] == wanted for i in range(0, len(peers), 6))


# Over udp:// the same holds, but only after a minute: libtorrent keeps using the
# connection id it got at its old address, which the UDP door refuses (ids are
# bound to the address they were issued to), until its id cache expires after
# 60 s and it connects again; then the key moves the entry (checked by hand).
@pytest.mark.parametrize("scheme", ["http"])
def test_a_libtorrent_client_that_changes_address_keeps_its_entry(tmp_path, scheme):
    tracker_port = free_port()
    udp_port = free_port(kind=socket.SOCK_DGRAM)
    tracker = TrackerProcess(
        ["tracker", "--http", "tcp:%d:interface=127.0.0.1" % tracker_port,
         "--udp", "127.0.0.1:%d" % udp_port, "--line", "off", "--ws", "off", "--admin", "off", "--db", "off",
         "--interval", "5", "--min-interval", "1",
         # No expiry during the test: only the key can move the entry.
         "--sweep-interval", "3600", "--peer-ttl", "3600"],
        tmp_path, [("127.0.0.1", tracker_port)])
    url = ("http://127.0.0.1:%d/announce" % tracker_port if scheme == "http"
           else "udp://127.0.0.1:%d/announce" % udp_port)
    (tmp_path / "payload.bin").write_bytes(os.urandom(256 * 1024))
    storage = lt.file_storage()
    lt.add_files(storage, str(tmp_path / "payload.bin"))
    creator = lt.create_torrent(storage, 64 * 1024)
    creator.add_tracker(url)
    lt.set_piece_hashes(creator, str(tmp_path))
    info = lt.torrent_info(lt.bencode(creator.generate()))
    info_hash = bytes.fromhex(str(info.info_hash()))

    listen_port = free_port()
    session = session_on("127.0.0.1", listen_port)
    errors = []
    try:
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(tmp_path)
        handle = session.add_torrent(params)
        deadline = time.monotonic() + TIMEOUT_S
        while not tracker_lists(tracker_port, info_hash, "127.0.0.1", listen_port, session, errors):
            assert time.monotonic() < deadline, "the tracker never listed the client"

        session.apply_settings({"listen_interfaces": "127.0.0.2:%d" % listen_port,
                                "outgoing_interfaces": "127.0.0.2"})
        deadline = time.monotonic() + TIMEOUT_S
        while not tracker_lists(tracker_port, info_hash, "127.0.0.2", listen_port, session, errors):
            assert time.monotonic() < deadline, "the entry did not move: %s" % errors
            handle.force_reannounce()
        assert not any("another address" in e for e in errors)
    finally:
        del session
        assert tracker.stop()
