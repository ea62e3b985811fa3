"""Start-up that fails fast and whole, in the foreground and as a daemon; SIGHUP reloads."""
from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest
import sqlite_utils
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory

from e2e_clients import announce_target, get
from helpers import bdecode
from process import REPO, TrackerProcess, free_port, poll_real_process, source_env, twistd_command
from tracker.core import TrackerCore
from tracker.service import TrackerService

DAEMON_DEADLINE_S = 10.0


class FakePort:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self):
        self.listening = False
        return defer.succeed(None)


class FakeEndpoint:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.port = FakePort()

    def listen(self, factory):
        if self.fail:
            return defer.fail(CannotListenError("127.0.0.1", 9, OSError(98, "Address already in use")))
        return defer.succeed(self.port)


def test_a_door_that_cannot_bind_closes_those_already_bound_and_names_itself():
    top = TrackerService(TrackerCore())
    first, second, third = FakeEndpoint(), FakeEndpoint(fail=True), FakeEndpoint()
    for name, endpoint in (("http a", first), ("line b", second), ("admin c", third)):
        listener = StreamServerEndpointService(endpoint, Factory())
        listener._raiseSynchronously = True
        listener.setName(name)
        listener.setServiceParent(top)
    with pytest.raises(SystemExit) as raised:
        top.privilegedStartService()
    assert raised.value.code == ("tracker: cannot start line b: Couldn't listen on 127.0.0.1:9: "
                                 "[Errno 98] Address already in use.")
    assert not first.port.listening  # bound, then closed again
    assert third.port.listening  # never tried: nothing bound after the failure


def busy_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


def run_twistd(args, cwd, env=None):
    started = time.monotonic()
    result = subprocess.run(twistd_command() + args, cwd=str(cwd), env=env or source_env(),
                            capture_output=True, timeout=DAEMON_DEADLINE_S * 3)
    return result, time.monotonic() - started


def doors_off(http_port):
    return ["--http", "tcp:%d:interface=127.0.0.1" % http_port, "--udp", "off", "--line", "off",
            "--ws", "off", "--admin", "off", "--db", "off"]


@pytest.mark.e2e
def test_daemon_on_a_busy_port_exits_non_zero_with_the_cause_on_stderr(tmp_path):
    holder, port = busy_port()
    with holder:
        result, took = run_twistd(["--pidfile", "t.pid", "tracker"] + doors_off(port), tmp_path)
    assert result.returncode == 1
    assert took < DAEMON_DEADLINE_S
    lines = result.stderr.decode().splitlines()
    assert lines == ["tracker: cannot start http tcp:%d:interface=127.0.0.1: Couldn't listen on "
                     "127.0.0.1:%d: [Errno 98] Address already in use." % (port, port)]
    assert not (tmp_path / "t.pid").exists()  # no stale pid file for the next start
    assert "Address already in use" in (tmp_path / "twistd.log").read_text()


@pytest.mark.e2e
def test_daemon_from_the_tac_file_on_a_busy_port_exits_with_the_cause(tmp_path):
    holder, port = busy_port()
    config = tmp_path / "tracker.toml"
    config.write_text('http = "tcp:%d:interface=127.0.0.1"\nudp = "off"\nline = "off"\n'
                      'ws = "off"\nadmin = "off"\ndb = "off"\n' % port)
    with holder:
        result, took = run_twistd(["-y", str(REPO / "tracker.tac")], tmp_path,
                                  source_env({"TRACKER_CONFIG": str(config)}))
    assert result.returncode == 1 and took < DAEMON_DEADLINE_S
    assert result.stderr.decode().startswith("tracker: cannot start http ")
    assert "Address already in use" in result.stderr.decode()


@pytest.mark.e2e
def test_daemon_that_starts_reports_success_and_runs_until_stopped(tmp_path):
    port = free_port()
    result, took = run_twistd(["--pidfile", "t.pid", "tracker"] + doors_off(port), tmp_path)
    assert result.returncode == 0 and result.stderr == b""
    pid = int((tmp_path / "t.pid").read_text())
    try:
        status, _ = get("127.0.0.1", port, announce_target())
        assert status == 200
    finally:
        import os
        os.kill(pid, signal.SIGTERM)
    poll_real_process(lambda: not (tmp_path / "t.pid").exists(), 20, "the daemon to stop")


