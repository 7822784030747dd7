"""Activation checkpointing of the frozen backbone, made to work with the shared prompt prefix.

HF's per-layer checkpointing (``gradient_checkpointing_enable``) drops any KV cache while it is on,
because replaying a layer in the backward pass would append to the cache a second time. The shared
prefix needs a cache, so:

* the prefix pass (which *writes* the cache, ``U·l`` positions — small) runs without checkpointing;
* the row pass only *reads* the prefix (``forward.prefix.rows_cache(read_only=True)``), so replaying it
  is safe: its layers are marked ``_can_checkpoint_with_cache`` for the duration of the call.

Non-reentrant checkpointing is used: it records the autograd graph normally, so gradients reach the
prompt through the cached keys/values even though they are not explicit inputs of the layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers.modeling_layers import GradientCheckpointingLayer


def set_activation_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Turn HF activation checkpointing (non-reentrant) on or off; idempotent and cheap to call every step."""
    if getattr(model, "_metaprompt_checkpointing", False) == on or not hasattr(
        model, "activation_checkpointing_enable"
    ):
        return
    if on:
        model.activation_checkpointing_enable({"use_reentrant": False})
        # HF also makes the token embeddings require grad (for reentrant checkpointing of adapters); only the
        # prompt needs gradients here, and that hook would make every row's backward reach layer 0's inputs.
        model.disable_input_require_grads()
    else:
        model.activation_checkpointing_disable()
    model._metaprompt_checkpointing = on


def _checkpointed_layers(decoder: torch.nn.Module) -> list[GradientCheckpointingLayer]:
    return [m for m in decoder.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


@contextmanager
def writing_cache(decoder: torch.nn.Module) -> Iterator[None]:
    """Checkpointing off for a pass that fills a cache (the prefix pass)."""
    layers = _checkpointed_layers(decoder)
    for layer in layers:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer in layers:
            layer.gradient_checkpointing = True


@contextmanager
def reading_cache(decoder: torch.nn.Module) -> Iterator[None]:
    """Checkpointing kept on for a pass that only reads a cache (rows attending to the prefix)."""
    layers = _checkpointed_layers(decoder)
    for layer in layers:
        layer._can_checkpoint_with_cache = True  # instance attribute: the HF class stays untouched
    try:
        yield
    finally:
        for layer in layers:
            del layer._can_checkpoint_with_cache
