"""Task specs and task-set YAML files: which tasks a run uses and where their records come from.

A task-set YAML (``lightning_configs/tasks/*.yaml``) lists tasks either by manifest id or as a full
declaration of a user's own data, so credentialed corpora (n2c2, MIMIC-derived sets) plug in without
code::

    tasks:
      - bc5cdr_chem                      # a dataset of ../shared/data/MANIFEST.yaml
      - name: n2c2_2018_ner              # a user's own task
        task_type: ner
        role: target
        format: jsonl                    # jsonl | json | csv | tsv | conll | iob | squad | brat | bioc | hub
        data_files: {train: /data/n2c2/train.jsonl, test: /data/n2c2/test.jsonl}
        columns: {text: note, entities: spans}
        on_error: skip                   # optional: leave bad records out (reported), instead of stopping

Relative ``data_files`` are relative to the task-set YAML's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from metaprompt.configs import CONFIG_DIR
from metaprompt.tasks.catalog import load_manifest, resolve_root
from metaprompt.tasks.errors import TaskDeclarationError, TaskSetNotFoundError, UnknownTaskError
from metaprompt.tasks.records import TASK_TYPES, Record
from metaprompt.tasks.splits import canonical_splits

TASKSET_DIR = CONFIG_DIR / "tasks"


@dataclass(frozen=True)
class TaskSpec:
    """One task of a run.

    Attributes:
        name: Unique task name (the manifest id for built-in datasets).
        task_type: ``ner | re | qa | nli | summarization``.
        role: ``source`` (used to train teachers / the metaprompt) or ``target`` (held out).
        format: ``manifest`` for built-in datasets, else the user data's format.
        data_files: Split name -> file (user tasks), or the hub dataset id under ``"hub"``.
        columns: Record field -> column name in the user's data (see ``metaprompt.tasks.custom``).
        labels: Labels shown in the prompt; empty -> derived from the records.
        instruction: Overrides the verbalizer's default instruction.
        on_error: ``raise`` (default): a bad record stops with its file, place and problem; ``skip``: bad
            records are left out, and how many and where is reported.
        options: Format options of the structured user formats (see ``metaprompt.tasks.user_formats``).
        long_inputs: How documents longer than the token budget are served, instead of the encoder's middle
            cut: ``{mode: window, stride: N}`` (qa, ner, re) or ``{mode: head_tail, head: H, tail: T}``
            (summarization); see ``metaprompt.tasks.long_inputs`` and ``metaprompt.data.long_inputs``.
        origin: Where this spec was declared (for error messages).
    """

    name: str
    task_type: str
    role: str = "source"
    format: str = "manifest"
    data_files: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    instruction: str | None = None
    on_error: str = "raise"
    options: dict[str, Any] = field(default_factory=dict)
    long_inputs: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise TaskDeclarationError(
                f"{self.origin}: task {self.name!r}: task_type {self.task_type!r} is not one of {TASK_TYPES}"
            )
        if self.role not in ("source", "target"):
            raise TaskDeclarationError(
                f"{self.origin}: task {self.name!r}: role must be 'source' or 'target', not {self.role!r}"
            )
        if self.on_error not in ("raise", "skip"):
            raise TaskDeclarationError(
                f"{self.origin}: task {self.name!r}: on_error must be 'raise' or 'skip', not {self.on_error!r}"
            )
        if isinstance(self.labels, str):  # tuple("Drug") would be the letters D, r, u, g
            raise TaskDeclarationError(
                f"{self.origin}: task {self.name!r}: labels must be a list, e.g. [{self.labels}]"
            )
        if self.long_inputs:
            from metaprompt.tasks.long_inputs import check_long_inputs

            check_long_inputs(self.long_inputs, self.task_type, f"{self.origin}: task {self.name!r}")

    def load(self, root: str | Path | None = None) -> dict[str, list[Record]]:
        """Records per canonical split (``train``, ``validation``, ``test``)."""
        if self.format == "manifest":
            return _load_manifest_task(self.name, str(resolve_root(root)))
        from metaprompt.tasks.custom import load_custom

        return load_custom(self)


@lru_cache(maxsize=64)
def _load_manifest_task(name: str, root: str) -> dict[str, list[Record]]:
    from metaprompt.tasks.readers import get_reader

    return canonical_splits(name, get_reader(name)(Path(root) / name))


def manifest_task(name: str, root: str | Path | None = None, origin: str = "") -> TaskSpec:
    """The spec of a built-in dataset, with type and role from MANIFEST.yaml."""
    manifest = load_manifest(root)
    if name not in manifest:
        raise UnknownTaskError(f"{origin or 'task list'}: unknown task {name!r}; known: {', '.join(manifest)}")
    info = manifest[name]
    return TaskSpec(name=name, task_type=info.task_type, role=info.role, origin=origin or "MANIFEST.yaml")


def _spec_from_entry(entry: Any, root: str | Path | None, where: str, base: Path | None = None) -> TaskSpec:
    if isinstance(entry, str):
        return manifest_task(entry, root, where)
    if not isinstance(entry, dict) or "name" not in entry:
        raise TaskDeclarationError(f"{where}: a task is a manifest id or a mapping with at least 'name'; got {entry!r}")
    unknown = set(entry) - set(TaskSpec.__dataclass_fields__) - {"origin"}
    if unknown:
        known = ", ".join(k for k in TaskSpec.__dataclass_fields__ if k != "origin")
        raise TaskDeclarationError(
            f"{where}: unknown key(s) {sorted(unknown)} in task {entry['name']!r}; known: {known}"
        )
    if "task_type" not in entry:  # a manifest task with overrides (e.g. a custom instruction)
        base = manifest_task(entry["name"], root, where)
        return TaskSpec(**{**base.__dict__, **entry, "origin": where})
    labels = entry.get("labels", ())
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, (str, int)) and str(x).strip() for x in labels):
        raise TaskDeclarationError(
            f"{where}: task {entry['name']!r}: labels must be a list of names, e.g. [{labels}]; got {labels!r}"
        )
    entry = {**entry, "labels": tuple(str(x).lower() if isinstance(x, bool) else str(x) for x in labels)}
    entry.setdefault("format", "jsonl")
    files = entry.get("data_files") or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) and v.strip() for v in files.values()):
        raise TaskDeclarationError(
            f"{where}: task {entry['name']!r}: data_files maps split names to paths; got {files!r}"
        )
    if base is not None and entry["format"] != "hub":  # relative to the task-set YAML, not to where it is run
        entry["data_files"] = {k: str(base / Path(v).expanduser()) for k, v in files.items()}
    return TaskSpec(**entry, origin=where)


def _taskset_path(tasks: str) -> Path:
    """A shipped task set's file for its name (``clinical21``), else ``tasks`` as a path."""
    shipped = TASKSET_DIR / f"{tasks}.yaml"
    return shipped if not Path(tasks).suffix and shipped.is_file() else Path(tasks)


