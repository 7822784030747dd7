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

Formats: ``jsonl`` (one object per line), ``json`` (a list of objects, or ``{"data": [...]}``), ``csv``/``tsv``
(a header row; cells stay text, list fields as JSON in the cell), ``hub`` (a ``datasets`` id), and the
structured ``conll``/``iob``, ``squad``, ``brat``, ``bioc`` of :mod:`metaprompt.tasks.user_formats`.
Local files are read here, not by ``datasets``, so that every bad record is reported with its line.
``on_error: skip`` leaves bad records out (and says how many and where) instead of stopping.

Split names: ``train``, ``validation`` (or ``dev``/``devel``), ``test``; a task given only one file is
partitioned 80/10/10 like the manifest datasets without official splits.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaprompt.tasks import user_formats
from metaprompt.tasks.errors import DataFormatError, TaskDeclarationError
from metaprompt.tasks.readers._io import decode, read_json
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
from metaprompt.tasks.splits import OFFICIAL_SPLITS, canonical_splits

if TYPE_CHECKING:
    from metaprompt.tasks.taskset import TaskSpec

TABULAR = ("jsonl", "json", "csv", "tsv")
STRUCTURED = ("conll", "iob", "squad", "brat", "bioc")  # metaprompt.tasks.user_formats
FORMATS = (*TABULAR, *STRUCTURED, "hub")
FIELDS = {
    "ner": ("text", "entities"),
    "re": ("text", "relations"),
    "qa": ("question", "context", "options", "answer"),
    "nli": ("premise", "hypothesis", "label"),
    "summarization": ("source", "summary"),
}
"""The record fields of each task type: what ``columns:`` may map."""
SKIPPED: dict[str, list[str]] = {}  # task -> "file: place: problem" of each record on_error: skip dropped


def _hub(spec: TaskSpec) -> dict[str, Any]:
    import datasets

    hub_id = spec.data_files.get("hub")
    if not hub_id:
        raise TaskDeclarationError(
            f"{spec.origin}: task {spec.name!r}: format 'hub' needs data_files: {{hub: <dataset id>}}"
        )
    try:
        return datasets.load_dataset(hub_id)
    except Exception as e:  # offline / gated / typo: say which and how to fix
        raise RuntimeError(
            f"{spec.origin}: task {spec.name!r}: could not load hub dataset {hub_id!r} "
            f"({type(e).__name__}: {e}); download it where you have internet and declare local files instead"
        ) from e


