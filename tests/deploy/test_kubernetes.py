"""The Kubernetes manifests in deploy/kubernetes render, are valid objects, and keep the rules
of a safe deployment: hardened containers with requests, limits and probes, GPU nodes on GPUs,
several replicas with an autoscaler and a disruption budget, network policies that let only
the intended callers in, and settings that the services really read.

Each overlay is rendered once with `kubectl kustomize`; the assertions read the objects a
cluster would receive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

from gateway.settings import GatewaySettings
from gpu_node.engines.real_settings import RealEngineSettings
from gpu_node.settings import GpuNodeSettings
from gpu_proxy.settings import GpuProxySettings
from meeting_service.settings import MeetingServiceSettings

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
# The oldest cluster the manifests are for (the preStop `sleep` action is on by default from
# 1.30) and the newest schema kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.32", kubernetes_validate.latest_version())
# cert-manager's and CloudNativePG's kinds have no schema in kubernetes-validate; the tests
# below check what the deployment relies on in them.
CUSTOM_KINDS = {"Issuer", "Certificate", "Cluster"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
SCALED = ("gateway", "meeting-service", "gpu-proxy")
SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "gateway": (GatewaySettings,),
    "meeting-service": (MeetingServiceSettings,),
    "gpu-proxy": (GpuProxySettings,),
    "gpu-node": (GpuNodeSettings, RealEngineSettings),
    "migrate": (MeetingServiceSettings,),
}
# `meeting-mesh gpu-proxy` and `meeting-mesh gpu-node` stop with this grace (their cli.py).
GPU_GRACE_S = 10.0
# Time after the grace period for the last cleanup (closing pools, flushing telemetry).
STOP_MARGIN_S = 5.0
MTLS_PROBE = "/etc/meeting-mesh/probes/mtls_health.py"
INTERNAL_CALLER = {"meeting-mesh.io/internal-caller": "true"}

Object = dict[str, Any]


class Rendered:
    """The objects of one rendered overlay, with look-ups by kind and name."""

    def __init__(self, overlay: str, objects: list[Object]) -> None:
        self.overlay = overlay
        self.objects = objects

    def of(self, kind: str) -> list[Object]:
        """Returns the objects of a kind."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> Object:
        """Returns the one object of a kind and name."""
        found = [obj for obj in self.of(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: no single {kind} {name}"
        return found[0]

    def workloads(self) -> Iterator[tuple[str, Object]]:
        """Yields (name, pod spec) of every Deployment, StatefulSet and Job."""
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS:
                yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]

    def pod_labels(self, name: str) -> dict[str, str]:
        """Returns the pod labels of a workload."""
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS and obj["metadata"]["name"] == name:
                labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
                return labels
        raise AssertionError(f"{self.overlay}: no workload {name}")

    def config(self, service: str) -> dict[str, str]:
        """Returns every variable a workload's container gets from ConfigMaps and values."""
        spec = dict(self.workloads())[service]
        (container,) = spec["containers"]
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            values |= next(
                cm["data"] for cm in self.of("ConfigMap") if cm["metadata"]["name"] == name
            )
        values |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        return values


def _render(overlay: str) -> Rendered:
    result = subprocess.run(
        [
            Path(sys.executable).with_name("kubectl"),
            "kustomize",
            str(KUBERNETES / "overlays" / overlay),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Rendered(overlay, [obj for obj in yaml.safe_load_all(result.stdout) if obj])


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return _render(request.param)


def _container(spec: Object) -> Object:
    (container,) = spec["containers"]
    result: Object = container
    return result


def _selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        match expression["operator"]:
            case "In":
                ok = value in expression["values"]
            case "NotIn":
                ok = value not in expression["values"]
            case "Exists":
                ok = present
            case "DoesNotExist":
                ok = not present
            case other:
                raise AssertionError(f"unknown operator {other}")
        if not ok:
            return False
    return True


def test_every_object_is_a_valid_kubernetes_object(rendered: Rendered) -> None:
    for obj in rendered.objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                kind, name = obj["kind"], obj["metadata"]["name"]
                pytest.fail(
                    f"{rendered.overlay}: {kind} {name} ({version}): {error.message}",
                    pytrace=False,
                )


def test_the_production_secrets_example_is_valid() -> None:
    example = KUBERNETES / "overlays" / "production" / "secrets.example.yaml"
    for obj in yaml.safe_load_all(example.read_text()):
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_container_is_hardened_and_sized(rendered: Rendered) -> None:
    for name, spec in rendered.workloads():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        data_dir = rendered.config(name)["MESH_DATA_DIR"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{rendered.overlay}: {name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert "privileged" not in context, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            writable = {
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs
            }
            assert {"/tmp", data_dir} <= writable, where


def test_every_long_running_container_has_readiness_and_liveness_probes(
    rendered: Rendered,
) -> None:
    for name, spec in rendered.workloads():
        container = _container(spec)
        if name == "migrate":
            assert container["args"] == ["migrate"]
            continue
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        config = rendered.config(name)
        match name:
            case "gateway":
                assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
                assert liveness["httpGet"] == {"path": "/healthz", "port": "http"}
            case "meeting-service":
                assert readiness["grpc"] == {
                    "port": ports["grpc"],
                    "service": "meeting.v1.MeetingService",
                }
            case "gpu-proxy" | "gpu-node":
                # mTLS only: the probe script presents the pod's certificate.
                prefix = "MESH_" + name.upper().replace("-", "_")
                assert readiness["exec"]["command"] == ["python", MTLS_PROBE, prefix]
                assert int(config[f"{prefix}_PORT"]) == ports["grpc"]
                assert {f"{prefix}_CERT", f"{prefix}_KEY", f"{prefix}_CA"} <= set(config)
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert str(Path(MTLS_PROBE).parent) in mounts
            case other:
                pytest.fail(f"no probe rule for {other}")
        if name != "gateway":
            # Health follows dependencies (database, nodes); liveness asks only whether the
            # event loop answers, on the metrics endpoint it serves.
            assert liveness["httpGet"] == {"path": "/metrics", "port": "metrics"}
            metrics_port = next(v for k, v in config.items() if k.endswith("_METRICS_PORT"))
            assert int(metrics_port) == ports["metrics"]


def test_gpu_nodes_run_on_gpus_behind_a_headless_service_the_proxy_resolves(
    rendered: Rendered,
) -> None:
    nodes = rendered.get("StatefulSet", "gpu-node")
    spec = nodes["spec"]["template"]["spec"]
    container = _container(spec)
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"]
        == (container["resources"]["limits"]["nvidia.com/gpu"])
    )
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["nodeSelector"]
    service = rendered.get("Service", nodes["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert _selects({"matchLabels": service["spec"]["selector"]}, rendered.pod_labels("gpu-node"))
    namespace, port = (
        nodes["metadata"]["namespace"],
        rendered.config("gpu-node")["MESH_GPU_NODE_PORT"],
    )
    proxy = rendered.config("gpu-proxy")
    svc = service["metadata"]["name"]
    # The proxy finds every ready node by resolving the headless Service, nothing else.
    assert proxy["MESH_GPU_NODES"] == ""
    assert proxy["MESH_GPU_NODES_DNS"] == f"{svc}.{namespace}.svc:{port}"
    certificate = rendered.get("Certificate", "gpu-node")
    # Nodes found by DNS are addressed by IP: their certificate is checked for this name.
    assert proxy["MESH_GPU_NODE_TLS_NAME"] in certificate["spec"]["dnsNames"]


def test_scaled_services_have_replicas_an_autoscaler_and_a_disruption_budget(
    rendered: Rendered,
) -> None:
    for name in SCALED:
        deployment = rendered.get("Deployment", name)
        autoscaler = rendered.get("HorizontalPodAutoscaler", name)
        assert autoscaler["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert deployment["spec"]["replicas"] == autoscaler["spec"]["minReplicas"]
        assert autoscaler["spec"]["maxReplicas"] > autoscaler["spec"]["minReplicas"]
        if rendered.overlay == "production":
            assert deployment["spec"]["replicas"] >= 2, name
        budgets = [
            pdb
            for pdb in rendered.of("PodDisruptionBudget")
            if _selects(pdb["spec"]["selector"], rendered.pod_labels(name))
        ]
        assert len(budgets) == 1, name
        for requests in _container(deployment["spec"]["template"]["spec"])["resources"].values():
            assert "cpu" in requests  # the autoscaler's utilisation is relative to it


def _allowed(rendered: Rendered, target: str, port: str) -> list[Object]:
    """Returns the `from` peers of every ingress rule that opens a port of a workload."""
    labels = rendered.pod_labels(target)
    peers: list[Object] = []
    for policy in rendered.of("NetworkPolicy"):
        if not _selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("ports") or any(p["port"] == port for p in rule["ports"]):
                peers.extend(rule.get("from", [{}]))
    return peers


def _reaches(rendered: Rendered, caller: str, target: str, port: str) -> bool:
    labels = rendered.pod_labels(caller)
    return any(
        set(peer) == {"podSelector"} and _selects(peer["podSelector"], labels)
        for peer in _allowed(rendered, target, port)
    )


def test_network_policies_let_only_the_intended_callers_in(rendered: Rendered) -> None:
    deny = rendered.get("NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    workloads = [name for name, _ in rendered.workloads()]
    callers = {
        "meeting-service": {"gateway"},
        "gpu-proxy": {"meeting-service"},
        "gpu-node": {"gpu-proxy"},
    }
    for target, expected in callers.items():
        # Only pod selectors in this namespace: no namespace or IP block opens the gRPC port.
        assert all(set(peer) == {"podSelector"} for peer in _allowed(rendered, target, "grpc"))
        reaching = {w for w in workloads if _reaches(rendered, w, target, "grpc")}
        assert reaching == expected, target
    internal = _allowed(rendered, "meeting-service", "grpc")
    assert any(_selects(peer["podSelector"], INTERNAL_CALLER) for peer in internal)
    assert not any(
        _selects(peer["podSelector"], INTERNAL_CALLER)
        for peer in _allowed(rendered, "gpu-node", "grpc")
    )


def test_every_variable_is_a_setting_and_loads(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, spec in rendered.workloads():
        container = _container(spec)
        classes = SETTINGS[name]
        known = {"DATABASE_URL"} | {
            f"MESH_{field.upper()}" for cls in classes for field in cls.model_fields
        }
        variables = rendered.config(name)
        names = set(variables) | {e["name"] for e in container.get("env", [])}
        # OpenTelemetry's own, and the standard AWS credentials the S3 client reads.
        names = {n for n in names if not n.startswith(("OTEL_", "AWS_"))}
        assert names <= known, f"{rendered.overlay}: {name} sets {names - known}"
        for variable in list(os.environ):
            if variable.startswith("MESH_") or variable == "DATABASE_URL":
                monkeypatch.delenv(variable)
        for variable, value in variables.items():
            monkeypatch.setenv(variable, value)
        for cls in classes:
            cls(_env_file=None)


def test_service_addresses_name_the_services_and_their_ports(rendered: Rendered) -> None:
    targets = {
        "gateway": ("MESH_MEETING_SERVICE_TARGET", "meeting-service"),
        "meeting-service": ("MESH_GPU_PROXY_TARGET", "gpu-proxy"),
    }
    for client, (variable, server) in targets.items():
        host, _, port = rendered.config(client)[variable].rpartition(":")
        service = rendered.get("Service", host)
        assert _selects({"matchLabels": service["spec"]["selector"]}, rendered.pod_labels(server))
        (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        container_ports = _container(dict(rendered.workloads())[server])["ports"]
        assert service_port["targetPort"] in {p["name"] for p in container_ports}


def test_certificates_come_from_the_mesh_ca_and_are_mounted_whole(rendered: Rendered) -> None:
    issuers = {i["metadata"]["name"]: i for i in rendered.of("Issuer")}
    certificates = {c["spec"]["secretName"]: c for c in rendered.of("Certificate")}
    ca_secret = issuers["meeting-mesh-ca"]["spec"]["ca"]["secretName"]
    assert certificates[ca_secret]["spec"]["isCA"] is True
    for secret_name, certificate in certificates.items():
        assert certificate["spec"]["issuerRef"]["name"] in issuers
        assert certificate["spec"]["privateKey"]["algorithm"] == "ECDSA"
        if secret_name != ca_secret:
            assert certificate["spec"]["issuerRef"]["name"] == "meeting-mesh-ca"
            assert "client auth" in certificate["spec"]["usages"]
    for name, spec in rendered.workloads():
        container = _container(spec)
        tls = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for mount in container.get("volumeMounts", []):
            if mount["name"] in tls:
                assert tls[mount["name"]] in certificates, name
                # A subPath mount would never see a renewed certificate.
                assert "subPath" not in mount, name
                for variable, value in rendered.config(name).items():
                    if variable.endswith(("_CERT", "_KEY", "_CA")):
                        assert Path(value).parent == Path(mount["mountPath"]), variable
    for name in ("gpu-proxy", "gpu-node"):
        assert "server auth" in rendered.get("Certificate", name)["spec"]["usages"]
        # The readiness probe connects to localhost and checks the name.
        assert "localhost" in rendered.get("Certificate", name)["spec"]["dnsNames"]
    assert "gpu-proxy" in rendered.get("Certificate", "gpu-proxy")["spec"]["dnsNames"]


def test_every_referenced_secret_is_rendered_or_made_by_an_operator_or_documented(
    rendered: Rendered,
) -> None:
    provided: dict[str, set[str]] = {
        s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
        for s in rendered.of("Secret")
    }
    for certificate in rendered.of("Certificate"):
        provided[certificate["spec"]["secretName"]] = {"tls.crt", "tls.key", "ca.crt"}
    for cluster in rendered.of("Cluster"):
        provided[f"{cluster['metadata']['name']}-app"] = {"uri"}
    if rendered.overlay == "production":
        example = KUBERNETES / "overlays" / "production" / "secrets.example.yaml"
        for secret in yaml.safe_load_all(example.read_text()):
            provided[secret["metadata"]["name"]] = set(secret["stringData"])
    for name, spec in rendered.workloads():
        for entry in _container(spec).get("env", []):
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            # An optional Secret may be absent, but production documents its shape.
            if reference and (rendered.overlay == "production" or not reference.get("optional")):
                assert reference["key"] in provided.get(reference["name"], set()), (name, entry)


def test_termination_grace_covers_the_drain(rendered: Rendered) -> None:
    graces = {
        "gateway": float(
            rendered.config("gateway").get(
                "MESH_SHUTDOWN_GRACE_S",
                str(GatewaySettings.model_fields["shutdown_grace_s"].default),
            )
        ),
        "meeting-service": float(
            rendered.config("meeting-service").get(
                "MESH_GRACE_S",
                str(MeetingServiceSettings.model_fields["grace_s"].default),
            )
        ),
        "gpu-proxy": GPU_GRACE_S,
        "gpu-node": GPU_GRACE_S,
    }
    for name, grace in graces.items():
        spec = dict(rendered.workloads())[name]
        pre_stop = _container(spec).get("lifecycle", {}).get("preStop", {})
        sleep = pre_stop.get("sleep", {}).get("seconds", 0)
        needed = sleep + grace + STOP_MARGIN_S
        assert spec["terminationGracePeriodSeconds"] >= needed, name


def test_the_database_allows_every_pool_the_autoscaler_may_start(rendered: Rendered) -> None:
    for cluster in rendered.of("Cluster"):
        limit = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
        replicas = rendered.get("HorizontalPodAutoscaler", "meeting-service")["spec"]["maxReplicas"]
        pool = int(rendered.config("meeting-service")["MESH_DB_POOL_MAX"])
        assert replicas * pool + 1 < limit  # +1: the migration Job
        assert cluster["spec"]["instances"] >= 1 and cluster["spec"]["storage"]["size"]


def test_containers_run_commands_the_image_has(rendered: Rendered) -> None:
    result = subprocess.run(
        [Path(sys.executable).with_name("meeting-mesh"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, spec in rendered.workloads():
        (command,) = _container(spec)["args"]
        assert f"    {command} " in result.stdout, name
