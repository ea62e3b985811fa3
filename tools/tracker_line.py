#!/usr/bin/env python3
"""Run line-protocol commands against a tracker (same as the `tracker-line` console script)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracker.line.cli import main  # noqa: E402

sys.exit(main())
