#!/usr/bin/env python3
"""Benchmark the tracker's doors: the entry point of the `bench` package next to this file.

    python tools/benchmark.py --help

What it measures and how is described in tools/bench/cli.py and in the README's
Performance section.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
