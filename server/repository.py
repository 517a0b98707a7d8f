"""The model repository: every ``<name>/<version>/manifest.json`` under one folder.

A model is addressed as ``name`` (its highest integer version) or ``name@version``.
Loading verifies each graph's checksum and opens it with the configured backend, so a
broken or tampered export fails at startup rather than at the first request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from latentserve.server.errors import ModelNotFound
from latentserve.server.metrics import ServerMetrics
from latentserve.server.model_ref import parse_model_ref, parse_version, shown
from latentserve.server.pipelines import PIPELINES, GraphPipeline
from latentserve.server.runtime import Runtime, open_graph, verify_checksum
from latentserve.server.settings import ServingOptions, Settings

from latentserve.manifest import MANIFEST_FILENAME, GraphSpec, Manifest

log = logging.getLogger(__name__)

GraphOpener = Callable[[Path, GraphSpec, str, int], Runtime]


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    backend: str
    providers: list[str]
    serving: ServingOptions
    pipeline: GraphPipeline

    @property
    def label(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"


def load_model(
    version_dir: Path,
    settings: Settings,
    metrics: ServerMetrics | None = None,
    opener: GraphOpener = open_graph,
) -> LoadedModel:
    manifest = Manifest.load(version_dir)
    if (manifest.name, manifest.version) != (version_dir.parent.name, version_dir.name):
        raise ValueError(
            f"{version_dir}: manifest says {manifest.name}@{manifest.version}, "
            f"folder says {version_dir.parent.name}@{version_dir.name}"
        )
    verify_assets(version_dir, manifest)
    backend = settings.backend_for(manifest.name)
    graphs = {
        role: opener(version_dir, spec, backend, settings.intra_op_threads)
        for role, spec in manifest.graphs.items()
    }
    serving = settings.serving_for(manifest.name, manifest.serving)
    pipeline = PIPELINES[manifest.pipeline](manifest, graphs, serving, metrics, version_dir)
    providers = sorted({p for g in graphs.values() for p in g.providers})
    return LoadedModel(manifest, backend, providers, serving, pipeline)


def verify_assets(version_dir: Path, manifest: Manifest) -> None:
    """Refuse a version whose non-graph files (a tokenizer) are missing or altered."""
    for name, asset in manifest.assets.items():
        path = version_dir / asset.path
        if not path.is_file():
            raise ValueError(f"{version_dir}: asset {name!r} is missing ({asset.path})")
        verify_checksum(path, asset.sha256)


class ModelRepository:
    def __init__(self, models: list[LoadedModel]) -> None:
        self._versions: dict[str, dict[int, LoadedModel]] = {}
        for model in models:
            self._versions.setdefault(model.manifest.name, {})[int(model.manifest.version)] = model

    @classmethod
    def load(
        cls,
        root: Path,
        settings: Settings,
        metrics: ServerMetrics | None = None,
        opener: GraphOpener = open_graph,
    ) -> ModelRepository:
        if not root.is_dir():
            raise FileNotFoundError(f"model repository not found: {root}")
        manifests = sorted(root.glob(f"*/*/{MANIFEST_FILENAME}"))
        models = []
        for path in manifests:
            if parse_version(path.parent.name) is None:
                log.warning("skipping %s: version folders are numbers (no leading 0)", path.parent)
                continue
            models.append(load_model(path.parent, settings, metrics, opener))
            log.info("loaded %s (%s)", models[-1].label, ", ".join(models[-1].providers))
        return cls(models)

    def __len__(self) -> int:
        return sum(len(v) for v in self._versions.values())

    def resolve(self, ref: str) -> LoadedModel:
        """``name`` -> latest version; ``name@version`` -> exactly that version."""
        name, version = parse_model_ref(ref)
        versions = self._versions.get(name)
        if not versions:
            raise ModelNotFound(f"model {shown(name)!r} not found")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise ModelNotFound(f"model {name!r} has no version {version} (versions: {known})")
        return versions[version]

    def versions(self, name: str) -> list[str]:
        return [str(v) for v in sorted(self._versions.get(name, {}))]

    def models(self) -> list[LoadedModel]:
        """Every loaded version, by name then version."""
        return [self._versions[n][v] for n in sorted(self._versions) for v in self._sorted(n)]

    def _sorted(self, name: str) -> list[int]:
        return sorted(self._versions[name])

    async def close(self) -> None:
        await asyncio.gather(*(m.pipeline.close() for m in self.models()))
