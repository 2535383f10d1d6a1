"""The deployment examples in deploy/ stay true to the code: every variable in an env file
is a setting its service reads (a typo would otherwise be ignored silently), every file
loads without an error, and the scrape configuration names the ports the files choose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from gateway.settings import GatewaySettings
from gpu_node.settings import GpuNodeSettings
from gpu_proxy.settings import GpuProxySettings
from meeting_service.settings import MeetingServiceSettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICES: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "meeting-service": MeetingServiceSettings,
    "gpu-proxy": GpuProxySettings,
    "gpu-node": GpuNodeSettings,
}


def _variables(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_is_a_setting_and_the_file_loads(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = DEPLOY / "env" / f"{service}.env"
    settings_class = SERVICES[service]
    known = {f"MESH_{name.upper()}" for name in settings_class.model_fields} | {"DATABASE_URL"}
    variables = _variables(path)
    unknown = {name for name in variables if name not in known and not name.startswith("OTEL_")}
    assert not unknown, f"{path.name} sets what {settings_class.__name__} does not read"
    for name in list(os.environ):
        if name.startswith("MESH_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    settings = settings_class(_env_file=path)
    for name, value in variables.items():
        if name.startswith("MESH_"):
            loaded = getattr(settings, name.removeprefix("MESH_").lower())
            if isinstance(loaded, SecretStr):
                loaded = loaded.get_secret_value()
            assert str(loaded) == value, name


def test_prometheus_scrapes_the_ports_the_services_serve_metrics_on() -> None:
    scrape = (DEPLOY / "prometheus.yml").read_text()
    ports = [
        _variables(DEPLOY / "env" / "gateway.env")["MESH_GATEWAY_PORT"],
        _variables(DEPLOY / "env" / "meeting-service.env")["MESH_MEETING_METRICS_PORT"],
        _variables(DEPLOY / "env" / "gpu-proxy.env")["MESH_GPU_PROXY_METRICS_PORT"],
        _variables(DEPLOY / "env" / "gpu-node.env")["MESH_GPU_NODE_METRICS_PORT"],
    ]
    for port in ports:
        assert f':{port}"' in scrape, port
