"""Version everywhere, start-up lines that name what was bound, JSON logs, and `python -m tracker`."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

import tracker
from e2e_clients import announce_target, get
from helpers import bdecode
from process import TrackerProcess, free_port, poll_real_process, source_env, twistd_command

pytestmark = pytest.mark.e2e


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert tracker.__version__ == version("cdn-tracker")


@pytest.mark.parametrize("command", [twistd_command() + ["tracker", "--version"],
                                     [sys.executable, "-m", "tracker", "--version"]])
def test_version_option(tmp_path, command):
    result = subprocess.run(command, cwd=str(tmp_path), env=source_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("cdn-tracker %s (" % tracker.__version__)
    assert "Twisted" in result.stdout


def test_the_installed_tracker_command_prints_the_version(tmp_path):
    from pathlib import Path

    script = Path(sys.executable).parent / "tracker"
    if not script.exists():
        pytest.skip("the project is not installed in this environment (pip install .)")
    result = subprocess.run([str(script), "--version"], cwd=str(tmp_path), env=source_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("cdn-tracker ")


def test_start_up_lines_name_the_build_the_settings_file_the_database_and_each_bound_door(tmp_path):
    http_port, udp_port, line_port = free_port(), free_port(kind=socket.SOCK_DGRAM), free_port()
    config = tmp_path / "tracker.toml"
    config.write_text("interval = 1800\n")
    process = TrackerProcess(
        ["tracker", "--config", str(config), "--http", "tcp:%d:interface=127.0.0.1" % http_port,
         "--udp", "127.0.0.1:%d" % udp_port, "--line", "tcp6:%d:interface=\\:\\:1" % line_port,
         "--ws", "off", "--admin", "off", "--db", "state.sqlite3"],
        tmp_path, [("127.0.0.1", http_port)])
    try:
        poll_real_process(lambda: "tracker started" in process.output(), 10, "the start line")
    finally:
        assert process.stop()
    out = process.output()
    assert "cdn-tracker %s (" % tracker.__version__ in out
    assert "settings file: %s; database: ./state.sqlite3" % config in out
    assert "http door listening on 127.0.0.1:%d (IPv4, TCP)" % http_port in out
    assert "udp door listening on 127.0.0.1:%d (IPv4, UDP, " % udp_port in out
    assert "line door listening on [::1]:%d (IPv6, TCP)" % line_port in out
    assert " object at 0x" not in out  # no object reprs


def python_m_tracker(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "tracker"] + args, cwd=str(cwd),
                            env=source_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_python_m_tracker_runs_the_same_service_with_json_logs_and_stops_cleanly(tmp_path):
    port = free_port()
    process = python_m_tracker(["--http", "tcp:%d:interface=127.0.0.1" % port, "--udp", "off",
                                "--line", "off", "--ws", "off", "--admin", "off",
                                "--db", "t.sqlite3", "--log-format", "json"], tmp_path)
    try:
        poll_real_process(lambda: process.poll() is not None or get_ok(port), 20, "the tracker")
        assert bdecode(get("127.0.0.1", port, announce_target())[1])[b"incomplete"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    formats = [event.get("log_format", "") for event in events]
    assert "{door} door listening on {address} ({family}, {transport})" in formats
    door = next(e for e in events if e.get("door") == "http")
    assert door["address"] == "127.0.0.1:%d" % port
    assert any(f.startswith("all changes written to") for f in formats)  # SIGTERM flushed


def get_ok(port):
    try:
        return get("127.0.0.1", port, "/scrape")[0] == 200
    except OSError:
        return False


def test_python_m_tracker_start_failure_is_one_line_and_exit_1(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    with holder:
        port = holder.getsockname()[1]
        process = python_m_tracker(["--http", "tcp:%d:interface=127.0.0.1" % port, "--udp", "off",
                                    "--line", "off", "--ws", "off", "--admin", "off", "--db", "off"],
                                   tmp_path)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err.decode().splitlines() == [
        "tracker: cannot start http tcp:%d:interface=127.0.0.1: Couldn't listen on 127.0.0.1:%d: "
        "[Errno 98] Address already in use." % (port, port)]


def test_python_m_tracker_bad_option_exits_2(tmp_path):
    process = python_m_tracker(["--interval", "soon"], tmp_path)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.decode().splitlines()[-1].startswith("tracker: option --interval: 'soon' is not valid")
