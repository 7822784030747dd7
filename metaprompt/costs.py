"""The cost model that sizes a reproduction: seconds per run from the bench's measured unit costs.

``metaprompt reproduce -c PRESET --estimate`` prints it per stage without running anything. Unit costs
come from ``bench/results.json`` (``make bench``, same machine):

* a training step: seconds per row token of real batches (``real_batches``: one task per batch, and
  mixed 6-8 tasks per batch), interpolated over the soft-prompt length between the bench's two (10, 100);
  a distillation step is a mixed step times ``p3_online_teacher_over_pt`` (the online teachers' forward);
* ranked scoring: seconds per example of the bench's ranked task, scaled by prompt tokens;
* generation: the prefill of each example (as ranked) plus its new tokens at the measured decode rate,
  which grows with the eval batch (decoding is memory-bound: a step reads the weights once per batch);
* a fixed start per run (``startup``: ``fit`` to its first step, ``test`` to its first batch, warm cache).

What the data decide is read from the data itself: each task's row tokens (a sample of its training
rows, tokenised as the run encodes them, targets cut at ``max_train_target_tokens``), its test sample's
size and scoring (ranked or generated), and its references' length (new tokens, up to the budget).
:func:`compare` sets the estimate beside the seconds already recorded in a results folder, per stage, so
that the model is checked on every machine it is used on.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results.json"
PROFILE_ROWS = 64  # training rows tokenised per task to measure its row length (the median is stable by ~50)


@dataclass(frozen=True)
class UnitCosts:
    """Measured unit costs (seconds) of one machine and backbone, from ``bench/results.json``.

    Attributes:
        grouped_token_s: Training-step seconds per row token, one task per batch, at prompt ``lengths``.
        mixed_token_s: The same for batches mixing 6-8 tasks.
        lengths: The two soft-prompt lengths of the bench (10, 100).
        distill_over_step: An online-teacher distillation step / a prompt-tuning step.
        ranked_example_s: Ranked scoring, seconds per example of ``ranked_task`` at the bench's eval batch.
        prefill_example_s: The prefill of one example of ``ranked_task`` (the first step of generation).
        decode_step_s: Seconds of one decode step (one new token for each of ``decode_rows`` rows).
        decode_rows: Rows of the bench's decode measurement.
        fit_start_s: ``metaprompt fit`` to its first step (warm token cache).
        test_start_s: ``metaprompt test`` to its first evaluated batch (warm token cache).
        ranked_task: The task the eval rates were measured on (its prompt tokens scale them per task).
        backbone: The bench's backbone (the model is only valid for it).
    """

    grouped_token_s: tuple[float, float]
    mixed_token_s: tuple[float, float]
    lengths: tuple[int, int]
    distill_over_step: float
    ranked_example_s: float
    prefill_example_s: float
    decode_step_s: float
    decode_rows: int
    fit_start_s: float
    test_start_s: float
    ranked_task: str = "rqe"
    backbone: str = "smollm2-135m"

    @classmethod
    def from_bench(cls, path: str | Path = BENCH_RESULTS) -> UnitCosts:
        """Read the unit costs from a ``bench/results.json`` written by ``make bench``.

        Raises:
            ValueError: naming the file and the missing entry, for results without it (a smoke run, or
                one from before the entry existed: rerun ``make bench``), or a file that cannot be read.
        """
        path = Path(path)
        try:
            out = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read bench results ({err}); run `make bench`") from None
        try:
            rb, ev = out["real_batches"], out["eval_speed"]
            lengths = tuple(sorted(int(k) for k in rb if k.isdigit()))
            tokens = {kind: sum(rb["tokens_per_batch"][kind]) for kind in ("grouped", "mixed")}

            def per_token(kind: str) -> tuple[float, float]:
                return tuple(rb[str(n)]["seconds"][f"ours_{kind}"] / tokens[kind] for n in lengths)

            rv, dec = ev["ranked_vs_generated"], ev["decode"]
            return cls(
                grouped_token_s=per_token("grouped"),
                mixed_token_s=per_token("mixed"),
                lengths=lengths,
                distill_over_step=out["p3_online_teacher_over_pt"],
                ranked_example_s=1.0 / rv["ranked_examples_per_s"],
                prefill_example_s=1.0 / rv["prefill_examples_per_s"],
                decode_step_s=dec["rows"] / dec["ours_tokens_per_s"],
                decode_rows=dec["rows"],
                fit_start_s=out["startup"]["fit"]["second"],
                test_start_s=out["startup"]["test"]["second"],
                backbone=out["settings"]["backbone"],
            )
        except (KeyError, TypeError, ZeroDivisionError, ValueError) as err:
            raise ValueError(f"{path}: no unit cost {err} in these bench results (rerun `make bench`)") from None

    def train_step_s(self, rows: int, row_tokens: float, mixed: bool, prompt_length: int) -> float:
        """Seconds of one training step of ``rows`` rows of ``row_tokens`` tokens each."""
        return rows * row_tokens * self.token_s(mixed, prompt_length)

    def ranked_s(self, prompt_tokens: float, reference_tokens: float, prompt_length: int) -> float:
        """Seconds to rank one example's options (the bench's rate, scaled by its prompt tokens)."""
        return self.ranked_example_s * (prompt_tokens / reference_tokens if reference_tokens else 1.0)

    def prefill_s(self, prompt_tokens: float, reference_tokens: float, prompt_length: int) -> float:
        """Seconds of one example's prefill before decoding (scaled as :meth:`ranked_s`)."""
        return self.prefill_example_s * (prompt_tokens / reference_tokens if reference_tokens else 1.0)

    def decode_token_s(self, rows: int) -> float:
        """Seconds per new token of one row when ``rows`` decode together (a step reads the weights once)."""
        return self.decode_step_s / max(1, rows)

    def token_s(self, mixed: bool, prompt_length: int) -> float:
        """Training-step seconds per row token at ``prompt_length`` soft-prompt tokens (linear in the length,
        held at the bench's shorter length below it)."""
        (a, b), (la, lb) = (self.mixed_token_s if mixed else self.grouped_token_s), self.lengths
        return a + (b - a) * (max(prompt_length, la) - la) / (lb - la)


