"""prompted_forward and generate on the tiny backbones: against a manual reference, padding invariance.

The tiny backbones are random with std-0.02 weights, so attention is nearly uniform and positions barely
matter; ``sharpen`` scales the attention projections so that a wrong position or a wrong mask changes
the logits by far more than the tolerances used here (``test_naive_left_padding_is_caught`` checks it).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metaprompt.backbones import load_backbone
from metaprompt.data.collate import IGNORE_INDEX, CausalLMCollator
from metaprompt.forward.prompted import decoder_and_head, generate, prompted_forward
from metaprompt.prompts import SoftPrompt

BACKBONES = ["tiny-llama", "tiny-gpt-oss"]
PROMPT_LENGTH = 6
ATOL = 1e-5
SHORT = [(5, 3), (12, 2), (30, 4), (9, 1)]  # (prompt tokens, target tokens): every row < 64 wide
LONG = [*SHORT, (70, 3)]  # wider than tiny gpt-oss's 64-token sliding window


def sharpen(model: torch.nn.Module, factor: float = 8.0) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "o_proj.weight")):
                p.mul_(factor)
    return model


@pytest.fixture(scope="module", params=BACKBONES)
def setup(request):
    """(backbone, tokenizer, per-task prompts) for each tiny backbone."""
    model, tokenizer = load_backbone(request.param)
    model.eval().requires_grad_(False)
    prompts = SoftPrompt(2, PROMPT_LENGTH, model.config.hidden_size)
    prompts.initialize("sample_vocab", model.get_input_embeddings().weight, seed=1)
    return sharpen(model), tokenizer, prompts


def make_rows(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "uid": str(i),
            "task_id": i % 2,
            "prompt_ids": torch.randint(3, 5000, (p,), generator=g).tolist(),
            "target_ids": torch.randint(3, 5000, (t,), generator=g).tolist(),
        }
        for i, (p, t) in enumerate(lengths)
    ]


def run(model, prompts, batch):
    return prompted_forward(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"], prompts(batch["task_ids"])
    )


def left_pad(batch):
    """The right-padded training batch rearranged to left padding (same rows)."""
    out = {"task_ids": batch["task_ids"]}
    lengths = batch["attention_mask"].sum(1).tolist()
    for key, fill in (("input_ids", 2), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
        padded = torch.full_like(batch[key], fill)
        for row, n in enumerate(lengths):
            padded[row, padded.shape[1] - n :] = batch[key][row, :n]
        out[key] = padded
    return out


def per_row_logits(model, prompts, rows):
    collate = CausalLMCollator(pad_token_id=2)
    return torch.cat([run(model, prompts, collate([row])).target_logits for row in rows])


# --- (a) against a manual reference -------------------------------------------------------------------


def test_target_logits_and_loss_match_a_manual_concatenated_forward(setup):
    model, _, prompts = setup
    rows = make_rows([(6, 4), (3, 7), (8, 2)])  # equal widths: no padding at all
    batch = CausalLMCollator(pad_token_id=2)(rows)
    out = run(model, prompts, batch)

    prompt = prompts(batch["task_ids"])
    embeds = torch.cat([prompt, model.get_input_embeddings()(batch["input_ids"])], dim=1)
    full_labels = F.pad(batch["labels"], (PROMPT_LENGTH, 0), value=IGNORE_INDEX)
    reference = model(inputs_embeds=embeds, labels=full_labels)
    logits = reference.logits  # [B, l + T, V]
    expected_logits, expected_tokens = [], []
    for row in range(len(rows)):
        for j in range(full_labels.shape[1] - 1):  # position j predicts token j + 1
            if full_labels[row, j + 1] != IGNORE_INDEX:
                expected_logits.append(logits[row, j])
                expected_tokens.append(full_labels[row, j + 1])
    expected_logits, expected_tokens = torch.stack(expected_logits), torch.stack(expected_tokens)

    assert torch.equal(out.target_labels, expected_tokens)
    assert out.target_labels.tolist() == [t for r in rows for t in r["target_ids"]]
    torch.testing.assert_close(out.target_logits, expected_logits, atol=ATOL, rtol=1e-5)
    manual_loss = F.cross_entropy(expected_logits.float(), expected_tokens)
    torch.testing.assert_close(out.loss, manual_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, reference.loss, atol=1e-5, rtol=1e-5)  # HF's own shifted loss
    assert out.loss.dtype == torch.float32


# --- (b) target-only logits ---------------------------------------------------------------------------


def test_logits_only_at_target_positions(setup):
    model, _, prompts = setup
    rows = make_rows(SHORT)
    batch = CausalLMCollator(pad_token_id=2)(rows)
    n_targets = int((batch["labels"] != IGNORE_INDEX).sum())
    _, head = decoder_and_head(model)
    seen = []
    hook = head.register_forward_hook(lambda module, args, output: seen.append((args[0].shape, output.shape)))
    try:
        out = run(model, prompts, batch)
    finally:
        hook.remove()
    vocab = model.config.vocab_size
    assert out.target_logits.shape == (n_targets, vocab) and out.target_labels.shape == (n_targets,)
    assert n_targets == sum(t for _, t in SHORT)
    # the LM head ran once, on the N gathered hidden states: no [B, l + T, V] tensor was built
    assert seen == [(torch.Size([n_targets, model.config.hidden_size]), torch.Size([n_targets, vocab]))]
    width = PROMPT_LENGTH + batch["input_ids"].shape[1]
    assert out.token_mask.shape == (len(rows), width)
    assert out.token_mask[:, :PROMPT_LENGTH].sum() == 0
    assert torch.equal(out.token_mask[:, PROMPT_LENGTH:], batch["attention_mask"])
    assert out.hidden_states == []


def test_hidden_states_are_returned_on_request(setup):
    model, _, prompts = setup
    batch = CausalLMCollator(pad_token_id=2)(make_rows(SHORT[:2]))
    out = prompted_forward(
        model, batch["input_ids"], batch["attention_mask"], batch["labels"], prompts(batch["task_ids"]), (0, -1)
    )
    width = PROMPT_LENGTH + batch["input_ids"].shape[1]
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, width, model.config.hidden_size)] * 2
    assert torch.equal(out.hidden_states[0][:, :PROMPT_LENGTH], prompts(batch["task_ids"]))


def test_no_prompt_scores_the_plain_sequence(setup):
    model, _, _ = setup
    batch = CausalLMCollator(pad_token_id=2)(make_rows([(5, 3)]))
    out = prompted_forward(model, batch["input_ids"], batch["attention_mask"], batch["labels"], None)
    logits = model(input_ids=batch["input_ids"]).logits[0, 4:7]
    torch.testing.assert_close(out.target_logits, logits, atol=ATOL, rtol=1e-5)


# --- (c) padding invariance ---------------------------------------------------------------------------


def test_right_padding_equals_no_padding(setup):
    model, _, prompts = setup
    rows = make_rows(LONG)
    batch = CausalLMCollator(pad_token_id=2)(rows)
    assert batch["attention_mask"].min() == 0  # the batch is really padded
    torch.testing.assert_close(
        run(model, prompts, batch).target_logits, per_row_logits(model, prompts, rows), atol=ATOL, rtol=0
    )


def test_left_padding_equals_no_padding(setup):
    model, _, prompts = setup
    rows = make_rows(SHORT)
    batch = left_pad(CausalLMCollator(pad_token_id=2)(rows))
    assert batch["attention_mask"][:, 0].min() == 0
    torch.testing.assert_close(
        run(model, prompts, batch).target_logits, per_row_logits(model, prompts, rows), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize(
    "backbone",
    ["tiny-llama", "tiny-gpt-oss"],
)
def test_left_padding_equals_no_padding_beyond_the_sliding_window(backbone):
    model, _ = load_backbone(backbone)
    model = sharpen(model.eval().requires_grad_(False))
    prompts = SoftPrompt(2, PROMPT_LENGTH, model.config.hidden_size)
    prompts.initialize("sample_vocab", model.get_input_embeddings().weight, seed=1)
    rows = make_rows(LONG)
    batch = left_pad(CausalLMCollator(pad_token_id=2)(rows))
    torch.testing.assert_close(
        run(model, prompts, batch).target_logits, per_row_logits(model, prompts, rows), atol=ATOL, rtol=0
    )


def test_naive_left_padding_is_caught(setup):
    # the layout peft#1093 describes, [prompt, pads, tokens] with positions 0..T-1 over the pads, must be far
    # outside ATOL, or the padding tests above prove nothing
    model, _, prompts = setup
    rows = make_rows(SHORT)
    batch = left_pad(CausalLMCollator(pad_token_id=2)(rows))
    prompt = prompts(batch["task_ids"])
    embeds = torch.cat([prompt, model.get_input_embeddings()(batch["input_ids"])], dim=1)
    mask = torch.cat([torch.ones(prompt.shape[:2], dtype=torch.long), batch["attention_mask"]], dim=1)
    logits = model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=torch.arange(mask.shape[1]).expand_as(mask)
    ).logits
    good = run(model, prompts, batch)
    labels = torch.nn.functional.pad(batch["labels"], (PROMPT_LENGTH, 0), value=-100)[:, 1:]
    naive = logits[:, :-1][labels != -100]
    gap = (naive - good.target_logits).abs().max()
    assert gap > 1000 * ATOL


# --- (d) batched generation -----------------------------------------------------------------------------


def generate_rows(model, tokenizer, prompts, rows, max_new_tokens=8):
    batch = CausalLMCollator(pad_token_id=tokenizer.pad_token_id, eval_mode=True)(rows)
    batched = generate(
        model,
        batch["prompt_input_ids"],
        batch["prompt_attention_mask"],
        prompts(batch["task_ids"]),
        max_new_tokens,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    single = []
    for row in rows:
        ids = torch.tensor([row["prompt_ids"]])
        single += generate(
            model,
            ids,
            torch.ones_like(ids),
            prompts(torch.tensor([row["task_id"]])),
            max_new_tokens,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
        )
    return batched, single


def test_batched_left_padded_generation_equals_per_row_generation(setup):
    model, tokenizer, prompts = setup
    rows = make_rows(SHORT)
    batched, single = generate_rows(model, tokenizer, prompts, rows)
    assert batched == single
    assert all(len(r) == 8 for r in single)  # no eos in a random model's 8 tokens: nothing cut
    assert len({tuple(r) for r in single}) == len(rows) and len({t for r in single for t in r}) > 8


@pytest.mark.parametrize(
    "backbone",
    ["tiny-llama", "tiny-gpt-oss"],
)
def test_batched_generation_beyond_the_sliding_window(backbone):
    model, tokenizer = load_backbone(backbone)
    model = sharpen(model.eval().requires_grad_(False))
    prompts = SoftPrompt(2, PROMPT_LENGTH, model.config.hidden_size)
    prompts.initialize("sample_vocab", model.get_input_embeddings().weight, seed=1)
    batched, single = generate_rows(model, tokenizer, prompts, make_rows(LONG))
    assert batched == single


def test_generation_stops_at_eos(setup, monkeypatch):
    model, tokenizer, prompts = setup
    rows = make_rows(SHORT[:2])
    _, single = generate_rows(model, tokenizer, prompts, rows, max_new_tokens=4)
    first = single[0][0]  # pretend the first generated token of row 0 is the end of sequence
    batch = CausalLMCollator(pad_token_id=tokenizer.pad_token_id, eval_mode=True)(rows)
    out = generate(
        model, batch["prompt_input_ids"], batch["prompt_attention_mask"], prompts(batch["task_ids"]), 4, first, 2
    )
    assert out[0] == []
    expected = single[1][: single[1].index(first)] if first in single[1] else single[1]
    assert out[1] == expected


# --- per-task loss weighting -------------------------------------------------------------------------


def test_task_balanced_weights_average_per_task_then_by_row_count():
    from metaprompt.forward.prompted import task_balanced_weights

    # task 0: two rows with 1 and 3 target tokens; task 1: one row with 8 target tokens
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, :1], mask[1, :3], mask[2, :8] = True, True, True
    w = task_balanced_weights(mask, torch.tensor([0, 0, 1]))
    assert w.sum().item() == pytest.approx(1.0)
    assert w[0, 0].item() == pytest.approx(2 / 3 / 4) and w[1, 0].item() == pytest.approx(2 / 3 / 4)
    assert w[2, 0].item() == pytest.approx(1 / 3 / 8)
    assert w[~mask].abs().sum() == 0
    # one task: the plain token mean
    torch.testing.assert_close(task_balanced_weights(mask, torch.tensor([1, 1, 1])), mask.float() / mask.sum())


@pytest.mark.parametrize("fused", [True, False])
def test_loss_averages_per_task_first_so_long_targets_do_not_dominate(setup, fused):
    model, _, prompts = setup
    rows = make_rows([(5, 1), (6, 40), (7, 2), (8, 3)])  # task 0: 1 + 2 targets; task 1: 40 + 3 targets
    batch = CausalLMCollator(pad_token_id=2)(rows)
    out = prompted_forward(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["labels"],
        prompts(batch["task_ids"]),
        task_ids=batch["task_ids"],
        need_logits=not fused,
    )
    logits = per_row_logits(model, prompts, rows)
    labels = torch.cat([torch.tensor(r["target_ids"]) for r in rows])
    per_token = F.cross_entropy(logits, labels, reduction="none")
    task0 = torch.cat([per_token[:1], per_token[41:43]]).mean()
    task1 = torch.cat([per_token[1:41], per_token[43:]]).mean()
    torch.testing.assert_close(out.loss, (task0 + task1) / 2, atol=1e-5, rtol=1e-5)
    assert abs(out.loss.item() - per_token.mean().item()) > 1e-4  # not the token mean
    torch.testing.assert_close(out.target_weights.sum(), torch.tensor(1.0))
