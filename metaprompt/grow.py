"""``metaprompt grow``: add source tasks to a finished distillation without retraining it from scratch.

For a run folder with ``teacher/adapter`` and ``distill/adapter`` (a pipeline, ladder or reproduction),
``metaprompt grow -c lightning_configs/grow/<preset>.yaml`` writes under ``<run>/grow/``:

1. ``teacher``: a teacher prompt for each new task (the teacher stage on the new tasks only);
2. ``factors``: the new tasks' U, V, distilled from their teachers with P* and the old factors fixed
   (``MetapromptGrowth``, ``train_shared: false``), then merged with the old ones into ``metaprompt/adapter``
   (and the teachers into ``teachers/adapter``): the old tasks' prompts are unchanged by construction;
3. optionally ``refine``: P* and all factors trained a little on old + new tasks, the old tasks replayed
   from a small buffer (``refine.data.k_shot`` examples each) with their teachers' cached outputs;
4. optionally ``scratch``: the distillation from scratch on old + new tasks, for the comparison;
5. the scorings, on the sources' validation split as the ladder scores sources: the original metaprompt
   on the old tasks, the grown (and refined) one on all, the new tasks' zero-shot backbone and teacher;
   and ``results.md``: each old task's score change (paired bootstrap), the new tasks' share of their
   teachers' gain over zero-shot, and the cost of growing next to that of (re)training.

Every unit is a pipeline run with its record under ``<run>/grow/done``: a rerun skips what is finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.modules import MetapromptGrowth
from metaprompt.pipeline import Pipeline, PipelineConfig, Run, Stage

ON_VALIDATION = {"test_split": "validation"}  # sources are scored on validation (their test is not held out)


@dataclass
class GrowConfig(PipelineConfig):
    """What to grow and how (beyond :class:`PipelineConfig`, whose ``output_dir`` is the run to grow,
    ``sources`` its tasks, ``teacher`` the new tasks' teacher stage and ``distill`` the from-scratch stage).

    Attributes:
        new_tasks: Task set of the tasks to add (manifest ids or declarations, as ``sources``).
        factors: Stage of the new tasks' factors (P* and the old factors fixed).
        refine: Stage of the refinement of P* and all factors (``max_steps: 0``: none); its ``data.k_shot``
            is the replay buffer per task.
        scratch: Also distil old + new tasks from scratch with ``distill`` (the comparison).
    """

    new_tasks: str | list[Any] = ""
    factors: Stage = field(default_factory=lambda: Stage(100))
    refine: Stage = field(default_factory=lambda: Stage(0, data={"k_shot": 16}))
    scratch: bool = False


def _entries(tasks: str | list[Any], root: str | None) -> list[Any]:
    """A task set as a list a data module takes (ids, or declarations of user tasks)."""
    from metaprompt.tasks.taskset import task_arguments

    return [arg if isinstance(arg, str) else arg[0] for _, arg in task_arguments(tasks, root)]


def merge_adapters(first: Path, second: Path, out: Path | str) -> Path:
    """One adapter holding the tasks of two of the same kind: ``teacher``/``prompt_tuning`` prompts, or
    ``metaprompt`` factors over the same P* (the second run kept the first's P*; checked)."""
    out = Path(out)
    (a, ca), (b, cb) = load_adapter(first), load_adapter(second)
    if ca.kind != cb.kind or ca.hidden_size != cb.hidden_size or ca.prompt_length != cb.prompt_length:
        raise ValueError(f"{first} and {second} do not fit together ({ca.kind}/{cb.kind}, shapes)")
    clash = sorted(set(ca.task_names) & set(cb.task_names))
    if clash:
        raise ValueError(f"{second}: task(s) {clash} are already in {first}")
    keys = ["prompts"] if ca.kind in ("teacher", "prompt_tuning") else ["task_cols", "task_rows"]
    tensors = {key: torch.cat([a[key], b[key]]) for key in keys}
    if ca.kind == "metaprompt":
        if not torch.equal(a["shared_prompt"], b["shared_prompt"]):
            raise ValueError(f"{second}: its P* differs from {first}'s (trained with train_shared?); cannot merge")
        tensors["shared_prompt"] = a["shared_prompt"]
    names = ca.task_names + cb.task_names
    extra = {**ca.extra, "merged_from": [str(first), str(second)]}
    config = AdapterConfig(ca.kind, ca.backbone, ca.hidden_size, ca.prompt_length, ca.rank, names, extra=extra)
    if (out / "adapter.json").is_file():  # already merged: rewriting would change the bytes (safetensors orders
        old, old_config = load_adapter(out)  # its header metadata per process), and with them downstream keys
        if old_config == config and old.keys() == tensors.keys() and all(torch.equal(old[k], tensors[k]) for k in old):
            return out
    return save_adapter(out, tensors, config)


class Grower(Pipeline):
    """Runs a :class:`GrowConfig` (see module docstring); records under ``<output_dir>/grow/done``."""

    STAGE_MODULES = {**Pipeline.STAGE_MODULES, "factors": MetapromptGrowth, "refine": MetapromptGrowth}

    def __init__(self, config: GrowConfig):
        if not config.new_tasks:
            raise ValueError("grow: new_tasks is empty; name the task(s) to add")
        super().__init__(config)
        self.base = Path(config.output_dir)
        self.out = self.base / "grow"
        root = config.data.get("root")
        self.old, self.new = _entries(config.sources, root), _entries(config.new_tasks, root)
        names = lambda entries: [e if isinstance(e, str) else e["name"] for e in entries]  # noqa: E731
        self.old_names, self.new_names = names(self.old), names(self.new)
        if clash := sorted(set(self.old_names) & set(self.new_names)):
            raise ValueError(f"grow: {clash} already among the sources of {self.base}")

    def runs(self) -> dict[str, Run]:
        """Every run, by role, in order (the merges happen between ``factors`` and ``grown``)."""
        cfg, out, base = self.config, self.out, self.base
        length = {"prompt_length": cfg.prompt_length}
        teachers, grown = str(out / "teachers" / "adapter"), str(out / "metaprompt" / "adapter")
        score = Stage(0)
        runs = {
            "new zero-shot": self.make_run("new/backbone zero-shot", "zero_shot", out / "new_zero-shot", score, self.new, data=ON_VALIDATION),
            "teacher": self.make_run("teacher", "teacher", out / "teacher", cfg.teacher, self.new, model=length, data=ON_VALIDATION),
            "original": self.make_run(  # skipped when the base distillation was scored so (a ladder's is)
                "original", "grow", out / "original", score, self.old, data=ON_VALIDATION,
                model={"teacher_adapter": str(base / "teacher" / "adapter"), "base_metaprompt": str(base / "distill" / "adapter")},
            ),
            "factors": self.make_run(
                "factors", "grow", out / "factors", cfg.factors, self.new, data=ON_VALIDATION, test=False,
                model={"teacher_adapter": str(out / "teacher" / "adapter"), "base_metaprompt": str(base / "distill" / "adapter"),
                       "train_shared": False},
            ),
            "grown": self.make_run(  # the new tasks only: the old prompts are checked bit-identical instead
                "grown", "grow", out / "grown", score, self.new, data=ON_VALIDATION,
                model={"teacher_adapter": teachers, "base_metaprompt": grown},
            ),
        }  # fmt: skip
        if self.base_scored():
            del runs["original"]
        if cfg.refine.max_steps:
            runs["refined"] = self.make_run(
                "refined", "grow", out / "refined", cfg.refine, self.old + self.new, data=ON_VALIDATION,
                model={"teacher_adapter": teachers, "base_metaprompt": grown, "train_shared": True, "teacher_cache": True},
            )  # fmt: skip
        if cfg.scratch:
            runs["scratch"] = self.make_run(
                "scratch", "distill", out / "scratch", cfg.distill, self.old + self.new, data=ON_VALIDATION,
                model={"teacher_adapter": teachers, **length},
            )  # fmt: skip
        return runs

    def base_scored(self) -> bool:
        """Whether the base distillation's own test scored every old task on validation (as a ladder's did)."""
        metrics, config = self.base / "distill" / "metrics.json", self.base / "distill" / "config.yaml"
        if not (metrics.is_file() and config.is_file()):
            return False
        import yaml

        scored = json.loads(metrics.read_text())
        split = (yaml.safe_load(config.read_text()).get("data") or {}).get("test_split")
        return split == "validation" and all(f"{t}/score" in scored for t in self.old_names)

    def original_folder(self) -> Path:
        return self.base / "distill" if self.base_scored() else self.out / "original"

    def old_prompts_unchanged(self) -> bool:
        """Whether the grown metaprompt's P* and old factors equal the base's bit for bit."""
        (a, ca), (b, _) = (
            load_adapter(self.base / "distill" / "adapter"),
            load_adapter(self.out / "metaprompt" / "adapter"),
        )
        k = len(ca.task_names)
        return torch.equal(a["shared_prompt"], b["shared_prompt"]) and all(
            torch.equal(a[key], b[key][:k]) for key in ("task_cols", "task_rows")
        )

    def check_ready(self) -> None:
        """The base run is finished and every run's settings resolve (a typo fails before the first run)."""
        for name in ("teacher", "distill"):
            if not (self.base / name / "adapter" / "adapter.json").is_file():
                raise FileNotFoundError(f"grow: {self.base / name / 'adapter'} not found; grow a finished distillation")
        for run in self.runs().values():
            self.resolve(run)

    def run(self) -> dict[str, dict]:
        """Run (or skip as up to date) every unit, merge, and write ``grow/results.{json,md}``."""
        self.check_ready()
        results: dict[str, dict] = {}
        for role, run in self.runs().items():
            if role == "grown":  # the merges: deterministic, from the adapters the runs before wrote
                merge_adapters(
                    self.base / "teacher" / "adapter",
                    self.out / "teacher" / "adapter",
                    self.out / "teachers" / "adapter",
                )
                merge_adapters(
                    self.base / "distill" / "adapter",
                    self.out / "factors" / "adapter",
                    self.out / "metaprompt" / "adapter",
                )
            results[role] = self.execute(run)
        from metaprompt.grow_report import write_report

        (self.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
        write_report(self, results)
        return results
