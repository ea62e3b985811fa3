#!/usr/bin/env python3
"""Run line-protocol commands against a tracker (same as the `tracker-line` console script)."""
import os
import sys

# Before the tree goes on the path: its twisted/plugins/ would hide a missing
# Twisted behind "No module named 'twisted.internet'".
try:
    import twisted.internet  # noqa: F401
except ImportError:
    here = os.path.abspath(__file__)
    print("%s: Twisted is not installed for %s; run it with the Python of the project's "
          "virtual environment (%s %s ...) or use the installed tracker-line command"
          % (os.path.basename(here), sys.executable,
             os.path.join(os.path.dirname(os.path.dirname(here)), ".venv", "bin", "python"), here),
          file=sys.stderr)
    sys.exit(2)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracker.line.cli import main  # noqa: E402

sys.exit(main())
