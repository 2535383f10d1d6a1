"""One benchmarked service in a process of its own: `python -m bench.serve ROLE CONFIG`.

The benchmark drives load from its own process, so every service under test runs here,
started through the same in-process runner the tests and the dev mesh use, with
production defaults except where CONFIG says otherwise. CONFIG is a JSON object; its
`ready_file` names where the role writes `{"address": ..., "pid": ...}` once it serves.
The process then serves until SIGTERM or SIGINT.

Roles: `meeting` (meeting_service), `gateway` (our aiohttp gateway), `fastapi` (the FastAPI
reference in `bench/fastapi_app.py`), `gpu_node` (the mock engine, or the real ones with
`"engine": "whisper"`; `batch_speed` paces batch recognition, see `bench/paced_engine.py`),
`gpu_proxy` (`max_streams_per_node`), `bare_relay` (the bare gRPC hop in
`bench/bare_relay.py`, `proxy_overhead`'s reference).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from gpu_node.engines.base import RecognitionEngine
from gpu_node.engines.factory import Engines
from mesh_common.grpc_server import wait_for_shutdown_signal
from mesh_common.logging import configure_logging
from mesh_common.tls import KeyPair

Config = dict[str, Any]


def _announce(config: Config, address: str) -> None:
    ready = Path(config["ready_file"])
    partial = ready.with_suffix(".partial")
    partial.write_text(json.dumps({"address": address, "pid": os.getpid()}))
    partial.rename(ready)  # atomic: the parent never reads half a file


async def _meeting(config: Config) -> None:
    from meeting_service.server import run_meeting_service
    from meeting_service.settings import MeetingServiceSettings

    gpu: dict[str, Any] = {}
    if "pki_dir" in config:
        identity = _pair(config, "meeting-service")
        gpu = {
            "gpu_proxy_cert": identity.cert,
            "gpu_proxy_key": identity.key,
            "gpu_proxy_ca": Path(config["pki_dir"]) / "ca.pem",
        }
    settings = MeetingServiceSettings(
        database_url=SecretStr(config["database_url"]),
        jwt_secret=SecretStr(config["jwt_secret"]),
        meeting_port=0,
        meeting_metrics_port=0,
        data_dir=Path(config["data_dir"]),
        gpu_proxy_target=config.get("gpu_proxy_target", "127.0.0.1:50052"),
        # No job workers unless asked: a worker would start transcribing an uploaded
        # recording in the middle of the next measurement.
        pipeline_workers=config.get("pipeline_workers", 0),
        **gpu,
        # Any other setting, by field name (e.g. the S3 store's).
        **config.get("settings", {}),
    )
    async with run_meeting_service(settings) as running:
        _announce(config, running.address)
        await wait_for_shutdown_signal()


async def _serve_aiohttp(config: Config, app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    _announce(config, f"127.0.0.1:{runner.addresses[0][1]}")
    try:
        await wait_for_shutdown_signal()
    finally:
        await runner.cleanup()


async def _gateway(config: Config) -> None:
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    settings = GatewaySettings(
        gateway_host="127.0.0.1",
        gateway_port=0,
        meeting_service_target=config["meeting_target"],
        jwt_secret=SecretStr(config["jwt_secret"]),
        data_dir=Path(config["data_dir"]),
        shutdown_grace_s=1.0,
    )
    await _serve_aiohttp(config, create_app(settings))


async def _fastapi(config: Config) -> None:
    import uvicorn

    from bench.fastapi_app import access_logged, create_fastapi_app

    app = access_logged(create_fastapi_app(config["meeting_target"], config["jwt_secret"]))
    # IPPROTO_TCP named, or asyncio does not turn Nagle off on the accepted connections
    # (it checks sock.proto) and every response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # The same event loop as our gateway (plain asyncio); httptools parses HTTP in C as
    # aiohttp's parser does. uvicorn's own access log is off: the app writes the gateway's.
    server = uvicorn.Server(
        uvicorn.Config(app, loop="asyncio", http="httptools", access_log=False, log_level="warning")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    _announce(config, f"127.0.0.1:{sock.getsockname()[1]}")
    await wait_for_shutdown_signal()
    server.should_exit = True
    await serving


def _pair(config: Config, name: str) -> KeyPair:
    directory = Path(config["pki_dir"])
    return KeyPair(cert=directory / f"{name}.pem", key=directory / f"{name}.key")


def _engines(config: Config) -> Engines:
    """The node's engines: the mock (with an optional fixed cost per recognition stream)
    or the real ones (`asr_model`, `asr_threads`, `blas_threads`) as `create_real_engines`
    builds them."""
    from gpu_node.engines.mock import (
        MockDiarizationEngine,
        MockRecognitionEngine,
        MockSummarizationEngine,
    )

    if config.get("engine", "mock") == "whisper":
        from gpu_node.engines.real import create_real_engines

        return Engines(
            *create_real_engines(
                asr_model=config.get("asr_model", "tiny.en"),
                asr_device="cpu",
                asr_threads=config.get("asr_threads", 0),
                blas_threads=config.get("blas_threads"),
            )
        )
    from bench.paced_engine import PacedBatchRecognizer

    recognition: RecognitionEngine = MockRecognitionEngine(config.get("stream_cost_s", 0.0))
    if "batch_speed" in config:
        recognition = PacedBatchRecognizer(recognition, float(config["batch_speed"]))
    return Engines(recognition, MockDiarizationEngine(), MockSummarizationEngine())


async def _gpu_node(config: Config) -> None:
    from gpu_node.server import run_gpu_node
    from gpu_node.settings import GpuNodeSettings

    identity = _pair(config, "gpu-node")
    settings = GpuNodeSettings(
        data_dir=Path(config["data_dir"]),
        gpu_node_port=0,
        gpu_node_metrics_port=0,
        gpu_node_cert=identity.cert,
        gpu_node_key=identity.key,
        gpu_node_ca=Path(config["pki_dir"]) / "ca.pem",
        gpu_node_max_concurrent_calls=config.get("max_concurrent_calls", 16),
    )
    async with run_gpu_node(settings, engines=_engines(config)) as node:
        _announce(config, node.address)
        await wait_for_shutdown_signal()


async def _gpu_proxy(config: Config) -> None:
    from gpu_proxy.server import run_gpu_proxy
    from gpu_proxy.settings import GpuProxySettings

    identity = _pair(config, "gpu-proxy")
    settings = GpuProxySettings(
        data_dir=Path(config["data_dir"]),
        gpu_proxy_port=0,
        gpu_proxy_metrics_port=0,
        gpu_nodes=",".join(config["nodes"]),
        gpu_proxy_cert=identity.cert,
        gpu_proxy_key=identity.key,
        gpu_proxy_ca=Path(config["pki_dir"]) / "ca.pem",
        gpu_proxy_max_streams_per_node=config.get("max_streams_per_node", 4),
        gpu_proxy_queue_length=config.get("queue_length", 32),
    )
    async with run_gpu_proxy(settings) as proxy:
        _announce(config, proxy.address)
        await wait_for_shutdown_signal()


async def _bare_relay(config: Config) -> None:
    from bench.bare_relay import bare_relay

    ca = Path(config["pki_dir"]) / "ca.pem"
    async with bare_relay(config["node"], _pair(config, "gpu-proxy"), ca) as address:
        _announce(config, address)
        await wait_for_shutdown_signal()


ROLES: dict[str, Callable[[Config], Coroutine[Any, Any, None]]] = {
    "meeting": _meeting,
    "gateway": _gateway,
    "fastapi": _fastapi,
    "gpu_node": _gpu_node,
    "gpu_proxy": _gpu_proxy,
    "bare_relay": _bare_relay,
}


def main(argv: list[str]) -> int:
    """Runs one role until SIGTERM.

    Args:
        argv: [ROLE, CONFIG_JSON].

    Returns:
        The exit status.
    """
    role, raw = argv
    config: Config = json.loads(raw)
    configure_logging(role, config.get("log_level", "INFO"), "json")
    asyncio.run(ROLES[role](config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
