"""Hot reload: serve what the model repository holds now, without a restart.

A reload compares the version folders on disk with the versions served. A new version is
loaded beside the running ones (off the event loop), warmed up (``warmup.py``) and only
then added, so ``name`` moves to it once it is known to work. A version that fails —
a checksum mismatch, a manifest that does not validate or breaks its pipeline's contract,
a graph that does not open or does not run — is refused and logged, and what was served
goes on being served; it is tried again only once its files change. A version whose
folder is gone stops resolving at once and is unloaded when its in-flight requests and
jobs finish (``repository.Lease``). Superseded versions stay loaded (``name@version``
keeps working) until their folders are removed. Versions are immutable: a folder already
served is not read again, so a changed model is published as a new version.

Reloads run one at a time, on request (``POST /v1/repository/reload``, gRPC
``ReloadRepository``) or every ``repository_poll_interval_s`` seconds when that is set.

One model can also be unloaded and loaded by name (the Open Inference Protocol's repository
extension): an unloaded model stops resolving at once, as if its folder were gone, and
reloads leave it out until it is loaded again; loading it serves its versions on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from latentserve.server.errors import ModelNotFound, Unavailable
from latentserve.server.metrics import ServerMetrics
from latentserve.server.repository.runtime import open_graph
from latentserve.server.repository.store import (
    GraphOpener,
    LoadedModel,
    ModelRepository,
    load_model,
    version_dirs,
)
from latentserve.server.repository.warmup import warm_up
from latentserve.server.settings import Settings

log = logging.getLogger(__name__)

# Files of a folder, by relative path: (size, mtime): a refused version is retried when
# this changes (say, a copy into the repository finished).
Fingerprint = tuple[tuple[str, int, int], ...]
_MAX_ERROR = 1000  # characters of a refusal's reason in a reload's answer (the log has all)


@dataclass(frozen=True)
class Refusal:
    model: str  # name@version
    error: str


@dataclass(frozen=True)
class IndexEntry:
    """One version folder of the repository, or one served version, and whether it serves."""

    name: str
    version: str
    ready: bool
    reason: str = ""  # why it does not serve


@dataclass(frozen=True)
class ReloadResult:
    loaded: list[str] = field(default_factory=list)  # name@version, now served
    removed: list[str] = field(default_factory=list)  # no longer resolve; unloaded when idle
    refused: list[Refusal] = field(default_factory=list)  # on disk, not served, and why


class RepositoryReloader:
    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        metrics: ServerMetrics,
        opener: GraphOpener = open_graph,
    ) -> None:
        self._repository = repository
        self._settings = settings
        self._metrics = metrics
        self._opener = opener
        self._lock = asyncio.Lock()
        self._refused: dict[Path, tuple[Fingerprint, str]] = {}
        self._unloaded: set[str] = set()  # names unloaded on request: reloads skip them

    async def reload(self) -> ReloadResult:
        """Load new versions, refuse broken ones, remove those gone from disk."""
        async with self._lock:
            return await self._sync(lambda name: name not in self._unloaded)

    async def load(self, name: str) -> ReloadResult:
        """Serve ``name``'s versions on disk (again, after ``unload``); what is refused is
        in the result."""
        async with self._lock:
            if name not in {key[0] for key in self._on_disk()}:
                raise ModelNotFound(f"model {name!r} is not in the repository")
            self._unloaded.discard(name)
            return await self._sync(lambda n: n == name)

    async def unload(self, name: str) -> list[str]:
        """Stop serving every version of ``name`` (each unloads once its work ends) and
        keep it out of reloads until ``load``; the versions removed."""
        async with self._lock:
            served = sorted(v for n, v in self._repository.served() if n == name)
            if not served and name not in {key[0] for key in self._on_disk()}:
                raise ModelNotFound(f"model {name!r} is not in the repository")
            self._unloaded.add(name)
            return [self._remove(name, version) for version in served]

    def index(self) -> list[IndexEntry]:
        """Every version on disk or served: ready, or why not."""
        on_disk = self._on_disk()
        served = self._repository.served()
        entries = []
        for name, version in sorted(on_disk.keys() | served, key=lambda k: (k[0], int(k[1]))):
            if (name, version) in served:
                entries.append(IndexEntry(name, version, True))
                continue
            refused = self._refused.get(on_disk[(name, version)])
            if name in self._unloaded:
                reason = "unloaded"
            elif refused is not None:
                reason = f"refused: {refused[1]}"
            else:
                reason = "not loaded yet: load the model or reload the repository"
            entries.append(IndexEntry(name, version, False, reason))
        return entries

    def _on_disk(self) -> dict[tuple[str, str], Path]:
        root = self._settings.repository
        if not root.is_dir():  # unmounted, say: not a reason to unload every model
            raise Unavailable(f"model repository not found: {root}; nothing changed")
        return {(f.parent.name, f.name): f for f in version_dirs(root)[0]}

    async def _sync(self, wanted: Callable[[str], bool]) -> ReloadResult:
        """Bring the served versions of the names ``wanted`` says in line with the disk."""
        result = ReloadResult()
        disk = self._on_disk()
        on_disk = {k: f for k, f in disk.items() if wanted(k[0])}
        served = {k for k in self._repository.served() if wanted(k[0])}
        folders = set(disk.values())
        self._refused = {p: r for p, r in self._refused.items() if p in folders}
        for key in sorted(on_disk.keys() - served):
            label = "@".join(key)
            error = await self._add(on_disk[key])
            if error is None:
                result.loaded.append(label)
            else:
                result.refused.append(Refusal(label, error))
        # after the new versions are in: a replaced "name" never fails to resolve
        for name, version in sorted(served - on_disk.keys()):
            result.removed.append(self._remove(name, version))
        return result

    def _remove(self, name: str, version: str) -> str:
        model = self._repository.remove(name, version)
        self._metrics.model_reloads.labels(model.label, "removed").inc()
        log.info("removed %s: unloading once its requests finish", model.label)
        return model.label

    async def poll(self, interval_s: float) -> None:
        """Reload every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:  # noqa: BLE001 - a failed scan must not end polling
                log.exception("repository reload failed")

    async def _add(self, folder: Path) -> str | None:
        """Load, warm up and serve one version; the reason it was refused, or None."""
        label = f"{folder.parent.name}@{folder.name}"
        try:
            fingerprint = _fingerprint(folder)
        except OSError as exc:
            return f"its files changed while they were read ({exc.strerror}); try again"
        known = self._refused.get(folder)
        if known is not None and known[0] == fingerprint:
            return known[1]  # unchanged since it was refused: not worth another try
        try:
            model = await self._load(folder)
        except Exception as exc:  # noqa: BLE001 - a broken version is refused, never served
            error = " ".join(str(exc).split())[:_MAX_ERROR] or type(exc).__name__
            log.error("refused %s: %s", label, exc)
            self._refused[folder] = (fingerprint, error)
            self._metrics.model_reloads.labels(label, "refused").inc()
            return error
        self._repository.add(model)
        self._refused.pop(folder, None)
        self._metrics.model_reloads.labels(label, "loaded").inc()
        log.info("loaded %s (%s): serving", label, ", ".join(model.providers))
        return None

    async def _load(self, folder: Path) -> LoadedModel:
        model = await asyncio.to_thread(
            load_model,
            folder,
            self._settings,
            self._repository.build,
            self._metrics,
            self._opener,
        )
        try:
            await warm_up(model, self._metrics)
        except BaseException:
            await model.pipeline.close()
            raise
        return model


def _fingerprint(folder: Path) -> Fingerprint:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return tuple((str(p.relative_to(folder)), *_stat(p)) for p in files)


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
