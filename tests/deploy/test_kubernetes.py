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
from meeting_service.servicer import SERVICE_NAME as MEETING_SERVICE
from meeting_service.settings import MeetingServiceSettings
from mesh_common.grpc_server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
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
# The servers whose gRPC port is mTLS only: the kubelet's probe asks their health port.
MTLS_SERVERS = ("gpu-proxy", "gpu-node")
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


def _env(rendered: Rendered, name: str) -> dict[str, Object]:
    """Returns the `env` entries of a workload's container, by variable."""
    entries = _container(dict(rendered.workloads())[name]).get("env", [])
    return {entry["name"]: entry for entry in entries}


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


def _prefix(name: str) -> str:
    """The settings prefix of a GPU service: `gpu-proxy` -> `MESH_GPU_PROXY`."""
    return "MESH_" + name.upper().replace("-", "_")


def test_every_long_running_container_has_native_probes(rendered: Rendered) -> None:
    for name, spec in rendered.workloads():
        container = _container(spec)
        if name == "migrate":
            assert container["args"] == ["migrate"]
            continue
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        config = rendered.config(name)
        if name == "gateway":
            # HTTP only (no gRPC server): its own endpoints.
            assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
            assert liveness["httpGet"] == {"path": "/healthz", "port": "http"}
            continue
        # Every gRPC server: the kubelet's own grpc probes. Readiness follows dependencies
        # (database, nodes); liveness asks the status that only says the event loop answers,
        # so a database outage never restarts pods.
        if name in MTLS_SERVERS:
            # mTLS only, which the kubelet cannot speak: the plaintext health-only port.
            prefix = _prefix(name)
            probed = int(config[f"{prefix}_HEALTH_PORT"])
            assert probed == ports["health"] != int(config[f"{prefix}_PORT"]) == ports["grpc"]
            assert readiness["grpc"] == {"port": probed}
        elif name == "meeting-service":
            probed = int(config["MESH_MEETING_PORT"])
            assert probed == ports["grpc"]
            assert readiness["grpc"] == {"port": probed, "service": MEETING_SERVICE}
        else:
            pytest.fail(f"no probe rule for {name}")
        assert liveness["grpc"] == {"port": probed, "service": LIVENESS_SERVICE}
        if "startupProbe" in container:
            assert container["startupProbe"]["grpc"] == liveness["grpc"], name
        assert set(readiness) & {"exec", "httpGet", "tcpSocket"} == set(), name


def test_no_pod_opens_a_health_port_to_other_pods(rendered: Rendered) -> None:
    # Plaintext, so only the pod's node (the kubelet's probes) may reach it, which
    # NetworkPolicies always allow.
    for name in MTLS_SERVERS:
        assert _allowed(rendered, name, "health") == [], name


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
        for requests in _container(deployment["spec"]["template"]["spec"])["resources"].values():
            assert "cpu" in requests  # the autoscaler's utilisation is relative to it


def test_every_long_running_workload_has_one_disruption_budget(rendered: Rendered) -> None:
    for obj in rendered.objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        name = obj["metadata"]["name"]
        budgets = [
            pdb
            for pdb in rendered.of("PodDisruptionBudget")
            if _selects(pdb["spec"]["selector"], rendered.pod_labels(name))
        ]
        assert len(budgets) == 1, name
        # A drain takes one pod at a time; never all of them.
        assert budgets[0]["spec"].get("maxUnavailable") == 1, name


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
    # Each pair can do what its service does with it, and no more.
    usages = {
        "gpu-proxy": {"server auth", "client auth"},  # to meeting-service; to the nodes
        "gpu-node": {"server auth"},
        "meeting-service": {"client auth"},
    }
    for name, expected in usages.items():
        granted = set(rendered.get("Certificate", name)["spec"]["usages"])
        assert granted & {"server auth", "client auth"} == expected, name
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


def test_pods_run_as_the_user_the_image_declares(rendered: Rendered) -> None:
    containerfile = (ROOT / "Containerfile").read_text()
    users = {line.split()[1] for line in containerfile.splitlines() if line.startswith("USER ")}
    assert len(users) == 1, users  # every stage that runs a service: one numeric user
    uid, _, gid = users.pop().partition(":")
    for name, spec in rendered.workloads():
        pod = spec["securityContext"]
        assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == (uid, gid), name
        assert int(uid) != 0


def test_the_migration_job_runs_once_with_the_database_from_a_secret(rendered: Rendered) -> None:
    job = rendered.get("Job", "migrate")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert _container(spec)["args"] == ["migrate"]
    assert "secretKeyRef" in _env(rendered, "migrate")["DATABASE_URL"]["valueFrom"]


SECRET_VARIABLES = ("DATABASE_URL", "MESH_JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def test_secrets_come_only_from_secrets(rendered: Rendered) -> None:
    for config_map in rendered.of("ConfigMap"):
        assert not set(config_map.get("data", {})) & set(SECRET_VARIABLES), config_map
    for name, spec in rendered.workloads():
        for entry in _container(spec).get("env", []):
            if entry["name"] in SECRET_VARIABLES:
                assert "secretKeyRef" in entry.get("valueFrom", {}), (name, entry["name"])
    # The two services that check tokens share one signing key.
    gateway, meeting = (
        _env(rendered, name)["MESH_JWT_SECRET"] for name in ("gateway", "meeting-service")
    )
    assert gateway["valueFrom"] == meeting["valueFrom"]


def test_recordings_go_to_s3_in_production_and_postgres_in_the_dev_cluster(
    rendered: Rendered,
) -> None:
    config = rendered.config("meeting-service")
    if rendered.overlay == "production":
        assert config["MESH_STORAGE"] == "s3"
        assert config["MESH_S3_BUCKET"] and config["MESH_S3_REGION"]
        variables = {
            e["name"]: e for e in _container(dict(rendered.workloads())["meeting-service"])["env"]
        }
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            # Optional: without the Secret the pod's own identity is used.
            assert variables[name]["valueFrom"]["secretKeyRef"]["optional"] is True
    else:
        assert config["MESH_STORAGE"] == "postgres"


def test_the_dev_cluster_runs_its_own_postgresql(rendered: Rendered) -> None:
    clusters = rendered.of("Cluster")
    if rendered.overlay == "production":
        assert clusters == []  # an external database, from the meeting-mesh-database Secret
        return
    (cluster,) = clusters
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    app_secret = f"{cluster['metadata']['name']}-app"
    for name in ("meeting-service", "migrate"):
        (url,) = [
            e
            for e in _container(dict(rendered.workloads())[name])["env"]
            if e["name"] == "DATABASE_URL"
        ]
        assert url["valueFrom"]["secretKeyRef"]["name"] == app_secret, name
