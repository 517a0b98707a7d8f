"""deploy/k8s/components/redis: every render that runs more than one replica points the
server's job store, through the server's own settings, at a Redis Service of the same
render; only the server's pods may reach that Redis; the Redis, started as its manifest
says, is one the server's job store works with; the KServe example does not scale out
with jobs in memory."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import redis
from helpers.redis_server import running_redis
from helpers.tools import require_tool
from k8s_render import (
    K8S,
    container,
    kustomize_command,
    load,
    named,
    render,
    server_deployment,
    settings_of,
)
from latentserve.server.engine.redis_job_record import lease_key
from latentserve.server.engine.redis_job_store import RedisJobStore

OVERLAYS = ("overlays/cpu", "overlays/gpu")
REDIS_DEFAULT_PORT = 6379
# Kubernetes memory quantities the manifests use, in bytes.
BINARY_SUFFIXES = {"Mi": 2**20, "Gi": 2**30}

pytestmark = pytest.mark.skipif(
    kustomize_command() is None,
    reason="kustomize (or kubectl with kustomize v4+) is not installed: `make test-tools`",
)


def most_replicas(objects: list[dict]) -> int:
    """The most server replicas this render can run: its own count or its autoscaler's."""
    deployment = server_deployment(objects)
    counts = [deployment["spec"].get("replicas", 1)]
    counts += [
        obj["spec"]["maxReplicas"]
        for obj in objects
        if obj["kind"] == "HorizontalPodAutoscaler"
        and obj["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    ]
    return max(counts)


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def redis_reached_by(objects: list[dict], url: str) -> tuple[dict, dict, dict]:
    """The Service, Deployment and container that ``url`` reaches inside this render.

    The URL is parsed by ``redis.Redis.from_url``, the call the server's job store makes."""
    target = redis.Redis.from_url(url).connection_pool.connection_kwargs
    assert "host" in target, f"{url}: a Service is reached over TCP, not a unix socket"
    service = named(objects, "Service", target["host"])
    port = target.get("port", REDIS_DEFAULT_PORT)
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    (deployment,) = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and selects(service["spec"]["selector"], pod_labels(obj))
    ]
    (redis_container,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if service_port["targetPort"] in (p["name"], p["containerPort"])
    ]
    return service, deployment, redis_container


def redis_parts(objects: list[dict], monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    settings = settings_of(container(objects), monkeypatch)
    _, deployment, redis_container = redis_reached_by(objects, settings.redis_url)
    return deployment, redis_container


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, f"unexpected memory quantity {quantity}"
    return int(match.group(1)) * BINARY_SUFFIXES[match.group(2)]


@pytest.mark.parametrize(
    ("directory", "scales_out"), [("base", False)] + [(o, True) for o in OVERLAYS]
)
def test_more_than_one_replica_only_with_a_redis_in_the_render(
    directory: str, scales_out: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(K8S / directory)
    settings = settings_of(container(objects), monkeypatch)
    if most_replicas(objects) > 1 or settings.job_store == "redis":
        # Behind the Service a job kept in one replica's memory is a 404 on the others.
        assert settings.job_store == "redis"
        _, deployment, redis_container = redis_reached_by(objects, settings.redis_url)
        assert redis_container["image"].partition(":")[0] == "redis"
        assert deployment["spec"]["replicas"] == 1
        target = redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs
        assert 0 <= target.get("db", 0) < 16  # one of a default Redis's 16 databases
    assert (most_replicas(objects) > 1) is scales_out


@pytest.mark.parametrize("directory", OVERLAYS)
def test_redis_runs_non_root_read_only_bounded_and_keeps_nothing(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment, redis_container = redis_parts(render(K8S / directory), monkeypatch)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = redis_container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "memory" in redis_container["resources"]["limits"]
    # Nothing persisted: no volume outlives the pod, and never two Redis pods at once.
    assert all("emptyDir" in volume for volume in pod.get("volumes", []))
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("directory", OVERLAYS)
def test_only_the_server_pods_reach_redis_and_nothing_else_selects_it(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(K8S / directory)
    deployment, redis_container = redis_parts(objects, monkeypatch)
    redis_labels = pod_labels(deployment)
    server_labels = pod_labels(server_deployment(objects))
    (policy,) = [
        obj
        for obj in objects
        if obj["kind"] == "NetworkPolicy"
        and selects(obj["spec"]["podSelector"]["matchLabels"], redis_labels)
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert selects(source["podSelector"]["matchLabels"], server_labels)
    (port,) = rule["ports"]
    (container_port,) = redis_container["ports"]
    assert port["port"] in (container_port["name"], container_port["containerPort"])

    # The server's Service and disruption budget leave the Redis pod alone, and the
    # ServiceMonitor does not try to scrape the Redis Service.
    server_service = named(objects, "Service", "latentserve")
    assert not selects(server_service["spec"]["selector"], redis_labels)
    for budget in (obj for obj in objects if obj["kind"] == "PodDisruptionBudget"):
        assert not selects(budget["spec"]["selector"]["matchLabels"], redis_labels)
    redis_service, _, _ = redis_reached_by(
        objects, settings_of(container(objects), monkeypatch).redis_url
    )
    for monitor in (obj for obj in objects if obj["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert not selects(selector, redis_service["metadata"].get("labels", {}))


def test_the_rendered_redis_serves_the_job_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-server started with the manifest's arguments (on a unix socket here) takes
    them all, keeps nothing on disk, stays under the pod's memory limit, and the server's
    job store, built from the rendered settings, takes its lease and reads from it."""
    objects = render(K8S / OVERLAYS[0])
    _, redis_container = redis_parts(objects, monkeypatch)
    settings = settings_of(container(objects), monkeypatch)
    command, *config = redis_container["args"]
    assert command == "redis-server"
    binary = require_tool("redis-server")
    with running_redis(binary, tmp_path, config) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        seen = client.config_get("*")
        client.close()
        assert seen["save"] == ""
        assert seen["appendonly"] == "no"
        assert seen["maxmemory-policy"] == "noeviction"
        limit = memory_bytes(redis_container["resources"]["limits"]["memory"])
        assert 0 < int(seen["maxmemory"]) < limit

        store = RedisJobStore.from_settings(settings.model_copy(update={"redis_url": url}))
        client = redis.Redis.from_url(url)

        async def use_store() -> None:
            await store.start(lambda _job_id: False)
            try:
                assert client.exists(lease_key(store.replica))
                assert await store.find("no-such-job") is None
            finally:
                await store.close()

        asyncio.run(use_store())
        assert not client.exists(lease_key(store.replica))
        client.close()


def test_kserve_example_scales_out_only_with_the_shared_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (runtime,) = load(K8S / "kserve" / "servingruntime.yaml")
    (service,) = load(K8S / "kserve" / "inferenceservice.yaml")
    predictor = service["spec"]["predictor"]
    (main,) = runtime["spec"]["containers"]
    # The InferenceService's model env is added to the runtime container's.
    env = {var["name"]: var for var in main.get("env", [])}
    env |= {var["name"]: var for var in predictor["model"].get("env", [])}
    settings = settings_of({"env": list(env.values())}, monkeypatch)
    # KServe reads a missing or zero maxReplicas as no bound at all.
    max_replicas = predictor.get("maxReplicas", 0)
    if max_replicas != 1:
        assert settings.job_store == "redis", "replicas of the example would not share jobs"
    else:
        assert settings.job_store == "memory"
