"""Stage 2 — ``MultitaskDistillation``: one shared metaprompt P* and rank-r task factors, distilled from
the teachers on all source tasks (MPT, Wang et al. 2023):

    loss = CE + λ · ( w_kl · τ² · KL(teacher ‖ student) on target tokens + β · MSE(hidden states) )

The teacher is the *same* frozen backbone with the frozen teacher prompts (one extra no-grad forward),
never a second model copy. Teacher and student prompts have the same length, so target positions align.

    metaprompt fit -c lightning_configs/distill.yaml --model.teacher_adapter runs/x/teacher
"""

from __future__ import annotations

import torch

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.losses import DistillationLoss
from metaprompt.modules.base import PromptModule
from metaprompt.modules.forward import prompted_forward
from metaprompt.prompts import DecomposedPrompt, PromptInit, SoftPrompt


class MultitaskDistillation(PromptModule):
    """Student ``DecomposedPrompt`` distilled from per-task teacher prompts.

    Args:
        teacher_adapter: Folder of the teacher stage's adapter (its tasks must cover ``task_names``).
        rank: r of the task factors (1 in MPT).
        lam: λ, weight of the distillation terms.
        temperature: τ of the KL term (both distributions softened; the term is scaled by τ²).
        kl_weight: Weight of the KL term inside λ(...).
        beta: Weight of the hidden-state MSE inside λ(...); 0 disables it.
        hidden_layers: Decoder hidden-state indices compared by the MSE (``-1`` = last layer).
        shared_init: P* init: ``teacher_mean`` (mean of the teacher prompts) or a PromptInit name.
        factor_init: ``ones`` (every task prompt starts at P*) or ``normal`` (PEFT's N(0, 0.02²)).
        factor_learning_rate: Learning rate of U, V (default: ``learning_rate``).
        **kwargs: See :class:`PromptModule`.
    """

    def __init__(
        self,
        teacher_adapter: str,
        rank: int = 1,
        lam: float = 1.0,
        temperature: float = 2.0,
        kl_weight: float = 1.0,
        beta: float = 1.0,
        hidden_layers: tuple[int, ...] = (-1,),
        shared_init: str = "teacher_mean",
        factor_init: str = "ones",
        factor_learning_rate: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.loss_fn = DistillationLoss(lam=lam, temperature=temperature, beta=beta, kl_weight=kl_weight)
        self.student: DecomposedPrompt | None = None
        self.teacher: SoftPrompt | None = None

    def build_adapter(self) -> None:
        tensors, config = load_adapter(self.hparams.teacher_adapter, hidden_size=self.hidden_size)
        if config.kind not in ("teacher", "prompt_tuning"):
            raise ValueError(f"{self.hparams.teacher_adapter}: expected a teacher adapter, found kind {config.kind!r}")
        missing = [t for t in self.task_names if t not in config.task_names]
        if missing:
            raise ValueError(
                f"{self.hparams.teacher_adapter}: no teacher prompt for task(s) {missing}; "
                f"the adapter has {config.task_names}"
            )
        order = [config.task_names.index(t) for t in self.task_names]
        prompts = tensors["prompts"][order]  # teacher prompts re-indexed to this run's task ids
        self.teacher = SoftPrompt(len(order), prompts.shape[1], self.hidden_size)
        self.teacher.prompts.data.copy_(prompts)
        self.teacher.requires_grad_(False)
        self.student = DecomposedPrompt(
            len(order), prompts.shape[1], self.hidden_size, self.hparams.rank, self.hparams.factor_init
        )
        with torch.no_grad():
            if self.hparams.shared_init == "teacher_mean":
                self.student.shared_prompt.copy_(prompts.mean(0))
            else:
                init = SoftPrompt(1, prompts.shape[1], self.hidden_size)
                init.initialize(
                    PromptInit(self.hparams.shared_init),
                    self.backbone.get_input_embeddings().weight,
                    seed=self.hparams.seed,
                )
                self.student.shared_prompt.copy_(init.prompts[0])

    def prompt_for(self, task_ids: torch.Tensor) -> torch.Tensor:
        return self.student(task_ids, dtype=self.backbone_dtype)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        layers = tuple(self.hparams.hidden_layers) if self.hparams.beta > 0 else ()
        with torch.no_grad():
            teacher_prompt = self.teacher(batch["task_ids"], dtype=self.backbone_dtype)
            teacher = prompted_forward(
                self.backbone, batch["input_ids"], batch["attention_mask"], batch["labels"], teacher_prompt, layers
            )
        student = self.forward(batch, hidden_layers=layers)
        return self.loss_fn(
            student.loss,
            student.target_logits,
            teacher.target_logits,
            student.hidden_states,
            teacher.hidden_states,
            student.token_mask,
        )

    def param_groups(self) -> list[dict]:
        if self.hparams.factor_learning_rate is None:
            return super().param_groups()
        factors = [p for p in (self.student.task_cols, self.student.task_rows) if p.requires_grad]
        return [{"params": [self.student.shared_prompt]}, {"params": factors, "lr": self.hparams.factor_learning_rate}]

    def export_adapter(self, folder: str) -> None:
        """Write P* (``shared_prompt``), U (``task_cols``) and V (``task_rows``) for the source tasks."""
        config = AdapterConfig(
            kind="metaprompt",
            backbone=self.hparams.backbone,
            hidden_size=self.hidden_size,
            prompt_length=self.student.length,
            rank=self.hparams.rank,
            task_names=list(self.task_names),
            extra={"teacher_adapter": str(self.hparams.teacher_adapter)},
        )
        save_adapter(
            folder,
            {
                "shared_prompt": self.student.shared_prompt.detach(),
                "task_cols": self.student.task_cols.detach(),
                "task_rows": self.student.task_rows.detach(),
            },
            config,
        )
