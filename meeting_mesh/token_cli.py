"""`meeting-mesh token`: print a bearer token the dev mesh accepts."""

from __future__ import annotations

import argparse

from mesh_common.auth import issue_token
from mesh_common.settings import CommonSettings, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("--user", required=True, help="the token's subject (meeting owner)")
    parser.add_argument(
        "--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default: one day)"
    )


def run(args: argparse.Namespace) -> int:
    """Prints a token signed with the configured (or dev) secret."""
    settings = load(CommonSettings)
    print(issue_token(args.user, settings.signing_secret(), ttl_s=args.ttl))
    return 0
