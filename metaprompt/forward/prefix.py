"""Shared prompt prefix: each distinct task's soft prompt runs through the backbone once per batch.

With the prompt at the start of a causal LM, its ``l`` positions attend only to each other, so their
keys/values in every layer depend on the task, not on the row. Instead of prepending ``[B, l, d]`` to
every row (``B·(l + T)`` token positions through every layer), the prompts of the ``U`` distinct tasks
of the batch run once (``U·l`` positions, ``U <= B``), and the ``B·T`` row tokens attend to those
keys/values as a KV cache at positions ``l ..``. Same layout, masks and positions as concatenation, so
the logits are the same; gradients flow from the rows' attention back through the cached K/V into
the prompt.

How rows get their task's prefix: one task in the batch → ``expand`` (a view, no copy); several →
``index_select`` by the row's task. HF attention concatenates cached and new K/V anyway
(``cat([prefix, row])`` in ``DynamicLayer.update``), so the per-row prefix is materialised inside
attention whichever way the rows point at it; the gather adds one copy of ``B·l·2·d_kv`` per layer
(memory traffic, no FLOPs), and keeps the batch as one dense decoder call rather than one per task.

Exactness needs plain full-attention or sliding-window cache layers (Llama, gpt-oss: its attention
sinks are per-head logits independent of the keys, and a sliding layer keeps the last ``window - 1``
prefix positions with the right mask offsets). Anything else (linear attention, chunked/indexed
layers) makes :func:`supports_shared_prefix` false and the caller concatenates instead.

One case falls back by batch: *left-padded* rows on a backbone with sliding-window layers (batched
generation on gpt-oss). A sliding window counts key *indices*, so pads between the shared prefix and a
row's tokens would take window slots that the unpadded row gives to prompt positions; concatenation
moves each row's pads in front of its prompt instead (``inject.prepend_prompt``), which a prefix shared
at the same indices by every row cannot do. Right-padded batches (training) and full-attention
backbones (Llama) are exact either way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

_PLAIN_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)


def _cache_layers(decoder: torch.nn.Module) -> list:
    config = getattr(decoder, "config", None)
    if config is None:
        return []
    try:
        return DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - an unknown config: not safe to assume anything
        return []


def supports_shared_prefix(decoder: torch.nn.Module) -> bool:
    """True when every cache layer of ``decoder``'s config is a plain full or sliding attention layer."""
    layers = _cache_layers(decoder)
    return bool(layers) and all(type(layer) in _PLAIN_LAYERS for layer in layers)


def has_sliding_layers(decoder: torch.nn.Module) -> bool:
    """True when some layer attends within a sliding window (key indices matter: see module docstring)."""
    return any(isinstance(layer, DynamicSlidingWindowLayer) for layer in _cache_layers(decoder))


@dataclass
class DistinctPrompts:
    """The distinct tasks' prompts of a batch and each row's index into them.

    Attributes:
        prompts: ``[U, l, d]`` one prompt per distinct task (taken from its first row, so gradients reach
            the prompt parameters exactly as through ``[B, l, d]``: every row of a task has the same value).
        rows: ``[B]`` index into ``prompts`` of each row.
    """

    prompts: torch.Tensor
    rows: torch.Tensor

    @property
    def single(self) -> bool:
        return self.prompts.shape[0] == 1


def distinct_prompts(prompt: torch.Tensor, task_ids: torch.Tensor) -> DistinctPrompts:
    """Deduplicate per-row prompts ``[B, l, d]`` by the rows' task ids ``[B]``."""
    if task_ids.dim() != 1 or task_ids.shape[0] != prompt.shape[0]:
        raise ValueError(f"task_ids {tuple(task_ids.shape)} must be [B] for prompts {tuple(prompt.shape)}")
    unique, rows = torch.unique(task_ids, return_inverse=True)
    # first row of each distinct task: smallest row index whose inverse is u
    first = torch.full((unique.numel(),), task_ids.numel(), dtype=torch.long, device=task_ids.device)
    first.scatter_reduce_(0, rows, torch.arange(task_ids.numel(), device=task_ids.device), reduce="amin")
    return DistinctPrompts(prompt.index_select(0, first), rows)


@dataclass
class Prefix:
    """The result of running the distinct prompts through the decoder.

    Attributes:
        cache: ``DynamicCache`` over the ``U`` prompts (keys/values ``[U, h, l or window-1, hd]`` per layer).
        last_hidden: ``[U, l, d]`` the decoder's output at the prompt positions (the last one predicts
            each row's first token).
        hidden_states: The decoder's hidden-state tuple for the prompts (each ``[U, l, d]``), or ().
    """

    cache: DynamicCache
    last_hidden: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


def run_prefix(decoder: torch.nn.Module, prompts: torch.Tensor, output_hidden_states: bool = False) -> Prefix:
    """One decoder pass over ``[U, l, d]`` prompt embeddings at positions ``0 .. l-1``, keeping the cache."""
    cache = DynamicCache(config=decoder.config)
    positions = torch.arange(prompts.shape[1], device=prompts.device).unsqueeze(0).expand(prompts.shape[0], -1)
    out = decoder(
        inputs_embeds=prompts,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        output_hidden_states=output_hidden_states,
    )
    return Prefix(cache, out.last_hidden_state, tuple(out.hidden_states) if output_hidden_states else ())


def _for_rows(tensor: torch.Tensor, rows: torch.Tensor, single: bool) -> torch.Tensor:
    return tensor.expand(rows.shape[0], *tensor.shape[1:]) if single else tensor.index_select(0, rows)


class _ReadOnlyLayer(DynamicLayer):
    """A full-attention prefix that rows attend to but never append to (safe to recompute under checkpointing)."""

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class _ReadOnlySlidingLayer(DynamicSlidingWindowLayer):
    """Sliding-window twin of :class:`_ReadOnlyLayer` (``cumulative_length`` stays l for the mask offsets)."""

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def rows_cache(prefix: Prefix, rows: torch.Tensor, read_only: bool) -> DynamicCache:
    """A cache with each row's task prefix: ``[B, h, *, hd]`` views (one task) or gathers (several).

    Args:
        prefix: From :func:`run_prefix`.
        rows: ``[B]`` index of each row's prompt in the prefix.
        read_only: True for one forward over the rows (training: nothing is appended, so activation
            checkpointing may replay it); False for generation (each step appends its token).
    """
    single = prefix.cache.layers[0].keys.shape[0] == 1
    layers = []
    for layer in prefix.cache.layers:
        if read_only:
            cls = _ReadOnlySlidingLayer if isinstance(layer, DynamicSlidingWindowLayer) else _ReadOnlyLayer
            new = cls.__new__(cls)
            new.__dict__.update(layer.__dict__)
        else:
            new = copy.copy(layer)
        new.keys = _for_rows(layer.keys, rows, single)
        new.values = _for_rows(layer.values, rows, single)
        layers.append(new)
    cache = DynamicCache()
    cache.layers = layers
    return cache


def for_rows(per_task: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``[U, ...]`` per-task tensor -> ``[B, ...]`` per row (a view when U == 1)."""
    return _for_rows(per_task, rows, per_task.shape[0] == 1)
