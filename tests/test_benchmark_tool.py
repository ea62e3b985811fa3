"""The benchmark command's own logic: its population, its Lua script, its parsing.

Timings are never asserted here; only that the tool measures what it says."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from helpers import bdecode
from tracker.core import TrackerCore
from tracker.doors.http import HTTPTrackerFactory

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
from bench import loaders, population, report, servers  # noqa: E402


def test_population_paths_are_accepted_by_the_tracker():
    core = TrackerCore()
    factory = HTTPTrackerFactory(core, Clock())
    address = IPv4Address("TCP", "127.0.0.1", 5000)
    protocol = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    for torrent in range(3):
        for peer in range(4):
            request = "GET %s HTTP/1.1\r\n\r\n" % population.announce_path(torrent, peer)
            protocol.dataReceived(request.encode())
    assert core.peer_count == 12
    assert len(core.swarms) == 3
    swarm = core.swarms[population.torrent_hash(0)]
    assert swarm.seeders == 2 and swarm.leechers == 2
    assert {p.peer_id for p in swarm.views()} == {population.bench_peer_id(p) for p in range(4)}
    body = transport.value().split(b"\r\n\r\n")[-1]
    assert b"failure reason" not in bdecode(body)


def test_wrk_script_draws_from_the_same_population():
    script = population.wrk_script(5, 50, "announce")
    for torrent in range(5):
        escaped = population.announce_path(torrent, 0).split("info_hash=")[1].split("&")[0]
        assert '"%s"' % escaped in script
    assert "math.random(0, 49)" in script
    assert "10000 + p" in script and "-BN0001-" in script
    assert "/scrape?info_hash=" in population.wrk_script(5, 50, "scrape")


def test_parse_wrk_output_computes_rate():
    output = "Running 10s test\nBENCH-JSON {\"requests\": 5000, \"duration_us\": 2000000, " \
             "\"p50_us\": 900, \"p99_us\": 4000, \"errors\": 0, \"non2xx\": 0}\n"
    figures = loaders.parse_wrk_output(output)
    assert figures["rps"] == 2500
    assert figures["p99_us"] == 4000


def test_parse_wrk_output_without_figures_is_an_error():
    with pytest.raises(ValueError, match="no BENCH-JSON"):
        loaders.parse_wrk_output("wrk: connection refused\n")


def test_summarise_takes_medians_and_ranges():
    runs = [
        {"rps": 100.0, "p50_us": 1000, "p99_us": 5000, "cpu_us_per_request": 10.0, "errors": 0, "non2xx": 0},
        {"rps": 300.0, "p50_us": 3000, "p99_us": 7000, "cpu_us_per_request": 30.0, "errors": 1, "non2xx": 0},
        {"rps": 200.0, "p50_us": 2000, "p99_us": 6000, "cpu_us_per_request": 20.0, "errors": 0,
         "timeouts": 2},
    ]
    summary = report.summarise(runs)
    assert (summary["rps_median"], summary["rps_min"], summary["rps_max"]) == (200, 100, 300)
    assert (summary["p50_ms"], summary["p99_ms"]) == (2.0, 6.0)
    assert summary["cpu_us_per_request"] == 20
    assert (summary["errors"], summary["lost"], summary["rounds"]) == (1, 2, 3)


def test_markdown_table_has_a_row_per_runtime_and_scenario():
    summary = report.summarise([{"rps": 1.0, "p50_us": 1, "p99_us": 1,
                                    "cpu_us_per_request": 1.0, "errors": 0}])
    table = report.markdown_table({"cpython": {"udp-announce": summary},
                                      "pypy": {"udp-announce": summary}})
    rows = [line for line in table.splitlines() if line.startswith("| cpython") or line.startswith("| pypy")]
    assert len(rows) == 2


def test_paced_table_has_a_row_per_server_and_door():
    figures = {"rps": 500.0, "target_rps": 500.0, "p50_us": 100, "p99_us": 2500, "errors": 0}
    table = report.paced_table({"cpython": {"http": figures, "udp": figures},
                                   "opentracker": {"http": dict(figures, errors=2, non2xx=1)}})
    rows = [line for line in table.splitlines() if line.startswith("| ") and "server" not in line]
    assert len(rows) == 3
    assert rows[0].split("|")[1:8] == [" cpython ", " http ", " 500 ", " 500 ", " 0.10 ", " 2.50 ", " 0 "]
    assert rows[2].endswith("| 3 |")


@pytest.fixture
def running_tracker(tmp_path):
    """A real twistd tracker with HTTP and UDP on free loopback ports, no database."""
    import socket

    from process import TrackerProcess, free_port
    port = free_port()
    udp_port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    tracker = TrackerProcess(["tracker", "--http", "tcp:%d:interface=127.0.0.1" % port,
                              "--udp", "127.0.0.1:%d" % udp_port, "--line", "off", "--ws", "off",
                              "--admin", "off", "--db", "off", "--request-rate", "0"],
                             tmp_path, [("127.0.0.1", port)])
    yield port, udp_port
    assert tracker.stop()


@pytest.mark.parametrize("door", ["http", "udp"])
def test_paced_loaders_keep_to_their_schedule_and_check_every_reply(door, running_tracker, tmp_path):
    """At a rate far below any server's capacity, the loader starts about rate x
    seconds announces, on time, and every reply passes its checks."""
    http_port, udp_port = running_tracker
    hashes = tmp_path / "hashes.bin"
    hashes.write_bytes(b"".join(population.torrent_hash(t) for t in range(10)))
    binary = loaders.build_load_tool(tmp_path, "http_load" if door == "http" else "udp_load")
    figures = loaders.run_paced_load(binary, door, http_port if door == "http" else udp_port,
                                       hashes, 20, 2, 100.0, 4)
    assert 170 <= figures["requests"] <= 201
    assert figures["errors"] == 0 and figures.get("non2xx", 0) == 0
    assert figures["target_rps"] == 100.0


def test_entry_point_keeps_its_command_line():
    result = subprocess.run([sys.executable, str(TOOLS / "benchmark.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--runtime", "--without-db", "--paced", "--flush-latency", "--fanout",
                   "--restore", "--memory", "--chart", "--json", "--markdown"):
        assert option in result.stdout


def test_line_reply_ends_are_told_from_rows_and_events():
    assert loaders.is_reply_end(b"OK PONG") and loaders.is_reply_end(b"END")
    assert loaders.is_reply_end(b"ERR 400 bad info hash")
    assert not loaders.is_reply_end(b"PEER 10.0.0.1 6881 seeder door=http")
    assert not loaders.is_reply_end(b"SCRAPE %s seeders=1 leechers=0 completed=0" % (b"ab" * 20))
    assert not loaders.is_reply_end(b"* JOIN %s 10.0.0.1 6881 leecher door=http" % (b"ab" * 20))


def test_benchmark_tracker_fills_over_http_and_answers_line_commands(tmp_path):
    """The benchmark's own server wrapper (the shared process helper underneath):
    the population goes in over HTTP and the line load gets a reply to every command."""
    tracker = servers.Tracker(sys.executable, tmp_path, [], db="off")
    try:
        servers.fill(tracker, 3, 4)
        figures = loaders.run_line_load(tracker.line_port, 3, 1)
    finally:
        log = tracker.stop()
    assert figures["requests"] > loaders.LINE_CONNECTIONS * loaders.LINE_WINDOW
    assert figures["errors"] == 0
    assert "Traceback" not in log
