"""Structured formats of a user's own data: ``conll``/``iob``, ``squad``, ``brat`` and ``bioc``.

Each reader turns one declared file (or, for ``brat``, a folder of ``.txt``/``.ann`` pairs) into records
of the task's type, with the same :class:`DataFormatError` messages as the readers of the 31 datasets
(brat reuses :func:`metaprompt.tasks.readers.brat.parse_ann`; conll the CoNLL reader's span building).
Format options go under ``options:`` in the task declaration:

==========  ===================  ============================================================================
format      task types           options (default)
==========  ===================  ============================================================================
conll/iob   ner                  ``scheme``: ``iob2`` (``B-``/``I-``/``O``), ``iob1`` (an ``I-`` may open an
                                 entity) or ``iobes`` (also ``S-``/``E-``; ``U-``/``L-`` as aliases);
                                 ``tag_column`` (``-1``: the last). Tokens are whitespace-separated
                                 columns, a blank line ends a sentence, ``-DOCSTART-`` lines are skipped.
squad       qa                   ``no_answer`` (``"unanswerable"``): the target of SQuAD v2 questions marked
                                 ``is_impossible``. Each answer's ``answer_start`` must point at its text.
brat        ner, re              entities from ``T`` lines, relations from ``R`` lines and ``*`` groups.
bioc        ner, re              ``type_key`` (``"type"``): the infon naming an annotation's / relation's
                                 type. One record per document; passages are placed at their offsets.
==========  ===================  ============================================================================

``on_error: skip`` applies per record: a conll sentence, a squad question, a brat or BioC document.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaprompt.tasks.errors import DataFormatError, TaskDeclarationError
from metaprompt.tasks.readers._io import read_json, read_text
from metaprompt.tasks.readers.brat import parse_ann
from metaprompt.tasks.readers.conll import sentence_record as conll_sentence
from metaprompt.tasks.records import Entity, NerRecord, QaRecord, Record, Relation, RelationRecord

if TYPE_CHECKING:
    from metaprompt.tasks.taskset import TaskSpec

OnError = Callable[[DataFormatError], None]  # raises (on_error: raise) or records the skipped record
OPTIONS: dict[str, dict[str, Any]] = {
    "conll": {"scheme": "iob2", "tag_column": -1},
    "iob": {"scheme": "iob2", "tag_column": -1},
    "squad": {"no_answer": "unanswerable"},
    "brat": {},
    "bioc": {"type_key": "type"},
}
TASK_TYPES = {"conll": ("ner",), "iob": ("ner",), "squad": ("qa",), "brat": ("ner", "re"), "bioc": ("ner", "re")}
SCHEMES = ("iob1", "iob2", "iobes")


def options(spec: TaskSpec) -> dict[str, Any]:
    """The format's options with defaults filled in; unknown keys and wrong task types are errors."""
    where = f"{spec.origin}: task {spec.name!r}"
    if spec.task_type not in TASK_TYPES[spec.format]:
        raise TaskDeclarationError(
            f"{where}: format {spec.format!r} holds {'/'.join(TASK_TYPES[spec.format])} data, not {spec.task_type!r}"
        )
    unknown = set(spec.options) - set(OPTIONS[spec.format])
    if unknown:
        raise TaskDeclarationError(
            f"{where}: unknown option(s) {sorted(unknown)} for format {spec.format!r}; known: {sorted(OPTIONS[spec.format])}"
        )
    opts = {**OPTIONS[spec.format], **spec.options}
    if spec.format in ("conll", "iob") and opts["scheme"] not in SCHEMES:
        raise TaskDeclarationError(f"{where}: scheme {opts['scheme']!r} is not one of {list(SCHEMES)}")
    if spec.format in ("conll", "iob") and (
        isinstance(opts["tag_column"], bool) or not isinstance(opts["tag_column"], int)
    ):
        raise TaskDeclarationError(
            f"{where}: tag_column is the tag's column number (0-based; -1: the last), not {opts['tag_column']!r}"
        )
    return opts


