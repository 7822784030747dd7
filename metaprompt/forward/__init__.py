"""The prompted backbone call: every way a soft prompt meets the frozen causal LM, in one place.

* ``prompted``: :func:`prompted_forward` (prompt + row through the backbone, target-only logits/loss),
  greedy ``generate``, ``ForwardOut``.
* ``decode``: the greedy loop behind ``generate`` (KV cache, finished rows leave the batch, stop strings).
* ``candidates``: ``candidate_logprobs`` for ranked scoring (task prefix once, each context once).
* ``inject``: the prompt prepended to the row's embeddings (positions, padding).
* ``prefix`` / ``prefix_memo``: the shared task prefix (system turn + prompt) run once per distinct
  task, and its memo for frozen prompts.
* ``fused_loss``: CE and the distillation KL from hidden states through the frozen head, in chunks.
* ``checkpointing``: activation checkpointing that reads the prefix cache without replaying it.
* ``options``: :class:`FastPaths`, the switches of all of the above (see docs/performance.md).

The teachers' cached top-k (a distillation speed-up) is ``metaprompt.modules.teacher_cache``.
"""

from metaprompt.forward.options import FastPaths

__all__ = ["FastPaths"]
