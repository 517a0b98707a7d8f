"""Render deploy/k8s overlays with a real kustomize and validate objects offline.

Kubernetes objects are checked against the API's own schema (``kubernetes-validate``,
strict: an unknown field fails); the CRD objects (ServiceMonitor, KServe ServingRuntime
and InferenceService) against the schemas under crd_schemas/, whose Kubernetes parts
(containers, resources, volumes...) refer to the same API schema.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
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


def render(directory: Path) -> list[dict]:
    command = kustomize_command()
    assert command is not None, "no kustomize"
    out = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


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
