"""Backbone calls with a prompt in front: target-only logits for training, greedy generation for eval.

Two fast paths, each switchable through :class:`~metaprompt.forward.FastPaths` (same results either way):

* target-only logits: the decoder's hidden states are gathered at the N positions that predict a target
  token ``[N, d]`` before the LM head, so a 128k-vocabulary model (LLaMA 3) never materialises
  ``[B, l + T, V]`` logits for prompt and input positions;
* shared prefix (``metaprompt.forward.prefix``): each distinct task's prompt runs through the backbone
  once per batch and rows attend to it as a KV cache, instead of ``[prompt, row]`` for every row.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metaprompt.data.collate import IGNORE_INDEX
from metaprompt.forward.checkpointing import reading_cache, set_activation_checkpointing, writing_cache
from metaprompt.forward.decode import StopStrings, greedy_steps, prefill
from metaprompt.forward.fused_loss import frozen_head_cross_entropy, fusable
from metaprompt.forward.inject import positions_from_mask, prepend_prompt
from metaprompt.forward.options import FastPaths
from metaprompt.forward.prefix import (
    distinct_prompts,
    for_rows,
    has_sliding_layers,
    rows_cache,
    run_prefix,
    supports_shared_prefix,
)
from metaprompt.forward.prefix_memo import memo_of


@dataclass
class ForwardOut:
    """What a prompted forward returns.

    Attributes:
        target_logits: ``[N, V]`` logits at the N positions that predict a target token (None when the
            caller asked for the loss only and the fused loss computed it without them).
        target_labels: ``[N]`` the tokens they predict.
        loss: Cross-entropy over the N target tokens (fp32), averaged per task first (``target_weights``).
        hidden_states: Selected layers' hidden states ``[B, l + T, d]`` (empty unless requested).
        token_mask: ``[B, l + T]`` 1 on real input/target tokens (prompt and padding excluded).
        target_weights: ``[N]`` weight of each target token in ``loss`` (sums to 1), for losses that must
            weight tokens the same way (distillation KL).
        token_weights: ``[B, l + T]`` the same per-task weighting over ``token_mask`` (sums to 1), for
            the hidden-state MSE.
        target_hidden: ``[N, d]`` final hidden states at the N target-predicting positions, set only when
            the caller asked for them instead of the head (``target_hidden=True``: ``target_logits`` and
            ``loss`` are then None and the caller runs a fused loss, e.g. the distillation KL).
    """

    target_logits: torch.Tensor | None
    target_labels: torch.Tensor
    loss: torch.Tensor | None
    hidden_states: list[torch.Tensor]
    token_mask: torch.Tensor
    target_weights: torch.Tensor | None = None
    token_weights: torch.Tensor | None = None
    target_hidden: torch.Tensor | None = None


def task_balanced_weights(mask: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
    """Weights over the positions of ``mask`` that average per task first, then over tasks by row count.

    A plain mean over target tokens lets tasks with long targets (summaries, entity lists) dominate the
    gradient of a shared prompt. Here each task's positions share the weight ``rows_t / B`` equally,
    so a task counts as often as the sampler put it in the batch, however long its targets are. With one
    task in the batch (or ``task_ids`` None) this is the plain mean.

    Args:
        mask: ``[B, T]`` positions that count (bool or 0/1).
        task_ids: ``[B]`` task of each row.

    Returns:
        ``[B, T]`` fp32 weights, zero off the mask, summing to 1 (0 everywhere when the mask is empty).
    """
    keep = mask.bool()
    per_row = keep.sum(1).float()  # [B]
    if task_ids is None:
        task_ids = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    has = per_row > 0
    inverse = torch.unique(task_ids, return_inverse=True)[1]  # [B] dense task index
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    rows_per_task = torch.zeros(n_groups, device=mask.device).index_add_(0, inverse, has.float())
    tokens_per_task = torch.zeros(n_groups, device=mask.device).index_add_(0, inverse, per_row)
    n_rows = has.sum().clamp(min=1).float()
    row_weight = torch.where(
        has, rows_per_task[inverse] / n_rows / tokens_per_task[inverse].clamp(min=1), torch.zeros_like(per_row)
    )
    return keep.float() * row_weight[:, None]


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body (returns hidden states) and the LM head of an HF causal LM (also PEFT-wrapped)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings()


def uses_shared_prefix(
    model: torch.nn.Module, prompt, task_ids, fast: FastPaths, attention_mask: torch.Tensor | None = None
) -> bool:
    """Whether this call takes the shared-prefix path (else: the prompt is concatenated to every row).

    Falls back when it is off, there is no prompt or no task ids, the backbone's cache layers are not
    plain attention, or rows are left-padded on a backbone with sliding-window layers (see ``prefix.py``).
    """
    if not fast.shared_prefix or prompt is None or task_ids is None:
        return False
    decoder, _ = decoder_and_head(model)
    if not hasattr(decoder, "_metaprompt_prefix"):  # depends on the config only: ask once per model
        decoder._metaprompt_prefix = (supports_shared_prefix(decoder), has_sliding_layers(decoder))
    supported, sliding = decoder._metaprompt_prefix
    left_padded = attention_mask is not None and bool((attention_mask[:, 0] == 0).any())
    return supported and not (sliding and left_padded)


def _autocast(fast: FastPaths, device: torch.device):
    if not fast.bf16_autocast:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def rows_with_prefix(
    model, input_ids, attention_mask, prompt, task_ids, want_hidden: bool, read_only: bool, reuse: bool
):
    """Prefix pass over the distinct prompts, then the rows attending to it.

    Returns:
        ``(prefix, rows, out, mask)``: the :class:`~metaprompt.forward.prefix.Prefix`, each row's prefix
        index ``[B]``, the row pass's decoder output, and the ``[B, l + T]`` mask (prefix + rows).
    """
    decoder, _ = decoder_and_head(model)
    distinct = distinct_prompts(prompt, task_ids)
    with writing_cache(decoder):
        if reuse and not (torch.is_grad_enabled() and distinct.prompts.requires_grad):
            prefix = memo_of(decoder).prefix(decoder, distinct.prompts, want_hidden)
        else:
            prefix = run_prefix(decoder, distinct.prompts, want_hidden)
    cache = rows_cache(prefix, distinct.rows, read_only=read_only)
    mask = torch.cat([attention_mask.new_ones(prompt.shape[:2]), attention_mask], dim=1)
    positions = positions_from_mask(mask)[:, prompt.shape[1] :]
    with reading_cache(decoder) if read_only else contextlib.nullcontext():
        out = decoder(
            inputs_embeds=model.get_input_embeddings()(input_ids),
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            output_hidden_states=want_hidden,
        )
    return prefix, distinct.rows, out, mask


def prompted_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    prompt: torch.Tensor | None,
    hidden_layers: tuple[int, ...] = (),
    task_ids: torch.Tensor | None = None,
    fast: FastPaths | dict | None = None,
    need_logits: bool = True,
    target_hidden: bool = False,
) -> ForwardOut:
    """Run the backbone on ``[prompt, input]`` and score the target tokens only.

    Args:
        model: HF causal LM (frozen).
        input_ids: ``[B, T]`` right-padded prompt+target tokens.
        attention_mask: ``[B, T]``.
        labels: ``[B, T]`` target tokens, IGNORE_INDEX elsewhere.
        prompt: ``[B, l, d]`` soft prompts (backbone dtype), or None (e.g. LoRA).
        hidden_layers: Indices into the decoder's ``hidden_states`` tuple to return (``-1`` = last).
        task_ids: ``[B]`` task of each row: rows of a task share one prompt prefix (without them, or with
            ``fast.shared_prefix`` off, the prompt is concatenated to every row).
        fast: :class:`FastPaths` switches (default: all exact speed-ups on).
        need_logits: False when only the loss is used: ``fast.fused_loss`` may then skip the logits.
        target_hidden: Skip the LM head altogether and return the ``[N, d]`` final hidden states at the
            target-predicting positions (``ForwardOut.target_hidden``; no logits, no loss), for a caller
            that fuses its own loss with the frozen head (``forward.fused_loss.frozen_head_distillation``).
    """
    fast = FastPaths.from_config(fast)
    decoder, head = decoder_and_head(model)
    set_activation_checkpointing(model, fast.activation_checkpointing)
    n_prompt = 0 if prompt is None else prompt.shape[1]
    want_hidden = bool(hidden_layers)
    with _autocast(fast, input_ids.device):
        if uses_shared_prefix(model, prompt, task_ids, fast, attention_mask):
            prefix, rows, out, _ = rows_with_prefix(
                model, input_ids, attention_mask, prompt, task_ids, want_hidden, True, fast.reuse_prefix
            )
            # the last prompt position predicts each row's first token: keep it in front of the rows
            last = torch.cat([for_rows(prefix.last_hidden[:, -1:], rows), out.last_hidden_state], dim=1)
            offset = 1
            hidden_states = [
                torch.cat([for_rows(prefix.hidden_states[i], rows), out.hidden_states[i]], dim=1) for i in hidden_layers
            ]
        else:
            inputs = prepend_prompt(model.get_input_embeddings(), input_ids, attention_mask, prompt)
            out = decoder(**inputs.as_kwargs(), use_cache=False, output_hidden_states=want_hidden)
            last, offset = out.last_hidden_state, n_prompt
            hidden_states = [out.hidden_states[i] for i in hidden_layers]
        # position j predicts token j+1
        next_labels = F.pad(labels, (offset, 0), value=IGNORE_INDEX)[:, 1:]
        select = next_labels != IGNORE_INDEX
        target_labels = next_labels[select]
        target_weights = task_balanced_weights(select, task_ids)[select]
        fused = fast.fused_loss and fast.target_only_logits and not need_logits and fusable(head)
        token_mask = F.pad(attention_mask, (n_prompt, 0), value=0)
        token_weights = task_balanced_weights(token_mask, task_ids) if want_hidden else None
        if target_hidden:
            hidden = last[:, :-1][select]
            return ForwardOut(
                None, target_labels, None, hidden_states, token_mask, target_weights, token_weights, hidden
            )
        if fused and target_labels.numel() > 0:
            hidden = last[:, :-1][select]
            logits, loss = None, frozen_head_cross_entropy(hidden, head.weight, target_labels, target_weights)
        elif fast.target_only_logits:
            logits = head(last[:, :-1][select])
        else:
            logits = head(last)[:, :-1][select]
    if logits is not None:
        per_token = F.cross_entropy(logits.float(), target_labels, reduction="none")
        loss = (per_token * target_weights).sum()
    return ForwardOut(logits, target_labels, loss, hidden_states, token_mask, target_weights, token_weights)


def _strip(sequences: list[list[int]], eos_token_id: int) -> list[list[int]]:
    return [seq[: seq.index(eos_token_id)] if eos_token_id in seq else seq for seq in sequences]


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    prompt: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    synced_gpus: bool = False,
    task_ids: torch.Tensor | None = None,
    fast: FastPaths | dict | None = None,
    stop: StopStrings | None = None,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch with soft prompts in front (``forward.decode``).

    Args:
        prompt_input_ids: ``[B, T]`` left-padded chat-formatted prompts.
        prompt_attention_mask: ``[B, T]``.
        prompt: ``[B, l, d]`` soft prompts (backbone dtype), or None.
        task_ids: ``[B]`` task of each row; with ``fast.shared_prefix`` the prompts run once per task.
        stop: Per-row stop strings (the caller cuts the text at them).

    Returns:
        Per row, the generated token ids up to (not including) the first end-of-sequence token. The same
        tokens as HF ``generate`` (greedy) on ``[prompt, row]``; backbones whose cache layers are not plain
        attention use HF ``generate`` itself (without ``stop``).
    """
    fast = FastPaths.from_config(fast)
    decoder, head = decoder_and_head(model)
    with _autocast(fast, prompt_input_ids.device):
        if uses_shared_prefix(model, prompt, task_ids, fast, prompt_attention_mask):
            _, _, out, mask = rows_with_prefix(
                model, prompt_input_ids, prompt_attention_mask, prompt, task_ids, False, False, fast.reuse_prefix
            )
        elif supports_shared_prefix(decoder):  # plain attention cache layers: our loop is exact
            out, mask = prefill(model, prompt_input_ids, prompt_attention_mask, prompt, decoder)
        else:
            inputs = prepend_prompt(model.get_input_embeddings(), prompt_input_ids, prompt_attention_mask, prompt)
            ids = model.generate(
                inputs_embeds=inputs.inputs_embeds,
                attention_mask=inputs.attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos_token_id,
                pad_token_id=pad_token_id,
                synced_gpus=synced_gpus,
            )
            return _strip(ids.tolist(), eos_token_id)
        return greedy_steps(
            decoder,
            head,
            out.cache,
            mask,
            out.last_hidden_state[:, -1],
            max_new_tokens,
            eos_token_id,
            pad_token_id,
            synced_gpus=synced_gpus,
            stop=stop,
            drop_finished=fast.drop_finished_rows,
        )
