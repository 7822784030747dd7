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
    targets/<task>/<system>/k<k>-s<seed>/      metrics.json, predictions.jsonl (no input text)
    results.csv   one row per task x system x k x seed: score, ci_low, ci_high, n_test
    results.md    the rungs as tables, with paired-bootstrap intervals of the differences
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metaprompt.data import MultitaskDataModule
from metaprompt.modules import (
    BackboneOnly,
    LoRA,
    MultitaskDistillation,
    PromptTuning,
    TargetAdaptation,
    TeacherPromptTuning,
)
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage, check_settings


class ValidationAsTest(MultitaskDataModule):
    """The data module with the validation split served as the test split (source-task scoring)."""

    def test_dataloader(self):
        return self.val_dataloader()


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
        self.started = time.monotonic()
        self._current: set[Path] | None = None  # set while current_folders() walks the plan

    def _run(self, name, key, module_cls, module_kw, tasks, stage, folder, test, seed=0, data_cls=MultitaskDataModule):
        """:meth:`Pipeline._run` within the chunk's time, with the prompt text dropped from its predictions."""
        limit = self.config.max_minutes
        if self._current is not None or limit is not None:
            _, _, record, current = self.record_status(name, key, module_kw, tasks, stage, seed, data_cls)
            if self._current is not None:  # walking the plan: note the run if its record is current, run nothing
                if current:
                    self._current.update({folder.resolve(), record.resolve()})
                return {}
            # a stale record (earlier settings, or an upstream stage reran) is a run to do, like a missing one
            if not current and time.monotonic() - self.started > 60 * limit:
                raise OutOfTime(name)
        result = super()._run(name, key, module_cls, module_kw, tasks, stage, folder, test, seed, data_cls)
        strip_inputs(folder / "predictions.jsonl")
        return result

    # ------------------------------------------------------------------ the rungs
    def run(self) -> dict:
        """Run every rung (until ``max_minutes``), then write results.csv / results.md."""
        try:
            self._sources(run="sources" in self.config.rungs)
            if "targets" in self.config.rungs:
                self._targets()
            complete = set(self.config.rungs) >= {"sources", "targets"}
        except OutOfTime as stop:
            print(f"[ladder] time is up before {stop}; rerun to continue", flush=True)
            complete = False
        self.report(complete)
        return {"complete": complete}

    def current_folders(self) -> set[Path]:
        """The run folders (and their ``done/`` records) whose record matches what this config would run
        now (settings, data and upstream adapters): the only results a report may show. A folder left from
        an earlier config or an upstream stage that has since rerun is stale until its own run redoes it."""
        self._current = set()
        try:
            self._sources(run=True)
            self._targets()
            return self._current
        finally:
            self._current = None

    def report(self, complete: bool = False) -> None:
        """Write results.csv / results.md from the current runs (stale folders are left out and counted)."""
        from metaprompt.ladder_report import write_report

        write_report(self.out, complete, self.current_folders())

    def _key(self, *parts: Any) -> str:
        return super()._key("ladder-v1", *parts)

    def _base(self) -> tuple:
        cfg = self.config
        return (cfg.backbone, cfg.prompt_length, cfg.data, cfg.max_new_tokens)

    def _sources(self, run: bool = True) -> None:
        """Rungs a and b; with ``run=False`` only the keys and folders are set."""
        cfg, base = self.config, self._base()
        self.teacher_key = self._key(base, cfg.sources, asdict(cfg.teacher))
        self._distill_keys()
        if not run:
            return
        self._run(
            "sources/backbone zero-shot", self._key(base, cfg.sources), BackboneOnly, {}, cfg.sources,
            Stage(0), self.out / "sources" / "backbone_zero-shot", True, 0, ValidationAsTest,
        )  # fmt: skip
        self._run(
            "teacher", self.teacher_key, TeacherPromptTuning, {"prompt_length": cfg.prompt_length}, cfg.sources,
            cfg.teacher, self.out / "teacher", True, 0, ValidationAsTest,
        )  # fmt: skip
        self._distill("")

    def _distill(self, variant: str) -> None:
        """One distillation: the main student (scored on the sources: rung b) or an ablation (targets only)."""
        key, folder, stage = self.distill_keys[variant]
        self._run(
            f"distill{'-' + slug(variant) if variant else ''}", key, MultitaskDistillation,
            {"teacher_adapter": str(self.out / "teacher" / "adapter")}, self.config.sources, stage, folder,
            not variant, 0, ValidationAsTest,
        )  # fmt: skip

    def _distill_keys(self) -> None:
        cfg = self.config
        self.distill_keys = {}
        for variant, overrides in {"": {}, **cfg.ablations}.items():
            stage = Stage(cfg.distill.max_steps, {**cfg.distill.model, **overrides}, cfg.distill.data)
            folder = self.out / ("distill" if not variant else f"distill-{slug(variant)}")
            self.distill_keys[variant] = (self._key(self.teacher_key, asdict(stage)), folder, stage)

    def _targets(self) -> None:
        """Targets in phases, so that a partial ladder already holds whole comparisons: zero-shot on every
        target, then one seed of every adapted system on every target, then the other seeds, then ablations."""
        from metaprompt.tasks.taskset import resolve_tasks

        cfg = self.config
        tasks = [spec.name for spec in resolve_tasks(cfg.targets, cfg.data.get("root"))]
        key0, distill0, _ = self.distill_keys[""]
        zero = Stage(0, data={"k_shot": 0})
        systems = set(cfg.systems)
        for task in tasks:
            root = self.out / "targets" / task
            if "backbone zero-shot" in systems:
                self._run(
                    f"{task}/backbone zero-shot", self._key(self._base(), task), BackboneOnly, {}, task, zero,
                    root / "backbone_zero-shot" / "k0-s0", True,
                )  # fmt: skip
            if "metaprompt zero-shot" in systems:
                self._run(
                    f"{task}/metaprompt zero-shot", self._key(key0, task), TargetAdaptation,
                    {"metaprompt_adapter": str(distill0 / "adapter")}, task, zero,
                    root / "metaprompt_zero-shot" / "k0-s0", True,
                )  # fmt: skip
        plan = sorted({(i, k, seed) for k, seeds in cfg.shots.items() for i, seed in enumerate(seeds)})
        for _, k, seed in plan:  # seed index first: every k's first seed before any second seed
            for task in tasks:
                self._adapted(task, self.out / "targets" / task, k, seed)
        for seed in cfg.ablation_seeds:  # ablations last: each distils its own metaprompt first
            for variant in cfg.ablations:
                self._distill(variant)
                key, folder, _ = self.distill_keys[variant]
                for task in tasks:
                    self._adapt(
                        task, self.out / "targets" / task / f"metaprompt_adapted_{slug(variant)}",
                        cfg.ablation_shots, seed, key, {"metaprompt_adapter": str(folder / "adapter")},
                        f"metaprompt adapted ({variant})",
                    )  # fmt: skip

    def _adapted(self, task: str, root: Path, k: int, seed: int) -> None:
        cfg = self.config
        key0, distill0, _ = self.distill_keys[""]
        if "metaprompt adapted" in cfg.systems:
            self._adapt(
                task, root / "metaprompt_adapted", k, seed, key0,
                {"metaprompt_adapter": str(distill0 / "adapter")}, "metaprompt adapted",
            )  # fmt: skip
        if "prompt tuning" in cfg.systems:
            self._baseline(task, root / "prompt_tuning", k, seed, PromptTuning, cfg.prompt_tuning, "prompt tuning")
        if "LoRA" in cfg.systems:
            self._baseline(task, root / "LoRA", k, seed, LoRA, cfg.lora, "LoRA")

    def _stage_at(self, stage: Stage, k: int) -> Stage:
        return Stage(self.config.steps[k], dict(stage.model), {**stage.data, "k_shot": k})

    def _adapt(self, task, folder, k, seed, upstream_key, kw, system) -> None:
        stage = self._stage_at(self.config.target, k)
        key = self._key(upstream_key, asdict(stage), task, seed)
        self._run(
            f"{task}/{system}/k{k}-s{seed}", key, TargetAdaptation, kw, task, stage, folder / f"k{k}-s{seed}", True,
            seed,
        )  # fmt: skip

    def _baseline(self, task, folder, k, seed, cls, stage, system) -> None:
        stage = self._stage_at(stage, k)
        kw = {"prompt_length": self.config.prompt_length} if cls is PromptTuning else {}
        key = self._key(self._base(), asdict(stage), task, seed, system)
        self._run(
            f"{task}/{system}/k{k}-s{seed}", key, cls, kw, task, stage, folder / f"k{k}-s{seed}", True, seed,
        )  # fmt: skip


def slug(text: str) -> str:
    """A folder-safe form of an ablation name."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def strip_inputs(path: Path) -> None:
    """Drop the prompt text from a predictions.jsonl (recoverable from the uid; keeps committed files small)."""
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not any("input" in row for row in rows):
        return
    lines = [json.dumps({k: v for k, v in row.items() if k != "input"}, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
