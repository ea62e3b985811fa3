"""The error every part of the core raises for a request it refuses.

Its own module so that the access policy and the tracker core (which uses the
policy) both import it without importing each other.
"""
from __future__ import annotations


class TrackerError(Exception):
    """A request the tracker refuses. `code` is stable (for counters and
    metrics); `message` is what a client shows its user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
