"""``metaprompt ladder -c lightning_configs/ladder.yaml``: does each stage do what it claims, on real data?

The sanity ladder (issue 10), every rung scored with bootstrap intervals on a fixed test sample:

a. each teacher vs the zero-shot backbone on its own source task (validation split);
b. the distilled student on each source, as a fraction of its teacher's gain over zero-shot;
c. metaprompt zero-shot vs backbone zero-shot on each held-out target;
d. metaprompt adapted vs single-task prompt tuning vs LoRA at each k (equal steps, several seeds);
e. ablations at one k: no distillation (λ = 0), no decomposition (one shared prompt), another rank;
   "target init from a random prompt" is the prompt-tuning row itself.

Every run is a :class:`~metaprompt.pipeline.Pipeline` stage with a completion record, so the ladder is
resumable: ``--max_minutes`` stops it between runs, and a rerun continues where it stopped. Outputs
(small files, meant to be committed) under ``output_dir``::

    teacher/ distill/ distill-<ablation>/      adapters (+ source-validation metrics/predictions)
    sources/<system>/                          zero-shot backbone on the sources' validation split
    targets/<task>/<system>/k<k>-s<seed>/      metrics.json, predictions.jsonl.gz (no input text)
    results.csv   one row per task x system x k x seed: score, ci_low, ci_high, n_test
    results.md    the rungs as tables, with paired-bootstrap intervals of the differences
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaprompt.compose import merge
from metaprompt.errors import SettingsError
from metaprompt.evaluation.examples import compact_predictions
from metaprompt.ladder_report import k_order
from metaprompt.modules import MultitaskDistillation
from metaprompt.pipeline import (
    Pipeline,
    PipelineConfig,
    Run,
    Stage,
    check_settings,
    one_line,
    rank_zero,
    strategy_settings,
)
from metaprompt.tasks.errors import DataFormatError, TaskDeclarationError

SOURCES_ON_VALIDATION = {"test_split": "validation"}  # rungs a and b: sources scored on their validation split


@dataclass
class LadderConfig(PipelineConfig):
    """The ladder: a :class:`PipelineConfig` plus shots, seeds and ablations.

    Attributes:
        shots: k -> seeds of the adapted systems (metaprompt adapted, prompt tuning, LoRA).
        steps: k -> optimizer steps of every adapted system at that k (equal steps across systems).
        ablations: Name -> distillation-stage overrides; each is distilled once and adapted at
            ``ablation_shots`` with ``ablation_seeds``.
        ablation_shots: k of the ablation runs.
        ablation_seeds: Seeds of the ablation runs.
        max_minutes: Stop starting new runs after this many minutes (rerun to continue); None: no limit.
        rungs: Which parts to run now: ``sources`` (teacher and main student: rungs a, b) and/or
            ``targets`` (rungs c-e, the ablations' distillations included; needs the sources' adapters);
            ``[]`` runs nothing and rewrites the report from the current runs.
    """

    shots: dict[int, list[int]] = field(default_factory=lambda: {16: [0, 1, 2], 64: [0]})
    steps: dict[int, int] = field(default_factory=lambda: {16: 40, 64: 80})
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)
    ablation_shots: int = 16
    ablation_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    max_minutes: float | None = None
    rungs: list[str] = field(default_factory=lambda: ["sources", "targets"])


class OutOfTime(Exception):
    """The chunk's time is up; completed runs are recorded, the rest run on the next call."""


