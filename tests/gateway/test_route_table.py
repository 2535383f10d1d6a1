"""Every route the gateway serves has a test of its success and of its failure, and the
OpenAPI document describes exactly the routes served.

Tests declare the routes they exercise with `@route(METHOD, PATH, outcome)`; this module
reads those marks from every test module of the suite and compares them with the app's
route table, so a new route without tests fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import aiohttp
import pytest

import tests.gateway
from gateway.app import create_app
from gateway.openapi import build_openapi
from mesh_common.ports import free_port
from tests.support.gateway import error_of, gateway_settings, route, run_gateway

# Routes that cannot fail for a caller: liveness and the documents are answered from the
# process itself, whatever its state (a wrong method is aiohttp's 405, the same for all).
NO_FAILURE_MODE = {
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/"),
    ("GET", "/metrics"),
}


def _served() -> set[tuple[str, str]]:
    app = create_app(gateway_settings("127.0.0.1:1", "s" * 32))
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def _test_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"tests.gateway.{info.name}")
        for info in pkgutil.iter_modules(tests.gateway.__path__)
        if info.name.startswith("test_")
    ]


def _declared() -> dict[tuple[str, str], set[str]]:
    outcomes: dict[tuple[str, str], set[str]] = {}
    for module in _test_modules():
        for value in vars(module).values():
            for mark in getattr(value, "pytestmark", []):
                if mark.name == "route":
                    method, path, outcome = mark.args
                    outcomes.setdefault((method, path), set()).add(outcome)
    return outcomes


def test_every_route_has_a_success_and_a_failure_test() -> None:
    declared = _declared()
    served = _served()
    assert set(declared) <= served, "tests declare routes the app does not serve"
    missing = {
        (method, path, outcome)
        for method, path in served
        for outcome in ("success", "failure")
        if outcome not in declared.get((method, path), set())
        and not (outcome == "failure" and (method, path) in NO_FAILURE_MODE)
    }
    assert not missing, sorted(missing)


def test_the_openapi_document_describes_exactly_the_routes_served() -> None:
    document = build_openapi("http://127.0.0.1:8080")
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "put", "post", "patch", "delete", "head")
    }
    assert described == _served()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "put", "post", "patch", "delete", "head"):
                continue
            assert operation.get("responses"), (method, path)
            if operation.get("security") != []:
                # Every protected operation documents its 401 and the error body.
                assert "401" in operation["responses"], (method, path)


@route("GET", "/readyz", "failure")
async def test_readyz_is_503_with_a_reason_while_meeting_service_is_unreachable() -> None:
    dead = f"127.0.0.1:{free_port()}"  # a port nothing listens on
    async with (
        run_gateway(gateway_settings(dead, "s" * 32, unary_timeout_s=1.0)) as gateway,
        aiohttp.ClientSession(gateway.url) as http,
    ):
        async with http.get("/readyz") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            body = await r.json()
        async with http.get("/healthz") as r:
            assert r.status == 200  # alive, only not ready
    assert body["status"] == "not ready"
    assert body["meeting_service"].startswith("unreachable")


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v1/meetings/x/y/z"])
async def test_an_unknown_path_is_404_in_the_error_shape(path: str) -> None:
    async with (
        run_gateway(gateway_settings("127.0.0.1:1", "s" * 32)) as gateway,
        aiohttp.ClientSession(gateway.url) as http,
        http.get(path) as r,
    ):
        assert r.status == 404
        error = await error_of(r)
    assert error["status"] == "NOT_FOUND"