def _table_rows(path: Path, fmt: str, what: str) -> Iterator[tuple[str, dict | DataFormatError]]:
    """``(place, row or the row's error)`` of a JSONL/JSON/CSV/TSV file, read here rather than by
    ``datasets``: its loader reports "An error occurred while generating the dataset" without the line.
    File-level problems (not found, empty, not UTF-8 CSV/JSON, broken JSON document) raise."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError(path, None, f"no records ({what}): the file is empty")
    if fmt == "jsonl":  # line by line: one bad line (bytes or JSON) is that record's error alone
        for lineno, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(decode(raw, path))
            except DataFormatError as err:
                yield f"line {lineno}", DataFormatError(path, lineno, err.problem)
                continue
            except json.JSONDecodeError as e:
                yield (
                    f"line {lineno}",
                    DataFormatError(path, lineno, f"invalid JSON at column {e.colno}: {e.msg} (truncated line?)"),
                )
                continue
            yield (
                f"line {lineno}",
                obj
                if isinstance(obj, dict)
                else DataFormatError(path, lineno, f"expected a JSON object, found {type(obj).__name__}"),
            )
    elif fmt == "json":
        doc = read_json(path)
        rows = doc.get("data") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise DataFormatError(path, None, 'a JSON task file is a list of objects (or {"data": [...]})')
        for i, obj in enumerate(rows):
            yield (
                f"record {i + 1}",
                obj
                if isinstance(obj, dict)
                else DataFormatError(path, f"record {i + 1}", f"expected a JSON object, found {type(obj).__name__}"),
            )
    else:  # cells stay text: "NA", "None", "null" are answers, not missing values
        reader = csv.reader(io.StringIO(decode(data, path), newline=""), delimiter="\t" if fmt == "tsv" else ",")
        header, start = next(reader, []), 2
        if len(set(header)) != len(header) or not all(h.strip() for h in header):
            raise DataFormatError(path, 1, f"the header needs unique, non-empty column names; got {header}")
        for cells in reader:
            if cells and any(c.strip() for c in cells):  # blank lines are not records
                row = dict(zip(header, cells))
                ragged = len(cells) != len(header)
                problem = f"row has {len(cells)} fields, the header {len(header)} (ragged row; unquoted delimiter?)"
                yield f"line {start}", DataFormatError(path, start, problem) if ragged else row
            start = reader.line_num + 1


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


def _offset(value: Any, path: str, loc: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise DataFormatError(path, loc, f"an entity offset must be a non-negative integer, got {value!r}")
    return int(value)


def _text(value: Any, path: str, loc: str, what: str) -> str:
    """A text value: a string or a number; a list or mapping would silently become its repr."""
    if isinstance(value, (dict, list, tuple, bool)):
        raise DataFormatError(path, loc, f"{what} must be text, got {type(value).__name__} {value!r}")
    return str(value)


def _record(spec: TaskSpec, row: dict, uid: str, path: str, loc: str) -> Record:
    col = lambda f: spec.columns.get(f, f)  # noqa: E731
    get_text = lambda f: _text(get(f), path, loc, f"field {f!r}")  # noqa: E731

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
        text = get_text("text")
        ents = []
        for e in _list(get("entities", required=False), path, loc, "entities"):
            if not isinstance(e, dict) or "label" not in e or not ({"start", "end"} <= e.keys() or "text" in e):
                raise DataFormatError(path, loc, f"an entity is {{start, end, label}} or {{text, label}}; got {e!r}")
            if not _text(e["label"], path, loc, "an entity label").strip():
                raise DataFormatError(path, loc, f"an entity with an empty label: {e!r}")
            if "start" in e and "end" in e:
                s, en = _offset(e["start"], path, loc), _offset(e["end"], path, loc)
                if not 0 <= s < en <= len(text):
                    raise DataFormatError(path, loc, f"entity offsets {s}-{en} outside the text (length {len(text)})")
                if "text" in e and str(e["text"]) != text[s:en]:
                    raise DataFormatError(
                        path, loc, f"entity text {e['text']!r} disagrees with offsets {s}-{en} ({text[s:en]!r})"
                    )
                ents.append(Entity(s, en, str(e["label"]).strip(), text[s:en]))
            else:
                if not _text(e["text"], path, loc, "an entity's text").strip():
                    raise DataFormatError(path, loc, "an entity with empty text")
                ents.append(Entity(-1, -1, str(e["label"]).strip(), str(e["text"])))
        return NerRecord(uid=uid, origin=f"{path}:{loc}", text=text, entities=tuple(ents))
    if t == "re":
        rels = []
        for r in _list(get("relations", required=False), path, loc, "relations"):
            triple = [r.get(k) for k in ("head", "relation", "tail")] if isinstance(r, dict) else r
            if not isinstance(triple, list) or len(triple) != 3 or any(x is None or not str(x).strip() for x in triple):
                raise DataFormatError(
                    path, loc, f"a relation is {{head, relation, tail}} or [head, relation, tail]; got {r!r}"
                )
            rels.append(Relation(*(_text(x, path, loc, "a relation's head, relation and tail") for x in triple)))
        return RelationRecord(uid=uid, origin=f"{path}:{loc}", text=get_text("text"), relations=tuple(rels))
    if t == "qa":
        ans = get("answer")
        given = ans if isinstance(ans, list) else [ans]
        given = [{True: "yes", False: "no"}[a] if isinstance(a, bool) else a for a in given]  # BoolQ-style true/false
        if not given or any(a is None or isinstance(a, (dict, list)) or not str(a).strip() for a in given):
            raise DataFormatError(path, loc, f"every answer must be non-empty text; got {ans!r}")
        answers = tuple(str(a) for a in given)
        context = get("context", required=False)
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
            question=get_text("question"),
            context=None if context is None else _text(context, path, loc, "field 'context'"),
            options=opts,
            answers=answers,
            kind=kind,
        )
    if t == "nli":
        label = get("label")
        label = str(label).lower() if isinstance(label, bool) else _text(label, path, loc, "field 'label'")
        if spec.labels and label not in spec.labels:
            raise DataFormatError(path, loc, f"unknown label {label!r}; declared labels are {list(spec.labels)}")
        return NliRecord(
            uid=uid,
            origin=f"{path}:{loc}",
            premise=get_text("premise"),
            hypothesis=get_text("hypothesis"),
            label=label,
            label_space=tuple(spec.labels),
        )
    return SummarizationRecord(uid=uid, origin=f"{path}:{loc}", source=get_text("source"), summary=get_text("summary"))


def load_custom(spec: TaskSpec) -> dict[str, list[Record]]:
    """Read a user-declared task into canonical splits (see the module docstring for columns).

    With ``on_error: skip`` a bad record is left out instead of stopping the run; how many and where is
    printed once and kept in :data:`SKIPPED`. A split left with no records is an error either way.
    """
    if spec.format not in FORMATS:
        raise TaskDeclarationError(
            f"{spec.origin}: task {spec.name!r}: format {spec.format!r} is not one of {list(FORMATS)}"
        )
    if spec.format != "hub" and not spec.data_files:
        raise TaskDeclarationError(f"{spec.origin}: task {spec.name!r}: data_files is empty")
    fields = FIELDS[spec.task_type]
    unknown = sorted(set(spec.columns) - set(fields))
    if unknown:  # columns: {contxt: passage} would otherwise read no context on every record
        raise TaskDeclarationError(
            f"{spec.origin}: task {spec.name!r}: columns maps unknown field(s) {unknown}; "
            f"{spec.task_type} fields are {list(fields)}"
        )
    if spec.columns and spec.format in STRUCTURED:
        raise TaskDeclarationError(
            f"{spec.origin}: task {spec.name!r}: columns apply to {list(TABULAR)} and hub data; "
            f"format {spec.format!r} has its own layout (options:)"
        )
    names = sorted(set(spec.data_files) - set(OFFICIAL_SPLITS))
    if spec.format != "hub" and len(spec.data_files) > 1 and names:
        raise TaskDeclarationError(
            f"{spec.origin}: task {spec.name!r}: data_files split(s) {names} are not among {list(OFFICIAL_SPLITS)} "
            "(one file alone, under any name, is partitioned 80/10/10)"
        )
    skipped: list[DataFormatError] = []

    def on_error(err: DataFormatError) -> None:
        if spec.on_error != "skip":
            raise err
        skipped.append(err)

    original: dict[str, list[Record]] = {}

    def add(split: str, row: dict | DataFormatError, where: str, place: str) -> None:  # one record, or its error
        try:
            if isinstance(row, DataFormatError):
                raise row
            original[split].append(_record(spec, row, f"{spec.name}/{split}/{len(original[split])}", where, place))
        except DataFormatError as err:
            on_error(err)

    def not_empty(where: str | Path, split: str, skipped_before: int) -> None:  # else it trains/scores on nothing
        if not original[split]:
            n = len(skipped) - skipped_before  # this split's own skips
            why = f"; all {n} skipped as bad (on_error: skip)" if n else ""
            raise DataFormatError(where, None, f"no records (task {spec.name!r}, split {split!r}){why}")

    if spec.format == "hub":
        for split, ds in _hub(spec).items():
            where, original[split], before = f"{spec.data_files['hub']}[{split}]", [], len(skipped)
            for i, row in enumerate(ds):
                add(split, row, where, f"record {i + 1}")
            not_empty(where, split, before)
    for split, file in ({} if spec.format == "hub" else spec.data_files).items():
        path, before = Path(file), len(skipped)
        if spec.format in STRUCTURED:
            original[split] = user_formats.read(spec, split, path, on_error)
        else:
            original[split] = []
            for place, row in _table_rows(path, spec.format, f"task {spec.name!r}, split {split!r}"):
                add(split, row, str(path), place)
        not_empty(path, split, before)
    if skipped:
        SKIPPED[spec.name] = [str(e) for e in skipped]
        total = len(skipped) + sum(len(r) for r in original.values())
        shown = "; ".join(SKIPPED[spec.name][:3]) + (f"; ... ({len(skipped) - 3} more)" if len(skipped) > 3 else "")
        print(
            f"[data] task {spec.name}: skipped {len(skipped)} of {total} records (on_error: skip): {shown}",
            file=sys.stderr,
            flush=True,
        )
    if spec.task_type == "nli" and not spec.labels:  # label space from the data itself, in sorted order
        space = tuple(sorted({r.label for recs in original.values() for r in recs}))
        original = {
            s: [NliRecord(**{**r.__dict__, "label_space": space}) for r in recs] for s, recs in original.items()
        }
    return canonical_splits(spec.name, original)
