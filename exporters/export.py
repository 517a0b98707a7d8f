"""A trained run → one version folder of a model repository.

Layout: ``<repository>/<name>/<version>/`` holding ``<role>.onnx`` and ``<role>.pt``
(TorchScript) for each graph of the family's recipe, its assets (``<name><suffix>``, e.g.
``tokenizer.json``), and ``manifest.json``. The folder is assembled under a temporary name
and renamed into place only after every graph passed its parity check, so a server
scanning the repository never sees half a model.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch
from latentserve.exporters.formats import export_onnx, export_torchscript
from latentserve.exporters.parity import check_parity
from latentserve.exporters.plans import ExportPlan, GraphPlan
from latentserve.exporters.recipes import get_recipe
from latentserve.training.checkpoint import last_test_metrics, load_run
from latentserve.training.config import RunConfig

from latentserve import __version__
from latentserve.manifest import (
    AssetFile,
    GraphFile,
    GraphSpec,
    ImageSpec,
    LatentSpec,
    Manifest,
    Provenance,
    sha256_file,
)

log = logging.getLogger(__name__)
TRACE_BATCH = 2


def next_version(model_dir: Path) -> str:
    """One more than the highest integer version already in ``model_dir`` (1 if none)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max(versions, default=0) + 1)


def git_commit(path: Path) -> str | None:
    """The commit checked out where the code lives, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def export_run(run_dir: Path, repository: Path, name: str, version: str | None = None) -> Path:
    """Export the run in ``run_dir`` as ``name`` (next free version if none); returns its folder."""
    loaded = load_run(run_dir)
    recipe = get_recipe(loaded.config.family)
    model_dir = repository / name
    version = version or next_version(model_dir)
    if not version.isdigit():
        raise ValueError(f"version must be an integer, got {version!r}")
    target = model_dir / version
    if target.exists():
        raise ValueError(f"model version folder already exists: {target}")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    try:
        plan = recipe.plan(loaded.model)
        graphs = export_graphs(plan.graphs, staging)
        assets = copy_assets(plan.assets, staging)
        manifest = Manifest(
            name=name,
            version=version,
            family=loaded.config.family,
            description=loaded.config.description,
            pipeline=plan.pipeline,
            capabilities=recipe.capabilities,
            image=ImageSpec(
                height=loaded.model.image.height,
                width=loaded.model.image.width,
                channels=loaded.model.image.channels,
                value_range=(0.0, 1.0),
            ),
            latent=_with_default_temperature(plan, recipe.capabilities, loaded.config),
            codes=plan.codes,
            likelihood=plan.likelihood,
            graphs=graphs,
            noise_schedule=plan.noise_schedule,
            conditioning=plan.conditioning,
            text=plan.text,
            generator=plan.generator,
            assets=assets,
            provenance=Provenance(
                config=loaded.config.to_dict(),
                dataset=loaded.config.dataset,
                git_commit=git_commit(Path(__file__).resolve().parent),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                latentserve_version=__version__,
                metrics={**last_test_metrics(run_dir), **plan.metrics},
            ),
        )
        manifest.save(staging)
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s (%s) to %s", name, loaded.config.family, target)
    return target


#: The pipeline kinds whose sampling takes a prior temperature.
TEMPERATURE_PIPELINES = ("latent_decoder", "autoregressive_prior")


def _with_default_temperature(
    plan: ExportPlan, capabilities: list[str], config: RunConfig
) -> LatentSpec:
    """The plan's latent with the config's ``[sample] temperature`` as its default; refused
    for a model whose sampling has no temperature, rather than written where none reads it."""
    temperature = config.sample.temperature
    if temperature == 1.0:
        return plan.latent
    if plan.pipeline not in TEMPERATURE_PIPELINES or "sample" not in capabilities:
        raise ValueError(
            f"[sample] temperature = {temperature}: {config.family} models do not sample "
            "with a prior temperature (only VAE, NVAE, Glow, VQ-VAE, VQ-VAE-2 and PixelCNN do)"
        )
    return plan.latent.model_copy(update={"default_temperature": temperature})


def export_graphs(plans: list[GraphPlan], folder: Path) -> dict[str, GraphSpec]:
    """Write each graph as ONNX and TorchScript into ``folder``, parity-checked."""
    graphs: dict[str, GraphSpec] = {}
    generator = torch.Generator().manual_seed(0)
    for plan in plans:
        plan.module.eval()
        example = plan.example_inputs(TRACE_BATCH, generator)
        onnx_path = folder / f"{plan.role}.onnx"
        ts_path = folder / f"{plan.role}.pt"
        export_onnx(plan.module, example, plan.inputs, plan.outputs, onnx_path)
        export_torchscript(plan.module, example, ts_path)
        diffs = check_parity(plan, onnx_path, ts_path, tolerance=plan.tolerance)
        log.info("%s parity (max abs diff): %s", plan.role, diffs)
        graphs[plan.role] = GraphSpec(
            inputs=plan.inputs,
            outputs=plan.outputs,
            files={
                "onnx": GraphFile(path=onnx_path.name, sha256=sha256_file(onnx_path)),
                "torchscript": GraphFile(path=ts_path.name, sha256=sha256_file(ts_path)),
            },
        )
    return graphs


def copy_assets(assets: dict[str, Path], folder: Path) -> dict[str, AssetFile]:
    """Copy each asset into ``folder`` as ``<name><suffix>``, recorded with its sha256."""
    files: dict[str, AssetFile] = {}
    for name, source in assets.items():
        target = folder / f"{name}{source.suffix}"
        shutil.copyfile(source, target)
        files[name] = AssetFile(path=target.name, sha256=sha256_file(target))
    return files
