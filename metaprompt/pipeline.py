"""``metaprompt pipeline -c lightning_configs/demo.yaml``: teacher -> distillation -> target adaptation -> test,
plus the baselines, with one table per target.

Each stage writes its artifact under ``output_dir`` and a completion record ``done/<stage>.json``
holding the hash of everything that determines it: its settings, its upstream stages' keys and the data
it serves (every selected record's uid, prompt and target text: ``MultitaskDataModule.fingerprint``). A
rerun skips stages whose record matches; change a setting, a data file or a verbalizer and that stage
and everything after it run again.

    output_dir/
      teacher/adapter/   distill/adapter/   targets/<task>/<system>/{adapter/,metrics.json,predictions.jsonl}
      <each run>/config.yaml   (the run as a LightningCLI config: `metaprompt fit -c` reruns it)
      done/<stage>.json  results.json  results.md
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from metaprompt.data import MultitaskDataModule
from metaprompt.modules import (
    BackboneOnly,
    LoRA,
    MultitaskDistillation,
    PromptTuning,
    TargetAdaptation,
    TeacherPromptTuning,
)

SYSTEMS = ("backbone zero-shot", "metaprompt zero-shot", "metaprompt adapted", "prompt tuning", "LoRA")


@dataclass
class Stage:
    """Training settings of one stage.

    Attributes:
        max_steps: Optimizer steps (0: no training).
        model: Extra keyword arguments for the stage's LightningModule (e.g. learning_rate, rank).
        data: Overrides of the shared data settings for this stage (e.g. k_shot, batch_size).
    """

    max_steps: int = 100
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """The whole chain.

    Attributes:
        output_dir: Folder for every artifact of the run.
        backbone: Backbone preset, folder or hub id.
        prompt_length: l for teachers, metaprompt and prompt-tuning baseline.
        sources: Task set of the source tasks.
        targets: Task set of the held-out targets (each adapted and scored separately).
        data: Shared MultitaskDataModule settings (max_length, batch_size, max_eval_per_task, ...).
        teacher, distill, target, prompt_tuning, lora: Per-stage settings.
        max_new_tokens: Greedy decoding budget per task type for every evaluation (see PromptModule).
        systems: Which rows of the table to run (subset of SYSTEMS).
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        precision: Lightning precision ("32-true", "bf16-mixed", ...).
    """

    output_dir: str = "runs/pipeline"
    backbone: str = "smollm2-135m"
    prompt_length: int = 100
    sources: str | list[str] = "clinical21"
    targets: str | list[str] = "targets10"
    data: dict[str, Any] = field(default_factory=dict)
    teacher: Stage = field(default_factory=lambda: Stage(2000))
    distill: Stage = field(default_factory=lambda: Stage(4000))
    target: Stage = field(default_factory=lambda: Stage(500, data={"k_shot": 16}))
    prompt_tuning: Stage = field(default_factory=lambda: Stage(500, data={"k_shot": 16}))
    lora: Stage = field(default_factory=lambda: Stage(500, data={"k_shot": 16}))
    max_new_tokens: dict[str, int] = field(default_factory=dict)
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    accelerator: str = "auto"
    precision: str = "32-true"


class StepPrinter(L.Callback):
    """One line every ``every`` steps (progress bars are unreadable in logs and CI)."""

    def __init__(self, name: str, every: int = 10):
        self.name, self.every, self.start = name, every, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            print(
                f"[pipeline] {self.name}: step {step}/{trainer.max_steps} loss {loss:.3f} "
                f"({time.perf_counter() - self.start:.0f} s)",
                flush=True,
            )


UPSTREAM_ADAPTERS = ("teacher_adapter", "metaprompt_adapter")  # module arguments naming another stage's output

PIPELINE_OWNED = {
    "model": ("backbone", "task_names", "output_dir", "seed", "max_new_tokens", "prompt_length", *UPSTREAM_ADAPTERS),
    "data": ("tasks", "backbone", "seed"),
}
"""Arguments the pipeline sets itself (from its own fields, per run): a stage may not override them, or the
pipeline-level value would silently not reach that stage (e.g. a stage's own backbone beside the data
module's tokenizer)."""


def accepted_arguments(cls: type) -> set[str]:
    """Keyword arguments ``cls(...)`` accepts: its ``__init__``'s, and its bases' while ``**kwargs`` passes on."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def check_settings(where: str, settings: dict[str, Any], cls: type, part: str) -> None:
    """Reject a stage's ``model`` / ``data`` key that ``cls`` does not take or that the pipeline owns.

    Raises:
        ValueError: naming the stage, the keys and what is accepted (before any stage runs, not hours in).
    """
    owned = sorted(set(settings) & set(PIPELINE_OWNED[part]))
    if owned:
        raise ValueError(f"{where}.{part}: {owned} are set by the pipeline (use its own fields), not per stage")
    unknown = sorted(set(settings) - accepted_arguments(cls))
    if unknown:
        raise ValueError(
            f"{where}.{part}: {cls.__name__} takes no {unknown}; it accepts {sorted(accepted_arguments(cls))}"
        )


def adapter_digest(folder: Path) -> str | None:
    """SHA-256 of an adapter folder's files (None when it does not exist yet)."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Pipeline:
    """Runs a :class:`PipelineConfig` stage by stage (see module docstring)."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.out = Path(config.output_dir)
        self._fingerprints: dict[str, str] = {}
        unknown = set(config.systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"unknown system(s) {sorted(unknown)}; choose from {SYSTEMS}")
        self.check_settings()

    STAGE_MODULES: dict[str, type] = {
        "teacher": TeacherPromptTuning,
        "distill": MultitaskDistillation,
        "target": TargetAdaptation,
        "prompt_tuning": PromptTuning,
        "lora": LoRA,
    }

    def check_settings(self) -> None:
        """Every stage's ``model`` and ``data`` keys reach an argument of its module / the data module."""
        cfg = self.config
        check_settings("data", cfg.data, MultitaskDataModule, "data")
        for name, cls in self.STAGE_MODULES.items():
            stage = getattr(cfg, name)
            check_settings(name, stage.model, cls, "model")
            check_settings(name, stage.data, MultitaskDataModule, "data")

    def _key(self, *parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def record_key(self, key: str, data: MultitaskDataModule, module_kw: dict) -> str:
        """The key a stage's completion record must match: its settings ``key``, the data it serves (an
        edited file or verbalizer reruns it) and the content of the adapters it reads (a rerun upstream
        stage reruns everything after it, whatever its settings)."""
        upstream = {name: adapter_digest(Path(module_kw[name])) for name in UPSTREAM_ADAPTERS if module_kw.get(name)}
        return self._key(key, self._fingerprint(data), *([upstream] if upstream else []))

    def record_status(
        self, name: str, key: str, module_kw: dict, tasks: str, stage: Stage, seed: int, data_cls: type
    ) -> tuple[MultitaskDataModule, str, Path, bool]:
        """``(data module, full key, record path, whether the record matches)`` of one stage run."""
        data = data_cls(**self.data_kwargs(tasks, stage, seed))
        key = self.record_key(key, data, module_kw)
        record = self.out / "done" / f"{name.replace('/', '__')}.json"
        return data, key, record, record.is_file() and json.loads(record.read_text()).get("key") == key

    def _fingerprint(self, data: MultitaskDataModule) -> str:
        """``data.fingerprint()``, memoised by the data module's settings (a ladder checks ~100 records)."""
        memo = self._fingerprints
        settings = json.dumps([type(data).__name__, dict(data.hparams)], sort_keys=True, default=str)
        if settings not in memo:
            memo[settings] = data.fingerprint()
        return memo[settings]

    def data_kwargs(self, tasks: str | list[str], stage: Stage, seed: int) -> dict:
        """Keyword arguments of a stage run's data module: the shared data settings, then the stage's own."""
        cfg = self.config
        return {"tasks": tasks, "backbone": cfg.backbone, **cfg.data, **stage.data, "seed": seed}

    def module_kwargs(self, task_names: list[str], folder: Path, module_kw: dict, stage: Stage) -> dict:
        """Keyword arguments of a stage's module: the pipeline-wide settings, then the stage's own."""
        common = dict(backbone=self.config.backbone, task_names=task_names, output_dir=str(folder))
        if self.config.max_new_tokens:
            common["max_new_tokens"] = dict(self.config.max_new_tokens)
        return {**common, **module_kw, **stage.model}

    def trainer(self, name: str, stage: Stage, folder: Path) -> L.Trainer:
        """The Trainer of one stage run (one device; the run's CSV log and step lines; no checkpoints)."""
        cfg = self.config
        return L.Trainer(
            max_steps=max(stage.max_steps, 1),
            accelerator=cfg.accelerator,
            devices=1,
            precision=cfg.precision,
            logger=CSVLogger(str(folder), name="logs"),
            enable_checkpointing=False,
            enable_progress_bar=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=str(folder),
            enable_model_summary=False,
            callbacks=[StepPrinter(name)],
        )

    def write_run_config(
        self, folder: Path, module_cls: type, model_kw: dict, data_cls: type, data_kw: dict, stage: Stage, seed: int
    ) -> Path:
        """``<folder>/config.yaml``: the run as a LightningCLI config (``metaprompt fit|test -c`` reruns it).

        The CLI links ``model.backbone`` into the data module and ``data.task_names`` into the model, so
        those two are written once; what the pipeline's Trainer sets beyond them (logging, no
        checkpoints) is its own and not repeated here.
        """
        import yaml

        cfg = self.config
        config = {
            "seed_everything": seed,
            "trainer": {
                "max_steps": max(stage.max_steps, 1),
                "accelerator": cfg.accelerator,
                "precision": cfg.precision,
            },
            "model": {
                "class_path": f"{module_cls.__module__}.{module_cls.__qualname__}",
                "init_args": {k: v for k, v in model_kw.items() if k != "task_names"},
            },
            "data": {k: v for k, v in data_kw.items() if k != "backbone"},
        }
        note = ""
        if data_cls is not MultitaskDataModule:  # e.g. the ladder's sources, scored on validation
            note = f"# data module: {data_cls.__module__}.{data_cls.__qualname__} (the CLI's is MultitaskDataModule)\n"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "config.yaml"
        plain = json.loads(json.dumps(config, default=str))  # paths -> strings, tuples -> lists
        path.write_text(note + yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))
        return path

    def _run(
        self,
        name: str,
        key: str,
        module_cls: type,
        module_kw: dict,
        tasks: str,
        stage: Stage,
        folder: Path,
        test: bool,
        seed: int = 0,
        data_cls: type = MultitaskDataModule,
    ) -> dict:
        """Fit (if ``stage.max_steps``) and optionally test one module; skipped if its record matches.

        ``seed`` seeds the module (prompt/LoRA init), the data (k-shot sample, task sampler) and
        Lightning; the test sample does not depend on it. ``data_cls`` lets a caller test on another
        split (the ladder scores sources on validation).
        """
        start = time.perf_counter()
        data, key, record, current = self.record_status(name, key, module_kw, tasks, stage, seed, data_cls)
        if current:
            print(f"[pipeline] {name}: up to date, skipped", flush=True)
            return json.loads(record.read_text())["result"]
        L.seed_everything(seed, verbose=False)
        model_kw = {**self.module_kwargs(data.task_names, folder, module_kw, stage), "seed": seed}
        model = module_cls(**model_kw)
        self.write_run_config(
            folder, module_cls, model_kw, type(data), self.data_kwargs(tasks, stage, seed), stage, seed
        )
        trainer = self.trainer(name, stage, folder)
        result: dict[str, Any] = {}
        timing = {}
        if stage.max_steps > 0:
            tick = time.perf_counter()
            trainer.fit(model, datamodule=data)
            if hasattr(model, "export_adapter"):
                model.export_adapter(str(folder / "adapter"))
            timing["train_seconds"] = round(time.perf_counter() - tick, 1)
        if test:
            tick = time.perf_counter()
            trainer.test(model, datamodule=data, verbose=False)
            result = dict(model.last_test_scores)
            timing["eval_seconds"] = round(time.perf_counter() - tick, 1)
        if model.backbone is None:
            model.configure_model()
        result.update(model.parameter_counts())
        result.update(timing)  # train (fit + export) and eval (test) separately; "seconds" is the whole run
        result["seconds"] = round(time.perf_counter() - start, 1)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"key": key, "result": result}, indent=2, sort_keys=True))
        split = ", ".join(f"{k.split('_')[0]} {v} s" for k, v in timing.items())
        print(f"[pipeline] {name}: done in {result['seconds']} s" + (f" ({split})" if split else ""), flush=True)
        return result

    def run(self) -> dict[str, dict[str, dict]]:
        """Run every stage; returns ``{target: {system: result}}`` and writes results.json/.md."""
        cfg = self.config
        base = (cfg.backbone, cfg.prompt_length, cfg.data, cfg.max_new_tokens)
        teacher_key = self._key(base, cfg.sources, asdict(cfg.teacher))
        self._run(
            "teacher",
            teacher_key,
            TeacherPromptTuning,
            {"prompt_length": cfg.prompt_length},
            cfg.sources,
            cfg.teacher,
            self.out / "teacher",
            test=False,
        )
        distill_key = self._key(teacher_key, asdict(cfg.distill))
        self._run(
            "distill",
            distill_key,
            MultitaskDistillation,
            {"teacher_adapter": str(self.out / "teacher" / "adapter"), "prompt_length": cfg.prompt_length},
            cfg.sources,
            cfg.distill,
            self.out / "distill",
            test=False,
        )
        from metaprompt.tasks.taskset import resolve_tasks

        results: dict[str, dict[str, dict]] = {}
        meta = {"metaprompt_adapter": str(self.out / "distill" / "adapter")}
        zero = Stage(0, data=cfg.target.data)
        plan = {
            "backbone zero-shot": (BackboneOnly, {}, zero, self._key(base)),
            "metaprompt zero-shot": (TargetAdaptation, meta, zero, distill_key),
            "metaprompt adapted": (TargetAdaptation, meta, cfg.target, self._key(distill_key, asdict(cfg.target))),
            "prompt tuning": (
                PromptTuning,
                {"prompt_length": cfg.prompt_length},
                cfg.prompt_tuning,
                self._key(base, asdict(cfg.prompt_tuning)),
            ),
            "LoRA": (LoRA, {}, cfg.lora, self._key(base, asdict(cfg.lora))),
        }
        for spec in resolve_tasks(cfg.targets, cfg.data.get("root")):
            for system in cfg.systems:
                cls, kw, stage, key = plan[system]
                folder = self.out / "targets" / spec.name / system.replace(" ", "_")
                results.setdefault(spec.name, {})[system] = self._run(
                    f"{spec.name}/{system}", self._key(key, spec.name), cls, kw, spec.name, stage, folder, test=True
                )
        self._write(results)
        return results

    def _write(self, results: dict[str, dict[str, dict]]) -> None:
        (self.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
        (self.out / "results.md").write_text(render_results(results))
        print(render_results(results))


def render_results(results: dict[str, dict[str, dict]]) -> str:
    """One Markdown table per target: system, score (x100) with its 95% bootstrap interval, the number of
    test examples and how they were scored, trainable parameters and fraction."""
    lines = []
    for task, systems in results.items():
        lines += [
            f"### {task}",
            "",
            "| system | score [95% CI] | n | scoring | trainable params | % of backbone |",
            "|---|---:|---:|---|---:|---:|",
        ]
        for system, r in systems.items():
            score, low, high = (r.get(f"{task}/{key}") for key in ("score", "ci_low", "ci_high"))
            shown = "-" if score is None else f"{100 * score:.1f}"
            if low is not None and high is not None:
                shown += f" [{100 * low:.1f}, {100 * high:.1f}]"
            lines.append(
                f"| {system} | {shown} | {r.get(f'{task}/n_test', '-')} | {r.get(f'{task}/scoring', '-')} | "
                f"{int(r.get('trainable_params', 0)):,} | {100 * r.get('trainable_fraction', 0):.4f} |"
            )
        lines.append("")
    return "\n".join(lines)
