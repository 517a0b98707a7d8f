"""The text encoder's export: graph, tokenizer asset, ``text`` section, and serving parity."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from latentserve.exporters.export import copy_assets, export_graphs
from latentserve.exporters.text_encoder import (
    text_conditioning,
    text_encoder_graph,
    tokenizer_asset,
)
from latentserve.server.pipelines.text import PromptEncoder
from latentserve.server.repository.runtime import GraphIntegrityError, OnnxRuntime
from latentserve.server.repository.store import verify_assets
from latentserve.training.text_encoder import TextEncoder, packaged_model_dir
from transformers import BertModel

from latentserve.manifest import (
    ImageSpec,
    LatentSpec,
    Manifest,
    NoiseScheduleSpec,
    Provenance,
)
from latentserve.noise_schedule import alphas_cumprod

MAX_TOKENS = 16
# Case, punctuation, accents, CJK, emoji, extra whitespace, the empty prompt.
PROMPTS = [
    "A Red Circle.",
    "",
    "  two   spaces\tand a tab\nnewline",
    "café naïve résumé",
    "東京 sunset 🌅",
    "don't-stop 3.14 #hash",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def text_manifest(folder: Path, encoder: TextEncoder) -> Manifest:
    """A text-to-image manifest whose tokenizer is copied into ``folder`` by the exporter."""
    return Manifest(
        name="t2i",
        version="1",
        family="t2i",
        pipeline="diffusion",
        capabilities=["text_to_image"],
        image=ImageSpec(height=8, width=8, channels=1),
        latent=LatentSpec(shape=[1, 8, 8]),
        graphs={},
        noise_schedule=NoiseScheduleSpec(alphas_cumprod=alphas_cumprod("linear", 10).tolist()),
        text=text_conditioning(text_encoder_graph(MAX_TOKENS, encoder)),
        assets=copy_assets(dict([tokenizer_asset()]), folder),
        provenance=Provenance(
            config={}, dataset="none", created_at="2026-01-01T00:00:00Z", latentserve_version="0"
        ),
    )


def test_the_tokenizer_asset_round_trips_and_serving_tokenizes_as_training(
    encoder: TextEncoder, tmp_path: Path
) -> None:
    text_manifest(tmp_path, encoder).save(tmp_path)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["text"] == {
        "tokenizer": "tokenizer",
        "max_tokens": MAX_TOKENS,
        "hidden_size": 384,
        "default_guidance_scale": 5.0,
    }
    assert saved["assets"]["tokenizer"]["path"] == "tokenizer.json"
    manifest = Manifest.load(tmp_path)
    verify_assets(tmp_path, manifest)  # the server's check at load
    served = PromptEncoder.from_manifest(manifest, tmp_path, run=None)  # type: ignore[arg-type]
    for served_array, trained_array in zip(
        served.encode(PROMPTS), encoder.tokenizer(MAX_TOKENS).encode(PROMPTS), strict=True
    ):
        np.testing.assert_array_equal(served_array, trained_array)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(GraphIntegrityError):
        verify_assets(tmp_path, manifest)


@pytest.mark.slow
def test_the_exported_onnx_encoder_matches_bert_on_served_prompts(
    encoder: TextEncoder, tmp_path: Path
) -> None:
    graph = text_encoder_graph(MAX_TOKENS, encoder)
    spec = export_graphs([graph], tmp_path)["text_encoder"]  # parity-checked on export
    assert sorted(spec.files) == ["onnx", "torchscript"]
    assert [t.name for t in spec.inputs] == ["input_ids", "attention_mask"]
    assert spec.outputs[0].shape == ["batch", MAX_TOKENS, 384]
    model = onnx.load(str(tmp_path / "text_encoder.onnx"))
    assert not {n.op_type for n in model.graph.node} & {"RandomNormal", "RandomUniform"}

    manifest = text_manifest(tmp_path, encoder)
    runtime = OnnxRuntime(tmp_path / spec.files["onnx"].path)

    async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return runtime.run(inputs)

    served = PromptEncoder.from_manifest(manifest, tmp_path, run)
    states, mask = asyncio.run(served.embed(PROMPTS))  # a batch size never traced
    reference = BertModel.from_pretrained(packaged_model_dir()).eval()
    ids, _ = served.encode(PROMPTS)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state
    np.testing.assert_allclose(states, expected.numpy(), atol=1e-4, rtol=1e-4)
