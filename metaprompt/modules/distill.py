"""Stage 2 — ``MultitaskDistillation``: one shared metaprompt P* and rank-r task factors, distilled from
the teachers on all source tasks (MPT, Wang et al. 2023):

    loss = CE + λ · ( w_kl · τ² · KL(teacher ‖ student) on target tokens + β · MSE(hidden states) )

The teacher is the *same* frozen backbone with the frozen teacher prompts (one extra no-grad forward),
never a second model copy. Teacher and student prompts have the same length, so target positions align.
With ``teacher_cache`` the teachers' top-k log-probabilities and hidden states are computed once at fit
start and memory-mapped under the run folder (``metaprompt.modules.teacher_cache``): a step then runs
only the student.

    metaprompt fit -c lightning_configs/distill.yaml --model.teacher_adapter runs/x/teacher
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.data.collate import CausalLMCollator
from metaprompt.forward.fused_loss import frozen_head_distillation, fusable
from metaprompt.forward.prompted import ForwardOut, decoder_and_head
from metaprompt.losses import DistillationLoss
from metaprompt.modules.base import PromptModule
from metaprompt.modules.teacher_cache import TeacherCache, build_teacher_cache, cached_distillation_loss
from metaprompt.prompts import DecomposedPrompt, PromptInit, SoftPrompt
from metaprompt.scale import params_are_sharded


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
        factor_init: ``identity`` (every task prompt starts at P*, all r ranks trainable apart) or
            ``normal`` (PEFT's N(0, 0.02²)); see ``metaprompt.prompts.decomposed``.
        factor_lr: Learning rate of U, V (default: ``optim.lr``).
        decompose: ``False`` freezes U Vᵀ at 1, so every task shares the one prompt P* (the "no
            decomposition" ablation: a single prompt distilled from all teachers).
        teacher_cache: Precompute the teachers' outputs once: ``True`` (``<default_root_dir>/teacher_cache``),
            a folder, or ``False`` (teacher forward in every step). Rebuilt when its fingerprint (teacher
            prompts, backbone, τ, k, layers) does not match.
        teacher_cache_topk: k, teacher log-probabilities kept per target token (the vocabulary size: exact KL;
            smaller: a (k+1)-way KL over the top k plus a tail bucket, see ``losses.topk_kl``).
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
        factor_init: str = "identity",
        factor_lr: float | None = None,
        decompose: bool = True,
        teacher_cache: bool | str = False,
        teacher_cache_topk: int = 64,
        **kwargs,
    ):
        if teacher_cache_topk < 1:
            raise ValueError(f"teacher_cache_topk must be >= 1, got {teacher_cache_topk}")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.teacher_cache: TeacherCache | None = None
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
        length = prompts.shape[1]
        if self.hparams.prompt_length is not None and self.hparams.prompt_length != length:
            # teacher and student positions must line up one to one for the KL and the hidden MSE
            raise ValueError(
                f"prompt_length={self.hparams.prompt_length} but the teacher prompts in "
                f"{self.hparams.teacher_adapter} have {length} virtual tokens; the student must match its "
                f"teachers (train teachers with prompt_length={self.hparams.prompt_length}, or leave it unset)"
            )
        self.student = DecomposedPrompt(
            len(order), length, self.hidden_size, self.hparams.rank, self.hparams.factor_init, seed=self.hparams.seed
        )
        if not self.hparams.decompose:
            self.student.reset_factors("identity", self.hparams.seed)
            self.student.task_cols.requires_grad_(False)
            self.student.task_rows.requires_grad_(False)
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

    def _hidden_layers(self) -> tuple[int, ...]:
        return tuple(self.hparams.hidden_layers) if self.hparams.beta > 0 else ()

    def teacher_forward(self, batch: dict, hidden_layers: tuple[int, ...], target_hidden: bool = False) -> ForwardOut:
        """The frozen teachers on a batch (no grad): same backbone, the rows' teacher prompts."""
        with torch.no_grad():
            prompt = self.teacher(batch["task_ids"], dtype=self.backbone_dtype)
            return self.forward_with(prompt, batch, hidden_layers, target_hidden=target_hidden)

    def _fused_head(self) -> torch.nn.Module | None:
        """The frozen LM head when the KL can be fused with it (no [N, V] logits), else None."""
        fast = self.fast_paths
        head = decoder_and_head(self.backbone)[1]
        return head if fast.fused_loss and fast.target_only_logits and fusable(head) else None

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.loss_fn.lam == 0:  # "no distillation" (ablation): the loss is the CE alone, the teachers add nothing
            ce = self.forward(batch, need_logits=False).loss
            return {"loss": ce.float(), "ce": ce}
        layers = self._hidden_layers()
        if self.teacher_cache is not None:
            student = self.forward(batch, hidden_layers=layers)
            cached = self.teacher_cache.lookup(batch, student.token_mask, student.hidden_states)
            return cached_distillation_loss(self.loss_fn, student, cached)
        head = self._fused_head()
        if head is not None:  # the memory fast path: both distributions chunk by chunk from hidden states
            teacher = self.teacher_forward(batch, layers, target_hidden=True)
            student = self.forward(batch, hidden_layers=layers, target_hidden=True)
            ce, kl = frozen_head_distillation(
                student.target_hidden,
                teacher.target_hidden,
                head.weight,
                student.target_labels,
                student.target_weights,
                self.loss_fn.temperature,
            )
            return self.loss_fn(
                ce,
                None,
                student_hidden=student.hidden_states,
                teacher_hidden=teacher.hidden_states,
                mask=student.token_mask,
                kl=kl,
                token_weights=student.token_weights,
            )
        teacher = self.teacher_forward(batch, layers)
        student = self.forward(batch, hidden_layers=layers)
        return self.loss_fn(
            student.loss,
            student.target_logits,
            teacher.target_logits,
            student.hidden_states,
            teacher.hidden_states,
            student.token_mask,
            target_weights=student.target_weights,
            token_weights=student.token_weights,
        )

    def _target_cut(self) -> int | None:
        """The data module's ``max_train_target_tokens`` (training batches hold targets cut to it)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(getattr(dm, "hparams", None), "max_train_target_tokens", None)

    def teacher_cache_fingerprint(self) -> str:
        """What a teacher cache must have been built from to be reused (teacher prompts and settings)."""
        return TeacherCache.fingerprint(
            self.teacher.prompts,
            backbone=self.hparams.backbone,
            temperature=self.loss_fn.temperature,
            k=self.hparams.teacher_cache_topk,
            layers=self._hidden_layers(),
            tasks=list(self.task_names),
            dtype=self.backbone_dtype,
            max_target_tokens=self._target_cut(),
        )

    def build_teacher_cache(self, folder: str | Path, rows) -> TeacherCache:
        """Run the teachers once over the encoded training ``rows`` and write the cache to ``folder``."""
        layers = self._hidden_layers()
        vocab = self.backbone.get_output_embeddings().weight.shape[0]
        return build_teacher_cache(
            folder,
            list(rows),
            CausalLMCollator(self.tokenizer.pad_token_id),
            lambda batch: self.teacher_forward({k: v.to(self.device) for k, v in batch.items()}, layers),
            fingerprint=self.teacher_cache_fingerprint(),
            k=min(self.hparams.teacher_cache_topk, vocab),
            temperature=self.loss_fn.temperature,
            hidden_layers=layers,
            hidden_size=self.hidden_size,
            dtype=self.backbone_dtype,
            max_target_tokens=self._target_cut(),
        )

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if not self.hparams.teacher_cache:
            return
        setting = self.hparams.teacher_cache
        folder = Path(self.trainer.default_root_dir) / "teacher_cache" if setting is True else Path(setting)
        strategy = self.trainer.strategy
        valid = TeacherCache.open_if_valid(folder, self.teacher_cache_fingerprint()) is not None
        strategy.barrier("teacher_cache_check")  # every rank decided before rank 0 may start rewriting it
        if not valid:
            rows = self.trainer.datamodule.splits["train"]
            if self.trainer.is_global_zero:
                self.build_teacher_cache(folder, rows)
            elif params_are_sharded(strategy):  # a sharded backbone needs every rank in every forward
                with tempfile.TemporaryDirectory() as scratch:
                    self.build_teacher_cache(scratch, rows)
        strategy.barrier("teacher_cache")
        self.teacher_cache = TeacherCache(folder)

    def task_indexed_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in (self.student.task_cols, self.student.task_rows) if p.requires_grad]

    def param_groups(self) -> list[dict]:
        groups = super().param_groups()  # P* (shared by all tasks) and the task-indexed U, V
        if self.hparams.factor_lr is not None:
            for group in groups:
                if group["task_indexed"]:
                    group["lr"] = self.hparams.factor_lr
        return groups

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
