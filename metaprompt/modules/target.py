"""Stage 3 — ``TargetAdaptation``: adapt the metaprompt to unseen target tasks with tiny factors.

Every target starts from P* and the mean source task matrix ``mean_k U_k V_kᵀ`` truncated to rank r
(``DecomposedPrompt.init_from_mean``; MPT averages U and V separately, which is not that mean), so the
untrained model is already a sensible zero-shot prompt (``metaprompt test`` without ``fit``). Training
then updates only the factors by default: ``l + d`` numbers per rank per target (MPT^{t+m}), well under
0.05% of any backbone.

    metaprompt fit -c lightning_configs/target.yaml --model.metaprompt_adapter runs/x/distill
"""

from __future__ import annotations

import torch

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.modules.base import PromptModule
from metaprompt.prompts import DecomposedPrompt

TRAIN_MODES = ("factors", "factors_and_shared", "shared")


class TargetAdaptation(PromptModule):
    """Low-rank target adaptation from a distilled metaprompt.

    Args:
        metaprompt_adapter: Folder of the distillation stage's adapter (P*, source U, V).
        train: ``factors`` (U, V only; default), ``factors_and_shared`` (also P*), or ``shared`` (P* only).
        **kwargs: See :class:`PromptModule` (``prompt_length`` is taken from the adapter).
    """

    def __init__(self, metaprompt_adapter: str, train: str = "factors", **kwargs):
        if train not in TRAIN_MODES:
            raise ValueError(f"train must be one of {TRAIN_MODES}, got {train!r}")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.prompt: DecomposedPrompt | None = None

    def build_adapter(self) -> None:
        tensors, config = load_adapter(
            self.hparams.metaprompt_adapter, expect_kind="metaprompt", hidden_size=self.hidden_size
        )
        shared, cols, rows = tensors["shared_prompt"], tensors["task_cols"], tensors["task_rows"]
        if self.hparams.prompt_length is not None and self.hparams.prompt_length != shared.shape[0]:
            raise ValueError(
                f"prompt_length={self.hparams.prompt_length} but the metaprompt in "
                f"{self.hparams.metaprompt_adapter} has {shared.shape[0]} virtual tokens; the target prompt "
                "is P* itself, so its length is P*'s (leave prompt_length unset)"
            )
        self.prompt = DecomposedPrompt(len(self.task_names), shared.shape[0], self.hidden_size, cols.shape[-1])
        self.prompt.init_from_mean(shared, cols, rows)
        mode = self.hparams.train
        self.prompt.shared_prompt.requires_grad_(mode != "factors")
        self.prompt.task_cols.requires_grad_(mode != "shared")
        self.prompt.task_rows.requires_grad_(mode != "shared")

    def prompt_for(self, task_ids: torch.Tensor) -> torch.Tensor:
        return self.prompt(task_ids, dtype=self.backbone_dtype)

    def task_indexed_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in (self.prompt.task_cols, self.prompt.task_rows) if p.requires_grad]

    def export_adapter(self, folder: str) -> None:
        """Write the target factors (and P* if it was trained); P* otherwise stays in the metaprompt adapter."""
        tensors = {"task_cols": self.prompt.task_cols.detach(), "task_rows": self.prompt.task_rows.detach()}
        if self.prompt.shared_prompt.requires_grad:
            tensors["shared_prompt"] = self.prompt.shared_prompt.detach()
        config = AdapterConfig(
            kind="target",
            backbone=self.hparams.backbone,
            hidden_size=self.hidden_size,
            prompt_length=self.prompt.length,
            rank=self.prompt.task_cols.shape[-1],
            task_names=list(self.task_names),
            extra={"metaprompt_adapter": str(self.hparams.metaprompt_adapter), "train": self.hparams.train},
        )
        save_adapter(folder, tensors, config)
