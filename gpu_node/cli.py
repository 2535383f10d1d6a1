"""`meeting-mesh gpu-node` (not yet implemented)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""


def run(args: argparse.Namespace) -> int:
    """Runs the subcommand; not yet implemented."""
    print("meeting-mesh gpu-node: not yet implemented", file=sys.stderr)
    return 2
