"""`tracker-line`: run line-protocol commands against a tracker and print the replies.

    tracker-line STATS
    tracker-line "HELLO node=edge-1" "HAVE 8d3f...5f4d size=1024" "PEERS 8d3f...5f4d"
    tracker-line --file session.txt          # one command per line; '-' reads stdin
    tracker-line --listen 30 "HELLO node=watcher" "SUBSCRIBE 8d3f...5f4d"
    tracker-line --tls --cafile tracker.pem --host tracker.example.org STATS

Exit status: 0 when every command got OK, 1 when one got ERR, 2 when the
tracker cannot be reached or the arguments are wrong.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS

from tracker.line.client import LineClient
from tracker.line.protocol import DEFAULT_PORT, LineError
from tracker.tls import client_options


def read_commands(args: argparse.Namespace) -> List[str]:
    commands = list(args.commands)
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            commands += [line.strip() for line in stream
                         if line.strip() and not line.lstrip().startswith("#")]
    return commands


@defer.inlineCallbacks
def run(reactor, args: argparse.Namespace, commands: List[str]):
    client = LineClient(on_event=lambda line: print(line, flush=True))
    endpoint = HostnameEndpoint(reactor, args.host, args.port, timeout=args.timeout)
    if args.tls:
        endpoint = wrapClientTLS(args.tls_options, endpoint)
    try:
        yield connectProtocol(endpoint, client)
    except Exception as e:
        print("tracker-line: cannot reach %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 2
    status = 0
    for command in commands:
        try:
            for line in (yield client.command(command)):
                print(line, flush=True)
        except LineError as e:
            print(e.line(), flush=True)
            status = 1
        except Exception as e:
            print("tracker-line: %s" % e, file=sys.stderr)
            return 2
    if args.listen:
        yield task.deferLater(reactor, args.listen, lambda: None)
    if client.connected:
        client.transport.loseConnection()
    return status


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tracker-line", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("commands", nargs="*", help="commands to send, in order")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("-f", "--file", help="read commands from FILE ('-' for stdin)")
    parser.add_argument("--listen", type=float, default=0, metavar="SECONDS",
                        help="after the commands, print pushed events for this long")
    parser.add_argument("--timeout", type=float, default=10, help="connect timeout, seconds")
    parser.add_argument("--tls", action="store_true", help="speak TLS (a door on an ssl: endpoint)")
    parser.add_argument("--cafile", metavar="PEM",
                        help="with --tls: trust the certificates in this file instead of the system's")
    parser.add_argument("--insecure", action="store_true",
                        help="with --tls: do not check the tracker's certificate (tests only)")
    args = parser.parse_args(argv)
    if (args.cafile or args.insecure) and not args.tls:
        parser.error("--cafile and --insecure go with --tls")
    if args.tls:
        try:
            args.tls_options = client_options(args.host, args.cafile, verify=not args.insecure)
        except ImportError as e:
            print("tracker-line: --tls needs the tls extra (pip install 'cdn-tracker[tls]'): %s" % e,
                  file=sys.stderr)
            return 2
        except (OSError, ValueError) as e:
            print("tracker-line: cannot use --cafile %s: %s" % (args.cafile, e), file=sys.stderr)
            return 2
    try:
        commands = read_commands(args)
    except OSError as e:
        print("tracker-line: cannot read %s: %s" % (args.file, e.strerror), file=sys.stderr)
        return 2
    if not commands and not args.listen:
        parser.print_usage(sys.stderr)
        print("tracker-line: no command given", file=sys.stderr)
        return 2
    result = {}

    def go(reactor):
        d = run(reactor, args, commands)
        d.addCallback(lambda status: result.update(status=status))
        return d

    try:
        task.react(go)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 2
    return result.get("status", 2)


if __name__ == "__main__":
    sys.exit(main())
