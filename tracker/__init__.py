"""A BitTorrent and CDN tracker on Twisted: one core, several doors."""


def _version() -> str:
    # From the installed distribution's metadata (pyproject.toml's version), so
    # there is one place to change it; a bare source tree says so.
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python 3.9+ has it
        return "0+unknown"
    try:
        return version("cdn-tracker")
    except PackageNotFoundError:
        return "0+source"


__version__ = _version()
