"""Stage 1 — ``TeacherPromptTuning``: one soft prompt per source task on the frozen backbone.

Many teachers train in one run (rows carry task ids and select their task's prompt), or one per run
with a single-task task list. ``PromptTuning`` is the same model used as the single-task baseline on a
target task (Lester et al., 2021); only its adapter kind differs.

    metaprompt fit -c lightning_configs/teacher.yaml
"""

from __future__ import annotations

import torch

from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.modules.base import PromptModule
from metaprompt.prompts import PromptInit, SoftPrompt
from metaprompt.prompts.soft_prompt import special_token_ids

DEFAULT_PROMPT_LENGTH = 100  # Lester et al. 2021; MPT (Wang et al. 2023)


class TeacherPromptTuning(PromptModule):
    """Per-task soft prompts trained with cross-entropy on target tokens.

    Args:
        prompt_init: ``sample_vocab`` (Lester et al.'s best), ``text`` or ``random``.
        init_text: Text for ``prompt_init="text"``.
        **kwargs: See :class:`PromptModule` (``prompt_length`` defaults to 100 here).
    """

    adapter_kind = "teacher"

    def __init__(
        self,
        prompt_init: str = "sample_vocab",
        init_text: str | None = None,
        **kwargs,
    ):
        if kwargs.get("prompt_length") is None:
            kwargs["prompt_length"] = DEFAULT_PROMPT_LENGTH
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.prompts: SoftPrompt | None = None

    def build_adapter(self) -> None:
        self.prompts = SoftPrompt(len(self.task_names), self.hparams.prompt_length, self.hidden_size)
        text_ids = (
            self.tokenizer(self.hparams.init_text, add_special_tokens=False)["input_ids"]
            if self.hparams.init_text
            else None
        )
        self.prompts.initialize(
            PromptInit(self.hparams.prompt_init),
            self.backbone.get_input_embeddings().weight,
            text_ids,
            seed=self.hparams.seed,
            exclude_ids=special_token_ids(self.tokenizer),
        )

    def prompt_for(self, task_ids: torch.Tensor) -> torch.Tensor:
        return self.prompts(task_ids, dtype=self.backbone_dtype)

    def task_indexed_parameters(self) -> list[torch.nn.Parameter]:
        return [self.prompts.prompts]

    def export_adapter(self, folder: str) -> None:
        """Write the portable adapter (``prompts`` [K, l, d], task names in task-id order)."""
        config = AdapterConfig(
            kind=self.adapter_kind,
            backbone=self.hparams.backbone,
            hidden_size=self.hidden_size,
            prompt_length=self.hparams.prompt_length,
            rank=0,
            task_names=list(self.task_names),
        )
        save_adapter(folder, {"prompts": self.prompts.prompts.detach()}, config)


class PromptTuning(TeacherPromptTuning):
    """Single-task prompt tuning baseline (same model; its adapter is labelled ``prompt_tuning``)."""

    adapter_kind = "prompt_tuning"
