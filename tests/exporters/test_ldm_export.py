"""ldm export: the text-to-image manifest, graphs whose I/O is the server's contract,
denoiser parity on real prompt states, and a numpy DDIM loop with classifier-free guidance
over the exported ONNX graphs (text encoder included) that gives finite images in range."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.exporters.export import export_run
from latentserve.exporters.parity import check_parity
from latentserve.exporters.recipes.ldm import denoiser_plan
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.store import load_model
from latentserve.server.settings import Settings
from latentserve.training.checkpoint import load_run
from latentserve.training.families.ldm import LatentDiffusion
from tiny_runs import onnx_session, train_tiny

from latentserve.manifest import Manifest
from latentserve.text_tokens import PromptTokenizer

ROLES = {"text_encoder", "denoiser", "encoder", "decoder"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("ldm-tiny", tmp_path_factory.mktemp("runs") / "ldm")


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(run, tmp_path_factory.mktemp("models"), "ldm")


def test_manifest_describes_latent_text_to_image(run: Path, exported: Path) -> None:
    manifest = Manifest.load(exported)
    model = load_run(run).model
    assert isinstance(model, LatentDiffusion)
    assert (manifest.family, manifest.pipeline) == ("ldm", "diffusion")
    assert manifest.capabilities == ["text_to_image", "encode", "reconstruct"]
    assert manifest.latent.shape == [4, 7, 7] and set(manifest.graphs) == ROLES
    schedule = manifest.noise_schedule
    np.testing.assert_array_equal(schedule.alphas_cumprod, model.alphas_cumprod)  # trained with
    assert schedule.latent_scale == pytest.approx(model.latent_scale)
    assert schedule.clip_sample and schedule.sample_range == (-4.0, 4.0)
    assert schedule.prediction_type == "epsilon"
    text = manifest.text
    assert (text.max_tokens, text.hidden_size) == (16, 384)
    assert 3.0 <= text.default_guidance_scale <= 5.0
    assert (exported / manifest.assets[text.tokenizer].path).is_file()
    assert manifest.provenance.metrics["latent_scale"] == pytest.approx(model.latent_scale)


def test_the_server_loads_it_with_every_capability(exported: Path) -> None:
    """Loading checks every graph's I/O against the pipeline's contract and the assets."""

    async def load() -> None:
        loaded = load_model(exported, Settings(), build_pipeline)
        for capability in ("text_to_image", "encode", "reconstruct"):
            loaded.pipeline.require(capability)
        await loaded.pipeline.close()

    asyncio.run(load())
    manifest = Manifest.load(exported)
    denoiser = manifest.graphs["denoiser"]
    assert [(i.name, i.dtype, i.shape) for i in denoiser.inputs] == [
        ("sample", "float32", ["batch", 4, 7, 7]),
        ("timestep", "float32", ["batch"]),
        ("encoder_hidden_states", "float32", ["batch", 16, 384]),
        ("encoder_attention_mask", "int64", ["batch", 16]),
    ]


def test_the_exported_denoiser_matches_the_ema_network(run: Path, exported: Path) -> None:
    model = load_run(run).model
    assert isinstance(model, LatentDiffusion)
    diffs = check_parity(denoiser_plan(model), exported / "denoiser.onnx", exported / "denoiser.pt")
    assert max(diffs.values()) < 1e-4
    states, mask = model.embed(["a handwritten 3", ""])
    sample, t = torch.randn(2, 4, 7, 7), torch.tensor([900.0, 3.0])
    feeds = {
        "sample": sample.numpy(),
        "timestep": t.numpy(),
        "encoder_hidden_states": states.numpy(),
        "encoder_attention_mask": mask.numpy(),
    }
    [onnx] = onnx_session(exported, "denoiser").run(["prediction"], feeds)
    with torch.no_grad():
        eager = model.ema.shadow(sample, t, None, states, mask).numpy()
    np.testing.assert_allclose(onnx, eager, atol=1e-4, rtol=1e-4)


def test_numpy_ddim_with_guidance_over_the_onnx_graphs(exported: Path) -> None:
    """DDIM (η = 0), 10 steps, guidance 4, as the server runs it: prompt and empty prompt
    through the text encoder, x0 clipped to the sample range, scaled latents divided by the
    scale before the decoder."""
    manifest = Manifest.load(exported)
    spec, text = manifest.noise_schedule, manifest.text
    tokenizer = PromptTokenizer(exported / manifest.assets[text.tokenizer].path, text.max_tokens)
    ids, mask = tokenizer.encode(["the digit seven", ""])
    [states] = onnx_session(exported, "text_encoder").run(
        ["hidden_states"], {"input_ids": ids, "attention_mask": mask}
    )
    denoiser = onnx_session(exported, "denoiser")
    alpha_bar = np.asarray(spec.alphas_cumprod)
    n, scale = 3, 4.0
    x = np.random.default_rng(0).standard_normal((n, *manifest.latent.shape))
    timesteps = np.linspace(spec.num_train_timesteps - 1, 0, 10).round().astype(int)
    for i, t in enumerate(timesteps):
        feeds = {
            "sample": np.concatenate([x, x]).astype(np.float32),
            "timestep": np.full(2 * n, t, dtype=np.float32),
            "encoder_hidden_states": np.repeat(states, n, axis=0),
            "encoder_attention_mask": np.repeat(mask, n, axis=0),
        }
        cond, uncond = np.split(denoiser.run(["prediction"], feeds)[0].astype(np.float64), 2)
        eps = uncond + scale * (cond - uncond)
        a, a_next = alpha_bar[t], alpha_bar[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
        x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), *spec.sample_range)
        x = np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * eps
    latent = (x / spec.latent_scale).astype(np.float32)
    [images] = onnx_session(exported, "decoder").run(["image"], {"latent": latent})
    assert images.shape == (n, 1, 28, 28) and np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
