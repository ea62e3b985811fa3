#!/usr/bin/env python3
"""Watch and steer a tracker (same as the `tracker-admin` console script)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracker.admin.cli import main  # noqa: E402

sys.exit(main())
