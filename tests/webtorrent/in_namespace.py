"""Run inside a fresh network namespace (`unshare -n`, as root): give it a veth
pair on 198.18.0.0/24 with a default route (libwebrtc ignores loopback
addresses), start the real tracker there, run transfer.js (two WebTorrent
clients finding each other only through the tracker's WebSocket door), stop
the tracker, and print transfer.js's JSON line plus the tracker's figures.
tests/test_ws_webrtc.py runs it; nothing here touches the host's network.

    unshare -n python tests/webtorrent/in_namespace.py [BYTES]
"""
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from process import TrackerProcess  # noqa: E402  (tests/ on the path above)

ADDRESS = "198.18.0.1"
WS_PORT, HTTP_PORT, ADMIN_PORT = 6972, 6969, 6971


def network() -> None:
    for command in (
            "ip link set lo up",
            "ip link add wt0 type veth peer name wt1",
            "ip addr add 198.18.0.1/24 dev wt0",
            "ip addr add 198.18.0.2/24 dev wt1",
            "ip link set wt0 up",
            "ip link set wt1 up",
            "ip route add default via 198.18.0.2 dev wt0"):
        subprocess.run(command.split(), check=True)


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else str(4 * 1024 * 1024)
    network()
    with tempfile.TemporaryDirectory() as work:
        tracker = TrackerProcess(
            ["tracker", "--http", "tcp:%d:interface=%s" % (HTTP_PORT, ADDRESS), "--udp", "off",
             "--line", "off", "--ws", "tcp:%d:interface=%s" % (WS_PORT, ADDRESS),
             "--admin", "tcp:%d:interface=127.0.0.1" % ADMIN_PORT, "--db", "off"],
            Path(work), [(ADDRESS, WS_PORT), ("127.0.0.1", ADMIN_PORT)])
        try:
            run = subprocess.run(["node", "transfer.js", "ws://%s:%d" % (ADDRESS, WS_PORT), size],
                                 cwd=str(HERE), capture_output=True, text=True, timeout=120)
            lines = run.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if lines else {"ok": False, "error": run.stderr[-2000:]}
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN_PORT,
                                        timeout=10) as reply:
                result["metrics"] = [line for line in reply.read().decode().splitlines()
                                     if line.startswith(("tracker_ws_", "tracker_announces_total"))]
        finally:
            result["tracker_stopped"] = tracker.stop()
            result["traceback"] = "Traceback" in tracker.output()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
