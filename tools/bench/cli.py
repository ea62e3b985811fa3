"""Benchmark the tracker's doors against a population, and opentracker when installed.

Starts the tracker (`twistd -n tracker`) in its own process pinned to one
core, fills it with a population (default 1,000 torrents x 50 peers, every
peer announced once), then drives it with wrk pinned to the other core:

- announce over keep-alive connections,
- announce with a new connection per request (`Connection: close`),
- scrape of one random torrent over keep-alive,
- UDP announce (BEP 15 connect + announce, 64 in flight) from `tools/udp_load.c`,
  a C load generator built by this command, which checks every reply,
- the same UDP announce against a second tracker started with `--udp-batch off`
  (`udp-announce-nobatch`: one recvfrom and sendto per datagram), so one run
  compares batched and plain datagram I/O,
- line-protocol commands (PEERS, SCRAPE, PING of population torrents) over
  8 connections with 64 commands in flight each.

When Debian's `opentracker` is installed it runs on the same population (its
own config file and whitelist, same pinning) and every row shows the ratio to
it, both in requests per second and per second of server CPU.

Optional extra measurements: `--without-db` (each runtime again with
persistence off), `--flush-latency` (announce latency while one flush of
100,000 changed peers runs), `--fanout [N]` (N subscribed line connections,
default 10,000: memory per connection and push fan-out time),
`--restore N` (start-up restore of N live peers), `--memory N`, `--paced`.

Each scenario runs for `--duration` seconds, `--rounds` times, interleaved
across runtimes. Reported per scenario: requests per second (median and
min-max over rounds), p50/p99 latency (median over rounds) and the
server's CPU time per request (from /proc). Prints a Markdown table and, with
`--json PATH`, writes every measurement.

    python tools/benchmark.py                       # the running interpreter
    python tools/benchmark.py --runtime pypy=.venv-pypy/bin/python --json bench.json
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from process import process_cpu_s, process_rss_bytes

from . import LOAD_CORE, SERVER_CORE
from .loaders import build_load_tool, run_line_load, run_paced_load, run_udp_load, run_wrk
from .measures import (FANOUT_SUBSCRIBERS, measure_fanout, measure_flush_latency, measure_memory,
                       measure_restore)
from .population import hashes_blob, wrk_script
from .report import (SCENARIOS, fanout_markdown, flush_latency_table, machine_description,
                     markdown_table, memory_markdown, paced_table, restore_markdown, summarise,
                     write_chart)
from .servers import OpenTracker, Tracker, fill, runtime_version

Runtimes = Dict[str, Tuple[str, str]]  # name -> (python, db: "" own file, "off" none)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--runtime", action="append", default=[], metavar="NAME=PYTHON",
        help="interpreter to run the tracker with (repeatable); default: this interpreter")
    add("--torrents", type=int, default=1000)
    add("--peers", type=int, default=50, help="peers per torrent")
    add("--duration", type=int, default=10, help="seconds per wrk run")
    add("--rounds", type=int, default=3,
        help="rounds of every scenario (0: only --flush-latency / --restore)")
    add("--connections", type=int, default=50)
    add("--scenario", action="append", choices=SCENARIOS, help="run only these scenarios (repeatable)")
    add("--without-db", action="store_true",
        help="also run each runtime with persistence off (--db off), side by side")
    add("--flush-latency", action="store_true",
        help="measure announce latency while a flush of ~100,000 changed peers runs")
    add("--no-opentracker", action="store_true", help="leave opentracker out even when it is installed")
    add("--memory", type=int, metavar="PEERS",
        help="resident bytes per peer after PEERS peers over PEERS/100 torrents "
             "(e.g. 1000000), for each runtime and opentracker")
    add("--paced", action="store_true",
        help="after the rounds, announce at half of each server's maximum rate "
             "(HTTP keep-alive and UDP) and report the latency")
    add("--chart", metavar="PNG", help="write a bar chart of throughput per door")
    add("--fanout", type=int, nargs="?", const=FANOUT_SUBSCRIBERS, metavar="N",
        help="N line connections (default %d) subscribed to one swarm: the tracker's memory "
             "per connection and the time from an announce until all N have the JOIN"
             % FANOUT_SUBSCRIBERS)
    add("--restore", type=int, metavar="PEERS",
        help="measure start-up restore of PEERS live peers (e.g. 1000000)")
    add("--json", metavar="PATH", help="write all measurements as JSON")
    add("--markdown", metavar="PATH", help="write the table as Markdown")
    return parser


def resolve_runtimes(specs: List[str], without_db: bool) -> Runtimes:
    """NAME=PYTHON specs (default: this interpreter); ValueError for a bad one."""
    runtimes: Runtimes = {}
    for spec in specs or ["%s=%s" % (platform.python_implementation().lower(), sys.executable)]:
        name, sep, python = spec.partition("=")
        if not sep or not shutil.which(python):
            raise ValueError("--runtime wants NAME=PYTHON, got %r" % spec)
        runtimes[name] = (python, "")
        if without_db:
            runtimes[name + " no-db"] = (python, "off")
    return runtimes


class Bench:
    """One benchmark run: its work directory, built loaders, servers and measurements."""

    def __init__(self, args: argparse.Namespace, runtimes: Runtimes) -> None:
        self.args = args
        self.runtimes = runtimes
        self.scenarios = args.scenario or list(SCENARIOS)
        self.use_opentracker = not args.no_opentracker and shutil.which("opentracker") is not None
        self.workdir = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
        self.scripts = {kind: self.workdir / ("%s.lua" % kind) for kind in ("announce", "scrape")}
        for kind, path in self.scripts.items():
            path.write_text(wrk_script(args.torrents, args.peers, kind))
        self.hashes_file = self.workdir / "hashes.bin"
        self.hashes_file.write_bytes(hashes_blob(args.torrents))
        self.udp_load = build_load_tool(self.workdir)
        self.http_load = build_load_tool(self.workdir, "http_load") if args.paced else None
        self.raw: Dict[str, Dict[str, List[Dict[str, float]]]] = {
            r: {s: [] for s in self.scenarios} for r in runtimes}
        self.extra = {name: {"version": runtime_version(python)} for name, (python, _) in runtimes.items()}
        self.paced: Dict[str, Dict[str, Dict[str, float]]] = {}
        self.trackers: Dict[str, object] = {}
        # Per runtime, the tracker of the udp-announce-nobatch scenario (--udp-batch off).
        self.nobatch: Dict[str, object] = {}

    def start_servers(self) -> None:
        args = self.args
        for name, (python, db) in self.runtimes.items():
            tracker = Tracker(python, self.workdir, [], db=db)
            self.trackers[name] = tracker
            fill(tracker, args.torrents, args.peers, self.udp_load)
            self.extra[name]["rss_bytes_after_fill"] = process_rss_bytes(tracker.pid)
            print("%s: filled %d torrents x %d peers" % (name, args.torrents, args.peers), file=sys.stderr)
        if self.use_opentracker:
            reference = OpenTracker(self.workdir, args.torrents)
            self.trackers["opentracker"] = reference
            fill(reference, args.torrents, args.peers, self.udp_load)
            self.raw["opentracker"] = {s: [] for s in self.scenarios
                                       if s not in ("line-commands", "udp-announce-nobatch")}
        if "udp-announce-nobatch" in self.scenarios:
            # A second tracker per runtime, the same but for --udp-batch off.
            for name, (python, db) in self.runtimes.items():
                tracker = Tracker(python, self.workdir, ["--udp-batch", "off"],
                                  db="off" if db == "off" else "")
                self.nobatch[name] = tracker
                fill(tracker, args.torrents, args.peers, self.udp_load)

    def run_scenario(self, scenario: str, tracker) -> Dict[str, float]:
        args = self.args
        cpu_before = process_cpu_s(tracker.pid)
        if scenario in ("udp-announce", "udp-announce-nobatch"):
            figures = run_udp_load(self.udp_load, tracker.udp_port, self.hashes_file, args.peers,
                                   args.duration)
        elif scenario == "line-commands":
            figures = run_line_load(tracker.line_port, args.torrents, args.duration)
        else:
            kind = "scrape" if scenario.startswith("scrape") else "announce"
            figures = run_wrk(tracker.port, self.scripts[kind], args.duration, args.connections,
                              close_each=scenario == "announce-new-connection")
        cpu = process_cpu_s(tracker.pid) - cpu_before
        figures["cpu_us_per_request"] = cpu / max(figures["requests"], 1) * 1e6
        return figures

    def run_rounds(self) -> None:
        for round_no in range(self.args.rounds):
            for scenario in self.scenarios:
                for name, tracker in self.trackers.items():
                    if scenario not in self.raw[name]:
                        continue  # opentracker has no line protocol, nor --udp-batch
                    if scenario == "udp-announce-nobatch":
                        tracker = self.nobatch[name]
                    figures = self.run_scenario(scenario, tracker)
                    self.raw[name][scenario].append(figures)
                    print("round %d %s %s: %.0f req/s" % (round_no + 1, name, scenario, figures["rps"]),
                          file=sys.stderr)

    def run_paced(self) -> None:
        """Latency at half of each server's own maximum rate (medians of the rounds)."""
        args = self.args
        for door, scenario in (("http", "announce-keepalive"), ("udp", "udp-announce")):
            if scenario not in self.scenarios:
                continue
            for name, tracker in self.trackers.items():
                rate = statistics.median(r["rps"] for r in self.raw[name][scenario]) / 2
                figures = run_paced_load(self.http_load if door == "http" else self.udp_load, door,
                                         tracker.port if door == "http" else tracker.udp_port,
                                         self.hashes_file, args.peers, args.duration, rate,
                                         args.connections)
                self.paced.setdefault(name, {})[door] = figures
                print("paced %s %s at %.0f/s: p99 %.2f ms" % (name, door, rate, figures["p99_us"] / 1000),
                      file=sys.stderr)

    def run_servers(self) -> None:
        """The rounds (and paced runs) against every server, each stopped at the end."""
        try:
            if self.args.rounds:
                self.start_servers()
                self.run_rounds()
                if self.args.paced:
                    self.run_paced()
        finally:
            for tracker in list(self.trackers.values()) + list(self.nobatch.values()):
                tracker.stop()

    def run_extras(self) -> Tuple[Dict[str, Dict[str, Dict[str, float]]], List[str]]:
        """The optional measurements, each with its own servers: figures and tables."""
        args, workdir = self.args, self.workdir
        persisted = {name: python for name, (python, db) in self.runtimes.items() if db != "off"}
        measured: Dict[str, Dict[str, Dict[str, float]]] = {}
        tables = []
        if args.flush_latency:
            measured["flush_latency"] = {name: measure_flush_latency(python, workdir, args.duration)
                                         for name, python in persisted.items()}
            tables.append(flush_latency_table(measured["flush_latency"]))
        if args.fanout:
            measured["fanout"] = {name: measure_fanout(python, workdir, args.fanout)
                                  for name, python in persisted.items()}
            tables.append(fanout_markdown(measured["fanout"]))
        if args.restore:
            measured["restore"] = {name: measure_restore(python, workdir, args.restore)
                                   for name, python in persisted.items()}
            tables.append(restore_markdown(measured["restore"]))
        if args.memory:
            measured["memory"] = self.measure_memory(persisted)
            tables.append(memory_markdown(measured["memory"]))
        return measured, tables

    def measure_memory(self, persisted: Dict[str, str]) -> Dict[str, Dict[str, float]]:
        per_torrent = 100
        torrents = max(1, self.args.memory // per_torrent)
        out = {name: measure_memory(lambda: Tracker(python, self.workdir, [], wait_s=600),
                                    torrents, per_torrent, self.udp_load)
               for name, python in persisted.items()}
        if self.use_opentracker:
            out["opentracker"] = measure_memory(lambda: OpenTracker(self.workdir, torrents),
                                                torrents, per_torrent, self.udp_load)
        return out


def write_report(bench: Bench, measured: Dict[str, Dict[str, Dict[str, float]]],
                 extra_tables: List[str]) -> int:
    """Print the tables, write the JSON, Markdown and chart asked for; the exit status."""
    args = bench.args
    results = {name: {s: summarise(runs) for s, runs in by.items()}
               for name, by in bench.raw.items() if args.rounds}
    if bench.paced:
        measured["paced"] = bench.paced
    # The order of the README: throughput, paced latency, flush, fan-out, restore, memory.
    tables = [markdown_table(results) if results else "", paced_table(bench.paced) if bench.paced else ""]
    table = "\n\n".join(t for t in tables + extra_tables if t)
    if args.chart and results:
        write_chart(results, Path(args.chart))
    report = {
        "machine": machine_description(),
        "population": {"torrents": args.torrents, "peers_per_torrent": args.peers, "numwant": 50},
        "duration_s": args.duration, "rounds": args.rounds, "connections": args.connections,
        "pinning": {"server_core": SERVER_CORE, "load_core": LOAD_CORE} if shutil.which("taskset") else None,
        "runtimes": bench.extra, "results": results, "runs": bench.raw, **measured,
    }
    print("Machine: %s" % report["machine"])
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text("Machine: %s\n\n%s\n" % (report["machine"], table))
    failed = any(s["errors"] for by in results.values() for s in by.values())
    failed = failed or any(r["errors"] for r in measured.get("flush_latency", {}).values())
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not shutil.which("wrk"):
        print("benchmark: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    try:
        runtimes = resolve_runtimes(args.runtime, args.without_db)
    except ValueError as e:
        print("benchmark: %s" % e, file=sys.stderr)
        return 2
    bench = Bench(args, runtimes)
    bench.run_servers()
    measured, tables = bench.run_extras()
    return write_report(bench, measured, tables)
