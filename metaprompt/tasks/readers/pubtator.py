"""Reader for PubTator-format corpora: ncbi_disease (NER) and cdr (chemical-induced-disease RE).

Format (MANIFEST.yaml): per document a ``PMID|t|title`` line, a ``PMID|a|abstract`` line, mention lines
``PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>id(s)[<TAB>individual mentions]`` with offsets into
``title + " " + abstract`` (end exclusive) and, in cdr, relation lines ``PMID<TAB>CID<TAB>chemical
id<TAB>disease id``; documents are separated by blank lines (extra blank lines, e.g. the one opening
NCBItrainset_corpus.txt, are tolerated).

Every mention is checked against the text: offsets must lie inside it and the mention field must equal
the text slice. One tolerance, for NCBItrainset_corpus.txt line 3249 (a mention field with two
trailing spaces the span excludes): a field that equals the slice after stripping surrounding
whitespace is accepted and the entity text is the slice.

uid is ``<dataset>/<split>/<PMID>``; a PMID repeated within a file (ncbi_disease train repeats PMID
8528200 verbatim, as in the original release and the manifest's counts) keeps every copy, the n-th
copy getting uid ``.../<PMID>_<n>``.

cdr relations: one ``Relation(head=<chemical name>, relation="CID", tail=<disease name>)`` per CID line,
"CID" being the corpus' own relation type (chemical-induced disease). The *name* of a MeSH id is,
deterministically, the text of the first mention (lowest start offset) of the matching type whose id
field is exactly that id; failing that (an id that only occurs in multi-id mentions), the first such
mention's individual-mention text at that id's position (composite mentions, 7th column) or else the
whole mention text (one mention normalised to several ids, e.g. "choreoathetosis" -> D002819|D001264).
In the second case two ids can share a name; their relations then give the same triple and are kept
once (a document's relations are distinct triples in CID-line order). Mentions whose id is "-1" (not
normalisable) are entities but never relation arguments; a CID line naming "-1" or an id without a
mention of the right type raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import read_splits, read_text
from metaprompt.tasks.records import Entity, NerRecord, Record, Relation, RelationRecord

NCBI_FILES = {
    "train": "NCBItrainset_corpus.txt",
    "devel": "NCBIdevelopset_corpus.txt",
    "test": "NCBItestset_corpus.txt",
}
NCBI_TYPES = ("CompositeMention", "DiseaseClass", "Modifier", "SpecificDisease")
CDR_FILES = {
    "train": "CDR_TrainingSet.PubTator.txt",
    "dev": "CDR_DevelopmentSet.PubTator.txt",
    "test": "CDR_TestSet.PubTator.txt",
}
CDR_TYPES = ("Chemical", "Disease")
CID = "CID"

_TEXT_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


@dataclass
class Mention:
    """One mention line: its entity, concept ids and (composite mentions) individual mention texts."""

    line: int
    entity: Entity
    ids: tuple[str, ...]
    parts: tuple[str, ...] = ()


@dataclass
class Document:
    """One parsed PubTator document; ``relations`` holds ``(line, relation type, id 1, id 2)``."""

    pmid: str
    line: int
    title: str
    abstract: str | None = None
    mentions: list[Mention] = field(default_factory=list)
    relations: list[tuple[int, str, str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract}"


def _offset(value: str, path: Path, lineno: int, what: str) -> int:
    if not value.isdigit():
        raise DataFormatError(path, lineno, f"{what} offset {value!r} is not a non-negative integer")
    return int(value)


def _mention(doc: Document, fields: list[str], path: Path, lineno: int, types: tuple[str, ...]) -> Mention:
    if len(fields) not in (6, 7):
        raise DataFormatError(path, lineno, f"mention line needs 6 or 7 tab-separated fields, found {len(fields)}")
    start, end = _offset(fields[1], path, lineno, "start"), _offset(fields[2], path, lineno, "end")
    text = doc.text
    if not start < end <= len(text):
        raise DataFormatError(path, lineno, f"offsets {start}-{end} outside the document text (length {len(text)})")
    mention, label = fields[3], fields[4]
    if text[start:end] != mention and text[start:end] != mention.strip():
        raise DataFormatError(
            path, lineno, f"mention {mention!r} does not match the text at {start}-{end}: {text[start:end]!r}"
        )
    if label not in types:
        raise DataFormatError(path, lineno, f"unknown entity type {label!r}; expected one of {list(types)}")
    ids = tuple(i.strip() for i in fields[5].split("|"))
    parts = tuple(fields[6].split("|")) if len(fields) == 7 else ()
    if parts and len(parts) != len(ids):
        raise DataFormatError(path, lineno, f"{len(ids)} ids but {len(parts)} individual mentions")
    return Mention(lineno, Entity(start, end, label, text[start:end]), ids, parts)


def parse_pubtator(path: Path, types: tuple[str, ...]) -> list[Document]:
    """Parse and validate a PubTator file into documents in file order.

    Raises:
        DataFormatError: naming the file and line of any malformed line, PMID mismatch or bad offset.
    """
    docs: list[Document] = []
    doc: Document | None = None
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            if doc is not None and doc.abstract is None:
                raise DataFormatError(path, lineno, f"document {doc.pmid} has a title but no abstract line")
            doc = None
            continue
        m = _TEXT_LINE.match(line)
        if m:
            pmid, kind, body = m.groups()
            if kind == "t":
                if doc is not None:
                    raise DataFormatError(
                        path, lineno, f"title of {pmid} inside document {doc.pmid} (missing blank line)"
                    )
                doc = Document(pmid, lineno, body)
                docs.append(doc)
            elif doc is None or doc.pmid != pmid or doc.abstract is not None or doc.mentions:
                raise DataFormatError(path, lineno, f"abstract line of {pmid} does not directly follow its title line")
            else:
                doc.abstract = body
            continue
        fields = line.split("\t")
        if doc is None or doc.abstract is None:
            raise DataFormatError(path, lineno, "annotation line before the document's title and abstract lines")
        if fields[0] != doc.pmid:
            raise DataFormatError(path, lineno, f"PMID {fields[0]!r} differs from the document's {doc.pmid!r}")
        if len(fields) == 4:
            doc.relations.append((lineno, fields[1], fields[2].strip(), fields[3].strip()))
        else:
            doc.mentions.append(_mention(doc, fields, path, lineno, types))
    if doc is not None and doc.abstract is None:
        raise DataFormatError(path, doc.line, f"document {doc.pmid} has a title but no abstract line")
    return docs


def _uids(docs: list[Document], dataset: str, split: str) -> list[str]:
    seen: dict[str, int] = {}
    uids = []
    for d in docs:
        seen[d.pmid] = seen.get(d.pmid, 0) + 1
        suffix = "" if seen[d.pmid] == 1 else f"_{seen[d.pmid]}"
        uids.append(f"{dataset}/{split}/{d.pmid}{suffix}")
    return uids


def read_ncbi_disease_file(path: Path, split: str) -> list[Record]:
    """One NCBI-disease PubTator file: document NerRecords."""
    docs = parse_pubtator(path, NCBI_TYPES)
    records: list[Record] = []
    for uid, d in zip(_uids(docs, "ncbi_disease", split), docs, strict=True):
        if d.relations:
            raise DataFormatError(path, d.relations[0][0], "relation line in an NER corpus")
        entities = tuple(m.entity for m in d.mentions)
        records.append(NerRecord(uid=uid, origin=f"{path.name}:{d.line}", text=d.text, entities=entities))
    return records


@register("ncbi_disease")
def read_ncbi_disease(folder: Path) -> dict[str, list[Record]]:
    """Read ncbi_disease: ``train``/``devel``/``test`` document NerRecords typed with the 4 mention types."""
    return read_splits(folder, NCBI_FILES, read_ncbi_disease_file)


def _names(doc: Document, label: str) -> dict[str, str]:
    """Canonical name of every MeSH id of ``label``-typed mentions (rule in the module docstring)."""
    mentions = sorted((m for m in doc.mentions if m.entity.label == label), key=lambda m: m.entity.start)
    names: dict[str, str] = {}
    for m in mentions:
        if len(m.ids) == 1 and m.ids[0] != "-1":
            names.setdefault(m.ids[0], m.entity.text)
    for m in mentions:
        for k, mesh in enumerate(m.ids):
            if mesh != "-1" and mesh not in names:
                names[mesh] = m.parts[k] if m.parts else m.entity.text
    return names


def _relations(doc: Document, path: Path) -> tuple[Relation, ...]:
    chemicals, diseases = _names(doc, "Chemical"), _names(doc, "Disease")
    triples: dict[Relation, None] = {}  # ordered set
    for lineno, rtype, chem, dis in doc.relations:
        if rtype != CID:
            raise DataFormatError(path, lineno, f"unknown relation type {rtype!r}; expected {CID!r}")
        for mesh, names, what in ((chem, chemicals, "Chemical"), (dis, diseases, "Disease")):
            if mesh not in names:
                raise DataFormatError(path, lineno, f"{what} id {mesh!r} has no {what} mention in document {doc.pmid}")
        triples[Relation(chemicals[chem], CID, diseases[dis])] = None
    return tuple(triples)


def read_cdr_file(path: Path, split: str) -> list[Record]:
    """One BC5CDR PubTator file: document RelationRecords (Chemical/Disease mentions, CID)."""
    docs = parse_pubtator(path, CDR_TYPES)
    return [
        RelationRecord(
            uid=uid,
            origin=f"{path.name}:{d.line}",
            text=d.text,
            entities=tuple(m.entity for m in d.mentions),
            relations=_relations(d, path),
        )
        for uid, d in zip(_uids(docs, "cdr", split), docs, strict=True)
    ]


@register("cdr")
def read_cdr(folder: Path) -> dict[str, list[Record]]:
    """Read cdr: ``train``/``dev``/``test`` document RelationRecords (Chemical/Disease mentions, CID)."""
    return read_splits(folder, CDR_FILES, read_cdr_file)
