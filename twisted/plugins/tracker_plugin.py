"""twistd plugin: `twistd -n tracker --help`. Lazy: nothing is imported until used."""
from twisted.application.service import ServiceMaker

tracker = ServiceMaker(
    "tracker",
    "tracker.tap",
    "BitTorrent (HTTP) and CDN tracker",
    "tracker",
)