def resolve_tasks(tasks: str | list[Any], root: str | Path | None = None) -> list[TaskSpec]:
    """Turn a task-set name/path or an inline list into TaskSpecs.

    Args:
        tasks: A task-set name (``"clinical21"`` -> ``lightning_configs/tasks/clinical21.yaml``), a
            path to such a YAML, a comma-separated list of manifest ids, or a list of ids/mappings.
        root: Data root for manifest tasks.
    """
    if isinstance(tasks, str):
        path = _taskset_path(tasks)
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise TaskSetNotFoundError(f"task set {path} not found")
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            entries = doc.get("tasks") if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise TaskDeclarationError(f"{path}: expected a top-level 'tasks:' list")
            specs = [_spec_from_entry(e, root, f"{path}: tasks[{i}]", path.parent) for i, e in enumerate(entries)]
        else:
            specs = [manifest_task(t.strip(), root) for t in tasks.split(",") if t.strip()]
    else:
        specs = [_spec_from_entry(e, root, f"tasks[{i}]") for i, e in enumerate(tasks)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TaskDeclarationError(f"task list names {dupes} more than once")
    return specs


def task_arguments(tasks: str | list[Any], root: str | Path | None = None) -> list[tuple[str, str | list[Any]]]:
    """Each task of a set as ``(name, what a data module's tasks argument takes to serve it alone)``: the
    name of a manifest task, a one-entry list holding the declaration of a mapping entry (a user-declared
    task, or a manifest task with overrides), since a bare name is looked up in the manifest.

    Args:
        tasks, root: As in :func:`resolve_tasks`.
    """
    specs = resolve_tasks(tasks, root)
    entries: list[Any] = [spec.name for spec in specs]
    if isinstance(tasks, list):
        entries = list(tasks)
    elif isinstance(tasks, str):
        path = _taskset_path(tasks)
        if path.suffix in (".yaml", ".yml"):
            entries = yaml.safe_load(path.read_text(encoding="utf-8"))["tasks"]
    # a declaration carries its files as resolved here (relative to its YAML), since it is served from elsewhere
    entries = [
        e if isinstance(e, str) or "data_files" not in e else {**e, "data_files": s.data_files}
        for s, e in zip(specs, entries, strict=True)
    ]
    return [(spec.name, spec.name if isinstance(e, str) else [e]) for spec, e in zip(specs, entries, strict=True)]
