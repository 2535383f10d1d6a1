"""`meeting-mesh token`: print a bearer token the running dev mesh accepts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from meeting_mesh.tokens import mint
from mesh_common.settings import SettingsError


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("--user", required=True, help="the token's subject (meeting owner)")
    parser.add_argument(
        "--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default: one day)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("MESH_DATA_DIR"),
        help="the mesh's data directory, whose secret signs the token "
        "(default: $MESH_DATA_DIR or .mesh); $MESH_JWT_SECRET wins when set",
    )


def run(args: argparse.Namespace) -> int:
    """Prints a token signed with the mesh's secret; 2 when there is none or a value is bad."""
    try:
        print(mint(args.user, data_dir=args.data_dir, ttl_s=args.ttl))
    except SettingsError as error:
        print(f"meeting-mesh token: {error}", file=sys.stderr)
        return 2
    return 0