@pytest.mark.e2e
def test_foreground_failure_is_one_line_and_leaves_no_door_listening(tmp_path):
    holder, busy = busy_port()
    free = free_port()
    args = ["-n", "--pidfile=", "--logfile=-", "tracker", "--http", "tcp:%d:interface=127.0.0.1" % free,
            "--line", "tcp:%d:interface=127.0.0.1" % busy, "--udp", "off", "--ws", "off",
            "--admin", "off", "--db", "off"]
    with holder:
        result, _ = run_twistd(args, tmp_path)
    assert result.returncode == 1
    failures = [line for line in result.stdout.decode().splitlines() if "cannot start" in line]
    assert len(failures) == 1 and ("line tcp:%d" % busy) in failures[0]
    assert "Traceback" not in result.stdout.decode()
    assert "tracker started" not in result.stdout.decode()


@pytest.mark.e2e
def test_sighup_reloads_the_settings_file_and_loses_nothing(tmp_path):
    port = free_port()
    config = tmp_path / "tracker.toml"
    config.write_text("interval = 1800\n")
    db = tmp_path / "t.sqlite3"
    tracker = TrackerProcess(["tracker", "--config", str(config), "--http",
                              "tcp:%d:interface=127.0.0.1" % port, "--udp", "off", "--line", "off",
                              "--ws", "off", "--admin", "off", "--db", str(db),
                              "--flush-interval", "30"],
                             tmp_path, [("127.0.0.1", port)])
    try:
        status, body = get("127.0.0.1", port, announce_target(peer=1))
        assert bdecode(body)[b"interval"] == 1800
        config.write_text('interval = 900\nmin-interval = 300\nwarning-message = "moving"\n'
                          'sweep-interval = 5\n')
        tracker.process.send_signal(signal.SIGHUP)
        poll_real_process(lambda: "reloaded " in tracker.output(), 10, "the reload line")
        status, body = get("127.0.0.1", port, announce_target(peer=2))
        reply = bdecode(body)
        assert (reply[b"interval"], reply[b"min interval"]) == (900, 300)
        assert reply[b"warning message"] == b"moving"
        assert "needs a restart, left as it is: sweep-interval" in tracker.output()
        assert tracker.process.poll() is None
    finally:
        assert tracker.stop()  # SIGTERM flushes: both peers are in the file
    assert sqlite_utils.Database(str(db))["peers"].count == 2


@pytest.mark.e2e
def test_sighup_with_a_broken_file_changes_nothing(tmp_path):
    port = free_port()
    config = tmp_path / "tracker.toml"
    config.write_text("interval = 1200\n")
    tracker = TrackerProcess(["tracker", "--config", str(config)] + doors_off(port),
                             tmp_path, [("127.0.0.1", port)])
    try:
        config.write_text("interval = [\n")
        tracker.process.send_signal(signal.SIGHUP)
        poll_real_process(lambda: "reload refused" in tracker.output(), 10, "the refusal")
        assert bdecode(get("127.0.0.1", port, announce_target())[1])[b"interval"] == 1200
    finally:
        assert tracker.stop()


@pytest.mark.parametrize("endpoint, cause", [
    ("ssl:0:privateKey=/nonexistent/key.pem", "http endpoint ssl:0:privateKey=/nonexistent/key.pem: "),
    ("nonsense:1", "http endpoint nonsense:1: "),
])
def test_an_endpoint_that_cannot_be_made_is_one_line(endpoint, cause):
    from tracker.tap import Options, makeService

    config = Options()
    config.parseOptions(["--http", endpoint, "--udp", "off", "--line", "off", "--admin", "off",
                         "--db", "off"])
    with pytest.raises(SystemExit) as raised:
        makeService(config)
    message = raised.value.code
    assert message.startswith("tracker: " + cause) and "\n" not in message
