"""User-declared tasks: records from a local JSONL/JSON/CSV/TSV file or a ``datasets`` hub id.

Column mapping (``columns:`` in the task-set YAML; default: the field's own name):

=============  ==========================================================================
task type      fields (column values)
=============  ==========================================================================
ner            ``text`` (str), ``entities`` (list of ``{start, end, label}`` or ``{text, label}``)
re             ``text`` (str), ``relations`` (list of ``{head, relation, tail}`` or ``[h, r, t]``)
qa             ``question``, optional ``context``, optional ``options`` (list), ``answer`` (str/list)
nli            ``premise``, ``hypothesis``, ``label``
summarization  ``source``, ``summary``
=============  ==========================================================================

Split names: ``train``, ``validation`` (or ``dev``/``devel``), ``test``; a task given only one file is
partitioned 80/10/10 like the manifest datasets without official splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.records import (
    Entity,
    NerRecord,
    NliRecord,
    QaRecord,
    Record,
    Relation,
    RelationRecord,
    SummarizationRecord,
)
from metaprompt.tasks.splits import canonical_splits

if TYPE_CHECKING:
    from metaprompt.tasks.taskset import TaskSpec

_LOADERS = {"jsonl": "json", "json": "json", "csv": "csv", "tsv": "csv"}


def _rows(spec: TaskSpec) -> dict[str, Any]:
    import datasets

    if spec.format == "hub":
        hub_id = spec.data_files.get("hub")
        if not hub_id:
            raise ValueError(f"{spec.origin}: task {spec.name!r}: format 'hub' needs data_files: {{hub: <dataset id>}}")
        try:
            return datasets.load_dataset(hub_id)
        except Exception as e:  # offline / gated / typo: say which and how to fix
            raise RuntimeError(
                f"{spec.origin}: task {spec.name!r}: could not load hub dataset {hub_id!r} "
                f"({type(e).__name__}: {e}); download it where you have internet and declare local files instead"
            ) from e
    if spec.format not in _LOADERS:
        raise ValueError(
            f"{spec.origin}: task {spec.name!r}: format {spec.format!r} is not one of {[*_LOADERS, 'hub']}"
        )
    if not spec.data_files:
        raise ValueError(f"{spec.origin}: task {spec.name!r}: data_files is empty")
    kwargs = {}
    if spec.format in ("csv", "tsv"):  # cells stay text: "NA", "None", "null" are answers, not missing values
        kwargs = {"keep_default_na": False, "na_filter": False, **({"delimiter": "\t"} if spec.format == "tsv" else {})}
    out = {}
    for split, path in spec.data_files.items():
        if Path(path).is_file() and not _has_text(Path(path)):
            raise DataFormatError(path, None, f"no records (task {spec.name!r}, split {split!r}): the file is empty")
        try:
            out[split] = datasets.load_dataset(_LOADERS[spec.format], data_files=str(path), split="train", **kwargs)
        except FileNotFoundError:
            raise DataFormatError(path, None, f"file of task {spec.name!r} split {split!r} not found") from None
        except Exception as e:
            raise DataFormatError(path, None, f"cannot read as {spec.format}: {type(e).__name__}: {e}") from None
        if len(out[split]) == 0:  # an empty split would silently train or score on nothing
            raise DataFormatError(path, None, f"no records (task {spec.name!r}, split {split!r})")
    return out


def _has_text(path: Path) -> bool:
    """Whether a file holds anything but whitespace (read in chunks: data files can be large)."""
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _list(value: Any, path: str, loc: str, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)  # CSV cells hold JSON lists
        except json.JSONDecodeError:
            raise DataFormatError(path, loc, f"{what} must be a list (or a JSON list in a CSV cell)") from None
    if not isinstance(value, list):
        raise DataFormatError(path, loc, f"{what} must be a list, got {type(value).__name__}")
    return value


def _record(spec: TaskSpec, row: dict, uid: str, path: str, loc: str) -> Record:
    col = lambda f: spec.columns.get(f, f)  # noqa: E731

    def get(f: str, required: bool = True) -> Any:
        # a column the declaration names (columns: {entities: spans}) must exist, even for an optional field,
        # and so must a NER/RE task's annotations: a typo would otherwise read as "no entities" on every record
        present_required = required or f in spec.columns or f in ("entities", "relations")
        if col(f) not in row:
            if present_required:
                raise DataFormatError(path, loc, f"missing column {col(f)!r} (field {f!r}); columns are {sorted(row)}")
            return None
        v = row[col(f)]
        if required and (v is None or (isinstance(v, str) and not v.strip())):
            raise DataFormatError(path, loc, f"empty {f!r} (column {col(f)!r})")
        return v

    t = spec.task_type
    if t == "ner":
        text = str(get("text"))
        ents = []
        for e in _list(get("entities", required=False), path, loc, "entities"):
            if not isinstance(e, dict) or "label" not in e or not ({"start", "end"} <= e.keys() or "text" in e):
                raise DataFormatError(path, loc, f"an entity is {{start, end, label}} or {{text, label}}; got {e!r}")
            if "start" in e and "end" in e:
                s, en = int(e["start"]), int(e["end"])
                if not 0 <= s < en <= len(text):
                    raise DataFormatError(path, loc, f"entity offsets {s}-{en} outside the text (length {len(text)})")
                if "text" in e and str(e["text"]) != text[s:en]:
                    raise DataFormatError(
                        path, loc, f"entity text {e['text']!r} disagrees with offsets {s}-{en} ({text[s:en]!r})"
                    )
                ents.append(Entity(s, en, str(e["label"]), text[s:en]))
            else:
                if not str(e["text"]).strip():
                    raise DataFormatError(path, loc, "an entity with empty text")
                ents.append(Entity(-1, -1, str(e["label"]), str(e["text"])))
        return NerRecord(uid=uid, origin=f"{path}:{loc}", text=text, entities=tuple(ents))
    if t == "re":
        rels = []
        for r in _list(get("relations", required=False), path, loc, "relations"):
            h, rel, tl = (r["head"], r["relation"], r["tail"]) if isinstance(r, dict) else r
            rels.append(Relation(str(h), str(rel), str(tl)))
        return RelationRecord(uid=uid, origin=f"{path}:{loc}", text=str(get("text")), relations=tuple(rels))
    if t == "qa":
        ans = get("answer")
        answers = tuple(str(a) for a in (ans if isinstance(ans, list) else [ans]))
        if not answers or any(a is None or not str(a).strip() for a in (ans if isinstance(ans, list) else [ans])):
            raise DataFormatError(path, loc, f"every answer must be non-empty text; got {ans!r}")
        opts = get("options", required=False)
        opts = tuple(str(o) for o in _list(opts, path, loc, "options")) if opts else None
        kind = (
            "multiple_choice"
            if opts
            else ("yes_no_maybe" if answers[0].lower() in ("yes", "no", "maybe") else "free_text")
        )
        return QaRecord(
            uid=uid,
            origin=f"{path}:{loc}",
            question=str(get("question")),
            context=get("context", required=False),
            options=opts,
            answers=answers,
            kind=kind,
        )
    if t == "nli":
        label = str(get("label"))
        if spec.labels and label not in spec.labels:
            raise DataFormatError(path, loc, f"unknown label {label!r}; declared labels are {list(spec.labels)}")
        return NliRecord(
            uid=uid,
            origin=f"{path}:{loc}",
            premise=str(get("premise")),
            hypothesis=str(get("hypothesis")),
            label=label,
            label_space=tuple(spec.labels),
        )
    return SummarizationRecord(uid=uid, origin=f"{path}:{loc}", source=str(get("source")), summary=str(get("summary")))


def load_custom(spec: TaskSpec) -> dict[str, list[Record]]:
    """Read a user-declared task into canonical splits (see the module docstring for columns)."""
    original: dict[str, list[Record]] = {}
    for split, ds in _rows(spec).items():
        path = spec.data_files.get(split, spec.data_files.get("hub", spec.name))
        original[split] = [
            _record(spec, row, f"{spec.name}/{split}/{i}", str(path), f"record {i + 1}") for i, row in enumerate(ds)
        ]
    if spec.task_type == "nli" and not spec.labels:  # label space from the data itself, in sorted order
        space = tuple(sorted({r.label for recs in original.values() for r in recs}))
        original = {
            s: [NliRecord(**{**r.__dict__, "label_space": space}) for r in recs] for s, recs in original.items()
        }
    return canonical_splits(spec.name, original)
