"""The packages' layers, read from their import statements.

mesh_common sits under every service and imports none of them (nor aiohttp, the gateway's
web framework); the services import each other not at all; meeting_mesh, the command above
them, is imported by none; gpu_client, what a service calls the GPU service with, knows only
the gpu contract and mesh_common. Inside meeting_service the aggregates sit under the
orchestrators and the wiring (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "meeting_service", "gpu_proxy", "gpu_node")
# In dependency order: each aggregate may import only those before it.
AGGREGATES = (
    "meetings",
    "jobs",
    "webhooks",
    "transcripts",
    "quotas",
    "recordings",
    "api_keys",
    "voices",
)
ABOVE_AGGREGATES = ("processing", "live", "wiring", "servicer", "server")


def imported_modules(package: str) -> dict[str, set[str]]:
    """Maps each module a package imports to the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def imported_packages(package: str) -> dict[str, set[str]]:
    """Maps each top-level package a package imports to the files that import it."""
    found: dict[str, set[str]] = {}
    for name, files in imported_modules(package).items():
        found.setdefault(name.split(".")[0], set()).update(files)
    return found


def test_mesh_common_imports_no_service_and_no_web_framework() -> None:
    imported = imported_packages("mesh_common")
    forbidden = {*SERVICES, "meeting_mesh", "aiohttp"}
    assert {name: files for name, files in imported.items() if name in forbidden} == {}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_not_the_command(service: str) -> None:
    imported = imported_packages(service)
    forbidden = {*SERVICES, "meeting_mesh"} - {service}
    crossings = {name: files for name, files in imported.items() if name in forbidden}
    assert crossings == {}


def test_contract_errors_know_only_the_contracts_and_mesh_common() -> None:
    imported = imported_packages("contract_errors")
    assert {*SERVICES, "meeting_mesh", "gpu_client", "aiohttp"} & imported.keys() == set()
    assert {"gen", "mesh_common"} <= imported.keys()


def test_gpu_client_knows_only_the_gpu_contract_and_mesh_common() -> None:
    ours = {"gen", "mesh_common", "gpu_client", *SERVICES, "meeting_mesh"}
    imported = {
        name: files
        for name, files in imported_modules("gpu_client").items()
        if name.split(".")[0] in ours
    }
    assert {n.split(".")[0] for n in imported} <= {"gen", "mesh_common", "gpu_client"}
    assert {n for n in imported if n.startswith("gen.")} <= {"gen.gpu.v1"}


@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_an_aggregate_imports_no_orchestrator_and_not_the_wiring(aggregate: str) -> None:
    imported = imported_modules(f"meeting_service/{aggregate}")
    upward = {f"meeting_service.{name}" for name in ABOVE_AGGREGATES}
    crossings = {
        name: files
        for name, files in imported.items()
        if any(name == up or name.startswith(up + ".") for up in upward)
    }
    assert crossings == {}


@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_an_aggregate_imports_only_the_aggregates_under_it(aggregate: str) -> None:
    later = AGGREGATES[AGGREGATES.index(aggregate) + 1 :]
    imported = imported_modules(f"meeting_service/{aggregate}")
    crossings = {
        name: files
        for name, files in imported.items()
        if any(name.startswith(f"meeting_service.{other}.") for other in later)
    }
    assert crossings == {}


def test_the_layer_check_reads_the_imports_there_are() -> None:
    # Guards the tests above against passing on a scan that finds nothing.
    assert {"aiohttp", "gen", "mesh_common"} <= imported_packages("gateway").keys()
    assert "gen.gpu.v1" in imported_modules("gpu_client")
    assert "meeting_service.meetings.repository" in imported_modules("meeting_service/transcripts")
