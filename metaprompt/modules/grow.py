"""``MetapromptGrowth``: distillation that starts from an existing metaprompt instead of from scratch.

Used by ``metaprompt grow`` (metaprompt/grow.py) to add source tasks to a finished distillation:

* new tasks' factors: P* and every old task's U, V are copied from ``base_metaprompt``; a task the base
  does not have starts at the mean source task matrix (as a target does), and with ``train_shared:
  false`` only the factors of the tasks in the batch move (TaskAdamW updates a task's rows only when it
  is in the batch), so the old tasks' prompts stay exactly what they were;
* refinement: the same module on old + new tasks with ``train_shared: true`` (P* moves too), old tasks
  replayed from a small buffer (``data.k_shot``) with their teachers' cached outputs (``teacher_cache``).

    metaprompt fit -c lightning_configs/grow.yaml --model.init_args.base_metaprompt runs/x/distill/adapter
"""

from __future__ import annotations

import torch

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.modules.distill import MultitaskDistillation
from metaprompt.prompts.decomposed import mean_task_factors


class MetapromptGrowth(MultitaskDistillation):
    """A distillation initialised from ``base_metaprompt`` (see module docstring).

    Args:
        base_metaprompt: Folder of the metaprompt adapter to grow (P*, the old tasks' U, V).
        train_shared: Also train P* (refinement); False keeps it, and the old prompts, fixed.
        **kwargs: See :class:`MultitaskDistillation` (``rank`` must equal the base's).
    """

    def __init__(self, base_metaprompt: str, train_shared: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def build_adapter(self) -> None:
        super().build_adapter()  # teachers and a student of the right shape; its values are replaced below
        tensors, config = load_adapter(
            self.hparams.base_metaprompt, expect_kind="metaprompt", hidden_size=self.hidden_size
        )
        shared, cols, rows = tensors["shared_prompt"], tensors["task_cols"], tensors["task_rows"]
        if shared.shape[0] != self.student.length or cols.shape[-1] != self.student.rank:
            raise ValueError(
                f"{self.hparams.base_metaprompt}: P* has {shared.shape[0]} positions and rank {cols.shape[-1]}; this "
                f"run has {self.student.length} (the teachers') and rank {self.student.rank}: they must match"
            )
        mean_cols, mean_rows = mean_task_factors(cols, rows, self.student.rank)
        with torch.no_grad():
            self.student.shared_prompt.copy_(shared)
            for k, task in enumerate(self.task_names):
                known = task in config.task_names
                j = config.task_names.index(task) if known else None
                self.student.task_cols[k].copy_(cols[j] if known else mean_cols)
                self.student.task_rows[k].copy_(rows[j] if known else mean_rows)
        self.student.shared_prompt.requires_grad_(self.hparams.train_shared)

    def export_adapter(self, folder: str) -> None:
        """The grown metaprompt: P* and the factors of this run's tasks (kind ``metaprompt``)."""
        config = AdapterConfig(
            kind="metaprompt", backbone=self.hparams.backbone, hidden_size=self.hidden_size,
            prompt_length=self.student.length, rank=self.student.rank, task_names=list(self.task_names),
            extra={"teacher_adapter": str(self.hparams.teacher_adapter), "base_metaprompt": str(self.hparams.base_metaprompt)},
        )  # fmt: skip
        tensors = {
            "shared_prompt": self.student.shared_prompt.detach(),
            "task_cols": self.student.task_cols.detach(),
            "task_rows": self.student.task_rows.detach(),
        }
        save_adapter(folder, tensors, config)
