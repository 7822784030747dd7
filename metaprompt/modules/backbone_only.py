"""Reference — ``BackboneOnly``: the frozen backbone with no adapter (zero-shot instruction following)."""

from __future__ import annotations

import torch

from metaprompt.modules.base import PromptModule, reject_prompt_length


class BackboneOnly(PromptModule):
    """No trainable parameters; evaluates the backbone on the verbalized prompts as they are."""

    def __init__(self, **kwargs):
        reject_prompt_length(kwargs, "BackboneOnly")
        super().__init__(**kwargs)

    def build_adapter(self) -> None:
        pass

    def prompt_for(self, task_ids: torch.Tensor) -> None:
        return None