def read(spec: TaskSpec, split: str, path: Path, on_error: OnError) -> list[Record]:
    """Records of one declared split file in ``spec.format`` (uids ``<task>/<split>/<n>``)."""
    opts = options(spec)
    readers = {"conll": _conll, "iob": _conll, "squad": _squad, "brat": _brat, "bioc": _bioc}
    records = readers[spec.format](spec, path, opts, on_error)
    return [type(r)(**{**r.__dict__, "uid": f"{spec.name}/{split}/{i}"}) for i, r in enumerate(records)]


# ----------------------------------------------------------------------------- conll / iob
def _spans(tags: list[tuple[int, str]], scheme: str, path: Path) -> list[tuple[int, int, str]]:
    """``[(first token, last token + 1, type)]`` of one sentence's ``(line, tag)`` list, validated."""
    spans: list[list] = []
    prev = "O"  # the open entity's tag ("B-X"/"I-X"), or "O"
    allowed = "BISE" if scheme == "iobes" else "BI"
    for i, (line, tag) in enumerate(tags):
        prefix, _, label = ("O", "", "") if tag == "O" else tag.partition("-")
        prefix = {"U": "S", "L": "E"}.get(prefix, prefix) if scheme == "iobes" else prefix
        if prefix != "O" and (prefix not in allowed or not label):
            raise DataFormatError(path, line, f"tag {tag!r} is not O or {'/'.join(allowed)}-<type> ({scheme})")
        continues = prev != "O" and prev[2:] == label
        if scheme == "iobes" and prev != "O" and not (prefix in "IE" and continues):
            raise DataFormatError(path, line, f"entity opened by {prev!r} is not closed with E- before {tag!r}")
        if prefix in "IE" and not continues:
            if scheme != "iob1":
                hint = "; declare options: {scheme: iob1} if an I- tag may open an entity" if scheme == "iob2" else ""
                raise DataFormatError(path, line, f"tag {tag!r} does not continue an entity (previous {prev!r}){hint}")
            prefix = "B"  # IOB1: an I- after O or another type opens an entity
        if prefix in "BS":
            spans.append([i, i + 1, label])
        elif prefix in "IE":
            spans[-1][1] = i + 1
        prev = "O" if prefix in "OSE" else f"{prefix}-{label}"
    if scheme == "iobes" and prev != "O":
        raise DataFormatError(path, tags[-1][0], f"entity opened by {prev!r} is not closed with E- at sentence end")
    return [tuple(s) for s in spans]  # type: ignore[misc]


def _conll(spec: TaskSpec, path: Path, opts: dict, on_error: OnError) -> list[Record]:
    records: list[Record] = []
    sentence: list[tuple[int, str, str]] = []
    broken: DataFormatError | None = None  # the first error of the sentence being read (skip drops it whole)

    def close() -> None:
        nonlocal sentence, broken
        try:
            if broken:
                raise broken
            if sentence:
                records.append(_sentence(sentence, spec, path, opts["scheme"]))
        except DataFormatError as err:
            on_error(err)
        sentence, broken = [], None

    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if broken:
            continue
        if len(fields) < 2:
            broken = DataFormatError(path, lineno, f"expected a token and a tag, found {len(fields)} field(s)")
            continue
        try:
            tag = fields[opts["tag_column"]]
        except IndexError:
            broken = DataFormatError(path, lineno, f"no column {opts['tag_column']} ({len(fields)} fields)")
            continue
        if spec.labels and tag != "O" and tag.partition("-")[2] not in spec.labels:
            broken = DataFormatError(path, lineno, f"tag {tag!r} names a type outside labels {list(spec.labels)}")
            continue
        sentence.append((lineno, fields[0], tag))
    close()
    return records


def _sentence(tokens: list[tuple[int, str, str]], spec: TaskSpec, path: Path, scheme: str) -> NerRecord:
    """Validate the sentence's tags in ``scheme``, rewrite them as IOB2 and build the record as the CoNLL
    reader of the 31 datasets does (text = tokens joined by one space, offsets into it)."""
    iob2 = ["O"] * len(tokens)
    for first, last, label in _spans([(line, tag) for line, _, tag in tokens], scheme, path):
        iob2[first:last] = [f"B-{label}"] + [f"I-{label}"] * (last - first - 1)
    rewritten = [(line, token, tag) for (line, token, _), tag in zip(tokens, iob2, strict=True)]
    record = conll_sentence(rewritten, spec.name, "", 0, path)
    return NerRecord(**{**record.__dict__, "origin": f"{path}:{tokens[0][0]}"})


