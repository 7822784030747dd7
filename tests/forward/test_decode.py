"""Greedy decoding (forward.decode via forward.prompted.generate) against HF ``generate``.

Each row's tokens must be what HF greedy ``generate`` gives on ``[prompt, row]``, whichever path runs
(shared prefix, concatenation, no prompt) and whether finished rows leave the batch or not; dropped rows
must really leave it (the decoder sees smaller batches).
"""

from __future__ import annotations

import pytest
import torch

from metaprompt.backbones import load_backbone
from metaprompt.forward import FastPaths
from metaprompt.forward.decode import StopStrings
from metaprompt.forward.inject import prepend_prompt
from metaprompt.forward.prompted import decoder_and_head, generate

KEEP_ROWS = FastPaths(drop_finished_rows=False)
CONCAT = FastPaths(shared_prefix=False)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt-oss"])
def backbone(request):
    model, tokenizer = load_backbone(request.param)
    return model.eval().requires_grad_(False), tokenizer


def hf_greedy(model, ids, mask, prompt, max_new_tokens, eos):
    """HF ``generate`` on ``[prompt, row]`` (pads in front), cut at the first ``eos``: the reference."""
    inputs = prepend_prompt(model.get_input_embeddings(), ids, mask, prompt)
    out = model.generate(
        inputs_embeds=inputs.inputs_embeds,
        attention_mask=inputs.attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=0,
    ).tolist()
    return [row[: row.index(eos)] if eos in row else row for row in out]


def batch(model, with_prompt=True, rows=6, width=10, length=5):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 5000, (rows, width), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4], mask[4, :7] = 0, 0  # left padding
    ids = ids.masked_fill(mask == 0, 0)
    task_ids = torch.tensor([0, 1, 0, 2, 1, 0][:rows])
    prompts = torch.randn(3, length, model.config.hidden_size, generator=g) * 0.1
    return ids, mask, (prompts[task_ids] if with_prompt else None), task_ids


def an_eos_mid_way(free: list[list[int]]) -> int:
    """A token that ends some rows early and others not at all (so rows finish at different steps)."""
    counts: dict[int, set[int]] = {}
    for r, row in enumerate(free):
        for t in row[1:-1]:
            counts.setdefault(t, set()).add(r)
    return max(counts, key=lambda t: (0 < len(counts[t]) < len(free), -min(free[r].index(t) for r in counts[t])))


@pytest.mark.parametrize("with_prompt", [True, False], ids=["soft-prompt", "no-prompt"])
@pytest.mark.parametrize("fast", [FastPaths(), CONCAT, KEEP_ROWS], ids=["shared-prefix", "concatenation", "keep-rows"])
def test_greedy_equals_hf_generate_with_rows_finishing_at_different_steps(backbone, with_prompt, fast):
    model, _ = backbone
    ids, mask, prompt, task_ids = batch(model, with_prompt)
    free = hf_greedy(model, ids, mask, prompt, 12, -1)
    eos = an_eos_mid_way(free)
    ref = hf_greedy(model, ids, mask, prompt, 12, eos)
    assert len({len(r) for r in ref}) > 1  # rows do finish at different steps
    assert generate(model, ids, mask, prompt, 12, eos, 0, task_ids=task_ids, fast=fast) == ref


def test_finished_rows_leave_the_batch(backbone):
    model, _ = backbone
    ids, mask, prompt, task_ids = batch(model)
    free = hf_greedy(model, ids, mask, prompt, 12, -1)
    eos = an_eos_mid_way(free)
    sizes: dict[str, list[int]] = {"drop": [], "keep": []}  # batch size of each decoding step

    def record(name):
        def hook(_, args, kwargs):
            step = kwargs.get("input_ids")
            if step is not None and step.shape[1] == 1:
                sizes[name].append(step.shape[0])

        return hook

    decoder, _ = decoder_and_head(model)
    for name, fast in (("drop", FastPaths()), ("keep", KEEP_ROWS)):
        handle = decoder.register_forward_pre_hook(record(name), with_kwargs=True)
        try:
            generate(model, ids, mask, prompt, 12, eos, 0, task_ids=task_ids, fast=fast)
        finally:
            handle.remove()
    steps = sizes["drop"]
    assert set(sizes["keep"]) == {ids.shape[0]} and min(steps) < ids.shape[0]
    assert steps == sorted(steps, reverse=True)
    assert sum(sizes["drop"]) < sum(sizes["keep"])


def test_zero_budget_and_immediate_end(backbone):
    model, _ = backbone
    ids, mask, prompt, task_ids = batch(model)
    assert generate(model, ids, mask, prompt, 0, -1, 0, task_ids=task_ids) == [[]] * ids.shape[0]
    first = hf_greedy(model, ids, mask, prompt, 1, -1)
    out = generate(model, ids, mask, prompt, 5, first[0][0], 0, task_ids=task_ids)
    assert out[0] == [] and out == hf_greedy(model, ids, mask, prompt, 5, first[0][0])


def test_stop_strings_end_a_row_and_cut_its_text(backbone):
    model, tokenizer = backbone
    ids, mask, prompt, task_ids = batch(model)
    free = generate(model, ids, mask, prompt, 12, -1, 0, task_ids=task_ids)
    texts = [tokenizer.decode(r) for r in free]
    target = tokenizer.decode(free[2][:4])[-2:]  # a string row 2 produces within its first 4 tokens
    assert target and target in texts[2]
    stop = StopStrings(tokenizer.decode, [[] if r != 2 else [target] for r in range(len(free))])
    out = generate(model, ids, mask, prompt, 12, -1, 0, task_ids=task_ids, stop=stop)
    assert [o for r, o in enumerate(out) if r != 2] == [o for r, o in enumerate(free) if r != 2]
    assert len(out[2]) <= 4 and out[2] == free[2][: len(out[2])]
    assert target in tokenizer.decode(out[2]) and target not in tokenizer.decode(out[2][:-1])
    assert stop.cut(2, tokenizer.decode(out[2])) == texts[2][: texts[2].index(target)]


def test_reserved_layer_matches_dynamic_layer_through_growth_and_row_drops():
    from transformers.cache_utils import DynamicLayer

    from metaprompt.forward.decode import ReservedLayer

    g = torch.Generator().manual_seed(0)
    plain = DynamicLayer()
    plain.update(torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g))
    reserved = ReservedLayer.reserve(plain, extra=2)
    plain_keys = plain.keys.clone()
    for step in range(4):  # two steps fit the reserve, two grow past it
        if step == 1:  # a row finishes
            keep = torch.tensor([0, 2])
            plain.batch_select_indices(keep)
            reserved.batch_select_indices(keep)
        k, v = (
            torch.randn(plain.keys.shape[0], 2, 1, 4, generator=g),
            torch.randn(plain.keys.shape[0], 2, 1, 4, generator=g),
        )
        expected, got = plain.update(k, v), reserved.update(k.clone(), v.clone())
        assert all(torch.equal(e, o) for e, o in zip(expected, got))
        assert reserved.get_seq_length() == plain.get_seq_length() == 6 + step
    assert torch.equal(reserved.keys[:, :, :5], plain_keys[[0, 2]])
