"""prepend_prompt: layout, mask and position ids for right- and left-padded rows."""

from __future__ import annotations

import pytest
import torch

from metaprompt.forward.inject import PromptedInputs, positions_from_mask, prepend_prompt

D, L = 4, 3


@pytest.fixture
def embed():
    torch.manual_seed(0)
    return torch.nn.Embedding(20, D)


def prompts(batch=2):
    return torch.arange(batch * L * D, dtype=torch.float32).reshape(batch, L, D) + 100


def test_positions_count_only_unmasked_tokens():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 0, 0, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 1, 2, 0, 0], [0, 0, 0, 1, 2], [0, 1, 0, 0, 2]]


def test_right_padding_layout(embed):
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = prepend_prompt(embed, ids, mask, prompts())
    assert isinstance(out, PromptedInputs)
    assert out.inputs_embeds.shape == (2, L + 3, D)
    assert torch.equal(out.inputs_embeds[:, :L], prompts())
    assert torch.equal(out.inputs_embeds[:, L:], embed(ids))
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    assert out.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 0]]
    assert set(out.as_kwargs()) == {"inputs_embeds", "attention_mask", "position_ids"}


def test_left_padding_puts_the_pads_before_the_prompt(embed):
    ids = torch.tensor([[5, 6, 7], [0, 0, 9]])
    mask = torch.tensor([[1, 1, 1], [0, 0, 1]])
    p = prompts()
    out = prepend_prompt(embed, ids, mask, p)
    # [pads, prompt, tokens]: nothing between prompt and text (peft#1093; sliding windows count key indices)
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert torch.equal(out.inputs_embeds[1, 2:5], p[1]) and torch.equal(out.inputs_embeds[1, 5], embed(ids)[1, 2])
    assert torch.equal(out.inputs_embeds[0, :3], p[0]) and torch.equal(out.inputs_embeds[0, 3:], embed(ids)[0])
    # the short row sees [prompt, 9] at positions 0..3, as it would unpadded (peft#1093)
    assert out.position_ids[1][out.attention_mask[1].bool()].tolist() == [0, 1, 2, 3]
    assert out.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5]


def test_prompt_is_cast_to_the_embedding_dtype(embed):
    ids, mask = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long)
    out = prepend_prompt(embed.to(torch.bfloat16), ids, mask, prompts(1))
    assert out.inputs_embeds.dtype == torch.bfloat16


def test_no_prompt_passes_the_embeddings_through(embed):
    ids, mask = torch.tensor([[0, 4, 5]]), torch.tensor([[0, 1, 1]])
    out = prepend_prompt(embed, ids, mask, None)
    assert torch.equal(out.inputs_embeds, embed(ids)) and torch.equal(out.attention_mask, mask)
    assert out.position_ids.tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("shape", [(3, L, D), (2, L, D + 1)])
def test_prompt_that_does_not_fit_raises(embed, shape):
    ids, mask = torch.tensor([[1, 2], [3, 4]]), torch.ones(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="does not fit"):
        prepend_prompt(embed, ids, mask, torch.zeros(shape))