# ----------------------------------------------------------------------------- squad
def _squad(spec: TaskSpec, path: Path, opts: dict, on_error: OnError) -> list[Record]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataFormatError(path, None, "SQuAD JSON is an object with a 'data' list (data/paragraphs/qas)")
    records: list[Record] = []
    for a, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            on_error(DataFormatError(path, f"data[{a}]", "an article needs a 'paragraphs' list"))
            continue
        for p, para in enumerate(paragraphs):
            for q, qa in enumerate(para.get("qas", []) if isinstance(para, dict) else [None]):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]" + (
                    f" (id={qa.get('id')})" if isinstance(qa, dict) else ""
                )
                try:
                    records.append(_squad_record(para, qa, path, where, opts["no_answer"]))
                except DataFormatError as err:
                    on_error(err)
    return records


def _squad_record(para: Any, qa: Any, path: Path, where: str, no_answer: str) -> QaRecord:
    if not isinstance(para, dict) or not isinstance(para.get("context"), str) or not para["context"].strip():
        raise DataFormatError(path, where, "a paragraph needs a non-empty 'context' string and a 'qas' list")
    if not isinstance(qa, dict) or not str(qa.get("question") or "").strip():
        raise DataFormatError(path, where, "a question needs a non-empty 'question'")
    context = para["context"]
    answers = qa.get("answers", [])
    if qa.get("is_impossible"):  # SQuAD v2: no answer in the context
        texts = (no_answer,)
    else:
        if not isinstance(answers, list) or not answers:
            raise DataFormatError(path, where, "no answers (and not marked is_impossible)")
        texts = []
        for n, ans in enumerate(answers):
            if not isinstance(ans, dict) or not str(ans.get("text") or "").strip() or "answer_start" not in ans:
                raise DataFormatError(
                    path, f"{where} answers[{n}]", f"an answer is {{text, answer_start}}; got {ans!r}"
                )
            start, text = ans["answer_start"], str(ans["text"])
            start = int(start) if isinstance(start, str) and start.strip().isdigit() else start
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                raise DataFormatError(
                    path, f"{where} answers[{n}]", f"answer_start must be a non-negative integer, got {start!r}"
                )
            if context[start : start + len(text)] != text:
                found = context[start : start + len(text)]
                raise DataFormatError(
                    path, f"{where} answers[{n}]", f"answer {text!r} is not at answer_start {start} (found {found!r})"
                )
            if text not in texts:
                texts.append(text)
    return QaRecord(
        uid="", origin=f"{path}#{where}", question=str(qa["question"]), context=context, answers=tuple(texts)
    )


# ----------------------------------------------------------------------------- brat
def _brat(spec: TaskSpec, path: Path, opts: dict, on_error: OnError) -> list[Record]:
    if not path.is_dir():
        raise DataFormatError(path, None, "format brat reads a folder of .txt files with their .ann files")
    texts = sorted(path.rglob("*.txt"))
    if not texts:
        raise DataFormatError(path, None, "no .txt documents in the folder")
    records: list[Record] = []
    for txt in texts:
        ann = txt.with_suffix(".ann")
        try:
            if not ann.is_file():
                raise DataFormatError(ann, None, f"missing: every document needs its .ann file ({txt.name})")
            text = read_text(txt)
            parsed = parse_ann(text, read_text(ann), str(ann))
            if spec.labels and (bad := sorted({e.label for e in parsed.entities} - set(spec.labels))):
                raise DataFormatError(ann, None, f"entity type(s) {bad} outside labels {list(spec.labels)}")
            common = {"uid": "", "origin": str(ann), "text": text, "entities": tuple(parsed.entities)}
            records.append(
                NerRecord(**common)
                if spec.task_type == "ner"
                else RelationRecord(**common, relations=tuple(parsed.relations))
            )
        except DataFormatError as err:
            on_error(err)
    return records


