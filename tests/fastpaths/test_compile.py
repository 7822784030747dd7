"""The ``compile`` switch: torch.compile of RMSNorms and dense MLPs gives eager's logits, loss and
prompt gradients (float rounding), touches only those blocks, and switches back off cleanly."""

from __future__ import annotations

import pytest
import torch

from metaprompt.backbones import load_backbone
from metaprompt.fastpaths.compile import compile_targets, set_compiled
from metaprompt.modules.forward import generate, prompted_forward


def _batch(width: int = 20) -> dict:
    g = torch.Generator().manual_seed(width)
    ids = torch.randint(10, 5000, (3, width), generator=g)
    mask = (torch.arange(width)[None] < torch.tensor([[width], [width - 5], [width - 2]])).long()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :8] = -100
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask, "labels": labels}


def _loss_and_grad(model, batch, prompts, task_ids, fast):
    prompts.grad = None
    out = prompted_forward(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["labels"],
        prompts[task_ids],
        task_ids=task_ids,
        fast=fast,
    )
    out.loss.backward()
    return out, prompts.grad.clone()


def test_targets_are_norms_and_dense_mlps_only():
    llama, _ = load_backbone("tiny-llama")
    names = {type(m).__name__ for m in compile_targets(llama)}
    assert names == {"LlamaRMSNorm", "LlamaMLP"}
    n_layers = llama.config.num_hidden_layers
    assert len(compile_targets(llama)) == 3 * n_layers + 1  # 2 norms + 1 MLP per layer, final norm
    gpt_oss, _ = load_backbone("tiny-gpt-oss")
    assert {type(m).__name__ for m in compile_targets(gpt_oss)} == {"GptOssRMSNorm"}  # the MoE stays eager


@pytest.mark.slow
def test_compiled_step_matches_eager_and_switches_back():
    torch._dynamo.reset()
    model, tokenizer = load_backbone("tiny-llama")
    model.train()
    prompts = torch.randn(2, 6, model.config.hidden_size, requires_grad=True)
    task_ids = torch.tensor([0, 1, 0])
    batch = _batch()
    ref, ref_grad = _loss_and_grad(model, batch, prompts, task_ids, None)
    out, grad = _loss_and_grad(model, batch, prompts, task_ids, {"compile": True})
    assert all(m._compiled_call_impl is not None for m in compile_targets(model))
    torch.testing.assert_close(out.target_logits, ref.target_logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    # generation with compiled blocks decodes the same tokens (new shapes: a recompile, not an error)
    model.eval()
    lengths = batch["attention_mask"].sum(1)
    left = torch.stack([torch.roll(row, int(row.numel() - n)) for row, n in zip(batch["input_ids"], lengths)])
    left_mask = torch.stack([torch.roll(row, int(row.numel() - n)) for row, n in zip(batch["attention_mask"], lengths)])
    args = (model, left, left_mask, prompts[task_ids].detach(), 4, -1, tokenizer.pad_token_id)
    assert generate(*args, task_ids=task_ids, fast={"compile": True}) == generate(*args, task_ids=task_ids)
    set_compiled(model, False)
    assert all(m._compiled_call_impl is None for m in compile_targets(model))
    assert not model._metaprompt_compiled
