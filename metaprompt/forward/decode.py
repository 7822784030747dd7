"""Greedy decoding for evaluation: one KV cache, the task prefix once, finished rows leave the batch.

HF ``generate`` keeps every row of a batch in every step until the last row stops, so a batch whose
rows answer in 3 tokens but one rambles to the budget pays the budget for all of them. Here a row that
emits the end token (or, with ``stop_strings``, whose text contains a stop string) is dropped from the
batch: its cache rows, mask and position are removed (``Cache.batch_select_indices``) and the next step
runs on the live rows only. Same tokens as plain greedy decoding (``argmax`` every step), because each
row's computation never depends on the other rows (tests compare against HF ``generate``).

The prefill is either the shared task prefix (``forward.prefix``: each distinct task's soft prompt runs
once, rows attend to it) or ``[prompt, row]`` concatenation (``inject.prepend_prompt``: pads moved in
front of the prompt), or the plain row when there is no prompt (backbone zero-shot, LoRA).

Under sharded weights (ZeRO-3, FSDP2; ``synced_gpus``) every forward all-gathers the weights, so every
rank must run as many steps as the slowest: rows are then kept (finished ones fed padding) until all
ranks are done, as HF's ``synced_gpus`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from metaprompt.forward.inject import positions_from_mask, prepend_prompt


class ReservedLayer(DynamicLayer):
    """A full-attention cache layer with room reserved for the tokens still to come.

    transformers' ``DynamicLayer`` concatenates its keys and values with each new token, copying the
    whole cache of every layer at every decoding step (the profile of ``bench.profile --decode``: a
    quarter of a step on CPU). Here the prefill's keys/values are copied once into buffers with room for
    ``extra`` more positions, each step writes its token in place, and ``keys``/``values`` are views of
    the filled part, so attention sees exactly what ``DynamicLayer`` would give it.
    """

    @classmethod
    def reserve(cls, layer: DynamicLayer, extra: int) -> ReservedLayer:
        new = cls.__new__(cls)
        new.__dict__.update(layer.__dict__)
        b, h, n, d = layer.keys.shape
        new._k = layer.keys.new_empty(b, h, n + extra, d)
        new._v = layer.values.new_empty(b, h, n + extra, d)
        new._k[:, :, :n], new._v[:, :, :n] = layer.keys, layer.values
        new._n = n
        new.keys, new.values = new._k[:, :, :n], new._v[:, :, :n]
        return new

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self._n + new > self._k.shape[-2]:  # out of room (a longer run than reserved): grow as usual
            self._k = torch.cat([self._k[:, :, : self._n], key_states], dim=-2)
            self._v = torch.cat([self._v[:, :, : self._n], value_states], dim=-2)
        else:
            self._k[:, :, self._n : self._n + new] = key_states
            self._v[:, :, self._n : self._n + new] = value_states
        self._n += new
        self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]


def reserve_room(cache, extra: int) -> None:
    """Swap each plain full-attention layer of ``cache`` for a :class:`ReservedLayer` with ``extra`` free
    positions (sliding-window and other layers are left as they are)."""
    cache.layers = [
        ReservedLayer.reserve(layer, extra) if type(layer) is DynamicLayer and layer.is_initialized else layer
        for layer in cache.layers
    ]


def any_rank_running(running: bool, device: torch.device) -> bool:
    """All-reduce of "this rank still decodes" (``synced_gpus``): True while any rank is not finished."""
    flag = torch.tensor(1.0 if running else 0.0, device=device)
    torch.distributed.all_reduce(flag)
    return flag.item() > 0


class StopStrings:
    """Per-row text stop condition: a row is finished once its decoded text contains a stop string.

    Args:
        decode: Token ids -> text (the tokenizer's ``decode`` with special tokens skipped).
        strings: Per row, its stop strings (empty: the end token only).

    Only the last ``window`` tokens are decoded each step (``window`` = the longest stop string in
    characters + 1, since every token decodes to at least one character or to nothing), so the check
    costs O(window) per row and step, not O(generated length).
    """

    def __init__(self, decode: Callable[[list[int]], str], strings: Sequence[Sequence[str]]):
        self.decode = decode
        self.strings = [tuple(s for s in row if s) for row in strings]
        self.window = max((len(s) for row in self.strings for s in row), default=0) + 1

    def __call__(self, row: int, tokens: list[int]) -> bool:
        if not self.strings[row]:
            return False
        text = self.decode(tokens[-self.window :])
        return any(s in text for s in self.strings[row])

    def cut(self, row: int, text: str) -> str:
        """``text`` up to (without) the first stop string of ``row``."""
        found = [text.index(s) for s in self.strings[row] if s in text]
        return text[: min(found)] if found else text


@torch.no_grad()
def prefill(model: torch.nn.Module, input_ids, attention_mask, prompt, decoder) -> tuple:
    """``[pads, prompt, row]`` through the decoder with a fresh cache (no shared prefix).

    Returns:
        ``(out, mask)``: the decoder output (``cache`` filled) and the ``[B, l + T]`` attention mask.
    """
    inputs = prepend_prompt(model.get_input_embeddings(), input_ids, attention_mask, prompt)
    cache = DynamicCache(config=decoder.config)
    out = decoder(**inputs.as_kwargs(), cache=cache, use_cache=True)
    return out, inputs.attention_mask


@torch.no_grad()
def greedy_steps(
    decoder: torch.nn.Module,
    head: torch.nn.Module,
    cache,
    mask: torch.Tensor,
    hidden: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    synced_gpus: bool = False,
    stop: StopStrings | None = None,
    drop_finished: bool = True,
) -> list[list[int]]:
    """Greedy steps after a prefill, dropping finished rows from the batch.

    Args:
        decoder: The transformer body (``forward.prompted.decoder_and_head``).
        head: The LM head.
        cache: The prefill's KV cache (modified in place).
        mask: ``[B, S]`` attention mask of the prefill (prefix + rows).
        hidden: ``[B, d]`` the prefill's last hidden state per row (predicts the first new token).
        max_new_tokens: Budget per row.
        eos_token_id: End token (not included in the output; -1: none).
        pad_token_id: Fed for finished rows while they stay in the batch.
        synced_gpus: Keep every row and step until all ranks are done (see module docstring).
        stop: Text stop condition per row (the stop string stays in the output; cut it with
            :meth:`StopStrings.cut` after decoding).
        drop_finished: Remove finished rows from the batch (off, or under ``synced_gpus``: they stay,
            fed padding, as in HF ``generate``; same tokens either way).

    Returns:
        Per row, its generated ids up to (not including) the end token.
    """
    drop = drop_finished and not synced_gpus
    if max_new_tokens > 1:
        reserve_room(cache, max_new_tokens - 1)
    out_ids: list[list[int]] = [[] for _ in range(hidden.shape[0])]
    live = list(range(hidden.shape[0]))  # original row of each row in the batch
    finished = [False] * len(live)  # per row in the batch (all False when finished rows are dropped)
    position = positions_from_mask(mask)[:, -1:]
    step = 0
    while True:  # under synced_gpus a rank past its budget keeps stepping until every rank is done
        token = head(hidden).argmax(-1)  # [b]
        for i, t in enumerate(token.tolist()):
            if finished[i] or step >= max_new_tokens or t == eos_token_id:
                finished[i] = True
            else:
                out_ids[live[i]].append(t)
                finished[i] = stop is not None and stop(live[i], out_ids[live[i]])
        running = step < max_new_tokens - 1 and not all(finished)
        if not (any_rank_running(running, hidden.device) if synced_gpus else running):
            break
        if drop and any(finished):  # the finished rows leave the batch: cache, mask, position, token
            keep = torch.tensor([i for i, f in enumerate(finished) if not f], device=hidden.device)
            cache.batch_select_indices(keep)
            mask, position, token = mask[keep], position[keep], token[keep]
            live = [live[i] for i in keep.tolist()]
            finished = [False] * len(live)
        elif any(finished):
            token = token.masked_fill(torch.tensor(finished, device=token.device), pad_token_id)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        position = position + 1
        out = decoder(input_ids=token[:, None], attention_mask=mask, position_ids=position, cache=cache, use_cache=True)
        hidden = out.last_hidden_state[:, -1]
        step += 1
    return out_ids