# ----------------------------------------------------------------------------- bioc
def _bioc(spec: TaskSpec, path: Path, opts: dict, on_error: OnError) -> list[Record]:
    try:
        root = ET.fromstring(read_text(path))
    except ET.ParseError as e:
        raise DataFormatError(path, e.position[0], f"invalid XML at column {e.position[1]}: {e}") from None
    if root.tag != "collection":
        raise DataFormatError(path, None, f"BioC XML has a <collection> root, not <{root.tag}>")
    records: list[Record] = []
    for n, doc in enumerate(root.iter("document"), 1):
        where = f"document {n} (id={doc.findtext('id', '').strip() or '?'})"
        try:
            records.append(_bioc_document(doc, spec, path, where, opts["type_key"]))
        except DataFormatError as err:
            on_error(err)
    if not records and not list(root.iter("document")):
        raise DataFormatError(path, None, "no <document> in the collection")
    return records


def _infon(elem: ET.Element, key: str) -> str | None:
    return next((i.text for i in elem.findall("infon") if i.get("key") == key), None)


def _int(value: str | None, path: Path, where: str, what: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise DataFormatError(path, where, f"{what} must be an integer, got {value!r}") from None


def _bioc_document(doc: ET.Element, spec: TaskSpec, path: Path, where: str, type_key: str) -> Record:
    text = ""
    for passage in doc.findall("passage"):  # document-level offsets: place each passage where it starts
        offset = _int(passage.findtext("offset"), path, where, "a passage <offset>")
        if offset < len(text):
            raise DataFormatError(path, where, f"passage offset {offset} overlaps the previous passage")
        text += " " * (offset - len(text)) + (passage.findtext("text") or "")
    entities: dict[str, Entity] = {}
    for ann in doc.iter("annotation"):
        aid, label = ann.get("id", "?"), _infon(ann, type_key)
        if not label:
            raise DataFormatError(path, f"{where} annotation {aid}", f"no <infon key={type_key!r}> naming its type")
        mention = ann.findtext("text") or ""
        locs = [
            (
                _int(loc.get("offset"), path, where, "location offset"),
                _int(loc.get("length"), path, where, "location length"),
            )
            for loc in ann.findall("location")
        ]
        if not locs:
            raise DataFormatError(path, f"{where} annotation {aid}", "no <location>")
        for s, length in locs:
            if not (0 <= s and length > 0 and s + length <= len(text)):
                raise DataFormatError(
                    path, f"{where} annotation {aid}", f"location {s}+{length} outside the text ({len(text)} chars)"
                )
        covered = " ".join(text[s : s + length] for s, length in locs)
        if covered.split() != mention.split():
            raise DataFormatError(
                path, f"{where} annotation {aid}", f"text {mention!r} disagrees with its location ({covered!r})"
            )
        if spec.labels and label not in spec.labels:
            raise DataFormatError(
                path, f"{where} annotation {aid}", f"type {label!r} outside labels {list(spec.labels)}"
            )
        s, length = locs[0]
        entities[aid] = (
            Entity(s, s + length, label, text[s : s + length]) if len(locs) == 1 else Entity(-1, -1, label, covered)
        )
    common = {"uid": "", "origin": f"{path}#{where}", "text": text, "entities": tuple(entities.values())}
    if spec.task_type == "ner":
        return NerRecord(**common)
    relations = []
    for rel in doc.iter("relation"):
        rid, label = rel.get("id", "?"), _infon(rel, type_key) or _infon(rel, "relation")
        nodes = [node.get("refid") for node in rel.findall("node")]
        if not label or len(nodes) != 2 or any(node not in entities for node in nodes):
            raise DataFormatError(
                path,
                f"{where} relation {rid}",
                f"a relation needs a type infon and 2 nodes naming annotations; got type {label!r}, nodes {nodes}",
            )
        relations.append(Relation(entities[nodes[0]].text, label, entities[nodes[1]].text))
    return RelationRecord(**common, relations=tuple(relations))
