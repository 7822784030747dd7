"""``MultitaskDataModule``: every task cast to text-to-text, tokenised, and mixed for training.

records (metaprompt.tasks) -> [long_inputs: windows or head+tail, per task; data/long_inputs.py]
-> verbalizer (prompt, target) -> PromptEncoder (ids, max-length policy; what it cuts of the gold is
counted and warned about: data/truncation_loss.py)
-> datasets.Dataset per (task, split), cached on disk -> concatenated with a task id per row
-> TemperatureSampler (train) / sequential (eval) -> CausalLMCollator
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import datasets
import lightning as L
import pyarrow.compute as pc
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from metaprompt.backbones import load_tokenizer
from metaprompt.data.bucketing import LengthBucketBatchSampler
from metaprompt.data.collate import CausalLMCollator
from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.grouping import TaskGroupedBatchSampler
from metaprompt.data.long_inputs import LONG_INPUTS_VERSION, serve
from metaprompt.data.resume import ResumableLoader
from metaprompt.data.sampling import TemperatureSampler
from metaprompt.data.subsample import k_shot
from metaprompt.data.truncation_loss import TruncationLoss, truncation_loss, warning_line
from metaprompt.evaluation.evaluator import label_like
from metaprompt.evaluation.tasks import EvalTask, EvalTasks
from metaprompt.evaluation.windows import WindowOf
from metaprompt.tasks.records import Record
from metaprompt.tasks.taskset import TaskSpec, resolve_tasks
from metaprompt.tasks.verbalizers import get_verbalizer, label_set

PROTOCOL_EVAL_CAPS: dict[str, int] = {"ranked": 200, "generated": 100}
"""Evaluation caps of the protocol (``max_eval_per_task=PROTOCOL_EVAL_CAPS``): at n = 200 an accuracy
near 0.5 has a standard error of ~3.5 points; generated tasks (decoding, ROUGE/F1) cost more per row."""
ENCODING_VERSION = "1"  # bump when verbalizers/encoding change, to invalidate the token cache
FEATURES = datasets.Features(
    {
        "uid": datasets.Value("string"),
        "task_id": datasets.Value("int32"),
        "prompt_ids": datasets.Sequence(datasets.Value("int32")),
        "target_ids": datasets.Sequence(datasets.Value("int32")),
        "truncated": datasets.Value("int32"),
        "over_length": datasets.Value("bool"),
    }
)


class MultitaskDataModule(L.LightningDataModule):
    """Multitask text-to-text data for causal LMs.

    Args:
        tasks: Task-set name (``lightning_configs/tasks/<name>.yaml``), a YAML path, comma-separated
            manifest ids, or a list of ids / task declarations. Required: there is no default set.
        root: Data root with MANIFEST.yaml (default: ``$METAPROMPT_DATA`` or ``../shared/data``).
        backbone: Backbone whose tokenizer and chat template encode the text.
        max_length: Prompt + target token budget (the target is never truncated; see encoding.py).
        min_prompt_tokens: Prompt body tokens always kept.
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size (default: ``batch_size``).
        temperature: Task sampling temperature T, p_i ∝ n_i^(1/T).
        samples_per_epoch: Training rows per epoch (default: all training rows once).
        k_shot: Training examples per task: an int (0 = zero-shot, no training rows) or ``"all"``.
        max_eval_per_task: Cap on validation/test rows per task, drawn with ``eval_seed`` (all rows
            when fewer). ``None`` keeps all; an int caps every task; a mapping caps by scoring kind,
            ``{"ranked": 200, "generated": 100}`` (:data:`PROTOCOL_EVAL_CAPS`), where a task is
            ``ranked`` when every record of the split is label-like (NLI, yes/no/maybe and
            multiple-choice QA: what ``PromptModule(label_scoring="ranked")`` ranks) and
            ``generated`` otherwise (NER, RE, free-text QA, summarization, mixed QA). Task names may
            be keys too and win over the kind; a missing key (or ``None`` value) keeps all rows.
        eval_seed: Seed of the validation/test sample, separate from ``seed`` so that every training
            seed is tested on the same examples.
        drop_over_length: Drop (and count) rows longer than ``max_length`` after truncation.
        seed: Seed for training sampling and the k-shot subsample.
        cache_dir: Token cache (default ``$METAPROMPT_CACHE/tokens``).
        num_workers: DataLoader workers.
        length_bucketing: Batch training rows of similar length together (pools of 50 batches sorted by
            length; the task mixture is unchanged) to cut padding (see ``data/bucketing.py``).
        tasks_per_batch: Training batches hold rows of at most this many tasks (``batch_size`` rows in
            chunks of ``batch_size / tasks_per_batch`` per task; every task keeps exactly the rows the
            temperature sampler drew for it, see ``data/grouping.py``), so the shared prompt prefix is
            computed for fewer tasks per step. ``None``: rows as drawn (mixed). Not with
            ``length_bucketing``.
        test_split: The split ``test``/``predict`` serve: ``"test"``, or ``"validation"`` to score on the
            validation split (the ladder scores source tasks there; their test splits stay unseen).
    """

    def __init__(
        self,
        tasks: str | list,
        root: str | None = None,
        backbone: str = "smollm2-135m",
        max_length: int = 1024,
        min_prompt_tokens: int = 64,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        temperature: float = 2.0,
        samples_per_epoch: int | None = None,
        k_shot: int | str | None = "all",
        max_eval_per_task: int | dict[str, int | None] | None = None,
        drop_over_length: bool = False,
        seed: int = 0,
        eval_seed: int = 0,
        cache_dir: str | None = None,
        num_workers: int = 0,
        length_bucketing: bool = False,
        max_train_target_tokens: int | None = None,
        tasks_per_batch: int | None = None,
        test_split: str = "test",
    ):
        super().__init__()
        self.save_hyperparameters()
        if test_split not in ("test", "validation"):
            raise ValueError(f"test_split must be 'test' or 'validation', got {test_split!r}")
        if tasks_per_batch is not None:
            if length_bucketing:
                raise ValueError("tasks_per_batch and length_bucketing both regroup the batches: choose one")
            if tasks_per_batch < 1 or batch_size % tasks_per_batch:
                raise ValueError(
                    f"tasks_per_batch ({tasks_per_batch}) must be >= 1 and divide batch_size ({batch_size})"
                )
        self.root = root
        self.specs: list[TaskSpec] = resolve_tasks(tasks, root)
        self.task_names = [s.name for s in self.specs]
        self.task_types = [s.task_type for s in self.specs]
        if isinstance(max_eval_per_task, Mapping):
            unknown = set(max_eval_per_task) - {"ranked", "generated", *self.task_names}
            if unknown:
                raise ValueError(
                    f"max_eval_per_task: unknown keys {sorted(unknown)}; use 'ranked', 'generated' or task names"
                )
        self.tokenizer = None
        self.encoder: PromptEncoder | None = None
        self.splits: dict[str, datasets.Dataset] = {}
        self._selection: dict[str, dict[str, list[Record]]] | None = None
        self.records: dict[str, Record] = {}
        self._task_of_uid: dict[str, str] = {}
        self.windows: dict[str, WindowOf] = {}  # window uid -> its record (tasks with long_inputs: window)
        self.verbalizers: dict[str, object] = {}
        self.report: dict[str, dict[str, dict[str, int]]] = {}

    @property
    def num_tasks(self) -> int:
        return len(self.specs)

    def eval_tasks(self) -> EvalTasks:
        """The per-task table evaluation reads (available after ``setup``; see ``metaprompt.evaluation.tasks``)."""
        if not self.splits:
            raise RuntimeError("MultitaskDataModule.eval_tasks(): call setup() first (the records are read there)")
        tasks = [EvalTask(i, s.name, s.task_type, self.verbalizers[s.name]) for i, s in enumerate(self.specs)]
        return EvalTasks(
            tasks,
            MappingProxyType(self.records),
            MappingProxyType(self._task_of_uid),
            self.encoder,
            MappingProxyType(self.windows),
        )

    def task_of(self, uid: str) -> str:
        """The task name of eval/train row ``uid``."""
        return self._task_of_uid[uid]

    def eval_cap(self, task: str, records: list[Record]) -> int | None:
        """The validation/test cap of ``task`` given its split's records (see ``max_eval_per_task``)."""
        cap = self.hparams.max_eval_per_task
        if not isinstance(cap, Mapping):
            return cap
        if task in cap:
            return cap[task]
        return cap.get("ranked" if records and all(label_like(r) for r in records) else "generated")

    def _cache_dir(self) -> Path:
        base = self.hparams.cache_dir or os.path.join(
            os.environ.get("METAPROMPT_CACHE", "~/.cache/metaprompt"), "tokens"
        )
        return Path(base).expanduser()

    def _encode(
        self, spec: TaskSpec, task_id: int, split: str, recs: list[Record], encoder: PromptEncoder
    ) -> datasets.Dataset:
        verbalizer = self.verbalizers[spec.name]
        rows = {
            "uid": [r.uid for r in recs],
            "prompt": [verbalizer.prompt(r) for r in recs],
            "target": [verbalizer.target(r) for r in recs],
        }
        key = hashlib.sha256(
            json.dumps(
                [
                    ENCODING_VERSION,
                    spec.name,
                    split,
                    task_id,
                    self.hparams.backbone,
                    self.hparams.max_length,
                    self.hparams.min_prompt_tokens,
                    rows,
                ]
            ).encode()
        ).hexdigest()

        def encode(batch: dict) -> dict:
            enc = encoder.encode_batch(batch["prompt"], batch["target"])
            return {
                "uid": batch["uid"],
                "task_id": [task_id] * len(enc),
                "prompt_ids": [e.prompt_ids for e in enc],
                "target_ids": [e.target_ids for e in enc],
                "truncated": [e.truncated for e in enc],
                "over_length": [e.over_length for e in enc],
            }

        cache = self._cache_dir() / f"{spec.name}-{split}-{key[:16]}.arrow"
        if cache.is_file():  # a second start: read the tokens back without building or hashing anything
            try:
                ds = datasets.Dataset.from_file(str(cache))
                if ds.features == FEATURES and len(ds) == len(recs):
                    return ds
            except (OSError, ValueError):  # half-written or foreign file (ArrowInvalid is a ValueError): tokenise again
                pass
        cache.parent.mkdir(parents=True, exist_ok=True)
        ds = datasets.Dataset.from_dict(rows)
        return ds.map(
            encode,
            batched=True,
            remove_columns=ds.column_names,
            features=FEATURES,
            cache_file_name=str(cache),
            load_from_cache_file=False,
            new_fingerprint=key[:32],  # the key already names the content: datasets need not hash `encode`
            desc=f"tokenise {spec.name}/{split}",
        )

    def _selected(self) -> dict[str, dict[str, list[Record]]]:
        """Per task and split, the records this module serves (train: the k-shot sample; validation and
        test: the fixed evaluation sample); builds each task's verbalizer. Loaded once."""
        if self._selection is None:
            hp, selection = self.hparams, {}
            for spec in self.specs:
                splits = spec.load(self.root)
                empty = [split for split, recs in splits.items() if not recs]
                if (
                    empty
                ):  # a split with nothing in it (a small file's 80/10/10 partition) is said, not skipped silently
                    shown = ", ".join(f"{split} {len(recs)}" for split, recs in splits.items())
                    rank_zero_warn(
                        f"[metaprompt] {spec.name}: no {' or '.join(empty)} records ({shown}): nothing of this task "
                        f"is trained, validated or scored on {'them' if len(empty) > 1 else 'it'}"
                    )
                self.verbalizers[spec.name] = get_verbalizer(
                    spec.task_type,
                    spec.labels or label_set(r for recs in splits.values() for r in recs),
                    spec.instruction,
                )
                selection[spec.name] = {
                    split: k_shot(recs, hp.k_shot, spec.name, hp.seed)
                    if split == "train"
                    else k_shot(recs, self.eval_cap(spec.name, recs), spec.name, hp.eval_seed)
                    for split, recs in splits.items()
                }
            self._selection = selection
        return self._selection

    def fingerprint(self) -> str:
        """SHA-256 of what this module serves, without tokenizing: every selected record's uid, prompt and
        target text per task and split, and the encoding settings.

        Run records key on it (``metaprompt pipeline``/``ladder``), so that editing a data file or a
        verbalizer reruns the stages that saw it instead of skipping them as up to date.
        """
        hp = self.hparams
        digest = hashlib.sha256(
            json.dumps(
                [ENCODING_VERSION, hp.backbone, hp.max_length, hp.min_prompt_tokens, hp.drop_over_length]
            ).encode()
        )
        long_inputs = {s.name: s.long_inputs for s in self.specs if s.long_inputs}
        for name, splits in self._selected().items():
            verbalizer = self.verbalizers[name]
            for split, recs in splits.items():
                rows = [(r.uid, verbalizer.prompt(r), verbalizer.target(r)) for r in recs]
                digest.update(json.dumps([name, split, rows]).encode())
            if name in long_inputs:  # its windows / head+tail cuts follow from this and the settings above
                digest.update(json.dumps([LONG_INPUTS_VERSION, name, long_inputs[name]], sort_keys=True).encode())
        return digest.hexdigest()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # idempotent: Lightning calls setup once per stage
            return
        hp = self.hparams
        self.tokenizer = load_tokenizer(hp.backbone)
        encoder = self.encoder = PromptEncoder(self.tokenizer, hp.max_length, hp.min_prompt_tokens)
        parts: dict[str, list[datasets.Dataset]] = {"train": [], "validation": [], "test": []}
        losses: dict[str, dict[str, TruncationLoss]] = {}
        for task_id, (spec, splits) in enumerate(zip(self.specs, self._selected().values(), strict=True)):
            for split, recs in splits.items():
                records, long_counts = self._register(spec, split, recs, encoder)
                ds = self._encode(spec, task_id, split, records, encoder) if records else None
                # Columns read through Arrow: row-by-row access to a datasets table costs seconds on
                # the 21 sources, most of a warm start.
                table = ds.data if ds is not None else None
                over = table.column("over_length").to_pylist() if ds is not None else []
                truncated = table.column("truncated").to_pylist() if ds is not None else []
                self.report.setdefault(spec.name, {})[split] = {
                    "examples": len(records),
                    "truncated": sum(t > 0 for t in truncated),
                    "over_length": sum(over),
                    "dropped": sum(over) if hp.drop_over_length else 0,
                }
                loss = truncation_loss(records, self.verbalizers[spec.name], encoder, truncated)
                losses.setdefault(spec.name, {})[split] = loss
                self.report[spec.name][split].update(loss.report(spec.task_type))
                self.report[spec.name][split].update(long_counts)
                if split == "train" and hp.max_train_target_tokens is not None:  # said, not silent
                    cap = hp.max_train_target_tokens
                    lengths = pc.list_value_length(table.column("target_ids")).to_pylist() if ds else []
                    self.report[spec.name][split]["target_cut"] = sum(n > cap for n in lengths)
                if ds is not None:
                    keep = [i for i, o in enumerate(over) if not (o and hp.drop_over_length)]
                    if split != "train":
                        # Evaluation order: longest prompt first within the task, so eval batches hold rows
                        # of similar length (less padding in the prefill, which dominates scoring cost);
                        # ties keep the sample's order. Scores do not depend on order.
                        prompt_lengths = pc.list_value_length(table.column("prompt_ids")).to_pylist()
                        keep.sort(key=lambda i: -prompt_lengths[i])
                    if keep != list(range(len(ds))):
                        ds = ds.select(keep)
                if ds is not None and len(ds):
                    parts[split].append(ds)
        self.splits = {s: datasets.concatenate_datasets(p) for s, p in parts.items() if p}
        self._train_sizes = [
            self.report[n]["train"]["examples"] - self.report[n]["train"]["dropped"] for n in self.task_names
        ]
        truncated = {n: {s: v["truncated"] for s, v in r.items() if v["truncated"]} for n, r in self.report.items()}
        rank_zero_info(
            f"[metaprompt] truncated prompts per task/split: {json.dumps({k: v for k, v in truncated.items() if v})}"
        )
        for spec in self.specs:  # the data the cut removes, said once per task (not an error: a choice to make)
            line = warning_line(spec.name, spec.task_type, hp.max_length, losses[spec.name], bool(spec.long_inputs))
            if line:
                rank_zero_warn(line)
            if spec.long_inputs:
                keys = ("records", "windows", "windowed", "head_tail_cut", "head_tail_tokens")  # from _register
                counts = {s: {k: v[k] for k in keys if k in v} for s, v in self.report[spec.name].items()}
                rank_zero_info(f"[metaprompt] {spec.name}: long_inputs {spec.long_inputs}: {json.dumps(counts)}")
        cut = {n: r["train"].get("target_cut", 0) for n, r in self.report.items() if "train" in r}
        if any(cut.values()):
            rank_zero_info(
                f"[metaprompt] training rows whose target is cut to its first {hp.max_train_target_tokens} tokens "
                f"(max_train_target_tokens; evaluation sees whole targets): {json.dumps({k: v for k, v in cut.items() if v})}"
            )

    def _register(
        self, spec: TaskSpec, split: str, recs: list[Record], encoder: PromptEncoder
    ) -> tuple[list[Record], dict[str, int]]:
        """The rows a split serves, each registered for evaluation by uid, and (``long_inputs`` tasks) what
        the declaration did to it: windows and the records they cover, or sources cut to head + tail.

        A windowed record is registered too: evaluation scores it in its windows' stead."""
        self.records.update((r.uid, r) for r in recs)
        self._task_of_uid.update((r.uid, spec.name) for r in recs)
        if not spec.long_inputs:
            return recs, {}
        served = serve(spec.name, split, recs, spec.long_inputs, self.verbalizers[spec.name], encoder)
        self.windows.update(served.windows)
        self.records.update((r.uid, r) for r in served.records)
        self._task_of_uid.update((r.uid, spec.name) for r in served.records)
        if spec.long_inputs["mode"] == "window":
            parents = {w.parent for w in served.windows.values()}
            return served.records, {"records": len(recs), "windows": len(served.windows), "windowed": len(parents)}
        return served.records, {"head_tail_cut": len(served.elided), "head_tail_tokens": sum(served.elided.values())}

    def _loader(self, split: str, train: bool) -> DataLoader:
        hp = self.hparams
        ds = self.splits.get(split)
        if ds is None:
            return DataLoader([], batch_size=1)
        cap = hp.max_train_target_tokens if train else None
        collate = CausalLMCollator(self.tokenizer.pad_token_id, eval_mode=not train, max_target_tokens=cap)
        if train:
            sampler = TemperatureSampler(self._train_sizes, hp.temperature, hp.samples_per_epoch, hp.seed)
            if hp.length_bucketing:
                lengths = [len(p) + len(t[:cap]) for p, t in zip(ds["prompt_ids"], ds["target_ids"])]
                batches = LengthBucketBatchSampler(sampler, hp.batch_size, lengths, seed=hp.seed)
                return ResumableLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=hp.num_workers)
            if hp.get("tasks_per_batch"):
                task_of = ds.select_columns("task_id").with_format("arrow")[:]["task_id"].to_pylist()
                batches = TaskGroupedBatchSampler(sampler, hp.batch_size, task_of, hp.tasks_per_batch)
                return ResumableLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=hp.num_workers)
            return ResumableLoader(
                ds, batch_size=hp.batch_size, sampler=sampler, collate_fn=collate, num_workers=hp.num_workers
            )
        return DataLoader(
            ds,
            batch_size=hp.eval_batch_size or hp.batch_size,
            shuffle=False,
            collate_fn=collate,
            num_workers=hp.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.test_split, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.test_split, train=False)