class Ladder(Pipeline):
    """Runs a :class:`LadderConfig` (see module docstring)."""

    config: LadderConfig

    def __init__(self, config: LadderConfig):
        super().__init__(config)
        needed = set(config.shots) | ({config.ablation_shots} if config.ablations else set())
        missing = sorted(needed - set(config.steps))
        if missing:
            raise ValueError(f"ladder: steps has no entry for k = {missing} (steps: {config.steps})")
        for variant, overrides in config.ablations.items():
            check_settings(f"ablations[{variant!r}]", overrides, MultitaskDistillation, "model")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if config.max_minutes is not None and (world > 1 or strategy_settings(config.strategy).get("devices", 1) != 1):
            # each process would decide on its own clock, and one stopping while the others start a run hangs them
            raise ValueError("--time-budget / max_minutes is for one-process runs; a multi-GPU run stops when "
                             "killed and continues from its last finished run when started again")  # fmt: skip
        self.started = time.monotonic()
        self._current: dict[Path, Path] | None = None  # set while current_folders() walks the plan

    def execute(self, run: Run) -> dict:
        """:meth:`Pipeline.execute` within the chunk's time, with the prompt text dropped from its predictions."""
        limit = self.config.max_minutes
        if self._current is not None or limit is not None:
            _, _, record, current = self.record_status(run)
            if self._current is not None:  # walking the plan: note the run if its record is current, run nothing
                if current:
                    self._current[run.folder.resolve()] = record.resolve()
                return {}
            # a stale record (earlier settings, or an upstream stage reran) is a run to do, like a missing one
            if not current and time.monotonic() - self.started > 60 * limit:
                raise OutOfTime(run.name)
        result = super().execute(run)
        if rank_zero():
            compact_predictions(run.folder)
        return result

    # ------------------------------------------------------------------ the rungs
    def run(self) -> dict:
        """Run every rung (until ``max_minutes``), then write results.csv / results.md."""
        try:
            self.check_plan()
            if "sources" in self.config.rungs:
                for run in self.source_runs():
                    self.execute(run)
            if "targets" in self.config.rungs:
                for run in self.target_runs():
                    self.execute(run)
            complete = set(self.config.rungs) >= {"sources", "targets"}
        except OutOfTime as stop:
            print(f"[ladder] time is up before {stop}; rerun to continue", flush=True)
            complete = False
        if rank_zero():
            self.report(complete)
        return {"complete": complete}

    def plan(self) -> list[Run]:
        """Every run of the ladder, in the order it runs them."""
        return self.source_runs() + self.target_runs()

    def current_folders(self) -> dict[Path, Path]:
        """The run folders whose record matches what this config would run now (settings, data and
        upstream adapters), each with its ``done/`` record: the only results a report may show. A folder
        left from an earlier config or an upstream stage that has since rerun is stale until its own run
        redoes it."""
        self._current = {}
        try:
            for run in self.plan():
                try:
                    self.execute(run)
                except (DataFormatError, TaskDeclarationError):  # bad data names its own file and place
                    raise
                except Exception as err:  # a run that cannot even be configured: say which, in one line
                    raise SettingsError(f"{self.out}: run {run.name!r} cannot be set up: {one_line(err)}") from err
            return self._current
        finally:
            self._current = None

    def check_plan(self) -> int:
        """Resolve every run of the plan and build its data module before anything runs, so that a bad
        stage setting fails now, naming its run, instead of hours into a reproduction. Prints and returns
        how many runs are left to do (the data fingerprints it computes are reused by the runs).

        Raises:
            ValueError: naming the first run whose config or data settings are invalid.
        """
        total, current = len(self.plan()), len(self.current_folders())
        print(f"[ladder] {self.out}: {total} runs planned, {current} recorded and current, "
              f"{total - current} to run", flush=True)  # fmt: skip
        return total - current

    def report(self, complete: bool = False) -> None:
        """Write results.csv / results.md from the current runs (stale folders are left out and counted)."""
        from metaprompt.ladder_report import write_report

        write_report(self.out, complete, self.current_folders())

    def source_runs(self) -> list[Run]:
        """Rungs a and b: the zero-shot backbone, the teacher and the main student, on the sources' validation split."""
        cfg = self.config
        on_val = dict(data=SOURCES_ON_VALIDATION)
        return [
            self.make_run(
                "sources/backbone zero-shot", "zero_shot", self.out / "sources" / "backbone_zero-shot", Stage(0),
                cfg.sources, **on_val,
            ),
            self.make_run(
                "teacher", "teacher", self.out / "teacher", cfg.teacher, cfg.sources,
                model={"prompt_length": cfg.prompt_length}, **on_val,
            ),
            self.distill_run(""),
        ]  # fmt: skip

    def distill_stage(self, variant: str) -> Stage:
        cfg = self.config
        # merged field by field: an ablation's ``optim: {lr: ...}`` keeps the stage's other optim fields
        return Stage(cfg.distill.max_steps, merge(cfg.distill.model, cfg.ablations.get(variant, {})), cfg.distill.data)

    def distill_folder(self, variant: str) -> Path:
        return self.out / ("distill" if not variant else f"distill-{slug(variant)}")

    def distill_run(self, variant: str) -> Run:
        """One distillation: the main student (scored on the sources: rung b) or an ablation (targets only)."""
        return self.make_run(
            f"distill{'-' + slug(variant) if variant else ''}", "distill", self.distill_folder(variant),
            self.distill_stage(variant), self.config.sources,
            model={"teacher_adapter": str(self.out / "teacher" / "adapter")}, data=SOURCES_ON_VALIDATION,
            test=not variant,
        )  # fmt: skip

    def target_runs(self) -> list[Run]:
        """Targets in phases, so that a partial ladder already holds whole comparisons: zero-shot on every
        target, then one seed of every adapted system on every target, then the other seeds, then ablations
        (each ablation's distillation just before its first adapted run)."""
        from metaprompt.tasks.taskset import task_arguments

        cfg = self.config
        declared = dict(task_arguments(cfg.targets, cfg.data.get("root")))  # a user's target: its declaration
        tasks = list(declared)
        meta = {"metaprompt_adapter": str(self.distill_folder("") / "adapter")}
        zero = Stage(0, data={"k_shot": 0})
        runs = []
        for task in tasks:
            root = self.out / "targets" / task
            if "backbone zero-shot" in cfg.systems:
                runs.append(
                    self.make_run(
                        f"{task}/backbone zero-shot",
                        "zero_shot",
                        root / "backbone_zero-shot" / "k0-s0",
                        zero,
                        declared[task],
                    )
                )
            if "metaprompt zero-shot" in cfg.systems:
                runs.append(
                    self.make_run(
                        f"{task}/metaprompt zero-shot", "target", root / "metaprompt_zero-shot" / "k0-s0", zero,
                        declared[task], model=meta,
                    )
                )  # fmt: skip
        plan = sorted(
            {(i, k, seed) for k, seeds in cfg.shots.items() for i, seed in enumerate(seeds)},
            key=lambda p: (p[0], k_order(p[1]), p[2]),
        )
        for _, k, seed in plan:  # seed index first: every k's first seed before any second seed
            for task in tasks:
                for system, folder, stage, settings, model in self.adapted_systems(meta):
                    if system in cfg.systems:
                        runs.append(
                            self._adapted_run(task, system, folder, stage, settings, k, seed, model, declared[task])
                        )
        distilled: set[str] = set()
        for seed in cfg.ablation_seeds:  # ablations last: each distils its own metaprompt first
            for variant in cfg.ablations:
                if variant not in distilled:
                    runs.append(self.distill_run(variant))
                    distilled.add(variant)
                model = {"metaprompt_adapter": str(self.distill_folder(variant) / "adapter")}
                for task in tasks:
                    runs.append(
                        self._adapted_run(
                            task, f"metaprompt adapted ({variant})", f"metaprompt_adapted_{slug(variant)}", "target",
                            cfg.target, cfg.ablation_shots, seed, model, declared[task],
                        )
                    )  # fmt: skip
        return runs

    def adapted_systems(self, meta: dict[str, Any]) -> list[tuple[str, str, str, Stage, dict[str, Any]]]:
        """``(system, folder name, stage, its settings, module arguments)`` of each adapted system;
        ``meta`` points the target stage at the distilled metaprompt."""
        cfg = self.config
        return [
            ("metaprompt adapted", "metaprompt adapted", "target", cfg.target, meta),
            (
                "prompt tuning",
                "prompt tuning",
                "prompt_tuning",
                cfg.prompt_tuning,
                {"prompt_length": cfg.prompt_length},
            ),
            ("LoRA", "LoRA", "lora", cfg.lora, {}),
        ]

    def k_shot(self, k: int | str) -> int | str:
        """The data module's ``k_shot`` for the ladder's k."""
        return k

    def _adapted_run(self, task, system, folder_name, stage, settings, k, seed, model, tasks=None) -> Run:
        """One adapted system on one target at k shots and one seed, with the ladder's equal steps at k;
        ``tasks``: the data module's tasks argument for it (default: the task's name)."""
        at_k = Stage(self.config.steps[k], dict(settings.model), {**settings.data, "k_shot": self.k_shot(k)})
        folder = self.out / "targets" / task / folder_name.replace(" ", "_") / f"k{k}-s{seed}"
        tasks = task if tasks is None else tasks
        return self.make_run(f"{task}/{system}/k{k}-s{seed}", stage, folder, at_k, tasks, seed=seed, model=model)


def slug(text: str) -> str:
    """A folder-safe form of an ablation name."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
