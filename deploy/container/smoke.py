"""Starts each service command of the image as its own process and checks that it answers.

Run inside the image by check-local.sh (loopback only, read-only root filesystem, the data
directory on a tmpfs): certificates, the migration, gpu-node, gpu-proxy (both with their
plaintext health ports), meeting-service (embedded PostgreSQL), the gateway; then each
one's health as its probe asks it, a call through the whole chain, and a clean stop on
SIGTERM. Exit status 0 when everything held; the first failure is printed.

    python smoke.py mock      # the services' image: the mock engine
    python smoke.py whisper   # the GPU node's image: the real engine (on the CPU here)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2

START_TIMEOUT_S = 180.0  # the real engine loads its model before the node listens
STOP_TIMEOUT_S = 30.0
NODE_HEALTH_PORT = 50062
PROXY_HEALTH_PORT = 50053
SERVING = health_pb2.HealthCheckResponse.SERVING
COMMAND = shutil.which("meeting-mesh") or sys.exit("FAILED: no meeting-mesh on PATH")


def health(port: int, service: str = "") -> int:
    """Returns a plaintext server's health status for a service, -1 when it does not answer."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0
            )
        except grpc.RpcError:
            return -1
    return int(reply.status)


def http_ok(url: str) -> bool:
    """Whether a GET of the URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    """Polls a condition until it holds, within START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"FAILED: {what} not within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
    print(f"ok: {what}")


def run(*args: str) -> None:
    """Runs a command of the image to completion; exits on failure."""
    result = subprocess.run(  # noqa: S603 - the image's own command
        [COMMAND, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"FAILED: meeting-mesh {' '.join(args)}: {result.stdout}{result.stderr}")
    print(f"ok: meeting-mesh {' '.join(args)}")


def main(engine: str) -> None:
    """Starts, checks and stops every service."""
    environment = {
        **os.environ,
        "MESH_GPU_NODE_HEALTH_PORT": str(NODE_HEALTH_PORT),
        "MESH_GPU_PROXY_HEALTH_PORT": str(PROXY_HEALTH_PORT),
        "MESH_ASR_DEVICE": "cpu",
        "MESH_LOG_FORMAT": "text",
    }
    os.environ.update(environment)
    run("certs")
    run("migrate")
    commands = {
        "gpu-node": ["gpu-node", "--engine", engine],
        "gpu-proxy": ["gpu-proxy"],
        "meeting-service": ["meeting-service"],
        "gateway": ["gateway"],
    }
    processes = {
        name: subprocess.Popen([COMMAND, *args], env=environment)  # noqa: S603 - as above
        for name, args in commands.items()
    }
    try:
        wait_for("gpu-node ready on its health port", lambda: health(NODE_HEALTH_PORT) == SERVING)
        wait_for(
            "gpu-node alive on its health port",
            lambda: health(NODE_HEALTH_PORT, "liveness") == SERVING,
        )
        wait_for("gpu-proxy ready on its health port", lambda: health(PROXY_HEALTH_PORT) == SERVING)
        wait_for(
            "meeting-service ready",
            lambda: health(50051, "meeting.v1.MeetingService") == SERVING,
        )
        wait_for("meeting-service alive", lambda: health(50051, "liveness") == SERVING)
        wait_for("gateway ready", lambda: http_ok("http://127.0.0.1:8080/readyz"))
        # The mTLS port refuses a plaintext caller even for health.
        if health(50061) != -1 or health(50052) != -1:
            sys.exit("FAILED: an mTLS port answered a plaintext caller")
        print("ok: the mTLS ports refuse plaintext")
        run("meetings", "list")
    finally:
        for name, process in reversed(processes.items()):
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                sys.exit(f"FAILED: {name} did not stop within {STOP_TIMEOUT_S:.0f} s")
            if status != 0:
                sys.exit(f"FAILED: {name} exited with {status}")
            print(f"ok: {name} stopped cleanly on SIGTERM")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "mock")
