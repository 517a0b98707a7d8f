"""The ``text_encoder`` graph, its tokenizer asset and the manifest's ``text`` section.

A text-to-image recipe adds the three to its ``ExportPlan``, once per model version:

    graph = text_encoder_graph(max_tokens, model.text_encoder)
    ExportPlan(
        [graph, denoiser, ...],
        ...,
        text=text_conditioning(graph),
        assets=dict([tokenizer_asset()]),
    )

The sequence length is fixed at ``max_tokens`` (the server always pads to it); the batch
axis is dynamic. Example inputs for tracing and parity are valid token ids and 0/1 masks.
"""

from __future__ import annotations

from pathlib import Path

from latentserve.exporters.plans import GraphPlan
from latentserve.training.text_encoder import TOKENIZER_FILE, TextEncoder, packaged_model_dir

from latentserve.manifest import TensorSpec, TextConditioning

TOKENIZER_ASSET = "tokenizer"


def text_encoder_graph(max_tokens: int, encoder: TextEncoder | None = None) -> GraphPlan:
    """(``input_ids``, ``attention_mask``) (batch, max_tokens) int64 → ``hidden_states``
    (batch, max_tokens, hidden_size) float32; loads the packaged encoder unless given one."""
    encoder = encoder or TextEncoder()
    encoder.tokenizer(max_tokens)  # refuses a length the encoder has no positions for
    tokens = ["batch", max_tokens]
    return GraphPlan(
        "text_encoder",
        encoder,
        [
            TensorSpec(name="input_ids", dtype="int64", shape=tokens),
            TensorSpec(name="attention_mask", dtype="int64", shape=tokens),
        ],
        [TensorSpec(name="hidden_states", dtype="float32", shape=[*tokens, encoder.hidden_size])],
        int_range={"input_ids": (0, encoder.vocab_size), "attention_mask": (0, 2)},
    )


def tokenizer_asset() -> tuple[str, Path]:
    """(asset name, source file): the ``tokenizers`` JSON the server tokenizes prompts with."""
    return TOKENIZER_ASSET, packaged_model_dir() / TOKENIZER_FILE


def text_conditioning(graph: GraphPlan, default_guidance_scale: float = 5.0) -> TextConditioning:
    """The manifest's ``text`` section matching a ``text_encoder_graph``."""
    _, max_tokens, hidden_size = graph.outputs[0].shape
    return TextConditioning(
        tokenizer=TOKENIZER_ASSET,
        max_tokens=max_tokens,
        hidden_size=hidden_size,
        default_guidance_scale=default_guidance_scale,
    )
