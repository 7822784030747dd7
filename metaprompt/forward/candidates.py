"""Log-probs of candidate answers for ranked scoring: the task prefix once, each context once.

Ranked scoring (``metaprompt.evaluation.ranking``) asks for ``log p(candidate | prompt, context)`` of
every allowed answer of an example. Concatenating ``[prompt, context, candidate]`` per candidate runs
the soft prompt and the context (the long parts) once per candidate. Here:

1. the soft prompt of each distinct task runs once (the shared prefix, ``forward.prefix``; the memo
   reuses it across calls), or is prepended to each context where that path does not apply;
2. each example's context runs once, attending to its task's prefix, into a KV cache;
3. all candidates of the call run in one pass, each attending to its example's cache.

Same layout, masks and positions as the concatenation, so the same log-probs up to float rounding
(tested against one full forward per candidate).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from metaprompt.forward.inject import positions_from_mask, prepend_prompt
from metaprompt.forward.options import FastPaths
from metaprompt.forward.prefix import Prefix, rows_cache
from metaprompt.forward.prompted import _autocast, decoder_and_head, rows_with_prefix, uses_shared_prefix


def _left_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(c) for c in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, c in enumerate(seqs):  # every context ends where its candidates start
        ids[i, width - len(c) :] = torch.tensor(c)
        mask[i, width - len(c) :] = 1
    return ids, mask


def _right_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(t) for t in seqs)
    ids = torch.full((len(seqs), length), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, t in enumerate(seqs):  # pads after the answer are never attended to
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    return ids, mask


@torch.no_grad()
def candidate_logprobs(
    model: torch.nn.Module,
    contexts: list[list[int]],
    prompt: torch.Tensor | None,
    candidates: list[list[list[int]]],
    pad_token_id: int,
    fast: FastPaths | dict | None = None,
    task_ids: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Log-probs of each example's candidate answers (see the module docstring).

    Args:
        model: HF causal LM (also PEFT-wrapped); its cache layers must be plain attention
            (``prefix.supports_shared_prefix``), else the caller concatenates.
        contexts: Per example, the context token ids (the chat-formatted prompt).
        prompt: ``[E, l, d]`` per-example soft prompts (backbone dtype), or None.
        candidates: Per example, its candidates' token ids (each ending with the end-of-answer token).
        pad_token_id: Padding id.
        fast: :class:`FastPaths` (``shared_prefix``, ``reuse_prefix``, ``bf16_autocast`` apply).
        task_ids: ``[E]`` task of each example: examples of a task share one prefix pass (without them the
            prompt is prepended to every context).

    Returns:
        One ``[n_i]`` float32 CPU tensor of token log-probs per candidate, examples and candidates in order.
    """
    fast = FastPaths.from_config(fast)
    decoder, head = decoder_and_head(model)
    embed = model.get_input_embeddings()
    device = embed.weight.device
    ids, mask = (t.to(device) for t in _left_padded(contexts, pad_token_id))
    flat = [t for per in candidates for t in per]
    rows = torch.tensor([i for i, per in enumerate(candidates) for _ in per], device=device)
    cand, cand_mask = (t.to(device) for t in _right_padded(flat, pad_token_id))
    with _autocast(fast, device):
        if task_ids is not None and uses_shared_prefix(model, prompt, task_ids.to(device), fast, mask):
            _, _, ctx, ctx_mask = rows_with_prefix(
                model, ids, mask, prompt, task_ids.to(device), False, False, fast.reuse_prefix
            )
            last_position = positions_from_mask(ctx_mask)[:, -1:]
        else:
            inputs = prepend_prompt(embed, ids, mask, prompt)
            ctx = decoder(**inputs.as_kwargs(), cache=DynamicCache(config=decoder.config), use_cache=True)
            ctx_mask, last_position = inputs.attention_mask, inputs.position_ids[:, -1:]
        rows_kv = rows_cache(Prefix(ctx.cache, ctx.last_hidden_state, ()), rows, read_only=True)
        full_mask = torch.cat([ctx_mask.index_select(0, rows), cand_mask], dim=1)
        positions = last_position.index_select(0, rows) + 1 + torch.arange(cand.shape[1], device=device)
        out = decoder(
            inputs_embeds=embed(cand), attention_mask=full_mask, position_ids=positions, cache=rows_kv, use_cache=True
        )
        # the context's last position predicts each candidate's first token; candidate j predicts j+1
        predict = torch.cat([ctx.last_hidden_state[:, -1:].index_select(0, rows), out.last_hidden_state[:, :-1]], 1)
        select = cand_mask.bool()
        logits = head(predict[select])
    logp = torch.log_softmax(logits.float(), dim=-1).gather(1, cand[select][:, None]).squeeze(1)
    return list(logp.cpu().split([len(t) for t in flat]))
