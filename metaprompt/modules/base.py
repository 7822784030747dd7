"""``PromptModule``: what every stage shares — backbone, prompted forward, loss, evaluation, checkpoints.

A stage subclass only says what its trainable adapter is (``build_adapter``), which prompt each row
gets (``prompt_for``), and, if it needs one, its own loss (``compute_loss``). The backbone is loaded in
``configure_model`` (idempotent, so sharded strategies and repeated fit/test calls work), frozen, and
never saved: checkpoints hold only parameters with ``requires_grad`` (the one "is it trainable"
predicate, also used for optimizer groups and parameter counts).

Sharded strategies (``metaprompt.scale``, docs/scale_out.md): under DeepSpeed ZeRO-3 the backbone loads
straight into partitions (a live ``HfDeepSpeedConfig`` is kept on the module) and the adapter is built
whole, then partitioned by ``deepspeed.initialize``; under FSDP2 (``ModelParallelStrategy``)
``configure_sharding`` shards the frozen layers and puts each adapter in its own unit; validation
generation keeps ranks in lock-step whenever parameters are sharded.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from metaprompt.backbones import load_backbone
from metaprompt.data.resume import repair_epoch_progress
from metaprompt.evaluation import EvalTasks, PredictionTable, TaskEvaluator
from metaprompt.evaluation.args import EvalArgs
from metaprompt.evaluation.examples import gather_rows, task_report, write_jsonl
from metaprompt.evaluation.ranking import (
    Candidates,
    Ranked,
    build_candidates,
    candidate_batches,
    rank,
    token_logprobs,
)
from metaprompt.evaluation.tasks import EvalRow
from metaprompt.evaluation.windows import WindowPredictions
from metaprompt.forward import FastPaths
from metaprompt.forward.candidates import candidate_logprobs
from metaprompt.forward.decode import StopStrings
from metaprompt.forward.prefix import supports_shared_prefix
from metaprompt.forward.prompted import ForwardOut, decoder_and_head, generate, prompted_forward
from metaprompt.modules.fsdp2 import parallelize
from metaprompt.modules.rng import RNG_KEY, rng_states, set_rng_states
from metaprompt.optim import OptimArgs, build_optimizer, build_schedule
from metaprompt.scale import full_numel, full_shape, is_fsdp2, outside_zero_init, params_are_sharded, zero_stage
from metaprompt.scale.zero import zero3_hf_config

MODULE_KEY = "metaprompt_module"  # checkpoint key: the stage's class path (on_save_checkpoint), for consolidation

OVERFLOW = 1.8e19
"""Largest trainable magnitude accepted: sqrt(float32 max), beyond which an RMS/LayerNorm's square overflows."""
RANK_ROWS = 32  # candidate rows per ranking forward ([N, V] logits of all their target tokens)


def reject_prompt_length(kwargs: dict, stage: str) -> None:
    """Stages without a soft prompt: ``prompt_length`` must be unset or 0 (else it would be ignored)."""
    if kwargs.get("prompt_length") not in (None, 0):
        raise ValueError(f"{stage} has no soft prompt: prompt_length={kwargs['prompt_length']!r} would be ignored")
    kwargs["prompt_length"] = 0


