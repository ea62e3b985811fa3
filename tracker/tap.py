"""Entry point for `twistd -n tracker` and `tracker.tac`: options and service,
with start-up problems reported as one line instead of a traceback."""
from __future__ import annotations

from tracker.options import Options
from tracker.service import makeService as _build
from tracker.store import StoreError

__all__ = ["Options", "makeService"]


def makeService(config: Options, reactor=None):
    try:
        return _build(config, reactor)
    except StoreError as e:
        raise SystemExit("tracker: %s" % (e,))
