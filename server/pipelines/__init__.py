"""Pipelines: numpy orchestration of a model's graphs, keyed by how the model samples.

The manifest's ``pipeline`` field picks one from this closed registry, never by import
path. ``latent_decoder`` serves every family that samples with one graph call from prior
noise (AE, VAE, NVAE, flows); ``autoregressive_prior`` serves discrete-code models whose
prior the server steps through (VQ-VAE, VQ-VAE-2); ``diffusion`` steps a numpy sampler
over a denoiser, batching the steps of all running jobs (DDPM, latent diffusion); ``gan``
calls a generator's sampler graph with truncation and, for style-based ones, mixing.
"""

from __future__ import annotations

from pathlib import Path

from latentserve.server.metrics import ServerMetrics
from latentserve.server.pipelines.autoregressive import AutoregressivePriorPipeline
from latentserve.server.pipelines.base import GraphPipeline
from latentserve.server.pipelines.diffusion import DiffusionPipeline
from latentserve.server.pipelines.gan import GanPipeline
from latentserve.server.pipelines.latent_decoder import LatentDecoderPipeline
from latentserve.server.pipelines.noise import draw_noise
from latentserve.server.repository.runtime import Runtime
from latentserve.server.settings import ServingOptions

from latentserve.manifest import Manifest

PIPELINES: dict[str, type[GraphPipeline]] = {
    LatentDecoderPipeline.kind: LatentDecoderPipeline,
    AutoregressivePriorPipeline.kind: AutoregressivePriorPipeline,
    DiffusionPipeline.kind: DiffusionPipeline,
    GanPipeline.kind: GanPipeline,
}


def build_pipeline(
    manifest: Manifest,
    graphs: dict[str, Runtime],
    serving: ServingOptions,
    metrics: ServerMetrics | None,
    version_dir: Path,
) -> GraphPipeline:
    """The pipeline the manifest names, over the version's opened graphs."""
    return PIPELINES[manifest.pipeline](manifest, graphs, serving, metrics, version_dir)


__all__ = [
    "PIPELINES",
    "build_pipeline",
    "AutoregressivePriorPipeline",
    "DiffusionPipeline",
    "GanPipeline",
    "GraphPipeline",
    "LatentDecoderPipeline",
    "draw_noise",
]
