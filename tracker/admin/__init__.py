"""Operating the tracker: the admin API, metrics, the status page, and `tracker-admin`."""
