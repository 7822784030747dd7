"""``FastPaths``: the switches of the prompted forward's speed-ups, one place for every stage.

Each switch changes speed or memory only, never the result (tests compare each against its reference
path), so every one can be turned off to measure what it buys (``make bench``).

    TeacherPromptTuning(..., fast_paths={"shared_prefix": False})        # or in YAML:
    model: {init_args: {fast_paths: {shared_prefix: false, activation_checkpointing: true}}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FastPaths:
    """Switches of :func:`metaprompt.forward.prompted.prompted_forward` and ``generate``.

    Attributes:
        shared_prefix: Run each distinct task's soft prompt through the backbone once per batch and let
            every row attend to it as a KV cache, instead of prepending it to every row (exact; falls back
            to concatenation where the backbone's cache layers are not plain full/sliding attention).
        reuse_prefix: In no-grad forwards (generation, evaluation, online teachers) keep each frozen
            prompt's prefix keys/values across calls and run only prompts not seen before (exact: matched
            by content; ``metaprompt.forward.prefix_memo``).
        target_only_logits: Apply the LM head only where a target token is predicted (``[N, V]``); off:
            full ``[B, l + T, V]`` logits, then select (the usual HF path, for comparison).
        fused_loss: Where a stage needs only the loss (not the ``[N, V]`` logits), compute the target
            cross-entropy in chunks straight from the hidden states through the frozen head, with its
            gradient formed in the forward (``metaprompt.forward.fused_loss``); off: logits, then
            ``F.cross_entropy``. Distillation (online teacher) fuses its KL the same way: no ``[N, V]``
            student or teacher logits.
        activation_checkpointing: Recompute each decoder layer's activations in the backward pass instead
            of storing them (less memory, ~1 extra forward of time).
        drop_finished_rows: In greedy decoding, remove a row from the batch once it has finished (end
            token or stop string) instead of feeding it padding until the last row stops, as HF
            ``generate`` does (``metaprompt.forward.decode``).
        bf16_autocast: Run the frozen backbone under ``torch.autocast(bfloat16)`` (fp32 weights kept;
            loss in fp32). Helps only on hardware with fast bf16 matmuls (see docs/performance.md).
    """

    shared_prefix: bool = True
    reuse_prefix: bool = True
    target_only_logits: bool = True
    fused_loss: bool = True
    activation_checkpointing: bool = False
    drop_finished_rows: bool = True
    bf16_autocast: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"fast_paths.{f.name} must be true or false, got {getattr(self, f.name)!r}")

    @classmethod
    def from_config(cls, value: FastPaths | dict[str, Any] | None) -> FastPaths:
        """A ``FastPaths`` from a config mapping (unknown keys are an error), an instance, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"fast_paths must be a mapping of switches, got {type(value).__name__}: {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"fast_paths: unknown switch(es) {unknown}; expected some of {sorted(known)}")
        return cls(**value)

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)