class PromptModule(L.LightningModule):
    """Base of all stages and baselines.

    Args:
        backbone: Backbone preset, local folder or hub id (see ``metaprompt.backbones``).
        dtype: Backbone weight dtype (``"bfloat16"``...; default: the preset's).
        task_names: Task of each task id, in the data module's order (linked from ``data.task_names``).
        prompt_length: l, virtual tokens (100: Lester et al. 2021; MPT, Wang et al. 2023). ``None``: the
            stage's own default (teacher/prompt tuning: 100; distillation/target: the length of the
            prompts they start from — a different explicit value is an error there; LoRA and the
            backbone-only reference have no prompt and reject any value but 0).
        optim: :class:`~metaprompt.optim.OptimArgs` — AdamW's rate, weight decay, betas, eps, warm-up and
            schedule (a dict works too); e.g. ``optim: {lr: 0.03, warmup_steps: 500}`` in a stage YAML.
        evaluation: :class:`~metaprompt.evaluation.args.EvalArgs` — decoding budgets, stop strings,
            ranked vs generated label scoring, whether to score at all, prediction-table rows.
        output_dir: Where test writes ``metrics.json`` and ``predictions.jsonl`` (optional).
        seed: Seed for prompt init, and of the global RNGs (dropout) when a fit starts: reruns of one config
            train one adapter.
        fast_paths: :class:`~metaprompt.forward.FastPaths` switches, e.g. ``{"shared_prefix": false}``
            (default: every exact speed-up on); every stage honours them.
    """

    def __init__(
        self,
        backbone: str = "smollm2-135m",
        dtype: str | None = None,
        task_names: list[str] | None = None,
        prompt_length: int | None = None,
        optim: OptimArgs = OptimArgs(),
        evaluation: EvalArgs = EvalArgs(),
        output_dir: str | None = None,
        seed: int = 0,
        fast_paths: dict[str, bool] | None = None,
    ):
        super().__init__()
        self.optim, self.evaluation = OptimArgs.of(optim), EvalArgs.of(evaluation)
        self.save_hyperparameters()
        self.fast_paths = FastPaths.from_config(fast_paths)
        self.isolate_task_updates = True  # TaskAdamW row rule; off where rows are not visible (sharding)
        self.task_names = list(task_names or [])
        self.backbone: torch.nn.Module | None = None
        self.tokenizer = None
        self.strict_loading = False  # checkpoints hold the adapter only; the backbone comes from its source
        self._hf_deepspeed_config = None  # kept alive under ZeRO-3 (transformers holds only a weak reference)
        self.evaluator: TaskEvaluator | None = None
        self.table: PredictionTable | None = None
        self.eval_tasks: EvalTasks | None = None  # set in setup() from the data module
        self._resumed_rng: dict | None = None  # a checkpoint's random streams, for the fit resuming from it

    def save_hyperparameters(self, *args: Any, frame=None, **kwargs: Any) -> None:
        """Lightning's, with the argument groups stored as plain data (checkpoints load ``weights_only``,
        resolved configs and loggers see dicts); every stage's ``save_hyperparameters()`` passes here."""
        super().save_hyperparameters(*args, frame=frame or inspect.currentframe().f_back, **kwargs)
        for hparams in (self._hparams, self._hparams_initial):
            hparams.update(optim=self.optim.to_dict(), evaluation=self.evaluation.to_dict())

    # ----------------------------------------------------------------- what a stage defines
    def build_adapter(self) -> None:
        """Create the trainable modules (called once, after the backbone is loaded)."""
        raise NotImplementedError

    def prompt_for(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        """Soft prompt of each row ``[B] -> [B, l, d]`` in the backbone dtype, or None."""
        raise NotImplementedError

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training loss; default: cross-entropy on target tokens."""
        out = self.forward(batch, need_logits=False)
        return {"loss": out.loss}

    # ----------------------------------------------------------------- shared machinery
    @property
    def hidden_size(self) -> int:
        return full_shape(self.backbone.get_input_embeddings().weight)[-1]  # whole shape even under ZeRO-3

    @property
    def backbone_dtype(self) -> torch.dtype:
        return self.backbone.get_input_embeddings().weight.dtype

    def configure_model(self) -> None:
        """Load the frozen backbone and build the adapter; runs once (Lightning calls it per fit/test).

        Lightning calls it inside ``deepspeed.zero.Init`` under ZeRO-3: the backbone is built/loaded
        partitioned; the adapter is built outside it (whole tensors, plain init code) and moved next
        to the backbone, and ``deepspeed.initialize`` partitions it later.
        """
        if self.backbone is not None:
            return
        if not self.task_names:
            raise ValueError("task_names is empty: link it from the data module (data.task_names)")
        strategy = self._trainer.strategy if self._trainer is not None else None
        if zero_stage(strategy) == 3:
            self._hf_deepspeed_config = zero3_hf_config(strategy)  # before from_pretrained, kept alive
        self.backbone, self.tokenizer = load_backbone(self.hparams.backbone, self.hparams.dtype, seed=self.hparams.seed)
        with outside_zero_init():
            self.build_adapter()
        if zero_stage(strategy) == 3:
            device = self.backbone.get_input_embeddings().weight.device
            for name, child in self.named_children():
                if name != "backbone":
                    child.to(device)
        self.configure_sharding(strategy)

    def configure_sharding(self, strategy) -> None:
        """Hook after the backbone and adapter exist: lock-step forwards when parameters are sharded,
        and the FSDP2 layout under ``ModelParallelStrategy``.

        Sharded weights (ZeRO-3, FSDP2) are all-gathered inside every forward, so all ranks must run
        the same number of backbone forwards. Two fast paths make that number depend on each rank's
        data and are switched off then: ``reuse_prefix`` (a memoised prefix skips its forward) and
        ``shared_prefix`` (its greedy decoder stops per rank instead of continuing until every rank is
        done, as ``generate(synced_gpus=True)`` does). ``fused_loss`` is switched off too: ZeRO-3/FSDP2
        all-gather weights in module hooks, and the fused loss reads the head's weight directly. Stages
        with another layout may override this (see ``metaprompt.modules.fsdp2.parallelize``).
        """
        if params_are_sharded(strategy):
            self.fast_paths = dataclasses.replace(
                self.fast_paths, shared_prefix=False, reuse_prefix=False, fused_loss=False
            )
        if (zero_stage(strategy) or is_fsdp2(strategy)) and self.task_indexed_parameters():
            # flattened (ZeRO) or DTensor (FSDP2) parameters hide the task rows (see metaprompt.optim)
            self.isolate_task_updates = False
            rank_zero_warn(
                f"{type(self).__name__}: under {type(strategy).__name__} every task's rows take the plain "
                "AdamW update each step (momentum/weight decay also move tasks absent from a batch); "
                "single-device and DDP runs update a task only on steps that saw it (metaprompt.optim)"
            )
        if is_fsdp2(strategy):
            parallelize(self, strategy.device_mesh["data_parallel"])

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, float]:
        """Trainable and backbone parameter counts and the trainable fraction (vs the backbone)."""
        trainable = sum(full_numel(p) for _, p in self.trainable_parameters())
        base = sum(full_numel(p) for n, p in self.backbone.named_parameters() if not p.requires_grad) or 1
        return {"trainable_params": trainable, "backbone_params": base, "trainable_fraction": trainable / base}

    def forward(
        self, batch: dict, hidden_layers: tuple[int, ...] = (), need_logits: bool = True, target_hidden: bool = False
    ) -> ForwardOut:
        prompt = self.prompt_for(batch["task_ids"])
        return self.forward_with(prompt, batch, hidden_layers, need_logits=need_logits, target_hidden=target_hidden)

    def forward_with(
        self, prompt: torch.Tensor | None, batch: dict, hidden_layers: tuple[int, ...] = (), **kw: Any
    ) -> ForwardOut:
        """The backbone on ``batch`` with ``prompt`` ([B, l, d], or None) before each row's tokens.

        ``kw``: ``need_logits`` / ``target_hidden`` of :func:`metaprompt.forward.prompted.prompted_forward`.
        """
        return prompted_forward(
            self.backbone,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            prompt,
            hidden_layers,
            task_ids=batch["task_ids"],
            fast=self.fast_paths,
            **kw,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        self._batch_tasks = self._tasks_of(batch)
        if not torch.isfinite(losses["loss"].detach()).all():  # one sync per step: a NaN run must not go on
            raise FloatingPointError(
                f"step {self.global_step}: the loss is {float(losses['loss'].detach())} on a batch of {self._batch_tasks}: "
                "training diverged (a lower optim.lr? the data of those tasks?); the adapter was not exported"
            )
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["task_ids"]))
        return losses["loss"]

    def on_before_optimizer_step(self, optimizer) -> None:
        """Stop before a non-finite gradient reaches the adapter (naming the step, tensor and tasks)."""
        for name, param in self.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                raise FloatingPointError(
                    f"step {self.global_step}: non-finite gradient of {name} on a batch of "
                    f"{getattr(self, '_batch_tasks', '?')}: training diverged; the adapter was not exported"
                )

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        """Stop as soon as an update leaves a trainable value non-finite or beyond :data:`OVERFLOW` (its square
        overflows float32, so the backbone's first norm turns that input into zeros: a diverged adapter)."""
        for name, param in self.named_parameters():
            if param.requires_grad and param.numel():
                peak = param.detach().abs().max()
                if not torch.isfinite(peak) or peak > OVERFLOW:
                    raise FloatingPointError(
                        f"step {self.global_step}: {name} reached {float(peak):.3g} after the update on a batch of "
                        f"{getattr(self, '_batch_tasks', '?')}: training diverged (a lower optim.lr?); the adapter "
                        "was not exported"
                    )

    def _tasks_of(self, batch: dict) -> str:
        ids = sorted({int(i) for i in batch["task_ids"].tolist()})
        return ", ".join(self.task_names[i] if i < len(self.task_names) else f"task {i}" for i in ids)

    def on_fit_start(self) -> None:
        # Dropout draws from the global RNG: seed it here, not only where the config was parsed, so that a
        # rerun of one config trains one adapter whatever else used the RNG in between (another stage, a test).
        L.seed_everything(self.hparams.seed, workers=True, verbose=False)
        self._log_parameter_counts()

    def on_train_start(self) -> None:
        # A resumed run continues the random streams of its checkpoint's step, restored this late because the
        # loops draw from them before training starts (an uninterrupted run drew those before the checkpoint)
        states, self._resumed_rng = self._resumed_rng, None
        if states is not None and self.trainer.ckpt_path:  # not a module merely loaded from a checkpoint
            set_rng_states(states)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        repair_epoch_progress(self.trainer)  # checkpoints of a resumed run's first epoch say it is running

    def on_test_start(self) -> None:  # zero-shot runs (test without fit) report their counts too
        self._log_parameter_counts()

    def _log_parameter_counts(self) -> None:
        counts = self.parameter_counts()
        rank_zero_info(
            f"[metaprompt] {type(self).__name__}: {counts['trainable_params']:,} trainable parameters "
            f"= {100 * counts['trainable_fraction']:.4f}% of the backbone ({counts['backbone_params']:,})"
        )
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    def task_indexed_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters whose dim 0 is the task (``[K, ...]``): updated per task by TaskAdamW."""
        return []

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups: task-indexed tensors apart (``task_indexed``), the rest together.

        Stages may give parts their own learning rate (``MultitaskDistillation``).
        """
        indexed = {id(p) for p in self.task_indexed_parameters()}
        trainable = [p for _, p in self.trainable_parameters()]
        groups = [
            {"params": [p for p in trainable if id(p) not in indexed], "task_indexed": False},
            {"params": [p for p in trainable if id(p) in indexed], "task_indexed": True},
        ]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        """AdamW and its schedule from ``self.optim`` (``metaprompt.optim``); torch's AdamW, the same maths and
        one DeepSpeed accepts, where task rows are not visible (ZeRO, FSDP2)."""
        opt = build_optimizer(self.param_groups(), self.optim, task_rows=self.isolate_task_updates)
        total = self.trainer.max_steps if self._trainer is not None and self.trainer.max_steps > 0 else None
        return {"optimizer": opt, "lr_scheduler": build_schedule(opt, self.optim, total)}

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False) -> dict:
        """Trainable parameters only (every strategy saves, and FSDP2/DeepSpeed resume, through this).

        Filtering here rather than in ``on_save_checkpoint`` also covers FSDP2, whose sharded save and
        load both enumerate ``state_dict()`` keys, and DeepSpeed, which never passes through the hook.
        """
        out = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        keep = {prefix + n for n, _ in self.trainable_parameters()}
        for key in [k for k in out if k.startswith(prefix) and k not in keep]:
            del out[key]
        return out

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The stage class, so that `metaprompt.consolidation.consolidate(ckpt, out)` can rebuild the adapter.
        checkpoint[MODULE_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint[RNG_KEY] = rng_states()  # dropout masks of a resumed run = the uninterrupted run's

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)  # set at on_train_start (after on_fit_start's seeding)

    # ----------------------------------------------------------------- evaluation
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "eval_tasks"):
            # Looked up once here, not through the data module for every row (metaprompt.evaluation.tasks).
            self.eval_tasks = dm.eval_tasks()
            self.evaluator = TaskEvaluator(self.eval_tasks.descriptions())
            self.table = PredictionTable(self.evaluation.log_predictions)
        self._examples: list[dict] = []  # every test example's record (predictions.jsonl)
        self._windows = WindowPredictions()  # windows of long records, scored merged at epoch end

    def _eval_step(self, batch: dict, prefix: str) -> None:
        scoring = self.evaluation.generate and self.evaluator is not None
        if prefix == "val" or not scoring:
            # Test scores come from ranking/generation; a loss pass there would cost a whole extra
            # forward per batch (~1/3 of evaluation on CPU), so only validation logs the loss.
            out = self.forward(batch, need_logits=False)
            self.log(f"{prefix}/loss", out.loss, batch_size=len(batch["task_ids"]), sync_dist=True)
        if not scoring:
            return
        ranked = self._rank_batch(batch) if self.evaluation.label_scoring == "ranked" else {}
        rows = [i for i, uid in enumerate(batch["uids"]) if uid not in ranked]
        if self._synced_gpus():  # sharded: every rank decodes every batch, or generate() would deadlock
            rows = list(range(len(batch["uids"])))
        texts = dict(self._generate_texts(batch, rows)) if rows else {}
        window_scores = self._window_scores(batch, texts) if self.eval_tasks.windows else {}
        for uid in batch["uids"]:
            row, result = self.eval_tasks.row(uid), ranked.get(uid)
            if result is None:
                text = texts[uid]
                prediction = row.parse(text)
            else:  # the chosen candidate's target text stands in for the generation in the table
                text, prediction = result.text, result.prediction
            if row.window is not None:  # scored with its record's other windows (evaluation.windows)
                self._windows.add(uid, row.window, row.task.task_type, text, prediction, window_scores.get(uid, 0.0))
                continue
            self._score_example(prefix, row, text, prediction, result)

    def _score_example(
        self, prefix: str, row: EvalRow, text: str, prediction: Any, result: Ranked | None = None, windows=None
    ) -> None:
        """Score one example, show it in the table and (test) keep its record; ``windows``: the window
        rows a merged prediction comes from (``metaprompt.evaluation.windows``)."""
        task = row.task.name
        scored = self.evaluator.update(task, prediction, row.record)
        input_text, reference = row.prompt_text, row.target_text
        self.table.add(task, input_text, text, reference, uid=row.uid)
        if prefix == "test":  # the record format: metaprompt.evaluation.examples
            example = {
                "uid": row.uid,
                "task": task,
                "kind": scored["kind"],
                "scoring": "generated" if result is None else "ranked",
                "input": input_text,
                "generation": text if result is None else None,
                "candidates": None if result is None else result.to_json(),
                "prediction": prediction,
                "reference": reference,
                "stats": scored["stats"],
            }
            self._examples.append(example if windows is None else {**example, "windows": windows})

    def _window_scores(self, batch: dict, texts: dict[str, str]) -> dict[str, float]:
        """Per QA window row, the mean token log-prob of its generated answer (end token included), by
        which the merge picks a record's answer among its windows'."""
        picks, task_ids = [], []
        for i, uid in enumerate(batch["uids"]):
            row = self.eval_tasks.row(uid)
            if row.window is not None and row.task.task_type == "qa" and uid in texts:
                prompt = batch["prompt_input_ids"][i][batch["prompt_attention_mask"][i].bool()].tolist()
                answer = self.eval_tasks.encoder.encode("", texts[uid]).target_ids
                picks.append(Candidates(uid, prompt, (texts[uid],), (texts[uid],), (answer,)))
                task_ids.append(int(batch["task_ids"][i]))
        if not picks and not self._synced_gpus():  # sharded: every rank runs as many forwards
            return {}
        logprobs = self._candidate_logprobs(picks, task_ids, batch)
        return {c.uid: float(lp.mean()) for c, lp in zip(picks, logprobs)}

    def _rank_batch(self, batch: dict) -> dict[str, Ranked]:
        """Ranked scoring of the batch's label-like rows (``uid -> Ranked``); other rows are absent."""
        candidates, task_ids = [], []
        for uid, task_id in zip(batch["uids"], batch["task_ids"].tolist()):
            row = self.eval_tasks.row(uid)
            c = build_candidates(row.record, row.task.verbalizer, self.eval_tasks.encoder)
            if c is not None:
                candidates.append(c)
                task_ids.append(task_id)
        if not candidates:
            return {}
        return {r.uid: r for r in rank(candidates, self._candidate_logprobs(candidates, task_ids, batch))}

    def _candidate_logprobs(self, candidates: list[Candidates], task_ids: list[int], batch: dict) -> list[torch.Tensor]:
        """Per candidate row, its token log-probs (each context encoded once where the cache layers allow)."""
        if not self._synced_gpus() and self._context_cache_ok():
            return self._cached_logprobs(candidates, task_ids)
        per_row: list[torch.Tensor] = []
        batches = candidate_batches(candidates, task_ids, self.tokenizer.pad_token_id, RANK_ROWS)
        for b in batches:
            out = self.forward({k: v.to(self.device) if torch.is_tensor(v) else v for k, v in b.items()})
            per_row += token_logprobs(out.target_logits, out.target_labels, b)
        if self._synced_gpus():
            # Sharded weights are all-gathered inside every forward: all ranks must run as many forwards.
            calls = torch.tensor(len(batches), device=self.device)
            torch.distributed.all_reduce(calls, op=torch.distributed.ReduceOp.MAX)
            for _ in range(int(calls) - len(batches)):
                self.forward(batch)  # output discarded
        return per_row

    def _context_cache_ok(self) -> bool:
        """Whether ranked scoring may encode each context once (plain attention cache layers)."""
        return supports_shared_prefix(decoder_and_head(self.backbone)[0])

    def _cached_logprobs(self, candidates: list[Candidates], task_ids: list[int]) -> list[torch.Tensor]:
        """Per candidate row, its token log-probs: contexts encoded once, about ``RANK_ROWS`` rows a call."""
        per_row: list[torch.Tensor] = []
        start = 0
        while start < len(candidates):
            stop, rows = start, 0
            while stop < len(candidates) and (stop == start or rows + len(candidates[stop].target_ids) <= RANK_ROWS):
                rows += len(candidates[stop].target_ids)
                stop += 1
            chunk = candidates[start:stop]
            tasks = torch.tensor(task_ids[start:stop], device=self.device)
            per_row += candidate_logprobs(
                self.backbone,
                [c.prompt_ids for c in chunk],
                self.prompt_for(tasks),
                [list(c.target_ids) for c in chunk],
                self.tokenizer.pad_token_id,
                fast=self.fast_paths,
                task_ids=tasks,
            )
            start = stop
        return per_row

    def _generate_texts(self, batch: dict, rows: list[int] | None = None) -> list[tuple[str, str]]:
        """Greedy decoding of an eval batch (or of its ``rows``): ``(uid, generated text)`` per row.

        The budget is the largest of the decoded rows' task types.
        """
        rows = list(range(len(batch["uids"]))) if rows is None else rows
        index = torch.tensor(rows, device=batch["task_ids"].device)
        task_ids = batch["task_ids"][index]
        mask = batch["prompt_attention_mask"][index]
        keep = int(mask.any(0).nonzero()[0]) if mask.any() else 0  # drop columns that are padding in all kept rows
        row_types = [self._require_eval_tasks().task_type(t) for t in task_ids.tolist()]
        stops = self.evaluation.stop_strings
        stop = StopStrings(self._decode, [stops.get(t, ()) for t in row_types]) if stops else None
        generated = generate(
            self.backbone,
            batch["prompt_input_ids"][index][:, keep:],
            mask[:, keep:],
            self.prompt_for(task_ids),
            max(self.evaluation.budget(t) for t in set(row_types)),
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
            synced_gpus=self._synced_gpus(),
            task_ids=task_ids,
            fast=self.fast_paths,
            stop=stop,
        )
        texts = [self._decode(ids) for ids in generated]
        if stop is not None:
            texts = [stop.cut(i, text) for i, text in enumerate(texts)]
        return list(zip([batch["uids"][i] for i in rows], texts))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _require_eval_tasks(self) -> EvalTasks:
        if self.eval_tasks is None:
            raise RuntimeError(
                f"{type(self).__name__}: evaluation and prediction read their tasks from a MultitaskDataModule "
                "(trainer.validate/test/predict(model, datamodule=...)); none was set up"
            )
        return self.eval_tasks

    def _synced_gpus(self) -> bool:
        # Sharded parameters are all-gathered inside every forward: a rank that stopped generating
        # would leave the others waiting (deadlock). DDP/ZeRO-2 hold whole weights: no sync needed.
        return params_are_sharded(self.trainer.strategy) if self._trainer is not None else False

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        """Greedy generations of a batch: ``[{uid, task, prediction, parsed}]`` per row."""
        rows = []
        for uid, text in self._generate_texts(batch):
            row = self.eval_tasks.row(uid)
            rows.append({"uid": uid, "task": row.task.name, "prediction": text, "parsed": row.parse(text)})
        return rows

    def _eval_epoch_end(self, prefix: str) -> dict[str, float]:
        if self.evaluator is None or not self.evaluation.generate:
            return {}
        for merged in self._windows.merged() if self.eval_tasks.windows else []:  # a collective under DDP
            row = self.eval_tasks.row(merged["uid"])
            self._score_example(prefix, row, merged["text"], merged["prediction"], windows=merged["windows"])
        scores = self.evaluator.compute()
        # compute() already synced the metric states across ranks (it must run on every rank)
        self.log_dict({f"{prefix}/{k}": v for k, v in scores.items()}, sync_dist=False)
        for logger in self.loggers:
            self.table.log(logger, key=f"{prefix}/predictions")
        self.evaluator.reset()
        return scores

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")
        if self.table is not None:
            self.table.reset()

    def on_test_epoch_end(self) -> None:
        """Scores, plus per task ``scoring``, ``n_test`` and a 95% bootstrap interval (``ci_low``,
        ``ci_high``, 1000 resamples, seed 0) from every test example's record, gathered over ranks.

        ``metrics.json`` holds all of it and the parameter counts; ``predictions.jsonl`` one record
        per test example (``metaprompt.evaluation.examples``).
        """
        scores = self._eval_epoch_end("test")
        report: dict[str, Any] = dict(scores)
        if self.evaluator is not None and self.evaluation.generate:
            examples = gather_rows(self._examples)  # collective: every rank calls it
            report.update(task_report(examples, self.evaluator.primary_metric))
            numeric = {k: v for k, v in report.items() if k not in scores and not k.endswith("/scoring")}
            self.log_dict({f"test/{k}": float(v) for k, v in numeric.items()}, sync_dist=False)
            if self.hparams.output_dir and self.trainer.is_global_zero:
                write_jsonl(examples, Path(self.hparams.output_dir) / "predictions.jsonl")
        if self.hparams.output_dir and self.trainer.is_global_zero:
            out = Path(self.hparams.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text(
                json.dumps({**report, **self.parameter_counts()}, indent=2, sort_keys=True)
            )
        self.last_test_scores = report
        self._examples = []
        if self.table is not None:
            self.table.reset()
