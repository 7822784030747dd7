"""FSDP2 (``ModelParallelStrategy``) layout for a frozen backbone plus small trainable adapters.

Units, in the order ``prompted_forward`` calls them:

* input embedding: **replicated** (not sharded). It runs first, outside the decoder's forward (the
  prompt is concatenated to its output), and FSDP2 requires the root unit to run forward first, so
  it cannot be a unit inside the decoder. Costs ``V * d`` weights per GPU (1.05 GB bf16 for
  LLaMA-3.1-8B, 1.16 GB for gpt-oss-20b; see docs/scale_out.md).
* each decoder layer: its own unit (frozen; LoRA's adapters shard with their layer).
* the decoder body: root unit of the layers (final norm; rotary buffers).
* the LM head: its own unit when untied; tied heads share the replicated embedding weight.
* each adapter module (a direct child with trainable parameters: prompts, P*/U/V): its own unit,
  so its gradients are reduce-scattered (averaged) across ranks and never mixed with frozen weights.

Frozen non-backbone modules (the distillation stage's teacher prompts) stay replicated.

``fully_shard`` swaps each module's class for ``FSDP<Name>``; transformers 5 looks up which outputs a
model can record (``output_hidden_states``) by class name, so the entry is copied to the new class —
else the decoder silently returns no hidden states (the distillation MSE needs them).
"""

from __future__ import annotations

from torch import nn

from metaprompt.forward.prompted import decoder_and_head


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _shard(module: nn.Module, **kwargs) -> None:
    """``fully_shard(module)``, keeping transformers' output-capture registration of its class."""
    from torch.distributed.fsdp import fully_shard

    try:
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY
    except ImportError:  # other transformers versions: nothing to carry over
        _CAN_RECORD_REGISTRY = None
    entry = _CAN_RECORD_REGISTRY.get(module) if _CAN_RECORD_REGISTRY is not None else None
    fully_shard(module, **kwargs)
    if entry:
        _CAN_RECORD_REGISTRY[module] = entry


def parallelize(module: nn.Module, mesh) -> nn.Module:
    """Apply ``fully_shard`` to ``module.backbone`` and its adapters in place (see module docstring).

    Args:
        module: A ``PromptModule`` whose backbone and adapters are built.
        mesh: The data-parallel device mesh (``ModelParallelStrategy.device_mesh["data_parallel"]``).

    Returns:
        ``module``, with DTensor parameters sharded on dim 0 across ``mesh``.
    """
    backbone = module.backbone
    decoder, head = decoder_and_head(backbone)
    embedding = backbone.get_input_embeddings()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise TypeError(f"{type(decoder).__name__} has no .layers: FSDP2 layout needs a decoder with a layer list")
    for layer in layers:
        _shard(layer, mesh=mesh)
    _shard(decoder, mesh=mesh, ignored_params=set(embedding.parameters()))
    tied = head.weight is embedding.weight
    if not tied:
        _shard(head, mesh=mesh, reshard_after_forward=True)
    for name, child in module.named_children():
        if name != "backbone" and _trainable(child):
            _shard(child, mesh=mesh, reshard_after_forward=True)
    return module
