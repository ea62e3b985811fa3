"""The deployment files in deploy/: the systemd unit passes `systemd-analyze verify`;
log rotation works as deploy/tracker.logrotate and the README say."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from process import REPO, free_port, poll_real_process, source_env, twistd_command

UNIT = REPO / "deploy" / "tracker.service"


def test_unit_runs_python_m_tracker_as_a_dedicated_user_with_a_state_directory():
    text = UNIT.read_text()
    for line in ("DynamicUser=yes", "User=tracker", "StateDirectory=tracker",
                 "ExecStart=/opt/tracker/venv/bin/python -m tracker --data-dir /var/lib/tracker",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "LimitNOFILE="):
        assert line in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify also checks that ExecStart's program exists: point it at this Python.
    unit = tmp_path / "tracker.service"
    unit.write_text(UNIT.read_text().replace("/opt/tracker/venv/bin/python", sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and str(unit) not in result.stderr, result.stderr


@pytest.fixture
def daemon_log(tmp_path):
    port = free_port()
    log = tmp_path / "twistd.log"
    process = subprocess.Popen(
        twistd_command() + ["-n", "--pidfile=", "--logfile", str(log), "tracker", "--http",
                            "tcp:%d:interface=127.0.0.1" % port, "--udp", "off", "--line", "off",
                            "--ws", "off", "--admin", "off", "--db", "off"],
        cwd=str(tmp_path), env=source_env())
    try:
        poll_real_process(lambda: log.exists() and "tracker started" in log.read_text(), 20,
                          "the tracker to start")
        yield process, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@pytest.mark.e2e
def test_sighup_reopens_a_log_file_moved_away(daemon_log):
    process, log = daemon_log
    moved = log.with_name("twistd.log.old")
    log.rename(moved)
    process.send_signal(signal.SIGHUP)
    poll_real_process(lambda: log.exists() and "reloaded" in log.read_text(), 10,
                      "a new log file with the reload line")
    assert "reloaded" not in moved.read_text()
    assert process.poll() is None


@pytest.mark.e2e
def test_sigusr1_rotates_the_twistd_log(daemon_log):
    process, log = daemon_log
    process.send_signal(signal.SIGUSR1)
    rotated = log.with_name("twistd.log.1")
    poll_real_process(lambda: rotated.exists(), 10, "twistd.log.1")
    assert "tracker started" in rotated.read_text()
    assert process.poll() is None
