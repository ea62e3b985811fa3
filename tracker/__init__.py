"""A BitTorrent and CDN tracker on Twisted: one core, several doors."""

__version__ = "0.1.0"
