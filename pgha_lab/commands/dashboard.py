"""`pgha-lab dashboard`: serve the lab's live page on this machine."""
from __future__ import annotations

import argparse
import sys
import webbrowser

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_paths
from pgha_lab.errors import LabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help=summary("dashboard"),
                       description="Serves a local page for the lab. Viewing needs nothing; changing the lab needs "
                                   "the token in the printed URL.")
    p.add_argument("--port", type=int, default=8088, help="port to listen on (default 8088)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default 127.0.0.1; anything else lets other machines reach a page "
                        "that can kill containers)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pgha_lab.web.server import Dashboard, Settings, is_loopback  # the web stack loads only here
    if not 0 <= args.port <= 65535:
        raise LabError(f"--port takes a port number between 1 and 65535, not {args.port}.")
    paths = lab_paths(args)
    dashboard = Dashboard(paths.home, paths.project, Settings(bind=args.bind, port=args.port))
    if not is_loopback(args.bind):
        print(f"pgha-lab: warning: listening on {args.bind}, not 127.0.0.1: anyone who can reach this address "
              f"and learns the URL's token can break the lab.", file=sys.stderr)
    sock = dashboard.listen()
    url = dashboard.settings.url_with_token
    print(f"Dashboard of lab {paths.project!r}: {url}", flush=True)
    print("Without the token the page is read-only. Ctrl-C stops it.", flush=True)
    if args.open:
        webbrowser.open(url)
    dashboard.serve(sock)
    return 0
