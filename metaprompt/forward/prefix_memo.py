"""Reuse of a frozen prompt's prefix keys/values across calls (generation, evaluation, online teachers).

In a no-grad forward the prompt is a constant: evaluation decodes hundreds of batches with the same
task prompts, and distillation's online teachers never change. The prefix pass of
``metaprompt.forward.prefix`` then gives the same keys/values every time, so they are kept per prompt
(an LRU of single-task prefixes, matched by exact content) and only unseen prompts run. A prompt that
changed (the optimizer stepped, another adapter was loaded) no longer matches and is recomputed, so
results never depend on the memo; with gradients enabled it is never used.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch

from metaprompt.forward.prefix import Prefix, run_prefix

CAPACITY = 32  # single-task prefixes kept per backbone (LLaMA-3.1-8B, l = 100, bf16: ~13 MB each)


def _slice(prefix: Prefix, index: int) -> Prefix:
    layers = []
    for layer in prefix.cache.layers:
        new = copy.copy(layer)
        new.keys, new.values = layer.keys[index : index + 1], layer.values[index : index + 1]
        layers.append(new)
    cache = type(prefix.cache)()
    cache.layers = layers
    hidden = tuple(h[index : index + 1] for h in prefix.hidden_states)
    return Prefix(cache, prefix.last_hidden[index : index + 1], hidden)


def _cat(parts: list[Prefix]) -> Prefix:
    if len(parts) == 1:
        return parts[0]
    layers = []
    for per_task in zip(*(p.cache.layers for p in parts)):
        new = copy.copy(per_task[0])
        new.keys = torch.cat([layer.keys for layer in per_task])
        new.values = torch.cat([layer.values for layer in per_task])
        layers.append(new)
    cache = type(parts[0].cache)()
    cache.layers = layers
    hidden = tuple(torch.cat(h) for h in zip(*(p.hidden_states for p in parts))) if parts[0].hidden_states else ()
    return Prefix(cache, torch.cat([p.last_hidden for p in parts]), hidden)


class PrefixMemo:
    """Single-task prefixes of the prompts a decoder has seen, most recently used last."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.entries: OrderedDict[tuple, tuple[torch.Tensor, Prefix]] = OrderedDict()

    @staticmethod
    def _key(prompt: torch.Tensor) -> tuple:
        autocast = torch.is_autocast_enabled(prompt.device.type)
        sums = torch.stack([prompt.float().sum(), prompt.float().abs().sum()]).tolist()
        return (tuple(prompt.shape), prompt.dtype, str(prompt.device), autocast, *sums)

    def prefix(self, decoder: torch.nn.Module, prompts: torch.Tensor, output_hidden_states: bool) -> Prefix:
        """The prefix of ``[U, l, d]`` prompts; only those not seen before run through ``decoder``."""
        keys = [self._key(p) for p in prompts]
        parts: list[Prefix | None] = []
        for key, prompt in zip(keys, prompts):
            hit = self.entries.get(key)
            usable = (
                hit is not None and torch.equal(hit[0], prompt) and (hit[1].hidden_states or not output_hidden_states)
            )
            parts.append(hit[1] if usable else None)
            if usable:
                self.entries.move_to_end(key)
        missing = [u for u, part in enumerate(parts) if part is None]
        if missing:
            fresh = run_prefix(decoder, prompts[missing], output_hidden_states)
            for j, u in enumerate(missing):
                parts[u] = _slice(fresh, j)
                self.entries[keys[u]] = (prompts[u].detach().clone(), parts[u])
                self.entries.move_to_end(keys[u])
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
        return _cat(parts)


def memo_of(decoder: torch.nn.Module) -> PrefixMemo:
    """The decoder's memo (created on first use; it lives and dies with the backbone)."""
    memo = getattr(decoder, "_metaprompt_prefix_memo", None)
    if memo is None:
        memo = PrefixMemo()
        decoder._metaprompt_prefix_memo = memo
    return memo
