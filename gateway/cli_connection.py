"""How the gateway's client commands (`upload`, `export`) reach the gateway and sign in."""

from __future__ import annotations

import argparse
import os

from mesh_common.auth import issue_token
from mesh_common.settings import CommonSettings, load

DEFAULT_URL = "http://127.0.0.1:8080"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --url, --token and --user.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument(
        "--url",
        default=os.environ.get("MESH_GATEWAY_URL", DEFAULT_URL),
        help=f"the gateway (default: $MESH_GATEWAY_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("MESH_TOKEN"),
        help="bearer token (default: $MESH_TOKEN, else one minted from the data "
        "directory's dev secret)",
    )
    parser.add_argument("--user", default="dev", help="user of the minted dev token (dev)")


def bearer_token(args: argparse.Namespace) -> str:
    """The token given, or one minted for `--user` from the settings' signing secret.

    Raises:
        SettingsError: No token was given and the settings have no usable secret.
    """
    token: str = args.token or issue_token(args.user, load(CommonSettings).signing_secret())
    return token