@dataclass(frozen=True)
class TaskProfile:
    """What one task's data cost: mean row tokens of training, size and scoring of the test sample.

    Attributes:
        train_tokens: Mean tokens of a training row as the run encodes it (prompt + cut target).
        n_test: Examples of the run's test sample.
        ranked: Whether the test sample is scored by ranking (else generated).
        prompt_tokens: Mean prompt tokens of a test example.
        new_tokens: Mean new tokens of a generated answer (the reference's length, up to the budget).
    """

    train_tokens: float
    n_test: int
    ranked: bool
    prompt_tokens: float
    new_tokens: float


def task_profiles(data_args: dict[str, Any], budgets: dict[str, int], tokenizer) -> dict[str, TaskProfile]:
    """Profile every task of a data module's settings (reads its records; tokenises a sample, no model).

    Args:
        data_args: The run's resolved ``data`` section (``MultitaskDataModule`` arguments).
        budgets: Task type -> max new tokens of generation.
        tokenizer: The backbone's tokenizer.
    """
    from metaprompt.data import MultitaskDataModule
    from metaprompt.evaluation.evaluator import label_like

    dm = MultitaskDataModule(**data_args)
    hp, profiles = dm.hparams, {}
    for spec, splits in zip(dm.specs, dm._selected().values(), strict=True):
        verbalizer = dm.verbalizers[spec.name]
        train = splits.get("train") or []
        p, t = _lengths(train[:PROFILE_ROWS], verbalizer, tokenizer) if train else ([0], [0])
        cap = hp.max_train_target_tokens or 10**9
        rows = [min(pi, max(hp.max_length - ti, hp.min_prompt_tokens)) + min(ti, cap) for pi, ti in zip(p, t)]
        test = splits.get(hp.test_split) or []
        tp, tt = _lengths(test[:PROFILE_ROWS], verbalizer, tokenizer) if test else ([0], [0])
        budget = budgets.get(spec.task_type, 0)
        profiles[spec.name] = TaskProfile(
            train_tokens=statistics.fmean(rows),
            n_test=len(test),
            ranked=bool(test) and all(label_like(r) for r in test),
            prompt_tokens=statistics.fmean(min(x, hp.max_length) for x in tp),
            new_tokens=statistics.fmean(min(x, budget) for x in tt),
        )
    return profiles


