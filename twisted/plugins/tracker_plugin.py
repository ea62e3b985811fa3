"""twistd plugin: `twistd -n tracker --help`. Lazy: nothing is imported until used."""
from twisted.application.service import ServiceMaker

tracker = ServiceMaker(
    "tracker",
    "tracker.service",
    "BitTorrent (HTTP) and CDN tracker",
    "tracker",
)
