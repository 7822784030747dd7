"""The shared prompt prefix gives the logits, loss, hidden states, gradients and generations of plain
concatenation (tiny Llama and tiny gpt-oss: sliding-window layers, attention sinks), with padding and
mixed-task batches, and costs far fewer FLOPs for short inputs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from metaprompt.backbones import load_backbone
from metaprompt.forward import FastPaths
from metaprompt.forward.prefix import distinct_prompts, supports_shared_prefix
from metaprompt.forward.prompted import decoder_and_head, generate, prompted_forward, uses_shared_prefix

CONCAT = {"shared_prefix": False}


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt-oss"])
def backbone(request):
    model, tokenizer = load_backbone(request.param)
    return model.train(), tokenizer  # train mode: what a fit step sees (dropout is 0 in both configs)


def _batch(task_ids: list[int], lengths: list[int], width: int = 24, n_prompt_tokens: int = 10) -> dict:
    g = torch.Generator().manual_seed(len(task_ids) + width)
    ids = torch.randint(10, 5000, (len(task_ids), width), generator=g)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :n_prompt_tokens] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "task_ids": torch.tensor(task_ids)}


def _run(model, batch, prompts, fast, hidden_layers=(-1, 1)):
    prompts.grad = None
    out = prompted_forward(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["labels"],
        prompts[batch["task_ids"]],
        hidden_layers,
        task_ids=batch["task_ids"],
        fast=fast,
    )
    # a loss that reaches the prompt through both the logits and the hidden states
    (out.loss + out.hidden_states[0][out.token_mask.bool()].pow(2).mean()).backward()
    return out, prompts.grad.clone()


@pytest.mark.parametrize("length", [8, 80], ids=["short-prompt", "prompt-longer-than-sliding-window"])
@pytest.mark.parametrize(
    "task_ids,lengths",
    [([2, 0, 2, 1, 0], [24, 17, 24, 12, 20]), ([1, 1, 1], [24, 9, 16])],
    ids=["mixed-tasks-padded", "one-task-padded"],
)
def test_prefix_matches_concatenation(backbone, length, task_ids, lengths):
    model, _ = backbone
    assert uses_shared_prefix(model, torch.zeros(1, 1, 1), torch.zeros(1), FastPaths())
    prompts = torch.randn(3, length, model.config.hidden_size, requires_grad=True)
    batch = _batch(task_ids, lengths)
    ref, ref_grad = _run(model, batch, prompts, CONCAT)
    out, grad = _run(model, batch, prompts, None)
    assert out.target_logits.shape == ref.target_logits.shape and out.target_logits.shape[0] > 0
    torch.testing.assert_close(out.target_logits, ref.target_logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss)
    assert torch.equal(out.target_labels, ref.target_labels) and torch.equal(out.token_mask, ref.token_mask)
    for h, h_ref in zip(out.hidden_states, ref.hidden_states):
        assert h.shape == h_ref.shape == (len(task_ids), length + 24, model.config.hidden_size)
        torch.testing.assert_close(h, h_ref, atol=2e-5, rtol=1e-5)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    unused = sorted(set(range(3)) - set(task_ids))
    assert all(grad[t].abs().sum() == 0 for t in unused)  # no gradient leaks into other tasks' prompts


def test_first_target_token_is_predicted_by_the_prompt(backbone):
    """A target starting at the row's first token is scored from the last prompt position, as in concat."""
    model, _ = backbone
    prompts = torch.randn(2, 6, model.config.hidden_size, requires_grad=True)
    batch = _batch([0, 1], [24, 20], n_prompt_tokens=0)
    ref, ref_grad = _run(model, batch, prompts, CONCAT)
    out, grad = _run(model, batch, prompts, None)
    assert out.target_logits.shape[0] == int((batch["labels"] != -100).sum())
    torch.testing.assert_close(out.target_logits, ref.target_logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)


