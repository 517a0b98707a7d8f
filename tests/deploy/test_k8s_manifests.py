"""deploy/k8s: each overlay renders with kustomize, every object passes its schema, and
the probes, ports, drain and metrics the manifests name are the server's own."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from k8s_render import (
    K8S,
    K8S_VERSIONS,
    ROOT,
    container,
    kustomize_command,
    load,
    named,
    one,
    render,
    server_deployment,
    settings_of,
    validate,
)
from latentserve.server.frontends.grpc.servicer import SERVICE_NAME
from latentserve.server.frontends.rest.health import router as health_router
from latentserve.server.frontends.v2.rest import router as v2_router
from latentserve.server.metrics import ServerMetrics
from prometheus_client import CollectorRegistry

OVERLAYS = ("cpu", "gpu")
KSERVE = K8S / "kserve"

pytestmark = pytest.mark.skipif(
    kustomize_command() is None,
    reason="kustomize (or kubectl with kustomize v4+) is not installed: `make test-tools`",
)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(K8S / "overlays" / request.param)


def dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+)(?::\d+)?$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile's USER is not a numeric uid"
    return int(match.group(1))


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_every_rendered_object_passes_its_schema(
    overlay: tuple[str, list[dict]], k8s_version: str
) -> None:
    _, objects = overlay
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PersistentVolumeClaim",
    }
    for obj in objects:
        validate(obj, k8s_version)


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_kserve_example_passes_the_crd_schemas(k8s_version: str) -> None:
    objects = load(KSERVE / "servingruntime.yaml") + load(KSERVE / "inferenceservice.yaml")
    assert {obj["kind"] for obj in objects} == {"ServingRuntime", "InferenceService"}
    for obj in objects:
        validate(obj, k8s_version)


def test_schemas_refuse_a_misspelt_field(overlay: tuple[str, list[dict]]) -> None:
    """The validation can fail: one misplaced or misspelt field is refused per schema."""
    _, objects = overlay
    deployment = copy.deepcopy(server_deployment(objects))
    main = deployment["spec"]["template"]["spec"]["containers"][0]
    main["readinesProbe"] = main.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, K8S_VERSIONS[-1])

    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, K8S_VERSIONS[-1])

    (service,) = load(KSERVE / "inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    with pytest.raises(jsonschema.ValidationError):
        validate(service, K8S_VERSIONS[-1])

    (runtime,) = load(KSERVE / "servingruntime.yaml")
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(jsonschema.ValidationError):
        validate(runtime, K8S_VERSIONS[-1])


def test_probes_and_ports_are_the_servers(
    overlay: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = overlay
    main = container(objects)
    settings = settings_of(main, monkeypatch)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports == {"http": settings.http_port, "grpc": settings.grpc_port}
    assert settings.host == "0.0.0.0"

    rest_paths = {route.path for route in health_router.routes}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert main[probe]["httpGet"] == {"path": path, "port": settings.http_port}
        assert path in rest_paths
    # The startup probe asks gRPC health about the generative service, which turns
    # SERVING only once every model is loaded and warmed up; give that minutes.
    startup = main["startupProbe"]
    assert startup["grpc"] == {"port": settings.grpc_port, "service": SERVICE_NAME}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_pod_drains_as_a_non_root_read_only_container(
    overlay: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = overlay
    pod = server_deployment(objects)["spec"]["template"]["spec"]
    main = container(objects)
    settings = settings_of(main, monkeypatch)
    pre_stop = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout_s + pre_stop

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {mount["mountPath"]: mount for mount in main["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]

    # The model repository: the rendered PVC, mounted read-only, holds the served folder.
    (repository_mount,) = [m for m in mounts.values() if m["name"] == "models"]
    assert repository_mount["readOnly"] is True
    assert settings.repository.is_relative_to(repository_mount["mountPath"])
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == one(objects, "PersistentVolumeClaim")["metadata"]["name"]


def test_gpu_only_in_the_gpu_overlay(overlay: tuple[str, list[dict]]) -> None:
    name, objects = overlay
    resources = container(objects)["resources"]
    assert "memory" in resources["requests"] and "memory" in resources["limits"]
    if name == "gpu":
        assert int(resources["limits"]["nvidia.com/gpu"]) == 1
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert "nvidia.com/gpu" not in resources["requests"]


def test_service_monitor_and_budget_select_the_pods(overlay: tuple[str, list[dict]]) -> None:
    _, objects = overlay
    pod_labels = server_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    service = named(objects, "Service", "latentserve")
    container_ports = {port["name"] for port in container(objects)["ports"]}
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports
        assert port["appProtocol"] in {"http", "kubernetes.io/h2c"}
    assert {port["name"] for port in service["spec"]["ports"]} == {"http", "grpc"}

    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] in {route.path for route in health_router.routes}

    budget = one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert budget.items() <= pod_labels.items()


def test_autoscaler_scales_on_the_adapter_rule_of_a_served_metric(
    overlay: tuple[str, list[dict]],
) -> None:
    _, objects = overlay
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == server_deployment(objects)["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    (values,) = load(K8S / "prometheus-adapter" / "values.yaml")
    (rule,) = values["rules"]["custom"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]

    series = re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1)
    assert re.fullmatch(rule["name"]["matches"], series)
    served = {
        family.name
        for family in ServerMetrics(CollectorRegistry()).registry.collect()
        if family.type == "gauge"
    }
    assert series == "latentserve_jobs_active" and series in served
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_kserve_runtime_serves_what_the_inference_service_asks_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (runtime,) = load(KSERVE / "servingruntime.yaml")
    (service,) = load(KSERVE / "inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {fmt["name"] for fmt in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert re.match(r"^(s3|gs|pvc|https?)://", model["storageUri"])
    # The Open Inference Protocol the runtime declares is one the server speaks.
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2"]
    assert "/v2/health/ready" in {route.path for route in v2_router.routes}

    (main,) = runtime["spec"]["containers"]
    settings = settings_of(main, monkeypatch)
    # KServe's storage initializer puts storageUri's files in /mnt/models.
    assert settings.repository == Path("/mnt/models")
    assert main["ports"][0]["containerPort"] == settings.http_port
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": settings.http_port}
    assert main["securityContext"]["runAsUser"] == dockerfile_uid()
