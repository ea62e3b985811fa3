"""Run the abuse cases of issue 13 against a real tracker and print the table.

Every case starts its own `twistd -n tracker` on loopback (persistence on),
attacks it, measures, and stops it; each is bounded in size (see --size) and
in time (--case-timeout). The table gives the case, its target, the figure
measured now and whether the target held; "broken" is an honest result, not
an error of the tool. Exit status: 0 when every case ran (held or not), 1 when
one could not be measured, 2 on a usage error.

    python tools/abuse.py                          # every case, default sizes
    python tools/abuse.py --case numwant --case line-digits
    python tools/abuse.py --full --json abuse.json # the issue's sizes (1,000,000 swarms...)
"""
from __future__ import annotations

import argparse
import json
import signal
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import cases_disk, cases_memory, cases_streams
from .common import DEFAULT_SIZES, FULL_SIZES, Env, Row

CASES: Dict[str, Callable[[Env], Row]] = {
    "pipelining": cases_streams.pipelining,
    "idle-connections": cases_streams.idle_connections,
    "random-hashes": cases_memory.udp_random_hashes,
    "haves": cases_memory.line_haves,
    "subscriber-burst": cases_memory.subscriber_burst,
    "sigkill-burst": cases_disk.sigkill_burst,
    "dir-removed": cases_disk.db_dir_removed,
    "db-garbage": cases_disk.db_garbage,
    "admin-big-swarm": cases_memory.admin_big_swarm,
    "numwant": cases_streams.numwant_huge,
    "line-lengths": cases_streams.line_lengths,
    "line-digits": cases_streams.line_digits,
}


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_case(name: str, env: Env, timeout_s: int) -> Row:
    """One case, bounded by `timeout_s` (SIGALRM): its row, or a row saying why it has none.
    The cases stop what they started in `finally` blocks, which the alarm runs too."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(timeout_s)
    try:
        return CASES[name](env)
    except CaseTimeout:
        return Row(name, "", "not measured: over the %d s bound" % timeout_s, None)
    except Exception as e:  # a case that cannot run says why, and the others still run
        detail = traceback.format_exception_only(type(e), e)[-1].strip()
        return Row(name, "", "not measured: %s" % detail[:200], None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def verdict(row: Row) -> str:
    return {True: "held", False: "broken", None: "–"}[row.held]


def markdown(rows: List[Row]) -> str:
    lines = ["| case | target | measured | held |", "|---|---|---|---|"]
    for row in rows:
        lines.append("| %s | %s | %s | %s |" % (row.case, row.target, row.measured.replace("|", "/"),
                                                verdict(row)))
    return "\n".join(lines)


def parse_sizes(full: bool, overrides: List[str]) -> Dict[str, int]:
    sizes = dict(FULL_SIZES if full else DEFAULT_SIZES)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.replace("-", "_")
        if not sep or key not in sizes or not value.isdigit() or int(value) < 1:
            raise ValueError("--size wants KEY=N with KEY one of %s, got %r"
                             % (", ".join(sorted(sizes)), item))
        sizes[key] = int(value)
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=list(CASES),
                        help="run only these cases (repeatable; default: all)")
    parser.add_argument("--list", action="store_true", help="list the cases and sizes, run nothing")
    parser.add_argument("--full", action="store_true",
                        help="the issue's sizes: 1,000,000 random hashes, a 500,000-peer swarm")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=N",
                        help="override one size (repeatable), e.g. random_hashes=1000000")
    parser.add_argument("--case-timeout", type=int, default=600, metavar="SECONDS",
                        help="bound on each case (default 600)")
    parser.add_argument("--tracker-arg", action="append", default=[], metavar="ARG",
                        help="extra twistd tracker argument for every case (repeatable), "
                             "e.g. --tracker-arg=--flush-interval=0.5")
    parser.add_argument("--json", metavar="PATH", help="write the rows and sizes as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sizes = parse_sizes(args.full, args.size)
    except ValueError as e:
        print("abuse: %s" % e, file=sys.stderr)
        return 2
    names = args.case or list(CASES)
    if args.list:
        print("cases: %s\nsizes: %s" % (", ".join(CASES), json.dumps(sizes)))
        return 0
    env = Env(sizes, args.tracker_arg)
    rows = []
    try:
        for name in names:
            started = time.monotonic()
            rows.append(run_case(name, env, args.case_timeout))
            print("%s: %s (%.0f s)" % (name, verdict(rows[-1]), time.monotonic() - started),
                  file=sys.stderr)
    finally:
        if args.keep:
            print("abuse: logs kept in %s" % env.workdir, file=sys.stderr)
        else:
            shutil.rmtree(env.workdir, ignore_errors=True)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"sizes": sizes, "rows": [dict(row._asdict(), key=name) for name, row in zip(names, rows)]},
            indent=2, ensure_ascii=False) + "\n")
    return 1 if any(row.held is None for row in rows) else 0
