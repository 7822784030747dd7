"""Whole adapter tensors on every rank, whatever the strategy, for exporting the portable adapter.

Under ZeRO-3 the adapter's parameters are partitioned (each rank holds a slice, ``data`` is empty);
under FSDP2 they are DTensors sharded on dim 0. ``export_adapter`` reads plain module attributes, so
it runs inside :func:`full_adapter`, entered on **every** rank (gathering is collective)::

    with full_adapter(module):
        if trainer.is_global_zero:
            module.export_adapter(folder)

Only adapter tensors are gathered (trainable parameters and any non-backbone ones, e.g. the frozen P*
of a factors-only target run), never the frozen backbone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from metaprompt.scale.zero import gathered


def adapter_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters plus every parameter outside ``module.backbone``, in a fixed order."""
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad or not n.startswith("backbone.")]


def _owner(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (root.get_submodule(path) if path else root), leaf


@contextmanager
def _dtensors_as_full(module: nn.Module, names: list[str]) -> Iterator[None]:
    """Swap each named DTensor parameter for a plain one holding ``.full_tensor()``; swap back on exit."""
    swapped = []
    try:
        for name in names:
            owner, leaf = _owner(module, name)
            sharded = owner._parameters[leaf]
            full = nn.Parameter(sharded.full_tensor().detach(), requires_grad=sharded.requires_grad)
            owner._parameters[leaf] = full
            swapped.append((owner, leaf, sharded))
        yield
    finally:
        for owner, leaf, sharded in reversed(swapped):
            owner._parameters[leaf] = sharded


@contextmanager
def full_adapter(module: nn.Module) -> Iterator[None]:
    """Context in which the adapter parameters of ``module`` are whole, plain tensors on every rank.

    Must be entered by all ranks together under ZeRO-3 and FSDP2 (it all-gathers); a no-op for
    unsharded parameters (single device, DDP, ZeRO-1/2). Read-only: changes are not written back.
    """
    params = adapter_parameters(module)
    dtensor_names = [n for n, p in params if is_dtensor(p)]
    with gathered([p for _, p in params]), _dtensors_as_full(module, dtensor_names), torch.no_grad():
        yield


def is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)
