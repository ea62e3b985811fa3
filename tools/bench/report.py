"""The benchmark's report: summaries over rounds, Markdown tables, the chart, the machine."""
from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Dict, List

SCENARIOS = ("announce-keepalive", "announce-new-connection", "scrape-keepalive", "udp-announce",
             "udp-announce-nobatch", "line-commands")
# A scenario of ours compared with another of opentracker's: the UDP door with
# --udp-batch off against opentracker's one UDP figure.
REFERENCE_SCENARIO = {"udp-announce-nobatch": "udp-announce"}

Figures = Dict[str, float]


def summarise(runs: List[Figures]) -> Figures:
    rps = [r["rps"] for r in runs]
    return {
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": statistics.median(r["p50_us"] for r in runs) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in runs) / 1000,
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "errors": sum(r["errors"] + r.get("non2xx", 0) for r in runs),
        "lost": sum(r.get("timeouts", 0) for r in runs),
        "rounds": len(runs),
    }


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s %s" % (cpu, os.cpu_count() or 0, platform.system(), platform.release())


def markdown_table(results: Dict[str, Dict[str, Figures]]) -> str:
    """Throughput rows; for udp-announce a "request" is one connect plus one announce
    (udp-announce-nobatch: the same with --udp-batch off)."""
    reference = results.get("opentracker", {})
    lines = [
        "| runtime | scenario | req/s median | req/s min–max | × opentracker req/s "
        "| × opentracker per CPU | p50 ms | p99 ms | server CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime, scenarios in results.items():
        for scenario, s in scenarios.items():
            ref = reference.get(REFERENCE_SCENARIO.get(scenario, scenario))
            ratio = "%.2f" % (s["rps_median"] / ref["rps_median"]) if ref else "–"
            # Requests per second of server CPU, relative: opentracker's CPU per request / ours.
            per_cpu = ("%.2f" % (ref["cpu_us_per_request"] / s["cpu_us_per_request"])
                       if ref and s["cpu_us_per_request"] else "–")
            lines.append("| %s | %s | %.0f | %.0f–%.0f | %s | %s | %.2f | %.2f | %.1f |" % (
                runtime, scenario, s["rps_median"], s["rps_min"], s["rps_max"], ratio, per_cpu,
                s["p50_ms"], s["p99_ms"], s["cpu_us_per_request"]))
    return "\n".join(lines)


def paced_table(paced: Dict[str, Dict[str, Figures]]) -> str:
    lines = ["| server | door | paced at (½ max) req/s | achieved req/s | p50 ms | p99 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, by_door in paced.items():
        for door, r in by_door.items():
            lines.append("| %s | %s | %.0f | %.0f | %.2f | %.2f | %d |" % (
                name, door, r["target_rps"], r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                r["errors"] + r.get("non2xx", 0)))
    return "\n".join(lines)


def flush_latency_table(results: Dict[str, Figures]) -> str:
    lines = ["| runtime | largest flush (rows) | its duration s | p50 / p99 ms during flushes | "
             "p50 / p99 ms, persistence off | req/s with / without |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %.2f | %.2f / %.2f | %.2f / %.2f | %.0f / %.0f |" % (
            name, r["largest_flush_rows"], r["largest_flush_s"], r["with_flush_p50_ms"],
            r["with_flush_p99_ms"], r["no_db_p50_ms"], r["no_db_p99_ms"], r["with_flush_rps"],
            r["no_db_rps"]))
    return "\n".join(lines)


def fanout_markdown(results: Dict[str, Figures]) -> str:
    lines = ["| runtime | subscribers | KiB per connection | time until all have the event, "
             "median ms | max ms | first push ms | tracker CPU ms per push | client CPU ms, max |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f |" % (
            name, r["subscribers"], r["bytes_per_connection"] / 1024, r["median_ms"], r["max_ms"],
            r["first_ms"], r["server_cpu_ms_median"], r["client_cpu_ms_max"]))
    return "\n".join(lines)


def memory_markdown(results: Dict[str, Figures]) -> str:
    lines = ["| server | peers | torrents | resident MiB before / after | bytes per peer |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %d | %.0f / %.0f | %.0f |" % (
            name, r["peers"], r["torrents"], r["rss_before"] / 2 ** 20, r["rss_after"] / 2 ** 20,
            r["bytes_per_peer"]))
    return "\n".join(lines)


def restore_markdown(results: Dict[str, Figures]) -> str:
    lines = ["| runtime | live peers restored | swarms | restore s | resident MiB after | database MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append("| %s | %d | %d | %.1f | %.0f | %.0f |" % (
            name, r["peers"], r["swarms"], r["seconds"], r["rss_bytes"] / 2 ** 20, r["db_bytes"] / 2 ** 20))
    return "\n".join(lines)


def write_chart(results: Dict[str, Dict[str, Figures]], path: Path) -> bool:
    """A PNG bar chart of median requests per second, per door and server."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("benchmark: matplotlib is not installed; no chart (pip install matplotlib)",
              file=sys.stderr)
        return False
    servers = list(results)
    scenarios = [s for s in SCENARIOS if any(s in results[n] for n in servers)]
    width = 0.8 / max(len(servers), 1)
    figure, axes = plt.subplots(figsize=(10, 5))
    for i, name in enumerate(servers):
        values = [results[name].get(s, {}).get("rps_median", 0) for s in scenarios]
        positions = [x + i * width for x in range(len(scenarios))]
        axes.bar(positions, values, width, label=name)
    axes.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(scenarios))])
    axes.set_xticklabels(scenarios, rotation=15)
    axes.set_ylabel("requests per second (median, one server core)")
    axes.set_title("Throughput per door")
    axes.legend()
    figure.tight_layout()
    figure.savefig(str(path), dpi=100)
    plt.close(figure)
    return True
