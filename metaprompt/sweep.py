"""``metaprompt sweep -c lightning_configs/ladder.yaml``: pick each stage's learning rate on validation data.

Lester et al.'s 0.3 is an Adafactor/T5 value; with AdamW on a decoder whose input embeddings have std
~0.14 (SmolLM2) one step of 0.3 moves a prompt entry by twice that. So each stage's rate is chosen
here, in the chain's order (teacher -> distillation -> target factors; prompt tuning and LoRA on the
targets), by the validation loss (target tokens' cross-entropy, per-task averaged) after the
ladder's steps for that stage capped at ``max_steps`` (30: on 2 CPU cores a step of SmolLM2-135M costs
seconds; a 10x grid separates long before a stage's full budget), on at most ``max_val`` validation
examples per task (never the test split). Each point is a completion-recorded pipeline run (its stage
YAML with the ladder's settings, as every pipeline run), so the sweep resumes too.

Writes ``<output_dir>/sweep/sweep.csv`` and ``sweep.md``; the chosen values go into the stage YAMLs
and the ladder config by hand (they are settings, reviewed like code).
"""

from __future__ import annotations

import csv
from dataclasses import replace

from metaprompt.compose import merge
from metaprompt.ladder import LadderConfig
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

    STAGE_FILES = {"teacher": "teacher", "distill": "distill", "target": "target", "prompt_tuning": "prompt_tuning"}
    STAGE_FILES |= {"LoRA": "lora"}

    def _point(self, stage_name: str, kw: dict, tasks, stage: Stage, lr: float) -> float:
        """One grid point: the stage's run at ``lr`` (its YAML + the ladder's settings), fitted, then its
        validation loss; recorded like every pipeline run, so a rerun skips it."""
        steps = self.max_steps if stage.max_steps is None else min(stage.max_steps, self.max_steps)
        stage = Stage(steps, merge(stage.model, {"optim": {"lr": lr}, "evaluation": {"generate": False}}), stage.data)
        name = f"sweep/{stage_name}/lr{lr:g}"
        run = self.make_run(
            name, self.STAGE_FILES[stage_name], self.sweep_dir / stage_name / f"lr{lr:g}", stage, tasks,
            model=kw, test=False,
        )  # fmt: skip
        run.validate = True
        ran = not self.record_status(run)[3]
        result = self.execute(run)
        loss = result["val_loss"]
        if ran:
            print(f"[sweep] {stage_name} lr={lr:g}: val loss {loss:.4f} ({result['seconds']} s)", flush=True)
        self.rows.append({"stage": stage_name, "learning_rate": lr, "val_loss": loss, "tasks": str(tasks)})
        return loss

    def _best(self, stage_name: str, kw: dict, tasks, stage: Stage) -> float:
        losses = {lr: self._point(stage_name, kw, tasks, stage, lr) for lr in GRIDS[stage_name]}
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
            chosen["teacher"] = self._best("teacher", {"prompt_length": cfg.prompt_length}, cfg.sources, cfg.teacher)
        if "distill" in stages:
            lr = chosen.get("teacher") or cfg.teacher.model.get("optim", {}).get("lr")
            teacher = self.sweep_dir / "teacher" / f"lr{lr:g}" / "adapter"
            chosen["distill"] = self._best("distill", {"teacher_adapter": str(teacher)}, cfg.sources, cfg.distill)
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
            chosen["target"] = self._best("target", {"metaprompt_adapter": metaprompt_adapter}, targets, at_k["target"])
        if "prompt_tuning" in stages:
            chosen["prompt_tuning"] = self._best(
                "prompt_tuning", {"prompt_length": cfg.prompt_length}, targets, at_k["prompt_tuning"]
            )
        if "LoRA" in stages:
            chosen["LoRA"] = self._best("LoRA", {}, targets, at_k["LoRA"])
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
