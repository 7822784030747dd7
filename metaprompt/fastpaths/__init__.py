"""Speed-ups of the prompted forward and of distillation, each behind a switch (see docs/performance.md).

* :class:`FastPaths` — switches of the forward: shared prompt prefix, target-only logits, activation
  checkpointing, bf16 autocast.
* ``metaprompt.fastpaths.teacher_cache`` — the teachers' top-k log-probabilities and hidden states,
  computed once and memory-mapped, so a distillation step runs only the student.
"""

from metaprompt.fastpaths.options import FastPaths

__all__ = ["FastPaths"]
