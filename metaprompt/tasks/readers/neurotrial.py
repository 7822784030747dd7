"""Reader for neurotrial_ner: the NeuroTrialNER BigBIO-ready JSON export.

Format (MANIFEST.yaml): each of ``train.json``/``dev.json``/``test.json`` is a JSON array of trial
records ``{nctid, study_official_title, study_brief_summary, text, tokens, token_bio_labels,
entities: [{start, end, text, type}]}`` with character offsets into ``text`` (end exclusive).

Only ``nctid``, ``text`` and ``entities`` are used: ``text`` is what the offsets index, so it is taken
verbatim rather than rebuilt from title and summary (the manifest describes it as
``title + ' | ' + summary``, but in the files the title already ends in ``" |"`` and the summary starts
with a space, and 17 records have a null ``study_brief_summary`` whose ``text`` is the title alone).
``tokens``/``token_bio_labels`` (Python-list reprs with abbreviated tags such as ``B-COND``) duplicate
the span annotation and are ignored. Records without entities are kept (they are valid negatives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import UniqueKeys, read_json, require
from metaprompt.tasks.records import Entity, NerRecord, Record

SPLIT_FILES: dict[str, str] = {"train": "train.json", "dev": "dev.json", "test": "test.json"}
ENTITY_TYPES: tuple[str, ...] = (
    "BEHAVIOURAL",
    "CONDITION",
    "CONTROL",
    "DRUG",
    "OTHER",
    "PHYSICAL",
    "RADIOTHERAPY",
    "SURGICAL",
)


def _field(obj: dict, key: str, kind: type, path: Path, where: str) -> Any:
    """``obj[key]``, which must exist and be of ``kind`` (bool is not accepted as int)."""
    if key not in obj:
        raise DataFormatError(path, where, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataFormatError(path, where, f"field {key!r} must be {kind.__name__}, found {type(value).__name__}")
    return value


def _entity(obj: Any, text: str, path: Path, where: str) -> Entity:
    if not isinstance(obj, dict):
        raise DataFormatError(path, where, f"expected an entity object, found {type(obj).__name__}")
    start, end = _field(obj, "start", int, path, where), _field(obj, "end", int, path, where)
    mention, label = _field(obj, "text", str, path, where), _field(obj, "type", str, path, where)
    if not 0 <= start < end <= len(text):
        raise DataFormatError(path, where, f"offsets {start}-{end} outside the text (length {len(text)})")
    if text[start:end] != mention:
        raise DataFormatError(
            path, where, f"mention {mention!r} does not match the text at {start}-{end}: {text[start:end]!r}"
        )
    if label not in ENTITY_TYPES:
        raise DataFormatError(path, where, f"unknown entity type {label!r}; expected one of {list(ENTITY_TYPES)}")
    return Entity(start, end, label, mention)


def read_split(path: Path, split: str) -> list[NerRecord]:
    """Parse one split file; ``uid = neurotrial_ner/<split>/<nctid>``, ``origin = <file>#<nctid>``.

    Raises:
        DataFormatError: naming the file and the record (index and NCT id) that is malformed.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, None, f"expected a JSON array of records, found {type(data).__name__}")
    records: list[NerRecord] = []
    seen = UniqueKeys(path, "nctid")
    for i, obj in enumerate(data):
        where = f"record {i}"
        if not isinstance(obj, dict):
            raise DataFormatError(path, where, f"expected a JSON object, found {type(obj).__name__}")
        nctid = require(_field(obj, "nctid", str, path, where), path, where, "nctid")
        where = f"record {i} (id={nctid})"
        seen.add(nctid, where)
        text = _field(obj, "text", str, path, where)
        if not text.strip():
            raise DataFormatError(path, where, "empty text")
        raw_entities = _field(obj, "entities", list, path, where)
        entities = tuple(_entity(e, text, path, f"{where} entity {k}") for k, e in enumerate(raw_entities))
        records.append(
            NerRecord(
                uid=f"neurotrial_ner/{split}/{nctid}",
                origin=f"{path.name}#{nctid}",
                text=text,
                entities=entities,
            )
        )
    return records


@register("neurotrial_ner")
def read_neurotrial_ner(folder: Path) -> dict[str, list[Record]]:
    """Read neurotrial_ner: ``train``/``dev``/``test`` trial NerRecords with the 8 span types."""
    return {split: read_split(Path(folder) / name, split) for split, name in SPLIT_FILES.items()}
