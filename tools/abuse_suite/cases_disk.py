"""Crashes and disk faults: SIGKILL after a burst, the database directory removed, a corrupt file."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from process import poll_real_process

from .common import Env, Row, errors_logged, random_hashes, restored_peers
from .target import Target

CRASH_WINDOW_S = 2.0  # what the README promises a crash can lose, at the default flush interval
PEERS_PER_HASH = 50


def rows_on_disk(db: Path) -> int:
    """Peers in the database file, read-only (0 if it cannot be read)."""
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            return conn.execute("select count(*) from peers").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def fill_peers(env: Env, t: Target, peers: int) -> int:
    """`peers` peers over UDP, PEERS_PER_HASH a swarm; the acknowledged announces."""
    swarms = max(1, peers // PEERS_PER_HASH)
    return int(env.udp_fill(t, random_hashes(swarms), PEERS_PER_HASH)["requests"])


def restart_and_count(t: Target) -> int:
    """Start the tracker again on its database; the live peers it restored."""
    t.start()
    poll_real_process(lambda: restored_peers(t.output()) is not None, timeout_s=120,
                      what="the restore line in the log")
    restored = restored_peers(t.output())
    t.stop()
    return restored


def sigkill_burst(env: Env) -> Row:
    count = env.sizes["sigkill_announces"]
    name = "SIGKILL right after %d UDP announces" % count
    target = "loses ≤ %.0f s of acknowledged announces (the README's window)" % CRASH_WINDOW_S
    t = env.target("sigkill")
    try:
        figures = env.udp_fill(t, random_hashes(max(1, count // PEERS_PER_HASH)), PEERS_PER_HASH)
        t.kill()
        restored = restart_and_count(t)
    finally:
        t.stop()
    acknowledged = int(figures["requests"])
    rate = acknowledged / (figures["duration_us"] / 1e6)
    lost = max(0, acknowledged - restored)
    lost_s = lost / rate if rate else 0.0
    measured = "%d acknowledged at %.0f/s; %d lost (%.1f s of announces)" % (
        acknowledged, rate, lost, lost_s)
    return Row(name, target, measured, lost_s <= CRASH_WINDOW_S)


def db_dir_removed(env: Env) -> Row:
    count = env.sizes["db_peers"]
    name = "the database directory removed while running, then a clean stop"
    target = "logged as an error; after restart every acknowledged peer is back"
    data = env.dir("dir-removed") / "data"
    data.mkdir()
    t = Target(env.dir("dir-removed"), env.tracker_args, db=data / "tracker.sqlite3")
    try:
        acknowledged = fill_peers(env, t, count)
        poll_real_process(lambda: rows_on_disk(t.db) >= acknowledged, timeout_s=60,
                          what="every peer on disk")
        logged_before = len(t.output())
        shutil.rmtree(data)
        # Two flush intervals and more: time for the tracker to notice and write again.
        try:
            poll_real_process(lambda: errors_logged(t.output()[logged_before:]), timeout_s=5,
                              what="an error logged")
        except TimeoutError:
            pass
        errors = errors_logged(t.output()[logged_before:])
        t.stop()
        data.mkdir(exist_ok=True)  # so that the restart can open a file there at all
        restored = restart_and_count(t)
    finally:
        t.stop()
    measured = "%s; %d of %d peers back after restart" % (
        "error logged" if errors else "no error logged", restored, acknowledged)
    return Row(name, target, measured, bool(errors) and restored >= acknowledged)


def db_garbage(env: Env) -> Row:
    count = env.sizes["db_peers"]
    name = "64 KiB of garbage in the middle of the database, then a start"
    target = "no traceback: one line naming the file and what to do (or a clean start)"
    t = env.target("garbage")
    try:
        fill_peers(env, t, count)
        t.stop()
        size = t.db.stat().st_size
        with open(t.db, "r+b") as f:
            f.seek(max(0, size // 2 - 32768))
            f.write(os.urandom(65536))
        try:
            t.start()
        except RuntimeError as e:  # twistd exited before it listened; the message holds its output
            output, started = str(e), False
        else:
            poll_real_process(lambda: (restored_peers(t.output()) is not None or "Traceback" in t.output()
                                       or t.process.process.poll() is not None),
                              timeout_s=60, what="the restore's end")
            output, started = t.output(), True
        exited = not started or t.process.process.poll() is not None
    finally:
        t.stop()
    traceback = "Traceback" in output
    errors = [line.split("] ", 1)[-1] for line in errors_logged(output) if not line.startswith("Traceback")]
    if started and restored_peers(output) is not None:
        measured = "started; restored %d peers" % restored_peers(output)
    else:
        measured = "exited" if exited else "kept running without a restore line"
    measured += "; traceback" if traceback else "; %s" % (errors[0][:100] + "…" if errors else "no error line")
    named = t.db.name in output
    return Row(name, target, measured, not traceback and (named or restored_peers(output) is not None))
