"""Coverage-guided fuzzing of the three parsers (HTTP, UDP, line doors) with atheris.

`tools/fuzz.py` is the entry point; the harnesses in `harnesses.py` also run
without atheris (tests/test_fuzz_harnesses.py feeds them their seeds and random
bytes). Importing this package makes the source tree importable; the tracker's
modules are imported only when a harness is built, so that atheris can
instrument them.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
