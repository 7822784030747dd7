"""``metaprompt sweep -c lightning_configs/ladder.yaml``: pick each stage's learning rate on validation data.

Lester et al.'s 0.3 is an Adafactor/T5 value; with AdamW on a decoder whose input embeddings have std
~0.14 (SmolLM2) one step of 0.3 moves a prompt entry by twice that. So each stage's rate is chosen
here, in the chain's order (teacher -> distillation -> target factors; prompt tuning and LoRA on the
targets), by the validation loss (target tokens' cross-entropy, per-task averaged) after the
ladder's steps for that stage capped at ``max_steps`` (30: on 2 CPU cores a step of SmolLM2-135M costs
seconds; a 10x grid separates long before a stage's full budget), on at most ``max_val`` validation
examples per task (never the test split). Each point is a completion-recorded pipeline run, so the
sweep resumes too.

Writes ``<output_dir>/sweep/sweep.csv`` and ``sweep.md``; the chosen values go into the stage YAMLs
and the ladder config by hand (they are settings, reviewed like code).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, replace

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from metaprompt.ladder import LadderConfig
from metaprompt.modules import LoRA, MultitaskDistillation, PromptTuning, TargetAdaptation, TeacherPromptTuning
from metaprompt.pipeline import Pipeline, Stage

GRIDS = {
    "teacher": [0.3, 0.03, 0.003],
    "distill": [0.3, 0.03, 0.003],  # P* (the factors' rate is searched at the target stage)
    "target": [0.3, 0.03, 0.003],
    "prompt_tuning": [0.3, 0.03, 0.003],
    "LoRA": [5e-3, 5e-4, 5e-5],
}


class Sweep(Pipeline):
    """Learning-rate sweep over the ladder's stages (see module docstring)."""

    def __init__(self, config: LadderConfig, max_val: int = 32, sweep_targets: int = 2, max_steps: int = 30):
        config = replace(config, data={**config.data, "max_eval_per_task": max_val})
        super().__init__(config)
        self.sweep_dir = self.out / "sweep"
        self.rows: list[dict] = []
        self.sweep_targets = sweep_targets
        self.max_steps = max_steps  # a 10x grid is told apart long before a stage's full budget

    def _point(self, stage_name: str, cls, kw: dict, tasks, stage: Stage, lr: float) -> float:
        name = f"sweep/{stage_name}/lr{lr:g}"
        folder = self.sweep_dir / stage_name / f"lr{lr:g}"
        record = self.out / "done" / f"{name.replace('/', '__')}.json"
        steps = min(stage.max_steps, self.max_steps)
        stage = Stage(steps, {**stage.model, "learning_rate": lr, "generate_eval": False}, stage.data)
        key = self._key("sweep-v1", stage_name, kw, tasks, asdict(stage), self.config.backbone, self.config.data)
        data = self._data(tasks, stage)
        key = self.record_key(key, data, kw)  # + the data served and the upstream adapter's content
        if record.is_file() and json.loads(record.read_text()).get("key") == key:
            loss = json.loads(record.read_text())["result"]["val_loss"]
        else:
            start = time.perf_counter()
            L.seed_everything(0, verbose=False)
            model = cls(**self.module_kwargs(data.task_names, folder, kw, stage))
            common = dict(
                accelerator=self.config.accelerator, devices=1, precision=self.config.precision,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            )  # fmt: skip
            trainer = L.Trainer(
                max_steps=stage.max_steps, logger=CSVLogger(str(folder), name="logs"), limit_val_batches=0,
                num_sanity_val_steps=0, default_root_dir=str(folder), **common,
            )  # fmt: skip
            trainer.fit(model, datamodule=data)
            if hasattr(model, "export_adapter"):
                model.export_adapter(str(folder / "adapter"))
            loss = float(
                L.Trainer(logger=False, **common).validate(model, datamodule=data, verbose=False)[0]["val/loss"]
            )
            record.parent.mkdir(parents=True, exist_ok=True)
            seconds = round(time.perf_counter() - start, 1)
            record.write_text(json.dumps({"key": key, "result": {"val_loss": loss, "seconds": seconds}}))
            print(f"[sweep] {stage_name} lr={lr:g}: val loss {loss:.4f} ({seconds} s)", flush=True)
        self.rows.append({"stage": stage_name, "learning_rate": lr, "val_loss": loss, "tasks": str(tasks)})
        return loss

    def _data(self, tasks, stage: Stage):
        from metaprompt.data import MultitaskDataModule

        return MultitaskDataModule(tasks=tasks, backbone=self.config.backbone, **{**self.config.data, **stage.data})

    def _best(self, stage_name: str, cls, kw: dict, tasks, stage: Stage) -> float:
        losses = {lr: self._point(stage_name, cls, kw, tasks, stage, lr) for lr in GRIDS[stage_name]}
        return min(losses, key=losses.get)

    def run(self, stages: tuple[str, ...] = tuple(GRIDS), metaprompt_adapter: str | None = None) -> dict[str, float]:
        """Sweep the given stages in chain order; returns the chosen rate per stage.

        Args:
            stages: Subset of :data:`GRIDS` (e.g. the teacher alone before the ladder's source rungs,
                then the target-side stages once a metaprompt exists).
            metaprompt_adapter: Distilled adapter for the ``target`` stage when ``distill`` is not swept
                here (e.g. the ladder's own ``results/ladder/distill/adapter``).
        """
        from metaprompt.tasks.taskset import resolve_tasks

        unknown = set(stages) - set(GRIDS)
        if unknown:
            raise ValueError(f"sweep: unknown stage(s) {sorted(unknown)}; choose from {list(GRIDS)}")
        cfg = self.config
        chosen: dict[str, float] = {}
        if "teacher" in stages:
            chosen["teacher"] = self._best(
                "teacher", TeacherPromptTuning, {"prompt_length": cfg.prompt_length}, cfg.sources, cfg.teacher
            )
        if "distill" in stages:
            lr = chosen.get("teacher") or cfg.teacher.model.get("learning_rate")
            teacher = self.sweep_dir / "teacher" / f"lr{lr:g}" / "adapter"
            chosen["distill"] = self._best(
                "distill", MultitaskDistillation, {"teacher_adapter": str(teacher)}, cfg.sources, cfg.distill
            )
            metaprompt_adapter = str(self.sweep_dir / "distill" / f"lr{chosen['distill']:g}" / "adapter")
        targets = [s.name for s in resolve_tasks(cfg.targets, cfg.data.get("root"))][: self.sweep_targets]
        k = min(cfg.shots)
        at_k = {
            name: Stage(cfg.steps[k], dict(st.model), {**st.data, "k_shot": k})
            for name, st in (("target", cfg.target), ("prompt_tuning", cfg.prompt_tuning), ("LoRA", cfg.lora))
        }
        if "target" in stages:
            if metaprompt_adapter is None:
                raise ValueError("sweep: the target stage needs a metaprompt adapter (sweep distill too, or pass one)")
            chosen["target"] = self._best(
                "target", TargetAdaptation, {"metaprompt_adapter": metaprompt_adapter}, targets, at_k["target"]
            )
        if "prompt_tuning" in stages:
            chosen["prompt_tuning"] = self._best(
                "prompt_tuning", PromptTuning, {"prompt_length": cfg.prompt_length}, targets, at_k["prompt_tuning"]
            )
        if "LoRA" in stages:
            chosen["LoRA"] = self._best("LoRA", LoRA, {}, targets, at_k["LoRA"])
        self._write(chosen)
        return chosen

    def _write(self, chosen: dict[str, float]) -> None:
        """sweep.csv / sweep.md: this run's stages, plus the rows of stages swept before and not now."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        path, swept = self.sweep_dir / "sweep.csv", {row["stage"] for row in self.rows}
        earlier = []
        if path.is_file():
            with path.open(newline="") as f:
                earlier = [r for r in csv.DictReader(f) if r["stage"] not in swept]
            for r in earlier:
                r["learning_rate"], r["val_loss"] = float(r["learning_rate"]), float(r["val_loss"])
        for stage in {r["stage"] for r in earlier}:  # their choice: the lowest validation loss, as when swept
            chosen.setdefault(
                stage, min((r for r in earlier if r["stage"] == stage), key=lambda r: r["val_loss"])["learning_rate"]
            )
        rows = earlier + self.rows
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["stage", "learning_rate", "val_loss", "tasks"])
            writer.writeheader()
            writer.writerows(rows)
        lines = ["| stage | learning rate | validation loss | chosen |", "|---|---:|---:|---|"]
        for row in rows:
            mark = "yes" if chosen.get(row["stage"]) == row["learning_rate"] else ""
            lines.append(f"| {row['stage']} | {row['learning_rate']:g} | {row['val_loss']:.4f} | {mark} |")
        text = "\n".join(lines) + "\n"
        (self.sweep_dir / "sweep.md").write_text(text)
        print(text, flush=True)