def test_full_logits_and_checkpointing_switches_are_exact(backbone):
    model, _ = backbone
    prompts = torch.randn(2, 8, model.config.hidden_size, requires_grad=True)
    batch = _batch([0, 1, 0], [24, 15, 20])
    ref, ref_grad = _run(model, batch, prompts, None)
    for switches in ({"target_only_logits": False}, {"activation_checkpointing": True}):
        out, grad = _run(model, batch, prompts, switches)
        torch.testing.assert_close(out.target_logits, ref.target_logits, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    _run(model, batch, prompts, None)  # switching checkpointing back off restores the model
    assert not model.is_activation_checkpointing


def test_checkpointing_recomputes_the_row_pass():
    model, _ = load_backbone("tiny-llama")
    model.train()
    calls, mlp = [], model.model.layers[0].mlp
    forward = mlp.forward  # counted by wrapping forward: module hooks do not fire in checkpoint replays

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    mlp.forward = counted
    prompts = torch.randn(1, 8, model.config.hidden_size, requires_grad=True)
    batch = _batch([0, 0], [24, 24])
    for switches, expected in ((None, 2), ({"activation_checkpointing": True}, 3)):
        calls.clear()
        _run(model, batch, prompts, switches)
        assert len(calls) == expected  # prefix pass + row pass (+ the row pass replayed in backward)
    _run(model, batch, prompts, None)
    assert not model.is_activation_checkpointing


@pytest.mark.parametrize("left_padded", [False, True], ids=["same-length", "left-padded"])
@pytest.mark.parametrize("length", [8, 80], ids=["short-prompt", "prompt-longer-than-sliding-window"])
def test_generation_matches_concatenation(backbone, length, left_padded):
    model, tokenizer = backbone
    model.eval()
    prompts = torch.randn(3, length, model.config.hidden_size)
    ids = torch.randint(10, 5000, (4, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if left_padded:
        mask[1, :5], mask[3, :9] = 0, 0
    ids = ids.masked_fill(mask == 0, tokenizer.pad_token_id)
    task_ids = torch.tensor([2, 0, 2, 1])
    args = (model, ids, mask, prompts[task_ids], 12, -1, tokenizer.pad_token_id)
    ref = generate(*args, task_ids=task_ids, fast=CONCAT)
    out = generate(*args, task_ids=task_ids)
    model.train()
    assert [len(r) for r in out] == [12] * 4
    assert out == ref
    sliding = model.config.model_type == "gpt_oss"
    # pads between a shared prefix and the tokens would take sliding-window slots: gpt-oss falls back
    assert uses_shared_prefix(model, prompts, task_ids, FastPaths(), mask) == (not (sliding and left_padded))


def test_generation_stops_at_end_of_sequence(tiny_llama):
    model, _ = tiny_llama
    prompts = torch.randn(2, 4, model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    ids = torch.randint(10, 5000, (2, 6), generator=torch.Generator().manual_seed(1))
    mask, task_ids = torch.ones_like(ids), torch.tensor([0, 1])
    free = generate(model, ids, mask, prompts[task_ids], 8, -1, 0, task_ids=task_ids)
    eos = free[1][0]  # row 1 stops at once; row 0 runs on (its rows never contain it, or stop there)
    expected = [seq[: seq.index(eos)] if eos in seq else seq for seq in free]
    assert expected[1] == [] and len(expected[0]) > 0
    rows = generate(model, ids, mask, prompts[task_ids], 8, eos, 0, task_ids=task_ids)
    ref = generate(model, ids, mask, prompts[task_ids], 8, eos, 0, task_ids=None)  # concatenation
    assert rows == ref == expected


def test_far_fewer_flops_for_short_inputs(tiny_llama):
    model, _ = tiny_llama
    prompts = torch.randn(1, 64, model.config.hidden_size)
    batch = _batch([0] * 8, [16] * 8, width=16, n_prompt_tokens=8)
    flops = {}
    for name, fast in (("concat", CONCAT), ("prefix", None)):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            prompted_forward(
                model, batch["input_ids"], batch["attention_mask"], batch["labels"], prompts[[0] * 8],
                task_ids=batch["task_ids"], fast=fast,
            )  # fmt: skip
        flops[name] = counter.get_total_flops()
    # the LM head runs on the same 8 x 8 target positions in both; the body sees 8 x (64 + 16) positions
    # when concatenating vs 64 + 8 x 16 with the shared prefix: ~3.3x fewer
    head = 2 * 8 * 8 * model.config.hidden_size * model.config.vocab_size
    assert flops["prefix"] - head < 0.4 * (flops["concat"] - head)


def test_fallback_to_concatenation():
    model, _ = load_backbone("tiny-llama")
    prompt, task_ids = torch.zeros(2, 3, 64), torch.tensor([0, 1])
    assert not uses_shared_prefix(model, prompt, None, FastPaths())  # no task ids: nothing to share
    assert not uses_shared_prefix(model, prompt, task_ids, FastPaths(shared_prefix=False))
    assert not uses_shared_prefix(model, None, task_ids, FastPaths())
    decoder, _ = decoder_and_head(model)
    assert supports_shared_prefix(decoder)
    assert not supports_shared_prefix(torch.nn.Linear(2, 2))  # not an HF decoder: never assumed exact


def test_distinct_prompts_keeps_first_row_of_each_task():
    prompt = torch.arange(5.0)[:, None, None].expand(5, 2, 3)
    distinct = distinct_prompts(prompt, torch.tensor([4, 1, 4, 1, 7]))
    assert distinct.prompts[:, 0, 0].tolist() == [1.0, 0.0, 4.0]  # tasks 1, 4, 7: rows 1, 0, 4
    assert distinct.rows.tolist() == [1, 0, 1, 0, 2]
    with pytest.raises(ValueError, match="task_ids"):
        distinct_prompts(prompt, torch.tensor([0, 1]))


def test_frozen_prompts_prefix_is_reused_across_no_grad_calls(monkeypatch):
    import metaprompt.forward.prefix_memo as prefix_memo

    model, tokenizer = load_backbone("tiny-llama")
    runs = []
    real = prefix_memo.run_prefix
    monkeypatch.setattr(prefix_memo, "run_prefix", lambda d, p, h: runs.append(p.shape[0]) or real(d, p, h))
    prompts = torch.randn(3, 8, model.config.hidden_size, requires_grad=True)
    ids = torch.randint(10, 5000, (4, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)

    def decode(task_ids, fast=None):
        task_ids = torch.tensor(task_ids)
        return generate(model, ids, mask, prompts[task_ids].detach(), 5, -1, 0, task_ids=task_ids, fast=fast)

    first = decode([0, 1, 0, 1])
    assert decode([0, 1, 0, 1]) == first and runs == [2]  # second call: both tasks from the memo
    assert decode([2, 1, 2, 0]) == decode([2, 1, 2, 0], {"reuse_prefix": False}) and runs == [2, 1]  # only task 2 new
    with torch.no_grad():
        prompts[1] += 0.5  # an optimizer step: task 1's prompt is new content
    changed = decode([0, 1, 0, 1])
    assert runs == [2, 1, 1] and changed == decode([0, 1, 0, 1], {"reuse_prefix": False})
    batch = _batch([0, 1], [24, 24])
    _run(model.train(), batch, prompts, None)  # training: gradients needed, the memo is never used
    assert runs == [2, 1, 1]
