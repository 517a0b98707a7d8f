"""Render deploy/k8s overlays with a real kustomize and validate objects offline.

Kubernetes objects are checked against the API's own schema (``kubernetes-validate``,
strict: an unknown field fails); the CRD objects (ServiceMonitor, KServe ServingRuntime
and InferenceService) against the schemas under crd_schemas/, whose Kubernetes parts
(containers, resources, volumes...) refer to the same API schema.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from latentserve.server.settings import Settings, load_settings
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).with_name("crd_schemas")
# The oldest Kubernetes release the manifests target (native gRPC probes are GA since
# 1.27, sidecar-free) and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime-serving-v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-serving-v1beta1.json",
}


def kustomize_command() -> list[str] | None:
    """``kustomize build`` (``make test-tools`` puts it in the venv) or kubectl's built-in
    kustomize (v4 or newer), if installed."""
    kustomize = shutil.which("kustomize", path=Path(sys.executable).parent) or shutil.which(
        "kustomize"
    )
    if kustomize:
        return [kustomize, "build"]
    if shutil.which("kubectl"):
        out = subprocess.run(
            ["kubectl", "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        version = json.loads(out).get("kustomizeVersion", "v0")
        if int(version.lstrip("v").split(".")[0]) >= 4:
            return ["kubectl", "kustomize"]
    return None


@cache
def _render(directory: Path) -> str:
    command = kustomize_command()
    assert command is not None, "no kustomize"
    out = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return out


def render(directory: Path) -> list[dict]:
    """The objects ``kustomize build directory`` renders (rendered once per directory)."""
    return [doc for doc in yaml.safe_load_all(_render(directory)) if doc]


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / filename).read_text())
    k8s_defs = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{kubernetes_validate.utils.latest_version()}-local-strict"
        "/_definitions.json",
        kubernetes_validate.utils.latest_version(),
    )
    registry = Resource.from_contents(k8s_defs) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(obj: dict, k8s_version: str) -> None:
    """Raise if ``obj`` breaks its schema (the CRD's, or the Kubernetes API's)."""
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        _crd_validator(crd).validate(obj)
    else:
        kubernetes_validate.validate(obj, k8s_version, strict=True)


def one(objects: list[dict], kind: str) -> dict:
    matches = [obj for obj in objects if obj["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, got {len(matches)}"
    return matches[0]


def named(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, got {len(matches)}"
    return matches[0]


def server_deployment(objects: list[dict]) -> dict:
    return named(objects, "Deployment", "latentserve")


def container(objects: list[dict]) -> dict:
    """The server's container in the rendered latentserve Deployment."""
    (main,) = server_deployment(objects)["spec"]["template"]["spec"]["containers"]
    return main


def settings_of(main: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the server in this container would run with: its env over defaults,
    through the server's own settings loader (which validates them).

    Every LATENTSERVE_* variable must name a setting (the server ignores one that does not)."""
    named_settings = {
        var["name"].removeprefix("LATENTSERVE_").lower()
        for var in main.get("env", [])
        if var["name"].startswith("LATENTSERVE_")
    }
    unknown = named_settings - set(Settings.model_fields)
    assert not unknown, unknown
    for name in [n for n in os.environ if n.startswith("LATENTSERVE_")]:
        monkeypatch.delenv(name)
    for var in main.get("env", []):
        monkeypatch.setenv(var["name"], var["value"])
    return load_settings()
