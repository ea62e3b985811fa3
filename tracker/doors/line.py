"""Old import path of the line door, kept while tests/test_access.py imports it:
the door lives in tracker/line/door.py."""
from tracker.line.door import LineDoorSettings, LineTrackerFactory, LineTrackerProtocol  # noqa: F401
