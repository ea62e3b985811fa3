"""The abuse suite: attacks and failures of issue 13 against a real twistd on loopback.

`tools/abuse.py` is its entry point. Each case starts its own tracker through the
shared process helper (tests/process.py, reached through the `bench` package),
is bounded in count and time, stops everything it started, and reports a row:
the case, its target, the figure measured today, and whether the target held.
"""

import bench  # noqa: F401,E402  (puts the source tree and tests/process.py on the path)
