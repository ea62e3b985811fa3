"""`tracker-admin`: watch and steer a tracker from the command line.

It talks to the live admin API (`--admin-url`, default http://127.0.0.1:6971),
or, with `--db PATH`, reads a stopped tracker's SQLite file (read-only).

    tracker-admin status
    tracker-admin swarms --top 10 --sort seeders
    tracker-admin swarm 8d3f0c2a9b6e4f1d7c5a3b2e1f0d9c8b7a6e5f4d
    tracker-admin nodes | content
    tracker-admin deny add HASH [--note TEXT] | deny remove HASH | deny list
    tracker-admin allow add|remove|list ...      tracker-admin mode [open|allow [--yes]]
    tracker-admin ban add 192.0.2.0/24 | ban remove CIDR | ban list
    tracker-admin tokens add NODE [TOKEN] | tokens remove NODE | tokens list

Exit status: 0 done, 1 refused or not found (the tracker said why, a refused
token included; `mode allow` without --yes), 2 usage error, tracker unreachable,
or database missing. `--json` prints the raw data. Flags go before or after the command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

from tracker.cluster.status import cluster_lines
from tracker.store.database import StoreError
from tracker.store.queries import SWARM_SORTS, StoreReader

DEFAULT_URL = "http://127.0.0.1:6971"
EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


# -- talking to a running tracker ------------------------------------------------------


class LiveTracker:
    def __init__(self, url: str, token: Optional[str], timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, query: Optional[Dict[str, Any]] = None,
             body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        url = self.url + "/api/" + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                message = e.reason
            if e.code == 401:  # refused: 1, as documented (2 is for usage and unreachable)
                raise CliError("the tracker refused the admin token (use --token or "
                               "$TRACKER_ADMIN_TOKEN)", EXIT_REFUSED)
            raise CliError("tracker says: %s" % message, EXIT_REFUSED if e.code < 500 else EXIT_ERROR)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError("cannot reach the tracker at %s: %s (is it running? for a stopped "
                           "tracker use --db PATH)" % (self.url, reason))


# -- reading a stopped tracker's database ----------------------------------------------


class StoppedTracker:
    """Answers the read-only commands from the SQLite file (through the store's queries)."""

    def __init__(self, path: str) -> None:
        try:
            self.reader = StoreReader.open(path)
        except StoreError as e:
            raise CliError(str(e))
        self.path = path

    def call(self, method: str, path: str, query: Optional[Dict[str, Any]] = None,
             body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if method != "GET":
            raise CliError("the database is read-only here: changes need the running tracker's "
                           "admin API (--admin-url)")
        query = query or {}
        head, _, rest = path.partition("/")
        reader = self.reader
        if head == "status":
            swarms, peers, seeders = reader.peer_totals()
            return {"swarms": swarms, "peers": peers, "seeders": seeders, "leechers": peers - seeders,
                    "access_mode": reader.access_mode(), "database": self.path, "running": False}
        if head == "swarms" and rest:
            return self._swarm(rest)
        if head == "swarms":
            sort = query.get("sort", "peers")
            if sort not in SWARM_SORTS:
                raise CliError("tracker says: unknown sort %r" % sort, EXIT_REFUSED)
            return {"swarms": [{"info_hash": s.info_hash.hex(), "peers": s.peers, "seeders": s.seeders,
                                "leechers": s.leechers, "completed": s.completed,
                                "first_seen": s.first_seen, "name": s.name, "size": s.size}
                               for s in reader.busiest_swarms(sort, int(query.get("limit", 50)))]}
        if head == "nodes":
            return {"nodes": [{"node": n.node_id, "ip": n.ip, "port": n.port, "region": n.region,
                               "connected": False, "last_seen": n.last_seen} for n in reader.nodes()]}
        if head == "content":
            return {"content": [{"info_hash": c.info_hash.hex(), "completed": c.completed, "name": c.name,
                                 "size": c.size, "first_seen": c.first_seen}
                                for c in reader.content(int(query.get("limit", 100)))]}
        if head == "access":
            entries = [{"info_hash": n.subject, "note": n.note, "added_at": n.added_at}
                       for n in reader.notes() if n.kind == rest]
            return {"list": rest, "info_hashes": [e["info_hash"] for e in entries], "entries": entries}
        if head == "bans":
            entries = [{"cidr": n.subject, "note": n.note, "added_at": n.added_at}
                       for n in reader.notes() if n.kind == "ban"]
            return {"bans": [e["cidr"] for e in entries], "entries": entries}
        if head == "tokens":
            # The file holds the admin API's tokens; the settings' are not in it.
            tokens = [{"node": n.subject, "source": "admin-api", "added_at": n.added_at, "in_use": True}
                      for n in reader.notes() if n.kind == "token"]
            return {"nodes": [t["node"] for t in tokens], "tokens": tokens}
        if head == "mode":
            return {"mode": reader.access_mode()}
        raise CliError("not available from the database: %s" % path)

    def _swarm(self, text: str) -> Dict[str, Any]:
        try:
            info_hash = bytes.fromhex(text)
        except ValueError:
            raise CliError("%s is not an info hash (40 hex digits)" % text)
        content = self.reader.content_of(info_hash)
        peers = self.reader.peers_of(info_hash)
        if content is None and not peers:
            raise CliError("tracker says: no such swarm", EXIT_REFUSED)
        seeders = sum(1 for p in peers if p.left == 0)
        return {"info_hash": text, "running": False, "completed": content.completed if content else 0,
                "name": content.name if content else None, "size": content.size if content else None,
                "first_seen": content.first_seen if content else None, "peers": len(peers),
                "seeders": seeders, "leechers": len(peers) - seeders,
                "peer_list": [{"peer_id": p.peer_id.hex(), "ip": p.ip, "port": p.port, "left": p.left,
                               "uploaded": p.uploaded, "downloaded": p.downloaded,
                               "door": p.door, "seeder": p.left == 0, "last_seen": p.last_seen}
                              for p in peers]}


# -- printing ---------------------------------------------------------------------------


def table(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned columns for people: numbers right, text left."""
    if not rows:
        return "(none)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]

    def fmt(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([fmt([c.upper() for c in columns])] + [fmt(r) for r in cells])


def show(data: Dict[str, Any], args: argparse.Namespace, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def when(seconds: Optional[float]) -> Optional[str]:
    """A time the tracker gave (Unix seconds) as people read it, in UTC."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def entries_table(entries: Sequence[Dict[str, Any]], key: str) -> str:
    """An access list's or the bans' entries: what, when added, the note."""
    return table([{key: e[key], "added": when(e.get("added_at")), "note": e.get("note")}
                  for e in entries], (key, "added", "note"))


def tokens_table(tokens: Sequence[Dict[str, Any]]) -> str:
    """Each node token's node, where it comes from and whether it is the one
    checked; never the secret."""
    return table([{"node": t["node"], "source": t["source"], "in_use": "yes" if t["in_use"] else "no",
                   "added": when(t.get("added_at"))} for t in tokens],
                 ("node", "source", "in_use", "added"))


# The peer columns of `swarm`; the byte counters come from the database (--db).
PEER_COLUMNS = ("ip", "port", "door", "seeder", "node")
STORED_PEER_COLUMNS = ("ip", "port", "door", "seeder", "left", "uploaded", "downloaded")


# -- commands ---------------------------------------------------------------------------


def run(args: argparse.Namespace, tracker) -> int:
    command = args.command
    if command == "status":
        data = tracker.call("GET", "status")
        lines = ["%-12s %s" % (k, data[k]) for k in ("swarms", "peers", "seeders", "leechers")
                 if k in data]
        lines.append("%-12s %s" % ("access", data.get("access_mode")))
        if data.get("version"):
            lines.append("%-12s %s" % ("version", data["version"]))
        if data.get("running") is False:
            lines.append("%-12s stopped (read from %s)" % ("tracker", data["database"]))
        else:
            lines.append("%-12s %s" % ("announces", sum(data.get("announces", {}).values())))
            lines.append("%-12s %.0f s" % ("uptime", data.get("uptime_s", 0)))
            if data.get("line"):
                lines.append("%-12s %s connected" % ("nodes", data["line"]["connected_nodes"]))
            if data.get("ws"):
                lines.append("%-12s %s peers, %s connections" % ("browsers", data["ws"]["peers"],
                                                              data["ws"]["connections"]))
            if data.get("persistence"):
                p = data["persistence"]
                lines.append("%-12s %s (backlog %s, %s flushes)" % ("database", p["path"], p["backlog"],
                                                                    p["flushes"]))
                if p.get("problem"):
                    lines.append("%-12s %s" % ("PROBLEM", p["problem"]))
            lines.extend(cluster_lines(data.get("cluster")))  # --redis: the instances
        show(data, args, "\n".join(lines))
    elif command == "swarms":
        data = tracker.call("GET", "swarms", {"sort": args.sort, "limit": args.top})
        show(data, args, table(data["swarms"], ("info_hash", "seeders", "leechers", "completed", "name")))
    elif command == "swarm":
        data = tracker.call("GET", "swarms/" + args.info_hash.lower())
        head = "%s  seeders %s  leechers %s  completed %s%s" % (
            data["info_hash"], data["seeders"], data["leechers"], data["completed"],
            "  name " + data["name"] if data.get("name") else "")
        stored = data.get("running") is False
        show(data, args, head + "\n" + table(data["peer_list"],
                                             STORED_PEER_COLUMNS if stored else PEER_COLUMNS))
    elif command == "nodes":
        data = tracker.call("GET", "nodes")
        show(data, args, table(data["nodes"], ("node", "ip", "port", "region", "connected", "entries")))
    elif command == "content":
        data = tracker.call("GET", "content", {"limit": args.limit})
        show(data, args, table(data["content"], ("info_hash", "name", "size", "completed")))
    elif command in ("allow", "deny"):
        if args.action == "list":
            data = tracker.call("GET", "access/" + command)
            show(data, args, entries_table(data["entries"], "info_hash"))
        elif args.action == "add":
            data = tracker.call("POST", "access/" + command,
                                body={"info_hash": args.value.lower(), "note": args.note})
            show(data, args, "%s: %s added%s" % (command, data["info_hash"],
                 " (%d peers dropped)" % data["peers_dropped"] if data.get("peers_dropped") else ""))
        else:
            data = tracker.call("DELETE", "access/" + command, {"info_hash": args.value.lower()})
            show(data, args, "%s: %s removed" % (command, data["info_hash"]))
    elif command == "ban":
        if args.action == "list":
            data = tracker.call("GET", "bans")
            show(data, args, entries_table(data["entries"], "cidr"))
        elif args.action == "add":
            data = tracker.call("POST", "bans", body={"cidr": args.value, "note": args.note})
            show(data, args, "banned %s" % data["cidr"])
        else:
            data = tracker.call("DELETE", "bans", {"cidr": args.value})
            show(data, args, "unbanned %s" % data["cidr"])
    elif command == "tokens":
        if args.action == "list":
            data = tracker.call("GET", "tokens")
            show(data, args, tokens_table(data["tokens"]))
        elif args.action == "add":
            data = tracker.call("POST", "tokens", body={"node": args.node, "token": args.secret})
            show(data, args, "node %s token %s" % (data["node"], data["token"]))
        else:
            data = tracker.call("DELETE", "tokens", {"node": args.node})
            show(data, args, "node %s: token removed" % data["node"])
    elif command == "mode":
        return mode(args, tracker)
    return EXIT_OK


def mode(args: argparse.Namespace, tracker) -> int:
    """Show or set the access mode; `mode allow` is checked by a dry run first."""
    if args.mode == "allow":
        preview = allow_mode_preview(tracker)
        if not args.yes:
            show(preview, args, "mode allow would drop %d of %d live peers (%d info hashes allowed); "
                 "nothing changed: run again with --yes"
                 % (preview["would_drop"], preview["peers"], preview["allowed"]))
            return EXIT_REFUSED
    data = (tracker.call("PUT", "mode", body={"mode": args.mode}) if args.mode
            else tracker.call("GET", "mode"))
    show(data, args, "mode %s%s" % (data["mode"], " (%d peers dropped)" % data["peers_dropped"]
                                      if data.get("peers_dropped") else ""))
    return EXIT_OK


def allow_mode_preview(tracker) -> Dict[str, Any]:
    """What `mode allow` would do, from the tracker's dry run (nothing changes):
    how many live peers it would drop. With an empty allow list it would refuse
    every announce: refused outright, --yes or not."""
    data = tracker.call("PUT", "mode", body={"mode": "allow", "dry_run": True})
    if not data["allowed"]:
        raise CliError("the allow list is empty: mode allow would refuse every announce and drop "
                       "all %d live peers; add content first (tracker-admin allow add HASH)"
                       % data["peers"], EXIT_REFUSED)
    return data


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tracker-admin", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=__doc__.split("\n\n", 1)[1])
    top.add_argument("--admin-url", default=os.environ.get("TRACKER_ADMIN_URL", DEFAULT_URL))
    top.add_argument("--token", dest="admin_token", default=os.environ.get("TRACKER_ADMIN_TOKEN"),
                     help="admin token (default $TRACKER_ADMIN_TOKEN)")
    top.add_argument("--db", metavar="PATH", help="read a stopped tracker's database instead")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="figures at a glance")
    swarms = commands.add_parser("swarms", help="the biggest swarms")
    swarms.add_argument("--top", type=int, default=20)
    swarms.add_argument("--sort", default="peers",
                        choices=["peers", "seeders", "leechers", "completed", "first_seen"])
    swarm = commands.add_parser("swarm", help="one swarm and its peers")
    swarm.add_argument("info_hash")
    commands.add_parser("nodes", help="CDN nodes")
    content = commands.add_parser("content", help="content with names, sizes or completions")
    content.add_argument("--limit", type=int, default=100)
    for name in ("allow", "deny"):
        sub = commands.add_parser(name, help="the %s list of info hashes" % name)
        sub.add_argument("action", choices=["list", "add", "remove"])
        sub.add_argument("value", nargs="?", metavar="INFO_HASH")
        sub.add_argument("--note")
    ban = commands.add_parser("ban", help="banned address ranges")
    ban.add_argument("action", choices=["list", "add", "remove"])
    ban.add_argument("value", nargs="?", metavar="CIDR")
    ban.add_argument("--note")
    tokens = commands.add_parser("tokens", help="line-protocol node tokens")
    tokens.add_argument("action", choices=["list", "add", "remove"])
    tokens.add_argument("node", nargs="?")
    tokens.add_argument("secret", nargs="?", help="(add) the secret; generated when left out")
    mode = commands.add_parser("mode", help="show or set the access mode")
    mode.add_argument("mode", nargs="?", choices=["open", "allow"])
    mode.add_argument("--yes", action="store_true",
                      help="(allow) really switch; without it, say how many live peers it would drop")
    for command in commands.choices.values():
        # The same flags after the command too (`tracker-admin status --json`); SUPPRESS:
        # one not given there leaves the value given before the command.
        command.add_argument("--admin-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--token", dest="admin_token", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
        command.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    return top


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    needs_value = args.command in ("allow", "deny", "ban") and args.action != "list"
    if needs_value and not args.value:
        print("tracker-admin: %s %s needs a value" % (args.command, args.action), file=sys.stderr)
        return EXIT_ERROR
    if args.command == "tokens" and args.action != "list" and not args.node:
        print("tracker-admin: tokens %s needs a node id" % args.action, file=sys.stderr)
        return EXIT_ERROR
    try:
        tracker = StoppedTracker(args.db) if args.db else LiveTracker(args.admin_url, args.admin_token)
        return run(args, tracker)
    except CliError as e:
        print("tracker-admin: %s" % e, file=sys.stderr)
        return e.status


if __name__ == "__main__":
    sys.exit(main())
