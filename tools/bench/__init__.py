"""The benchmark's package: population, loaders, servers, measurements, report, command line.

`tools/benchmark.py` is its entry point. Importing the package makes the source tree
(`tracker`) and tests/ importable: the tracker processes are started with the
tests' own helper (tests/process.py), so tests and tools share one way to run twistd.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:  # the source tree's tracker, before any installed copy
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:  # tests/process.py, the shared process helper
    sys.path.append(str(REPO / "tests"))

SERVER_CORE = "0"  # the tracker under test runs here
LOAD_CORE = "1"    # the load generators run here