def _lengths(records, verbalizer, tokenizer) -> tuple[list[int], list[int]]:
    """Prompt and target tokens of each record as the run encodes them (target + its end-of-answer token)."""
    prompts = tokenizer([verbalizer.prompt(r) for r in records], add_special_tokens=False)["input_ids"]
    targets = tokenizer([verbalizer.target(r) for r in records], add_special_tokens=False)["input_ids"]
    return [len(p) for p in prompts], [len(t) + 1 for t in targets]


@dataclass(frozen=True)
class RunEstimate:
    """One run's estimated seconds. ``stage``: the report's stage group (teacher, distill, a system)."""

    name: str
    stage: str
    steps: int
    n_test: int
    train_s: float
    eval_s: float

    @property
    def seconds(self) -> float:
        return self.train_s + self.eval_s


class CostModel:
    """Estimates runs of a :class:`~metaprompt.pipeline.Pipeline` (a ladder, a reproduction) from
    :class:`UnitCosts`; task profiles are memoised by data settings."""

    def __init__(self, units: UnitCosts, backbone: str, prompt_length: int):
        from metaprompt.backbones.loading import load_tokenizer

        self.units, self.prompt_length = units, prompt_length
        try:
            self.tokenizer = load_tokenizer(backbone)
        except Exception as err:  # a hub backbone offline: count tokens with the embedded tokenizer instead
            print(f"note: {backbone}'s tokenizer is not available here ({type(err).__name__}); tokens are counted "
                  "with SmolLM2's (49k vocabulary: larger vocabularies give fewer tokens, so hours are high)")  # fmt: skip
            self.tokenizer = load_tokenizer("smollm2-135m")
        self._profiles: dict[str, dict[str, TaskProfile]] = {}
        self._reference: float | None = None

    def profiles(self, data_args: dict[str, Any], budgets: dict[str, int]) -> dict[str, TaskProfile]:
        key = json.dumps([data_args, budgets], sort_keys=True, default=str)
        if key not in self._profiles:
            self._profiles[key] = task_profiles(data_args, budgets, self.tokenizer)
        return self._profiles[key]

    def reference_prompt_tokens(self, data_args: dict[str, Any]) -> float:
        """Mean prompt tokens of the bench's ranked task (what the eval rates were measured on)."""
        if self._reference is None:
            args = {**data_args, "tasks": self.units.ranked_task, "k_shot": 0, "test_split": "test"}
            self._reference = self.profiles(args, {})[self.units.ranked_task].prompt_tokens
        return self._reference

    def estimate(self, name: str, stage: str, config: dict[str, Any], test: bool = True) -> RunEstimate:
        """Seconds of one run from its resolved config (plain data: trainer / model / data)."""
        u, data = self.units, config["data"]
        init = config["model"].get("init_args") or {}
        budgets = (init.get("evaluation") or {}).get("max_new_tokens") or {}
        budgets = budgets if isinstance(budgets, dict) else defaultdict(lambda: int(budgets))
        profiles = self.profiles(data, dict(budgets))
        steps = int(config["trainer"].get("max_steps") or 0)
        klass = config["model"]["class_path"].rsplit(".", 1)[-1]
        soft = int(init.get("prompt_length") or 0) if klass not in ("LoRA", "BackboneOnly") else 0
        if klass == "TargetAdaptation":  # the metaprompt's length: its adapter's (not yet distilled: the plan's)
            soft = _adapter_prompt_length(init.get("metaprompt_adapter"), self.prompt_length)
        train_s = 0.0
        if steps > 0:
            mixed = len(profiles) > 1 and data.get("tasks_per_batch") != 1
            row = statistics.fmean(p.train_tokens for p in profiles.values())
            step = u.train_step_s(data["batch_size"], row, mixed, soft)
            if klass == "MultitaskDistillation" and init.get("lam", 1.0):  # λ = 0: no teacher forward
                step *= u.distill_over_step
            train_s = u.fit_start_s + steps * step
        eval_s = 0.0
        n_test = sum(p.n_test for p in profiles.values()) if test else 0
        if test:
            ref = self.reference_prompt_tokens(data)
            batch = int(data.get("eval_batch_size") or data["batch_size"])
            eval_s = u.test_start_s
            for p in profiles.values():
                if p.ranked:
                    eval_s += p.n_test * u.ranked_s(p.prompt_tokens, ref, soft)
                else:  # memory-bound decode: a step costs the same for the whole batch (weights read once)
                    per_token = u.decode_token_s(min(batch, p.n_test))
                    eval_s += p.n_test * (u.prefill_s(p.prompt_tokens, ref, soft) + p.new_tokens * per_token)
        return RunEstimate(name, stage, steps, n_test, train_s, eval_s)


