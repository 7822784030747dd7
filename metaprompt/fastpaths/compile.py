"""``compile``: ``torch.compile`` of the frozen backbone's elementwise-heavy blocks (dense MLPs, RMSNorms).

A prompt-tuning step on a frozen backbone is GEMMs plus many small memory-bound ops (RMSNorm's pow,
mean, rsqrt, mul; SwiGLU's silu and mul) whose *backward* passes allocate and write one tensor per op.
Inductor fuses each block into one kernel forward and one backward. Measured on the 2-core CPU
(SmolLM2-135M, batch 8 x 128 tokens): step -20%, no-grad forward -10% (``make bench``, ``compile``
ablation); the first call pays the compilation (~40 s there), each new input shape a recompile until
dynamo marks the shape dynamic.

Only blocks known to be plain tensor functions are compiled: modules whose class name ends in
``RMSNorm``, and dense gated MLPs (``gate_proj``, ``up_proj``, ``down_proj``; LLaMA, Meditron, SmolLM2).
Attention (it reads and writes the KV cache) and MoE routers (data-dependent expert choice) stay
eager. Results match eager to float rounding (a test compares logits and gradients).
"""

from __future__ import annotations

import torch

_MLP_PARTS = ("gate_proj", "up_proj", "down_proj")


def compile_targets(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The RMSNorm and dense gated-MLP submodules of ``model`` that ``compile`` applies to."""
    return [
        m
        for m in model.modules()
        if type(m).__name__.endswith("RMSNorm")
        or all(isinstance(getattr(m, a, None), torch.nn.Linear) for a in _MLP_PARTS)
    ]


def set_compiled(model: torch.nn.Module, on: bool) -> None:
    """Compile (``on``) or restore the eager forward of :func:`compile_targets`; idempotent, cheap per call.

    ``nn.Module.compile`` swaps the module's call in place, so parameters, hooks and state dicts are
    untouched; dynamo caches the compiled code per function, so turning it back on does not recompile.
    """
    if getattr(model, "_metaprompt_compiled", False) == on:
        return
    for module in compile_targets(model):
        if on:
            module.compile(dynamic=None)
        else:
            module._compiled_call_impl = None
    model._metaprompt_compiled = on
