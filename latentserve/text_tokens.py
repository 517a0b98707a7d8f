"""Prompts → token ids: the one tokenization training and serving share.

A text-to-image denoiser learns from the text encoder's states of tokenized prompts; if the
server tokenized differently (truncating where training refused, padding with another id),
it would feed the denoiser inputs it never saw. So both sides call this module, which
imports only ``tokenizers`` and numpy: the server may import it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class TokenLimitError(ValueError):
    """A prompt needs more tokens than the encoder's fixed length; ``index`` says which."""

    def __init__(self, index: int, count: int, limit: int) -> None:
        super().__init__(f"prompt {index} has {count} tokens, over the limit of {limit}")
        self.index = index
        self.count = count
        self.limit = limit


class PromptTokenizer:
    """A ``tokenizers`` JSON file that pads every prompt to ``max_tokens`` and refuses longer.

    The file's own truncation is switched off: a prompt cut silently would be drawn as if
    its end had never been written, so an over-long prompt is an error instead.
    """

    def __init__(self, path: Path, max_tokens: int) -> None:
        if max_tokens < 2:
            raise ValueError(f"max_tokens must leave room for the special tokens, got {max_tokens}")
        tokenizer = Tokenizer.from_file(str(path))
        padding = tokenizer.padding
        if padding is None:
            raise ValueError(f"{path}: the tokenizer defines no padding token")
        tokenizer.no_truncation()
        tokenizer.enable_padding(
            direction="right",
            pad_id=padding["pad_id"],
            pad_type_id=padding["pad_type_id"],
            pad_token=padding["pad_token"],
            length=max_tokens,
        )
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def encode(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask``, both (len(prompts), max_tokens) int64.

        Raises ``TokenLimitError`` for the first prompt over the limit (special tokens count).
        """
        encodings = self._tokenizer.encode_batch(list(prompts))
        for index, encoding in enumerate(encodings):
            if len(encoding.ids) > self.max_tokens:  # padding never truncates
                raise TokenLimitError(index, len(encoding.ids), self.max_tokens)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(-1, self.max_tokens)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask.reshape(-1, self.max_tokens)
