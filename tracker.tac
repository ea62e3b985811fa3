# twistd -ny tracker.tac: the same service as `twistd -n tracker`, configured
# from a TOML file ($TRACKER_CONFIG, else ./tracker.toml) or the defaults.
import os
import sys

# Run from a source checkout without installing: make this tree importable.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.application.service import Application  # noqa: E402

from tracker.options import Options  # noqa: E402
from tracker.tap import makeService  # noqa: E402

from twisted.python.usage import UsageError  # noqa: E402

config = Options()
try:
    config.parseOptions([])
except UsageError as e:
    raise SystemExit("tracker: %s" % (e,))
application = Application("tracker")
makeService(config).setServiceParent(application)
