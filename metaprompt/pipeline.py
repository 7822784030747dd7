"""``metaprompt pipeline -c lightning_configs/demo.yaml``: teacher -> distillation -> target adaptation -> test,
plus the baselines, with one table per target.

Every stage run is its shipped stage YAML (``lightning_configs/teacher.yaml``, ``distill.yaml``,
``target.yaml``, ``prompt_tuning.yaml``, ``lora.yaml``, ``zero_shot.yaml``) with the pipeline's overrides,
resolved and built by the CLI's own parser (:mod:`metaprompt.compose`): what ``metaprompt fit -c
lightning_configs/teacher.yaml -c <the same overrides>`` would build. A setting the pipeline config does not
give keeps its stage YAML's value. The overrides are: the backbone, prompt length, tasks and seed; the shared
``data`` settings and the stage's own ``model``/``data``/``max_steps``; and how the pipeline runs a stage
(:meth:`Pipeline.run_shape`: one device, a CSV log and step lines, no validation passes).

Every run's settings are checked before the first run starts (:meth:`Pipeline.check_runs`). A killed
pipeline, rerun, continues its interrupted run from that run's last checkpoint (``<run>/checkpoints``, every
``checkpoint_every`` steps, kept only while it runs and only for the settings it was written under) and ends
with the adapter an uninterrupted run would have; a finished run is skipped only while the adapter its record
describes is still there, unchanged (:meth:`Pipeline.artifacts_changed`).

Each run writes its resolved config (``<run>/config.yaml``: ``metaprompt fit -c`` reruns it), its adapter
(``AdapterExport``, as in ``metaprompt fit``) and a completion record ``done/<run>.json`` keyed by the
resolved config (less where things are written), the data it serves (every selected record's uid, prompt
and target: ``MultitaskDataModule.fingerprint``) and the content of the adapters it reads. A rerun skips
runs whose record matches; change a setting, a stage YAML, a data file or a verbalizer, or rerun an
upstream stage with another result, and that run and everything reading it run again.

    output_dir/
      teacher/adapter/   distill/adapter/   targets/<task>/<system>/{adapter/,metrics.json,predictions.jsonl}
      <each run>/config.yaml   done/<run>.json   results.json  results.md
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace

from metaprompt import compose
from metaprompt.callbacks import ResumeCheckpoint
from metaprompt.data import MultitaskDataModule
from metaprompt.errors import SettingsError
from metaprompt.evaluation.args import EvalArgs
from metaprompt.modules import (
    LoRA,
    MultitaskDistillation,
    PromptTuning,
    TargetAdaptation,
    TeacherPromptTuning,
)
from metaprompt.optim import OptimArgs
from metaprompt.resources import RunResources

SYSTEMS = ("backbone zero-shot", "metaprompt zero-shot", "metaprompt adapted", "prompt tuning", "LoRA")
# v2: keyed by the resolved config (v1 hashed the pipeline's own fields); v3: grouped optim/evaluation
KEY_VERSION = "run-v3"


@dataclass
class Stage:
    """A stage's settings over its stage YAML.

    Attributes:
        max_steps: Optimizer steps (0: no training; None: the stage YAML's ``trainer.max_steps``).
        model: Module arguments over the YAML's ``model.init_args`` (e.g. ``optim: {lr: 0.03}``, rank).
        data: Data-module arguments over the YAML's ``data`` and the pipeline's shared ``data``.
    """

    max_steps: int | None = None
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """The whole chain. Every stage starts from its shipped YAML; these fields override it.

    Attributes:
        output_dir: Folder for every artifact of the run.
        backbone: Backbone preset, folder or hub id.
        prompt_length: l for teachers, metaprompt and prompt-tuning baseline.
        sources: Task set of the source tasks.
        targets: Task set of the held-out targets (each adapted and scored separately).
        data: Data-module settings shared by every stage (max_length, batch_size, max_eval_per_task, ...),
            over each stage YAML's ``data``.
        teacher, distill, target, prompt_tuning, lora: Per-stage settings (see :class:`Stage`).
        max_new_tokens: Greedy decoding budget per task type for every evaluation (see PromptModule).
        systems: Which rows of the table to run (subset of SYSTEMS).
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        precision: Lightning precision ("32-true", "bf16-mixed", ...).
        strategy: A strategy YAML (``lightning_configs/strategies/<name>.yaml``, or a path) whose ``trainer``
            settings (strategy, devices) every run uses, e.g. DeepSpeed ZeRO-3 sharding the backbone over a
            node's GPUs; None: one device. Every process runs the same plan in lock-step (Lightning launches
            them, or ``torchrun``); only rank 0 writes records, reports and predictions.
        wandb: ``WandbLogger`` arguments (``project``, ``entity``, ``mode``, ``tags``, ...) to log every run to
            Weights & Biases beside its CSV log: one W&B run per pipeline run, named after it, all in one
            group (``group``, default the output folder's name), with its per-task metrics, macro score,
            prediction table, resolved config and its adapter as an artifact. Offline unless ``mode`` (or
            ``WANDB_MODE=online``) says otherwise: ``wandb sync <output_dir>/wandb/wandb/offline-run-*``
            uploads later. The reproduction presets set ``wandb: {}``; None: CSV logs only.
        checkpoint_every: Steps between a training run's checkpoints (one device; 0: none), from which a killed
            pipeline resumes that run when rerun. Not part of a record's key: it does not change the result.
    """

    output_dir: str = "runs/pipeline"
    backbone: str = "smollm2-135m"
    prompt_length: int = 100
    sources: str | list[str] = "clinical21"
    targets: str | list[str] = "targets10"
    data: dict[str, Any] = field(default_factory=dict)
    teacher: Stage = field(default_factory=Stage)
    distill: Stage = field(default_factory=Stage)
    target: Stage = field(default_factory=Stage)
    prompt_tuning: Stage = field(default_factory=Stage)
    lora: Stage = field(default_factory=Stage)
    max_new_tokens: dict[str, int] = field(default_factory=dict)
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    accelerator: str = "auto"
    precision: str = "32-true"
    strategy: str | None = None
    wandb: dict[str, Any] | None = None
    checkpoint_every: int = 50


@dataclass
class Run:
    """One unit of work: a stage YAML, the overrides that make this run, and what to do with it.

    Attributes:
        name: Shown in the log and naming the record (``teacher``, ``rqe/LoRA/k16-s0``).
        stage: Stage YAML (a key of :data:`metaprompt.compose.STAGE_FILES`).
        folder: Where the run writes (adapter, config.yaml, metrics, predictions, logs).
        overrides: Merged over the stage YAML (LightningCLI layout: trainer / model.init_args / data).
        test: Test after fitting (fitting happens when the resolved ``trainer.max_steps`` > 0).
        validate: Also report the validation loss after fitting (``val_loss``; the sweep's criterion).
    """

    name: str
    stage: str
    folder: Path
    overrides: dict[str, Any]
    test: bool = True
    validate: bool = False


# module arguments naming another stage's output
UPSTREAM_ADAPTERS = ("teacher_adapter", "metaprompt_adapter", "base_metaprompt")

PIPELINE_OWNED = {
    "model": (
        "backbone",
        "task_names",
        "output_dir",
        "seed",
        "evaluation.max_new_tokens",
        "prompt_length",
        *UPSTREAM_ADAPTERS,
    ),
    "data": ("tasks", "backbone", "seed"),
}
"""Arguments the pipeline sets itself (from its own fields, per run): a stage may not override them, or the
pipeline-level value would silently not reach that stage (e.g. a stage's own backbone beside the data
module's tokenizer). ``group.field`` names a field of an argument group."""

ARG_GROUPS = {"optim": OptimArgs, "evaluation": EvalArgs}
"""Module arguments that are validated dataclasses (``metaprompt.groups``): a stage's keys inside them are
checked against their fields and values before any stage runs."""

LOCATIONS = {
    "trainer": ("default_root_dir", "logger"),
    "model": ("output_dir", *UPSTREAM_ADAPTERS),
    "data": ("root", "cache_dir"),
}
"""Resolved-config fields that say where things are, not what is computed: left out of a run's record key
(the upstream adapters enter by content, the data by its fingerprint)."""

LEAF_STAGES = ("target", "prompt_tuning", "lora", "zero_shot")
"""Stages whose adapter no other run reads: their record stands for their scores, so a record of theirs stays
current without its adapter (``results/`` keeps no LoRA adapters: .gitignore); an adapter that is there must
still be the one the record describes. Any other stage's record needs its adapter, unchanged."""


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
    owned = sorted(k for k in PIPELINE_OWNED[part] if _sets(settings, k))
    if owned:
        raise ValueError(f"{where}.{part}: {owned} are set by the pipeline (use its own fields), not per stage")
    unknown = sorted(set(settings) - accepted_arguments(cls))
    if unknown:
        raise ValueError(
            f"{where}.{part}: {cls.__name__} takes no {unknown}; it accepts {sorted(accepted_arguments(cls))}"
        )
    for name, group in ARG_GROUPS.items() if part == "model" else ():
        if isinstance(settings.get(name), dict):
            try:
                group.of(settings[name])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}.{part}.{err}") from None


def one_line(err: BaseException) -> str:
    """A parser or constructor error in one line: the key it names (``model.r``) and the innermost reason
    (jsonargparse's messages nest one ``Parser key "..."`` block per level, then list every subtype tried)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    marks = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.search(r'Parser key "([^"]+)":', line))]
    if not marks:
        return lines[0] if lines else type(err).__name__
    last = marks[-1][0]
    reason = lines[last + 1] if last + 1 < len(lines) else type(err).__name__
    if reason.startswith("Does not validate against any of"):  # a union: the first subtype's own error
        reason = next((line for line in lines[last + 1 :] if line.startswith("- ")), reason)
    return f"{'.'.join(key for _, key in marks)}: {reason.removeprefix('- ')}"


def _sets(settings: dict[str, Any], dotted: str) -> bool:
    """Whether ``settings`` holds ``dotted`` (``name`` or ``group.field``)."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return head in settings
    return isinstance(settings.get(head), dict) and rest in settings[head]


def adapter_digest(folder: Path) -> str | None:
    """SHA-256 of an adapter folder's files (None when it does not exist yet)."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def strategy_settings(strategy: str | None) -> dict[str, Any]:
    """The ``trainer`` section of a strategy YAML: a shipped name (``deepspeed_zero3``), a path relative to
    ``lightning_configs/`` (``strategies/deepspeed_zero3.yaml``) or any path; {} for None.

    Raises:
        ValueError: naming the file when it does not exist or holds no ``trainer`` mapping.
    """
    if not strategy:
        return {}
    from metaprompt.configs import CONFIG_DIR

    candidates = [Path(strategy), CONFIG_DIR / strategy, CONFIG_DIR / "strategies" / f"{strategy}.yaml"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        shipped = sorted(p.stem for p in (CONFIG_DIR / "strategies").glob("*.yaml"))
        raise ValueError(f"strategy {strategy!r}: no such file (shipped: {', '.join(shipped)})")
    trainer = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("trainer")
    if not isinstance(trainer, dict) or not trainer:
        raise ValueError(f"{path}: no `trainer:` settings (a strategy YAML sets trainer.strategy / devices)")
    return trainer


def finish_wandb(trainer, adapter: Path, name: str, config: dict[str, Any] | None = None) -> None:
    """Log the run's resolved config (model, data and trainer settings, as its ``config.yaml``) and its adapter
    folder as a W&B artifact, and close its W&B run (so that the next pipeline run starts its own); nothing
    without a W&B logger or off rank 0."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and rank_zero():
            import wandb

            if config is not None:  # Lightning logs the module's and data's hparams, not the trainer's
                logger.experiment.config.update({"resolved": config}, allow_val_change=True)

            if adapter.is_dir():
                artifact = wandb.Artifact("".join(c if c.isalnum() else "-" for c in name), type="adapter")
                artifact.add_dir(str(adapter))
                logger.experiment.log_artifact(artifact)
            logger.experiment.finish()


def rank_zero() -> bool:
    """Whether this process writes the pipeline's files (rank 0 of a multi-process run, or the only one)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (plain data) less its :data:`LOCATIONS` and the step-line callback: what the run
    computes, whatever folder it writes to."""
    ident = json.loads(json.dumps(config))
    parts = {"trainer": ident.get("trainer") or {}, "model": (ident.get("model") or {}).get("init_args") or {}}
    parts["data"] = ident.get("data") or {}
    for part, names in LOCATIONS.items():
        for name in names:
            parts[part].pop(name, None)
    callbacks = parts["trainer"].get("callbacks") or []
    parts["trainer"]["callbacks"] = [c for c in callbacks if not str(c.get("class_path", "")).endswith("StepPrinter")]
    return ident


class Pipeline:
    """Runs a :class:`PipelineConfig` stage by stage (see module docstring)."""

    SYSTEMS: tuple[str, ...] = SYSTEMS  # the systems this runner knows (``config.systems`` is a subset)

    STAGE_MODULES: dict[str, type] = {
        "teacher": TeacherPromptTuning,
        "distill": MultitaskDistillation,
        "target": TargetAdaptation,
        "prompt_tuning": PromptTuning,
        "lora": LoRA,
    }

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.out = Path(config.output_dir)
        self._fingerprints: dict[str, str] = {}
        self._run_keys: dict[Path, str] = {}  # run folder -> its current key (for the runs reading its adapter)
        unknown = set(config.systems) - set(self.SYSTEMS)
        if unknown:
            raise ValueError(f"unknown system(s) {sorted(unknown)}; choose from {self.SYSTEMS}")
        self.check_settings()

    def check_settings(self) -> None:
        """Every stage's ``model`` and ``data`` keys reach an argument of its module / the data module."""
        cfg = self.config
        check_settings("data", cfg.data, MultitaskDataModule, "data")
        for name, cls in self.STAGE_MODULES.items():
            stage = getattr(cfg, name)
            check_settings(name, stage.model, cls, "model")
            check_settings(name, stage.data, MultitaskDataModule, "data")

    def check_runs(self, runs: list[Run]) -> None:
        """Resolve every run and build its module and data module (no backbone loaded, no data read) before the
        first run starts: a setting any of them rejects (a key, a value of the wrong type, a value its class
        checks) fails now, not after the runs before it have trained.

        Raises:
            SettingsError: in one line, ``<run> (<stage> stage): <key>: <what is wrong>``.
        """
        for run in runs:
            try:
                plain = compose.plain(self.resolve(run))
                module_path, _, name = plain["model"]["class_path"].rpartition(".")
                getattr(importlib.import_module(module_path), name)(**plain["model"].get("init_args") or {})
                MultitaskDataModule(**plain["data"])
            except (argparse.ArgumentError, TypeError, ValueError) as err:
                raise SettingsError(f"{run.name} ({run.stage} stage): {one_line(err)}") from None

    def check_data(self) -> None:
        """Read every user-declared task of the sources and targets before the first run starts: a bad record
        fails now, in one line naming its file and place, not after the teachers and the student have trained.
        (The built-in datasets are read by the runs themselves and checked by ``metaprompt data stats``.)"""
        from metaprompt.tasks.taskset import resolve_tasks

        root = self.config.data.get("root")
        for tasks in (self.config.sources, self.config.targets):
            for spec in resolve_tasks(tasks, root):
                if spec.format != "manifest":
                    spec.load(root)

    # ----------------------------------------------------------------- what a run is
    def loggers(self, name: str, folder: Path) -> dict[str, Any] | list[dict[str, Any]]:
        """The run's CSV log, and with ``wandb`` set its W&B run in the pipeline's group (see
        :class:`PipelineConfig`). Loggers say where results go, so they are not part of a record's key."""
        csv = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(folder), "name": "logs"},
        }
        if self.config.wandb is None:
            return csv
        args = {"project": "metaprompt", "save_dir": str(self.out / "wandb"), "log_model": False,
                **self.config.wandb}  # fmt: skip
        args.setdefault("group", self.out.resolve().name)
        if "mode" not in args and "offline" not in args:  # offline unless asked: `wandb sync <save_dir>` uploads later
            mode = os.environ.get("WANDB_MODE", "offline")
            if mode == "disabled":  # the user's opt-out (Lightning would turn offline into WANDB_MODE=dryrun)
                args["mode"] = "disabled"
            else:
                args["offline"] = mode in ("offline", "dryrun")
        if args.get("offline") and args.get("log_model"):
            raise SettingsError(
                "wandb: log_model needs an online W&B run (WANDB_MODE=online); offline, each run's adapter is "
                "logged as an artifact anyway"
            )
        args.update(name=name, job_type=name.split("/")[1] if "/" in name else name)
        return [csv, {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": args}]

    def run_shape(self, name: str, folder: Path) -> dict[str, Any]:
        """How the pipeline runs any stage (Trainer overrides): one device, the run's CSV log and step lines,
        the adapter exported as ``metaprompt fit`` does, no validation passes (each run is tested on its own
        fixed sample instead). Checkpointing is off here, as in every record's key: :meth:`execute` adds the
        run's resume checkpoints to the built Trainer."""
        cfg = self.config
        return {
            "accelerator": cfg.accelerator,
            "devices": 1,
            "precision": cfg.precision,
            "default_root_dir": str(folder),
            "logger": self.loggers(name, folder),
            "callbacks": [
                {"class_path": "metaprompt.callbacks.AdapterExport"},
                {"class_path": "metaprompt.callbacks.StepPrinter", "init_args": {"name": name}},
            ],
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "val_check_interval": None,
            **strategy_settings(cfg.strategy),  # nothing without one: the records of one-device runs keep their keys
        }

    def make_run(
        self,
        name: str,
        stage: str,
        folder: Path,
        settings: Stage,
        tasks: str | list,
        *,
        seed: int = 0,
        model: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        test: bool = True,
    ) -> Run:
        """The :class:`Run` of one stage: its YAML with the pipeline's settings, then the stage's own.

        Args:
            name, stage, folder, test: As in :class:`Run`.
            settings: The stage's :class:`Stage` (its max_steps, model and data over the YAML).
            tasks: The data module's tasks.
            seed: Seeds Lightning, the module (prompt/LoRA init) and the data (k-shot sample, sampler); the
                test sample does not depend on it.
            model: Module arguments the pipeline sets for this run (prompt length, upstream adapter).
            data: Data arguments the pipeline sets for this run (e.g. ``test_split``).
        """
        cfg = self.config
        trainer = self.run_shape(name, folder)
        if settings.max_steps is not None:
            trainer["max_steps"] = settings.max_steps
        init_args = {"backbone": cfg.backbone, "output_dir": str(folder), "seed": seed}
        if cfg.max_new_tokens:
            init_args["evaluation"] = {"max_new_tokens": dict(cfg.max_new_tokens)}
        init_args = compose.merge(init_args, model or {}, settings.model)  # groups merge field by field
        data_args = {"tasks": tasks, **cfg.data, **settings.data, **(data or {}), "seed": seed}
        overrides = {"seed_everything": seed, "trainer": trainer, "model": {"init_args": init_args}, "data": data_args}
        plain = json.loads(json.dumps(overrides, default=str))  # paths -> strings, tuples -> lists (YAML's types)
        return Run(name, stage, folder, plain, test)

    def resolve(self, run: Run) -> Namespace:
        """The run's resolved config (its stage YAML + overrides, through the CLI's parser)."""
        return compose.resolve(run.stage, run.overrides)

    def record_key(self, config: dict[str, Any], data: MultitaskDataModule) -> str:
        """The key a run's completion record must match: its resolved ``config`` (plain data) less where it
        writes, the data it serves (an edited file or verbalizer reruns it), and for each adapter it reads,
        that adapter's content and the key of the run that wrote it (when it is a run of this pipeline):
        an upstream stage whose settings changed makes everything after it stale before it has even rerun."""
        init_args = config["model"].get("init_args") or {}
        upstream = {}
        for name in UPSTREAM_ADAPTERS:
            if init_args.get(name):
                path = Path(init_args[name])
                upstream[name] = [self._run_keys.get(path.parent.resolve()), adapter_digest(path)]
        parts = [KEY_VERSION, run_identity(config), self._fingerprint(data), upstream]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def record_status(self, run: Run) -> tuple[Namespace, str, Path, bool]:
        """``(resolved config, key, record path, whether the record matches)`` of one run; remembers the key
        for the runs that read this run's adapter."""
        config = self.resolve(run)
        plain = compose.plain(config)
        key = self.record_key(plain, MultitaskDataModule(**plain["data"]))
        self._run_keys[run.folder.resolve()] = key
        record = self.out / "done" / f"{run.name.replace('/', '__')}.json"
        return config, key, record, record.is_file() and json.loads(record.read_text()).get("key") == key

    def _fingerprint(self, data: MultitaskDataModule) -> str:
        """``data.fingerprint()``, memoised by the data module's settings (a ladder checks ~100 records)."""
        memo = self._fingerprints
        settings = json.dumps([type(data).__name__, dict(data.hparams)], sort_keys=True, default=str)
        if settings not in memo:
            memo[settings] = data.fingerprint()
        return memo[settings]

    # ----------------------------------------------------------------- running one
    def execute(self, run: Run) -> dict:
        """Fit (when the resolved ``trainer.max_steps`` > 0) and optionally test one run; skipped when its
        record matches and so do its artifacts (:meth:`artifacts_changed`). Writes ``<folder>/config.yaml``
        (the resolved config) before it starts; a fit resumes from the checkpoint of an interrupted attempt
        at the same run (:meth:`resume_point`)."""
        start = time.perf_counter()
        config, key, record, current = self.record_status(run)
        if current:
            saved = json.loads(record.read_text())
            changed = self.artifacts_changed(run, saved)
            if changed is None:
                print(f"[pipeline] {run.name}: up to date, skipped", flush=True)
                return saved["result"]
            print(f"[pipeline] {run.name}: its record matches, but {changed}: running it again", flush=True)
        run.folder.mkdir(parents=True, exist_ok=True)
        if rank_zero():
            (run.folder / "config.yaml").write_text(compose.dump(config), encoding="utf-8")
        result: dict[str, Any] = {}
        timing = {}
        with RunResources() as used:  # peak memory (and GPU energy) of this run alone
            built = compose.instantiate(config)
            model, data, trainer = built.model, built.datamodule, built.trainer
            if config.trainer.max_steps and config.trainer.max_steps > 0:
                tick = time.perf_counter()
                resume = self.resume_point(run, key, trainer)
                trainer.fit(model, datamodule=data, ckpt_path=resume)  # AdapterExport writes <folder>/adapter
                timing["train_seconds"] = round(time.perf_counter() - tick, 1)
                if run.validate:
                    result["val_loss"] = self.validation_loss(model, data)
            if run.test:
                tick = time.perf_counter()
                trainer.test(model, datamodule=data, verbose=False)
                result = {**result, **model.last_test_scores}
                timing["eval_seconds"] = round(time.perf_counter() - tick, 1)
        result.update(used.result)
        finish_wandb(trainer, run.folder / "adapter", run.name, compose.plain(config))
        if model.backbone is None:
            model.configure_model()
        result.update(model.parameter_counts())
        adapter = run.folder / "adapter"
        if adapter.is_dir():  # what a user stores per task (the report's adapter_bytes)
            result["adapter_bytes"] = sum(p.stat().st_size for p in adapter.iterdir() if p.is_file())
        result.update(timing)  # train (fit + export) and eval (test) separately; "seconds" is the whole run
        result["seconds"] = round(time.perf_counter() - start, 1)
        if rank_zero():
            record.parent.mkdir(parents=True, exist_ok=True)
            saved = {"key": key, "adapter_digest": adapter_digest(adapter), "result": result}
            record.write_text(json.dumps(saved, indent=2, sort_keys=True))
            shutil.rmtree(run.folder / "checkpoints", ignore_errors=True)  # finished: the record replaces them
        split = ", ".join(f"{k.split('_')[0]} {v} s" for k, v in timing.items())
        print(f"[pipeline] {run.name}: done in {result['seconds']} s" + (f" ({split})" if split else ""), flush=True)
        return result

    def artifacts_changed(self, run: Run, saved: dict[str, Any]) -> str | None:
        """Why the artifacts of a run whose record key matches are not what its record ``saved`` describes, or
        None when they are: the adapter must be there (unless a :data:`LEAF_STAGES` run's) with the digest the
        record holds. A record written before digests were recorded is checked for the adapter's presence."""
        adapter = run.folder / "adapter"
        digest = adapter_digest(adapter)
        wrote = saved["adapter_digest"] is not None if "adapter_digest" in saved else "adapter_bytes" in saved["result"]
        if digest is None:
            return f"its adapter {adapter} is missing" if wrote and run.stage not in LEAF_STAGES else None
        if saved.get("adapter_digest") not in (None, digest):
            return f"its adapter {adapter} is not the one recorded (sha256 {digest[:12]}, recorded {saved['adapter_digest'][:12]})"
        return None

    def resume_point(self, run: Run, key: str, trainer) -> str | None:
        """Add the run's resume checkpoints to ``trainer`` (``<folder>/checkpoints``, one device only) and return
        the one to resume from: the ``last.ckpt`` an interrupted attempt at this run left under the same record
        key, else None. Checkpoints of another key (earlier settings, data or upstream adapters) are deleted."""
        every = self.config.checkpoint_every
        if not every or self.config.strategy:  # sharded/multi-process runs start over (their own checkpoint layout)
            return None
        folder = run.folder / "checkpoints"
        owner, last = folder / "key", folder / "last.ckpt"
        trainer.callbacks.append(ResumeCheckpoint(dirpath=str(folder), every_n_train_steps=every))
        same_key = owner.is_file() and owner.read_text().strip() == key
        if same_key and last.is_file():
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            print(f"[pipeline] {run.name}: resuming from its checkpoint at step {step}", flush=True)
            return str(last)
        if folder.exists() and not same_key:
            print(f"[pipeline] {run.name}: its checkpoints are of other settings: starting over", flush=True)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        owner.write_text(key + "\n")
        return None

    def validation_loss(self, model, data) -> float:
        """Per-task averaged target cross-entropy on the validation split (no decoding)."""
        import lightning as L

        cfg = self.config
        trainer = L.Trainer(
            accelerator=cfg.accelerator, devices=1, precision=cfg.precision, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        return float(trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"])

    # ----------------------------------------------------------------- the chain
    def runs_for_sources(self) -> list[Run]:
        """Teacher and distillation (in order: the distillation reads the teacher's adapter)."""
        cfg = self.config
        return [
            self.make_run(
                "teacher", "teacher", self.out / "teacher", cfg.teacher, cfg.sources,
                model={"prompt_length": cfg.prompt_length}, test=False,
            ),
            self.make_run(
                "distill", "distill", self.out / "distill", cfg.distill, cfg.sources,
                model={"teacher_adapter": str(self.out / "teacher" / "adapter"), "prompt_length": cfg.prompt_length},
                test=False,
            ),
        ]  # fmt: skip

    def runs_for_target(self, task: str, tasks: str | list[Any] | None = None) -> dict[str, Run]:
        """Each system's run on one target (zero-shot rows on the target stage's data, no training).

        Args:
            task: The target's name (its folder under ``targets/``).
            tasks: What the runs' data modules serve (default ``task``): a user-declared target passes its
                declaration, since a bare name is looked up in the manifest.
        """
        cfg = self.config
        meta = {"metaprompt_adapter": str(self.out / "distill" / "adapter")}
        zero = Stage(0, data=cfg.target.data)
        plan = {
            "backbone zero-shot": ("zero_shot", zero, {}),
            "metaprompt zero-shot": ("target", zero, meta),
            "metaprompt adapted": ("target", cfg.target, meta),
            "prompt tuning": ("prompt_tuning", cfg.prompt_tuning, {"prompt_length": cfg.prompt_length}),
            "LoRA": ("lora", cfg.lora, {}),
        }
        runs = {}
        for system in cfg.systems:
            stage, settings, model = plan[system]
            folder = self.out / "targets" / task / system.replace(" ", "_")
            runs[system] = self.make_run(f"{task}/{system}", stage, folder, settings, tasks or task, model=model)
        return runs

    def run(self) -> dict[str, dict[str, dict]]:
        """Run every stage; returns ``{target: {system: result}}`` and writes results.json/.md."""
        from metaprompt.tasks.taskset import task_arguments

        sources = self.runs_for_sources()
        targets = {
            name: self.runs_for_target(name, tasks)
            for name, tasks in task_arguments(self.config.targets, self.config.data.get("root"))
        }
        self.check_data()
        self.check_runs([*sources, *(run for runs in targets.values() for run in runs.values())])
        for run in sources:
            self.execute(run)
        results = {name: {system: self.execute(run) for system, run in runs.items()} for name, runs in targets.items()}
        self._write(results)
        return results

    def _write(self, results: dict[str, dict[str, dict]]) -> None:
        if rank_zero():
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
