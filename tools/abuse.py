#!/usr/bin/env python3
"""Run the abuse suite (issue 13's attacks and failures) against a real tracker on loopback.

    python tools/abuse.py --help

The cases live in tools/abuse_suite/; the README's Reliability section shows the table.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from abuse_suite.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
