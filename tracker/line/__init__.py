"""The CDN line protocol: `protocol` (parse and format), `door` (the tracker's
side), `client` (`LineClient`, `NodeClientFactory`) and `cli` (`tracker-line`)."""
