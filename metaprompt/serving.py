"""Mixed-task serving: ``metaprompt predict --adapter RUN/adapter --input requests.jsonl --output out.jsonl``.

Each request line is ``{"task": NAME, <the task's input fields>, "id": optional}`` — the input fields of
the task's records (``ner``/``re``: ``text``; ``qa``: ``question``, optional ``context``, ``options``;
``nli``: ``premise``, ``hypothesis``; ``summarization``: ``source``). Each output line is the request's
``id`` (else its line number) and ``task``, the ``generated`` text and the parsed ``prediction`` (the
record's structure: ``[[mention, type], ...]``, ``[[head, relation, tail], ...]``, a label, an answer, a
summary), in input order. Rows of different tasks share batches: every row gets its own task's prompt
and rows of a task share one prompt prefix (``forward.prompted.generate``'s shared-prefix cache). The file
is streamed a window of rows at a time (bounded memory): within a window, rows are batched by output
budget and task, so that a batch of short NLI labels does not decode for as long as a QA answer (a batch
decodes until its longest budget), and written back in input order. A malformed line or an unknown task
goes to the errors file (``<output>.errors.jsonl``: line number and problem) and the rest is served.

Tasks an adapter serves: its own (a target adapter's targets, a metaprompt's sources, a teacher's) and,
for a target adapter, the sources of the metaprompt it builds on. Each task is verbalised as in training:
its labels and instruction come from the task set in the run's ``config.yaml`` beside the adapter.

Python API::

    predictor = Predictor("results/cpu/targets/rqe/metaprompt_adapted/kall-s0/adapter")
    predictor.predict([{"task": "rqe", "premise": "...", "hypothesis": "..."}])
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from metaprompt.adapters import load_adapter
from metaprompt.export import _metaprompt_of, task_prompt
from metaprompt.tasks.records import RECORD_TYPES, QaRecord, Record, Relation

TARGET_FIELDS = {"entities", "relations", "answers", "label", "summary"}  # what the model predicts


class RequestError(ValueError):
    """A request line that cannot be served (its message names the problem; the caller adds the line)."""


@dataclass
class TaskServing:
    """What serving one task needs: its type, verbalizer, record defaults and prompt ``[l, d]``."""

    name: str
    task_type: str
    verbalizer: Any
    prompt: torch.Tensor
    defaults: dict[str, Any]


def _run_tasks(adapter: Path) -> Any:
    """The task set the run that wrote ``adapter`` trained on (its ``config.yaml``'s ``data.tasks``)."""
    config = adapter.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: not found; the run's config names its tasks (or pass tasks=)")
    return yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["tasks"]


def _serving(adapter: Path, names: list[str], tasks: Any, root: str | None) -> dict[str, TaskServing]:
    from metaprompt.tasks.taskset import resolve_tasks
    from metaprompt.tasks.verbalizers import get_verbalizer, label_set

    specs = {s.name: s for s in resolve_tasks(tasks if tasks is not None else _run_tasks(adapter), root)}
    out = {}
    for name in names:
        if name not in specs:
            raise ValueError(f"{adapter}: task {name!r} is not in its run's task set ({sorted(specs)})")
        spec = specs[name]
        records = [r for recs in spec.load(root).values() for r in recs]
        verbalizer = get_verbalizer(spec.task_type, spec.labels or label_set(records), spec.instruction)
        defaults = {}
        if spec.task_type == "qa":  # how the task's questions are asked (yes/no/maybe, choices, free text)
            kinds = [r.kind for r in records]
            defaults["kind"] = max(set(kinds), key=kinds.count)
        if spec.task_type == "nli":
            defaults["label_space"] = tuple(verbalizer.labels)
        out[name] = TaskServing(name, spec.task_type, verbalizer, task_prompt(adapter, name)[0], defaults)
    return out


class Predictor:
    """Serves every task of a prompt adapter (see module docstring).

    Args:
        adapter: An adapter folder (``kind`` target, metaprompt, teacher or prompt_tuning).
        backbone: Backbone to load (default: the adapter's).
        tasks: Task set to verbalise with (default: each run's ``config.yaml``).
        root: Data root (labels are read from the task's data, as in training).
        batch_size: Rows per generation batch (mixed tasks).
        window: Rows read ahead and batched by output budget and task (default ``8 * batch_size``);
            ``batch_size`` batches the rows in file order.
        max_length: Prompt token budget (as the data module's).
        max_new_tokens: Per task type, over the evaluation defaults.
        device: Torch device.
    """

    def __init__(
        self,
        adapter: str | Path,
        backbone: str | None = None,
        tasks: Any = None,
        root: str | None = None,
        batch_size: int = 16,
        window: int | None = None,
        max_length: int = 1024,
        max_new_tokens: dict[str, int] | None = None,
        device: str = "cpu",
    ):
        from metaprompt.backbones import load_backbone
        from metaprompt.data.encoding import PromptEncoder
        from metaprompt.evaluation.args import DEFAULT_MAX_NEW_TOKENS

        adapter = Path(adapter)
        _, config = load_adapter(adapter)
        if config.kind == "lora":
            raise ValueError(f"{adapter}: a LoRA adapter has no task prompts; serve it with PEFT")
        self.tasks = _serving(adapter, config.task_names, tasks, root)
        if config.kind == "target" and config.extra.get("metaprompt_adapter"):
            meta = _metaprompt_of(adapter, config)
            extra = [t for t in load_adapter(meta)[1].task_names if t not in self.tasks]
            self.tasks |= _serving(meta, extra, None, root)
        self.model, self.tokenizer = load_backbone(backbone or config.backbone)
        self.model.to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.window = max(window or 8 * batch_size, batch_size)
        self.encoder = PromptEncoder(self.tokenizer, max_length, min(64, max_length - 1))
        self.names = sorted(self.tasks)
        dtype = next(self.model.parameters()).dtype
        self.prompts = torch.stack([self.tasks[n].prompt for n in self.names]).to(device, dtype)  # [K, l, d]
        self.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **(max_new_tokens or {})}

    def record(self, request: dict, uid: str) -> Record:
        """The record a request describes (its target fields empty); RequestError when it cannot be."""
        if not isinstance(request, dict):
            raise RequestError(f"a request is a JSON object, got {type(request).__name__}")
        task = request.get("task")
        if task not in self.tasks:
            raise RequestError(f"unknown task {task!r}; this adapter serves {self.names}")
        serving = self.tasks[task]
        cls = RECORD_TYPES[serving.task_type]
        allowed = {f.name for f in fields(cls)} - {"uid", "origin"} - TARGET_FIELDS
        given = {k: v for k, v in request.items() if k not in ("task", "id")}
        if unknown := sorted(set(given) - allowed):
            raise RequestError(
                f"unknown field(s) {unknown} for a {serving.task_type} request; fields: {sorted(allowed)}"
            )
        required = {"ner": ["text"], "re": ["text"], "qa": ["question"], "nli": ["premise", "hypothesis"],
                    "summarization": ["source"]}[serving.task_type]  # fmt: skip
        if missing := [f for f in required if not str(given.get(f) or "").strip()]:
            raise RequestError(f"missing or empty field(s) {missing}")
        values = {**serving.defaults, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}}
        if "candidate" in values and values["candidate"] is not None:  # a candidate-pair corpus (gad, pgr)
            c = values["candidate"]
            if not (isinstance(c, dict) and {"head", "relation", "tail"} <= c.keys()):
                raise RequestError(f"candidate is {{head, relation, tail}}, got {c!r}")
            values["candidate"] = Relation(str(c["head"]), str(c["relation"]), str(c["tail"]))
        if cls is QaRecord and values.get("options"):
            values["kind"] = "multiple_choice"
        try:
            return cls(uid=uid, origin=uid, **values)
        except TypeError as err:
            raise RequestError(str(err)) from None

    def _generate(self, batch: list[tuple[str, Record]]) -> list[str]:
        from metaprompt.forward.prompted import generate

        prompts = [self.encoder.encode(self.tasks[t].verbalizer.prompt(r), "").prompt_ids for t, r in batch]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        task_ids = torch.tensor([self.names.index(t) for t, _ in batch], device=self.device)
        budgets = [self.budget(t) for t, _ in batch]
        out = generate(
            self.model,
            ids,
            mask,
            self.prompts[task_ids],
            max(budgets),
            self.tokenizer.eos_token_id,
            pad,
            task_ids=task_ids,
        )
        # greedy rows are independent: a row cut at its own task's budget is what that budget alone generates
        return [self.tokenizer.decode(seq[:n], skip_special_tokens=True) for seq, n in zip(out, budgets, strict=True)]

    def budget(self, task: str) -> int:
        """New tokens a row of ``task`` may generate (its task type's ``max_new_tokens``)."""
        return self.max_new_tokens[self.tasks[task].task_type]

    def _generate_window(self, rows: list[tuple[str, Record]]) -> list[str]:
        """Texts of ``rows`` in their order, generated ``batch_size`` at a time, batched by budget and task."""
        order = sorted(range(len(rows)), key=lambda i: (self.budget(rows[i][0]), rows[i][0]))  # stable
        texts: list[str] = [""] * len(rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, text in zip(chunk, self._generate([rows[i] for i in chunk]), strict=True):
                texts[i] = text
        return texts

    def predict_stream(self, lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
        """``(line number, output or {"error": ...})`` for each non-blank input line, in input order; rows are
        read ``window`` good rows at a time and generated ``batch_size`` rows (of any tasks) together."""
        pending: list[tuple[int, Any]] = []  # (line, (task, record, id)) or (line, error message)
        good = 0

        def flush() -> Iterator[tuple[int, dict]]:
            rows = [item for _, item in pending if isinstance(item, tuple)]
            texts = iter(self._generate_window([(task, record) for task, record, _ in rows]))
            for line, item in pending:
                if isinstance(item, str):
                    yield line, {"error": item}
                    continue
                task, record, rid = item
                text = next(texts)
                prediction = self.tasks[task].verbalizer.parse(text, record)
                yield line, {"id": rid, "task": task, "generated": text, "prediction": _plain(prediction)}
            pending.clear()

        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                request = json.loads(raw)
                record = self.record(request, f"line {n}")  # checks it is an object naming a served task
                pending.append((n, (request["task"], record, request.get("id", n))))
                good += 1
            except json.JSONDecodeError as err:
                pending.append((n, f"line {n}: invalid JSON at column {err.colno}: {err.msg}"))
            except RequestError as err:
                pending.append((n, f"line {n}: {err}"))
            if good == self.window:
                yield from flush()
                good = 0
        yield from flush()

    def predict(self, requests: Iterable[dict]) -> list[dict]:
        """Outputs (or ``{"error": ...}``) for request dicts, in order (the notebook API)."""
        return [out for _, out in self.predict_stream(json.dumps(r) for r in requests)]


def request_of(record: Record, task: str) -> dict:
    """The request that asks for ``record``'s prediction (its input fields; for tests and benchmarks)."""
    out: dict[str, Any] = {"task": task}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name in ("uid", "origin") or f.name in TARGET_FIELDS or value is None:
            continue
        out[f.name] = (
            {"head": value.head, "relation": value.relation, "tail": value.tail}
            if isinstance(value, Relation)
            else _plain(value)
        )
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def predict_main(argv: list[str]) -> int:
    """``metaprompt predict --adapter DIR --input requests.jsonl --output out.jsonl``."""
    from metaprompt.progress import bar, interactive

    parser = argparse.ArgumentParser(prog="metaprompt predict", description="serve many tasks of one adapter")
    parser.add_argument("--adapter", required=True, help="a prompt adapter folder (a run's <folder>/adapter)")
    parser.add_argument("--input", required=True, help="JSON Lines of requests: task, its input fields, optional id")
    parser.add_argument("--output", required=True, help="JSON Lines of predictions, in input order")
    parser.add_argument("--errors", default=None, help="bad lines (default: <output>.errors.jsonl)")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--root", default=None, help="data root (labels of each task, as in training)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window", type=int, default=None, help="rows batched by output budget (default 8 x batch)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(
            args.adapter,
            args.backbone,
            None,
            args.root,
            args.batch_size,
            args.window,
            args.max_length,
            device=args.device,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"metaprompt predict: {err}", file=sys.stderr)
        return 2
    source, output = Path(args.input), Path(args.output)
    errors_path = Path(args.errors or f"{output}.errors.jsonl")
    with source.open(encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    served = failed = 0
    progress = bar(total=total, desc="predict", unit="row") if interactive() else None
    with source.open(encoding="utf-8") as lines, output.open("w") as out, errors_path.open("w") as errors:
        for line, result in predictor.predict_stream(lines):
            if "error" in result:
                failed += 1
                errors.write(json.dumps({"line": line, "error": result["error"]}) + "\n")
            else:
                served += 1
                out.write(json.dumps(result) + "\n")
            if progress is not None:
                progress.update(1)
            elif (served + failed) % 100 == 0:
                print(f"[predict] {served + failed}/{total} rows", flush=True)
    print(f"[predict] {served} predictions -> {output}; {failed} bad line(s) -> {errors_path}", flush=True)
    return 0
