"""The packages' layers, read from their import statements.

mesh_common sits under every service and imports none of them (nor aiohttp, the gateway's
web framework); the services import each other not at all; meeting_mesh, the command above
them, is imported by none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "meeting_service", "gpu_proxy", "gpu_node")
# TEMPORARY: meeting_service calls gpu_proxy through gpu_proxy.client until that client
# moves into a package of its own; remove this pair then.
ALLOWED = {("meeting_service", "gpu_proxy")}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Maps each top-level package a package imports to the files that import it."""
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
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_mesh_common_imports_no_service_and_no_web_framework() -> None:
    imported = imported_packages("mesh_common")
    forbidden = {*SERVICES, "meeting_mesh", "aiohttp"}
    assert {name: files for name, files in imported.items() if name in forbidden} == {}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_not_the_command(service: str) -> None:
    imported = imported_packages(service)
    forbidden = {*SERVICES, "meeting_mesh"} - {service}
    crossings = {
        name: files
        for name, files in imported.items()
        if name in forbidden and (service, name) not in ALLOWED
    }
    assert crossings == {}


def test_the_layer_check_reads_the_imports_there_are() -> None:
    # Guards the two tests above against passing on a scan that finds nothing.
    assert {"aiohttp", "gen", "mesh_common"} <= imported_packages("gateway").keys()
