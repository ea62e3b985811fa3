"""In-process checks of start-up and reload: the daemon parent's wait cannot hang, and a
SIGHUP reload changes exactly the running settings it names (tracker/tap.py, tracker/reload.py)."""
from __future__ import annotations

import io
import os
import sys

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher

from tracker import reload as reloading
from tracker.options import Options
from tracker.service import makeService  # not tap's: no signal handler in the test process
from tracker.tap import SILENT_CHILD


class FakeRunner:
    """What the patched UnixApplicationRunner methods use of their runner."""

    config = {}


def patched_runner(monkeypatch):
    import twisted.scripts._twistd_unix as unix

    monkeypatch.setattr(unix.UnixApplicationRunner, "_tracker_reports", False, raising=False)
    monkeypatch.setattr(unix.UnixApplicationRunner, "_waitForStart",
                        unix.UnixApplicationRunner._waitForStart)
    monkeypatch.setattr(unix.UnixApplicationRunner, "startApplication",
                        unix.UnixApplicationRunner.startApplication)
    from tracker.tap import _report_daemon_failures

    _report_daemon_failures()
    return unix.UnixApplicationRunner


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_the_daemon_parent_ends_when_the_child_vanishes_without_a_word(monkeypatch):
    runner = patched_runner(monkeypatch)
    read_end, write_end = os.pipe()  # the parent's copy of the write end is still open
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", stderr)
    try:
        assert runner._waitForStart(FakeRunner(), read_end) == 1
    finally:
        os.close(read_end)
    assert stderr.getvalue() == SILENT_CHILD + "\n"
    with pytest.raises(OSError):
        os.fstat(write_end)  # closed by the parent, so the read could end


def test_the_daemon_parent_prints_the_childs_line_and_exits_1(monkeypatch):
    runner = patched_runner(monkeypatch)
    read_end, write_end = os.pipe()
    os.write(write_end, b"1 tracker: cannot start http tcp:1: Couldn't listen")
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", stderr)
    try:
        assert runner._waitForStart(FakeRunner(), read_end) == 1
    finally:
        os.close(read_end)
    assert stderr.getvalue() == "tracker: cannot start http tcp:1: Couldn't listen\n"


def test_a_started_daemon_is_success(monkeypatch):
    runner = patched_runner(monkeypatch)
    read_end, write_end = os.pipe()
    os.write(write_end, b"0")
    try:
        assert runner._waitForStart(FakeRunner(), read_end) == 0
    finally:
        os.close(read_end)


def build(tmp_path, text, *args):
    path = tmp_path / "tracker.toml"
    path.write_text(text)
    config = Options()
    config.parseOptions(["--config", str(path), "--udp", "off", "--ws", "off", "--admin", "off",
                         "--db", "off"] + list(args))
    return path, config, makeService(config, MemoryReactorClock())


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_reload_applies_the_reloadable_settings_to_the_running_service(tmp_path, logged):
    path, config, top = build(tmp_path, 'interval = 1800\n[node-token]\nedge-1 = "old"\n')
    path.write_text('interval = 600\nmin-interval = 60\nwarning-message = "moving"\n'
                    'trusted-proxy = ["10.0.0.0/8"]\nsweep-slice = 5\nmax-peers = 1000\n'
                    '[node-token]\nedge-1 = "new-secret"\n')
    applied = reloading.reload(top, config)
    assert sorted(applied) == ["interval", "max-peers", "min-interval", "node-token",
                               "trusted-proxy", "warning-message"]
    assert top.core.settings.max_peers == 1000
    assert (top.core.settings.interval_s, top.core.settings.min_interval_s) == (600, 60)
    assert top.http_factory.settings.warning_message == b"moving"
    assert b"moving" in top.http_factory.announce_trailer
    assert [str(n) for n in top.http_factory.settings.trusted_proxies] == ["10.0.0.0/8"]
    assert top.line_factory.settings.tokens == {"edge-1": "new-secret"}
    assert config["sweep-slice"] == 10000  # needs a restart: named, not applied
    text = " ".join(str(e.get("log_format", "")).format(**e) for e in logged
                    if e.get("log_namespace") == "tracker.reload")
    assert "node-token (1)" in text and "sweep-slice" in text
    assert "new-secret" not in text and "old" not in text  # secrets are counted, never shown


def test_reload_keeps_what_the_command_line_gave(tmp_path):
    path, config, top = build(tmp_path, "interval = 1800\n", "--interval", "1200")
    path.write_text("interval = 600\nmin-interval = 60\n")
    assert reloading.reload(top, config) == ["min-interval"]
    assert top.core.settings.interval_s == 1200


@pytest.mark.parametrize("text", ["interval = [\n", "interval = 10\nmin-interval = 20\n",
                                  "no-such-setting = 1\n", 'interval = "soon"\n'])
def test_a_file_that_cannot_be_used_changes_nothing(tmp_path, logged, text):
    path, config, top = build(tmp_path, "interval = 1800\n")
    before = top.core.settings
    path.write_text(text)
    assert reloading.reload(top, config) == []
    assert top.core.settings is before
    warnings = [e for e in logged if e.get("log_level") == LogLevel.warn
                and e.get("log_namespace") == "tracker.reload"]
    assert len(warnings) == 1
