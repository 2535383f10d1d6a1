"""The `meeting-mesh` command: one console script, a subcommand per job.

Each subcommand lives in the package that owns it, as a module with `configure(parser)` and
`run(args) -> int`. Only the chosen subcommand's module is imported, so `meeting-mesh token`
does not load the ASR engine and `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help); the order is the order of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("meeting_mesh.dev", "run the whole mesh on this machine (embedded PostgreSQL)"),
    "gateway": ("gateway.cli", "run the HTTP gateway (REST, SSE, WebSocket)"),
    "meeting-service": ("meeting_service.cli", "run the meeting service (gRPC)"),
    "gpu-proxy": ("gpu_proxy.cli", "run the GPU proxy (gRPC, mTLS to GPU nodes)"),
    "gpu-node": ("gpu_node.cli", "run a GPU node (gRPC over mTLS)"),
    "migrate": ("meeting_service.migrate_cli", "apply database migrations and exit"),
    "certs": ("meeting_mesh.certs_cli", "create a CA and service certificates for mTLS"),
    "token": ("meeting_mesh.token_cli", "print a bearer token the dev mesh accepts"),
    "upload": ("meeting_mesh.upload_cli", "upload a recording and follow its transcript live"),
    "meetings": ("meeting_mesh.meetings_cli", "list, show or delete your meetings"),
    "search": ("meeting_mesh.search_cli", "find words across your transcripts"),
    "follow": ("meeting_mesh.follow_cli", "print a meeting's transcript, live until it is over"),
    "export": ("meeting_mesh.export_cli", "write a meeting's transcript as SRT, WebVTT, text, ..."),
    "webhooks": ("meeting_mesh.webhooks_cli", "add, list and remove webhooks; see deliveries"),
    "keys": ("meeting_mesh.keys_cli", "create, list and revoke API keys"),
    "voices": ("meeting_mesh.voices_cli", "keep voice profiles that name speakers"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Builds the parser; only the chosen subcommand gets its arguments.

    Args:
        chosen: The subcommand about to run, if known.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="meeting-mesh",
        description="Meeting transcription backend: gateway, meeting service, GPU proxy "
        "and GPU nodes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure(command)
            command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `meeting-mesh`.

    Args:
        argv: Arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        The process exit status.
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_in if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(args_in)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
