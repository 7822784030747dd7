"""Reader for bioinfer: protein-protein interactions in the unified PPI XML "learning format".

Format (MANIFEST.yaml): ``<corpus><document id origId><sentence id text><entity id charOffset text
type/>... <interaction e1 e2 type="PPI"/>...</sentence></document></corpus>``; ``charOffset`` is
``start-end`` (end exclusive) into the sentence text, comma-separated ranges for discontinuous
entities; every entity pair of a sentence that no interaction lists is a negative candidate.

One :class:`RelationRecord` per sentence (894 train, 206 test), uid ``bioinfer/<split>/<sentence
id>``, origin ``<file>#<sentence id>`` (each file is one physical line, so ids locate records better
than line numbers; XML syntax errors still report line and column). Entities keep the corpus' types;
a contiguous entity keeps its span and must equal the slice, a discontinuous one (122) gets
``start = end = -1`` and the ranges' slices joined by one space, which must equal its ``text``
attribute. Each interaction is ``Relation(head, "PPI", tail)``. PPI is undirected, so head is the
argument that starts first in the sentence (ties by ``e1``) rather than the arbitrary ``e1``/``e2``
order: the gold target then follows the text. Negative pairs are implicit (the candidate pairs of a
sentence are all pairs of its entities); nothing is dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import read_text
from metaprompt.tasks.records import Entity, Record, Relation, RelationRecord

FILES = {"train": "BioInfer-train.xml", "test": "BioInfer-test.xml"}
INTERACTION_TYPES = ("PPI",)
_OFFSETS = re.compile(r"^\d+-\d+(?:,\d+-\d+)*$")


def _attr(el: ET.Element, name: str, path: Path, where: str) -> str:
    value = el.get(name)
    if value is None:
        raise DataFormatError(path, where, f"<{el.tag}> lacks attribute {name!r}")
    return value


def _entity(el: ET.Element, text: str, path: Path, where: str) -> tuple[int, Entity]:
    """Validate one <entity>; return (first start offset, entity)."""
    offsets = _attr(el, "charOffset", path, where)
    mention = _attr(el, "text", path, where)
    label = _attr(el, "type", path, where)
    if not _OFFSETS.match(offsets):
        raise DataFormatError(path, where, f"charOffset {offsets!r} is not 'start-end[,start-end...]'")
    spans = [tuple(int(x) for x in part.split("-")) for part in offsets.split(",")]
    for start, end in spans:
        if not 0 <= start < end <= len(text):
            raise DataFormatError(path, where, f"charOffset {start}-{end} outside the sentence ({len(text)} chars)")
    joined = " ".join(text[s:e] for s, e in spans)
    if joined != mention:
        raise DataFormatError(path, where, f"entity text {mention!r} does not match the sentence text {joined!r}")
    if len(spans) > 1:
        return spans[0][0], Entity(-1, -1, label, mention)
    return spans[0][0], Entity(spans[0][0], spans[0][1], label, mention)


def _sentence(el: ET.Element, path: Path, split: str) -> RelationRecord:
    sid = _attr(el, "id", path, "a <sentence>")
    where = f"sentence {sid}"
    text = _attr(el, "text", path, where)
    if not text.strip():
        raise DataFormatError(path, where, "empty sentence text")
    entities: dict[str, tuple[int, Entity]] = {}
    relations: list[Relation] = []
    for child in el:
        if child.tag == "entity":
            eid = _attr(child, "id", path, where)
            if eid in entities:
                raise DataFormatError(path, f"entity {eid}", "duplicate entity id")
            entities[eid] = _entity(child, text, path, f"entity {eid}")
        elif child.tag == "interaction":
            iid = child.get("id", "?")
            loc = f"interaction {iid} (sentence {sid})"
            kind = _attr(child, "type", path, loc)
            if kind not in INTERACTION_TYPES:
                raise DataFormatError(path, loc, f"unknown interaction type {kind!r}; expected {INTERACTION_TYPES}")
            # entities precede interactions in the format; an id not yet seen is unknown
            args = [_attr(child, k, path, loc) for k in ("e1", "e2")]
            unknown = [a for a in args if a not in entities]
            if unknown:
                raise DataFormatError(path, loc, f"names unknown entity id(s) {unknown}")
            first, second = sorted((entities[a] for a in args), key=lambda pair: pair[0])
            relations.append(Relation(first[1].text, kind, second[1].text))
        else:
            raise DataFormatError(path, where, f"unexpected element <{child.tag}>")
    return RelationRecord(
        uid=f"bioinfer/{split}/{sid}",
        origin=f"{path.name}#{sid}",
        text=text,
        entities=tuple(e for _, e in entities.values()),
        relations=tuple(relations),
    )


def read_file(path: Path, split: str) -> list[Record]:
    """All sentences of one BioInfer XML file, in document order.

    Raises:
        DataFormatError: Missing file, non-UTF-8 bytes, malformed XML (with line and column) or any
            structural problem (named by element id).
    """
    text = read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        line, column = e.position
        reason = str(e).rsplit(": line ", 1)[0]  # expat appends the position, given separately here
        raise DataFormatError(path, f"line {line}, column {column}", f"malformed XML: {reason}") from None
    if root.tag != "corpus":
        raise DataFormatError(path, "line 1", f"root element is <{root.tag}>, expected <corpus>")
    records: list[Record] = []
    for doc in root:
        if doc.tag != "document":
            raise DataFormatError(path, "<corpus>", f"unexpected element <{doc.tag}>")
        for sent in doc:
            if sent.tag != "sentence":
                raise DataFormatError(path, f"document {doc.get('id', '?')}", f"unexpected element <{sent.tag}>")
            records.append(_sentence(sent, path, split))
    return records


@register("bioinfer")
def read(folder: Path) -> dict[str, list[Record]]:
    """Read bioinfer: ``{"train": [...], "test": [...]}``, one record per sentence."""
    return {split: read_file(Path(folder) / name, split) for split, name in FILES.items()}
