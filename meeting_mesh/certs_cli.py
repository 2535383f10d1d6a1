"""`meeting-mesh certs`: create a CA and service certificates for mTLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh_common.settings import CommonSettings, load
from mesh_common.tls import DEFAULT_SERVICES, ensure_certificates


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument(
        "--dir",
        type=Path,
        help="certificate directory (default: <data dir>/certs)",
    )
    parser.add_argument(
        "--service",
        action="append",
        dest="services",
        help="service to issue a certificate for; repeatable "
        f"(default: {', '.join(DEFAULT_SERVICES)})",
    )


def run(args: argparse.Namespace) -> int:
    """Creates what is missing and prints where everything is."""
    directory: Path = args.dir or load(CommonSettings).data_dir / "certs"
    pairs = ensure_certificates(directory, args.services or DEFAULT_SERVICES)
    for name, pair in pairs.items():
        print(f"{name:16} {pair.cert}  {pair.key}")
    return 0
