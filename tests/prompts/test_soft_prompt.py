"""SoftPrompt: shapes, per-row task selection, the three init modes, and the fp32 master under casts."""

from __future__ import annotations

import pytest
import torch

from metaprompt.prompts import PromptInit, SoftPrompt

K, L, D = 3, 8, 16


def embeddings(vocab=20_000, d=D, seed=0):
    """A fake embedding matrix ``[V, d]`` larger than the 5,000-id sample range, so the range is testable."""
    return torch.randn(vocab, d, generator=torch.Generator().manual_seed(seed))


def prompt(**init):
    module = SoftPrompt(K, L, D)
    if init:
        module.initialize(embeddings=embeddings(), **init)
    return module


def row_ids(values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index of the row of ``table`` equal to each vector of ``values [..., d]`` (-1 where none is)."""
    flat = values.reshape(-1, values.shape[-1])
    hits = (flat[:, None, :] == table[None, :, :]).all(-1)
    ids = torch.where(hits.any(-1), hits.float().argmax(-1), torch.tensor(-1))
    return ids.reshape(values.shape[:-1])


def test_shapes_and_fp32_parameter():
    module = prompt(how="random")
    assert module.prompts.shape == (K, L, D) and module.prompts.dtype == torch.float32
    assert module.length == L
    assert module(torch.tensor([0, 2, 2, 1, 0])).shape == (5, L, D)
    assert [n for n, _ in module.named_parameters()] == ["prompts"]


def test_each_row_gets_its_tasks_prompt():
    module = prompt(how="random")
    task_ids = torch.tensor([2, 0, 2, 1])
    out = module(task_ids)
    for row, task in enumerate(task_ids.tolist()):
        assert torch.equal(out[row], module.prompts[task])
    assert not torch.equal(out[0], out[1])  # distinct tasks really have distinct prompts


def test_sample_vocab_rows_are_embedding_rows_from_the_frequent_range():
    emb = embeddings()
    module = prompt(how=PromptInit.SAMPLE_VOCAB, seed=3)
    ids = row_ids(module.prompts, emb)
    assert (ids >= 0).all(), "every prompt vector must be a row of the embedding matrix"
    assert (ids < 5000).all(), "rows are sampled from the 5,000 lowest (most frequent) ids"
    assert ids.unique().numel() > K * L // 2  # a sample, not one row repeated
    assert not torch.equal(module.prompts[0], module.prompts[1])  # tasks sampled independently
    assert torch.equal(prompt(how="sample_vocab", seed=3).prompts, module.prompts)  # seeded
    assert not torch.equal(prompt(how="sample_vocab", seed=4).prompts, module.prompts)


def test_sample_vocab_with_a_small_vocabulary_stays_in_range():
    module = SoftPrompt(K, L, D)
    small = embeddings(vocab=10)
    module.initialize("sample_vocab", small)
    assert ((row_ids(module.prompts, small) >= 0) & (row_ids(module.prompts, small) < 10)).all()


@pytest.mark.parametrize(
    ("text_ids", "expected"),
    [
        ([3, 7, 9], [3, 7, 9, 3, 7, 9, 3, 7]),  # repeated to l tokens
        (list(range(100, 112)), list(range(100, 108))),  # truncated to l tokens
        ([5] * 8, [5] * 8),
    ],
)
def test_text_init_repeats_or_truncates_the_text_embeddings(text_ids, expected):
    emb = embeddings()
    module = prompt(how="text", text_ids=text_ids)
    for task in range(K):
        assert row_ids(module.prompts[task], emb).tolist() == expected


def test_text_init_needs_text():
    with pytest.raises(ValueError, match="init text"):
        prompt(how="text", text_ids=[])


def test_random_init_is_seeded_and_scaled_like_the_embeddings():
    emb = embeddings() * 3.0
    module = SoftPrompt(K, 64, D)
    module.initialize("random", emb, seed=1)
    assert (row_ids(module.prompts, emb) == -1).all()  # not copied from the vocabulary
    assert module.prompts.std().item() == pytest.approx(emb.std().item(), rel=0.15)
    assert module.prompts.mean().abs().item() < 0.3
    again = SoftPrompt(K, 64, D)
    again.initialize("random", emb, seed=1)
    assert torch.equal(again.prompts, module.prompts)


def test_unknown_init_and_bad_sizes_raise():
    with pytest.raises(ValueError):
        prompt(how="bogus")
    for sizes in [(0, L, D), (K, 0, D), (K, L, 0)]:
        with pytest.raises(ValueError, match="positive sizes"):
            SoftPrompt(*sizes)


def test_cast_at_use_keeps_the_fp32_master():
    module = prompt(how="random")
    master = module.prompts.detach().clone()
    out = module(torch.tensor([1, 1, 0]), dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and module.prompts.dtype == torch.float32
    assert torch.equal(out[0], master[1].to(torch.bfloat16))
    # the master is neither replaced nor rounded to bf16 by the cast (fp32 values bf16 cannot hold)
    assert torch.equal(module.prompts, master)
    assert not torch.equal(master.to(torch.bfloat16).float(), master)
    assert module(torch.tensor([1])).dtype == torch.float32
    out.float().sum().backward()
    grad = module.prompts.grad
    assert grad is not None and grad.dtype == torch.float32
    assert torch.equal(grad[1], torch.full((L, D), 2.0)) and torch.equal(grad[2], torch.zeros(L, D))


def test_sample_vocab_never_draws_special_or_control_ids():
    from metaprompt.backbones import load_tokenizer
    from metaprompt.prompts.soft_prompt import special_token_ids

    excluded = special_token_ids(load_tokenizer("smollm2-135m"))
    assert {0, 1, 2} <= excluded  # <|endoftext|>, <|im_start|>, <|im_end|>
    embeddings = torch.arange(6000, dtype=torch.float32)[:, None].repeat(1, 4)  # row i is all i: ids readable
    prompt = SoftPrompt(4, 300, 4)
    prompt.initialize("sample_vocab", embeddings, seed=0, exclude_ids=excluded)
    drawn = set(prompt.prompts[..., 0].long().flatten().tolist())
    assert not drawn & excluded
    assert max(drawn) < 5000 + len(excluded) and len(drawn) > 500
