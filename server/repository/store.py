"""The model repository: every ``<name>/<version>/manifest.json`` under one folder.

A model is addressed as ``name`` (its highest integer version) or ``name@version``.
Loading verifies each graph's checksum and opens it with the configured backend, so a
broken or tampered export fails at startup rather than at the first request.

Versions can be added and removed while serving (``latentserve.server.repository.reload``). Every
request holds a ``Lease`` on the version it resolved, so a removed version stops resolving
at once but is unloaded (its batchers closed) only when its last request or job is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from latentserve.server.errors import ModelNotFound, shown
from latentserve.server.metrics import ServerMetrics
from latentserve.server.model_ref import parse_model_ref, parse_version
from latentserve.server.repository.runtime import (
    Runtime,
    instance_devices,
    open_graph,
    verify_checksum,
)
from latentserve.server.settings import ServingOptions, Settings

from latentserve.manifest import MANIFEST_FILENAME, GraphSpec, Manifest

log = logging.getLogger(__name__)


class GraphOpener(Protocol):
    """Opens one graph file: ``(version folder, spec, backend, intra-op threads)``, and
    ``device_id=`` only for an instance placed on a CUDA device (``open_graph``)."""

    def __call__(
        self, version_dir: Path, spec: GraphSpec, backend: str, intra_op_threads: int, /
    ) -> Runtime: ...


class Pipeline(Protocol):
    """What the repository needs of the pipeline built over a version's graphs: closing it
    when the version is unloaded. The engine, which builds and calls pipelines, knows more."""

    async def close(self) -> None: ...


# (manifest, graphs by role, serving options, metrics, version folder) -> pipeline. Each
# role holds one opened graph per instance of the model. Injected by the engine so that the
# repository, below the pipelines, never imports them.
PipelineBuilder = Callable[
    [Manifest, dict[str, tuple[Runtime, ...]], ServingOptions, ServerMetrics | None, Path], Any
]


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    backend: str
    providers: list[str]
    serving: ServingOptions
    pipeline: Any  # what ``PipelineBuilder`` built: a ``Pipeline`` and more

    @property
    def label(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"


def load_model(
    version_dir: Path,
    settings: Settings,
    build: PipelineBuilder,
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
    serving = settings.serving_for(manifest.name, manifest.serving)
    try:
        devices = instance_devices(serving.instances, backend)
    except ValueError as exc:
        raise ValueError(
            f"{version_dir}: setting 'instances' of model {manifest.name}: {exc}"
        ) from None
    graphs = {
        role: tuple(
            open_instance(opener, version_dir, spec, backend, settings, device)
            for device in devices
        )
        for role, spec in manifest.graphs.items()
    }
    pipeline = build(manifest, graphs, serving, metrics, version_dir)
    providers = sorted({p for copies in graphs.values() for g in copies for p in g.providers})
    return LoadedModel(manifest, backend, providers, serving, pipeline)


def open_instance(
    opener: GraphOpener,
    version_dir: Path,
    spec: GraphSpec,
    backend: str,
    settings: Settings,
    device_id: int | None,
) -> Runtime:
    """One instance's copy of a graph, on ``device_id`` when the instance names a device."""
    if device_id is None:
        return opener(version_dir, spec, backend, settings.intra_op_threads)
    return opener(version_dir, spec, backend, settings.intra_op_threads, device_id=device_id)  # type: ignore[call-arg]


def verify_assets(version_dir: Path, manifest: Manifest) -> None:
    """Refuse a version whose non-graph files (a tokenizer) are missing or altered."""
    for name, asset in manifest.assets.items():
        path = version_dir / asset.path
        if not path.is_file():
            raise ValueError(f"{version_dir}: asset {name!r} is missing ({asset.path})")
        verify_checksum(path, asset.sha256)


def version_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """The version folders under ``root`` holding a manifest, and those skipped because
    their name is not a version (ASCII digits, no leading 0, see ``model_ref``)."""
    folders = [path.parent for path in sorted(root.glob(f"*/*/{MANIFEST_FILENAME}"))]
    good = [f for f in folders if parse_version(f.name) is not None]
    return good, [f for f in folders if f not in good]


class Lease:
    """One request's hold on a loaded version: while any is held, the version stays loaded."""

    def __init__(self, repository: ModelRepository, model: LoadedModel) -> None:
        self.model = model
        self._repository = repository
        self._held = True
        repository._users[id(model)] += 1

    def share(self) -> Lease:
        """Another hold on the same version, for work that outlives this one (a job)."""
        return Lease(self._repository, self.model)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._repository._release(self.model)


