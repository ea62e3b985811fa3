"""Fuzz one door's parser with atheris (coverage-guided, CPython).

    python tools/fuzz.py http --seconds 300
    python tools/fuzz.py udp --runs 100000
    python tools/fuzz.py line --seconds 60 --corpus corpus/line

Exit status 0 when the run ends without a finding; otherwise atheris prints the
exception and writes the input that caused it (crash-...) to the working
directory, and the status is non-zero. 2: usage error or atheris missing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from .seeds import SEEDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("door", choices=sorted(SEEDS), help="which parser to fuzz")
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=int, help="run this long (default 60)")
    bound.add_argument("--runs", type=int, help="run this many inputs")
    parser.add_argument("--corpus", metavar="DIR",
                        help="corpus directory, kept between runs (default: a temporary one "
                             "holding the seeds)")
    parser.add_argument("--max-len", type=int, default=4096, help="longest input, bytes")
    return parser


def write_seeds(door: str, corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(SEEDS[door]):
        path = corpus / ("seed-%d" % n)
        if not path.exists():
            path.write_bytes(seed)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import atheris
    except ImportError:
        print("fuzz: atheris is not installed (pip install '.[fuzz]'; CPython only)", file=sys.stderr)
        return 2
    corpus = Path(args.corpus) if args.corpus else Path(tempfile.mkdtemp(prefix="fuzz-%s-" % args.door))
    write_seeds(args.door, corpus)
    bound = "-runs=%d" % args.runs if args.runs is not None else "-max_total_time=%d" % (args.seconds or 60)
    with atheris.instrument_imports(include=["tracker"]):
        from .harnesses import HARNESSES
        harness = HARNESSES[args.door]()
    atheris.Setup([sys.argv[0], str(corpus), bound, "-max_len=%d" % args.max_len,
                   "-print_final_stats=1"], harness.one_input)
    atheris.Fuzz()  # exits the process when the run ends
    return 0