def _adapter_prompt_length(folder: str | None, default: int) -> int:
    """The soft-prompt length recorded in an adapter folder's ``adapter.json`` (``default`` when absent)."""
    meta = Path(folder or "") / "adapter.json"
    try:
        return int(json.loads(meta.read_text(encoding="utf-8")).get("prompt_length", default))
    except (OSError, ValueError, TypeError):
        return default


def stage_group(run_name: str) -> str:
    """The report's stage of a run name: ``teacher``, ``distill``, ``sources/<system>`` or the target system."""
    parts = run_name.split("/")
    if len(parts) == 1:
        return parts[0]
    return parts[0] + "/" + parts[1] if parts[0] == "sources" else parts[1]


def estimate_plan(pipeline, units: UnitCosts | None = None) -> list[RunEstimate]:
    """Every run of ``pipeline.plan()`` estimated (resolving each run's config; nothing runs)."""
    from metaprompt import compose

    model = CostModel(units or UnitCosts.from_bench(), pipeline.config.backbone, pipeline.config.prompt_length)
    return [
        model.estimate(run.name, stage_group(run.name), compose.plain(pipeline.resolve(run)), run.test)
        for run in pipeline.plan()
    ]


def recorded_seconds(out: Path) -> dict[str, dict[str, float]]:
    """Run name -> ``{"train": s, "eval": s, "total": s}`` from the completion records under ``out/done``."""
    found = {}
    for path in sorted((Path(out) / "done").glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8")).get("result") or {}
        if "seconds" in result:
            found[path.stem.replace("__", "/")] = {
                "train": result.get("train_seconds") or 0.0,
                "eval": result.get("eval_seconds") or 0.0,
                "total": result["seconds"],
            }
    return found


def compare(estimates: list[RunEstimate], out: Path) -> list[dict[str, Any]]:
    """Per stage: runs, estimated hours, and where runs are recorded, their measured seconds beside the
    estimate of the same runs (``measured_over_estimate``)."""
    recorded = recorded_seconds(out)
    rows: dict[str, dict[str, Any]] = {}
    for e in estimates:
        row = rows.setdefault(e.stage, {"stage": e.stage, "runs": 0, "steps": 0, "test_examples": 0,
                                        "estimate_s": 0.0, "recorded_runs": 0, "recorded_s": 0.0,
                                        "recorded_estimate_s": 0.0})  # fmt: skip
        row["runs"] += 1
        row["steps"] += e.steps
        row["test_examples"] += e.n_test
        row["estimate_s"] += e.seconds
        if e.name in recorded:
            row["recorded_runs"] += 1
            row["recorded_s"] += recorded[e.name]["total"]
            row["recorded_estimate_s"] += e.seconds
    for row in rows.values():
        est = row["recorded_estimate_s"]
        row["measured_over_estimate"] = row["recorded_s"] / est if row["recorded_runs"] and est else None
    return list(rows.values())


def render(rows: list[dict[str, Any]], title: str) -> str:
    """The :func:`compare` rows as a Markdown table with the total."""
    lines = [
        f"### {title}",
        "",
        "| stage | runs | steps | test examples | estimate, h | recorded runs | measured / estimate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['measured_over_estimate']:.2f}" if r["measured_over_estimate"] is not None else ""
        lines.append(
            f"| {r['stage']} | {r['runs']} | {r['steps']:,} | {r['test_examples']:,} | {r['estimate_s'] / 3600:.2f} "
            f"| {r['recorded_runs']} | {ratio} |"
        )
    total = sum(r["estimate_s"] for r in rows)
    rec = sum(r["recorded_s"] for r in rows)
    rec_est = sum(r["recorded_estimate_s"] for r in rows)
    ratio = f"{rec / rec_est:.2f}" if rec_est else ""
    n = sum(r["recorded_runs"] for r in rows)
    lines.append(f"| **total** | {sum(r['runs'] for r in rows)} | | | **{total / 3600:.2f}** | {n} | {ratio} |")
    return "\n".join(lines)