class ModelRepository:
    def __init__(
        self,
        models: list[LoadedModel],
        build: PipelineBuilder,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.build = build  # how versions added later (reload) get their pipelines
        self._versions: dict[str, dict[int, LoadedModel]] = {}
        self._metrics = metrics
        self._users: Counter[int] = Counter()  # id(model) -> leases held on it
        self._draining: dict[int, LoadedModel] = {}  # removed, unloaded when unused
        self._unloading: set[asyncio.Task[None]] = set()
        for model in models:
            self.add(model)

    @classmethod
    def load(
        cls,
        root: Path,
        settings: Settings,
        build: PipelineBuilder,
        metrics: ServerMetrics | None = None,
        opener: GraphOpener = open_graph,
    ) -> ModelRepository:
        if not root.is_dir():
            raise FileNotFoundError(f"model repository not found: {root}")
        folders, skipped = version_dirs(root)
        for folder in skipped:
            log.warning("skipping %s: version folders are numbers (no leading 0)", folder)
        models = []
        for folder in folders:
            models.append(load_model(folder, settings, build, metrics, opener))
            log.info("loaded %s (%s)", models[-1].label, ", ".join(models[-1].providers))
        return cls(models, build, metrics)

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
            raise ModelNotFound(
                f"model {shown(name)!r} has no version {version} (versions: {known})"
            )
        return versions[version]

    def versions(self, name: str) -> list[str]:
        return [str(v) for v in sorted(self._versions.get(name, {}))]

    def models(self) -> list[LoadedModel]:
        """Every loaded version, by name then version."""
        return [self._versions[n][v] for n in sorted(self._versions) for v in self._sorted(n)]

    def _sorted(self, name: str) -> list[int]:
        return sorted(self._versions[name])

    def lease(self, ref: str) -> Lease:
        """Resolve ``ref`` and hold the version until the lease is released."""
        return Lease(self, self.resolve(ref))

    def add(self, model: LoadedModel) -> None:
        """Serve ``model``: ``name`` resolves to it if it is the highest version."""
        versions = self._versions.setdefault(model.manifest.name, {})
        if int(model.manifest.version) in versions:
            raise ValueError(f"{model.label} is already loaded")
        versions[int(model.manifest.version)] = model
        self._count(model, "serving")

    def remove(self, name: str, version: str) -> LoadedModel:
        """Stop resolving ``name@version`` now; unload it once its last lease is released."""
        versions = self._versions[name]
        model = versions.pop(int(version))
        if not versions:
            del self._versions[name]
        self._draining[id(model)] = model
        self._count(model, "draining")
        if not self._users[id(model)]:
            self._unload(model)
        return model

    def served(self) -> set[tuple[str, str]]:
        """``(name, version)`` of every version that resolves."""
        return {(n, str(v)) for n, versions in self._versions.items() for v in versions}

    def _release(self, model: LoadedModel) -> None:
        key = id(model)
        self._users[key] -= 1
        if self._users[key] <= 0:
            del self._users[key]
            if key in self._draining:
                self._unload(model)

    def _unload(self, model: LoadedModel) -> None:
        del self._draining[id(model)]
        task = asyncio.get_running_loop().create_task(model.pipeline.close())
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)
        self._count(model, None)
        log.info("unloaded %s: its last request finished", model.label)

    def _count(self, model: LoadedModel, state: str | None) -> None:
        """Keep the version gauges: one per loaded version, by state (None: unloaded)."""
        if self._metrics is None:
            return
        self._metrics.models_loaded.set(len(self))
        gauge = self._metrics.model_versions
        for known in ("serving", "draining"):
            if known != state:
                self._metrics.drop(gauge, model.label, known)
        if state is not None:
            gauge.labels(model.label, state).set(1)
        else:  # unloaded: its warm-up time goes too
            self._metrics.drop(self._metrics.model_warmup, model.label)

    async def close(self) -> None:
        draining = list(self._draining.values())
        self._draining.clear()
        closing = [m.pipeline.close() for m in (*self.models(), *draining)]
        await asyncio.gather(*closing, *self._unloading)
        if self._metrics is not None:
            self._metrics.models_loaded.set(0)
