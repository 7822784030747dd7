"""Readers for tab-separated relation corpora: gad and pgr (binary, one row = one candidate pair) and
drugprot (abstracts with typed chemical-gene relations).

The files are written raw, without CSV quoting (a GAD sentence contains ``"S" promoter``, 13 DrugProt
abstracts contain quotes), so rows are split on tabs line by line instead of with :mod:`csv`, whose
quote handling would merge or mangle such fields. Every row must have exactly the expected number of
fields; a trailing newline at the end of the file is allowed, blank lines elsewhere are not.

gad: ``sentence<TAB>label`` (train.tsv, no header) or ``index<TAB>sentence<TAB>label`` (test.tsv,
header). The sentence is kept exactly as in the file, with the masked mentions ``@GENE$`` and
``@DISEASE$`` (each must occur exactly once) as the entities (labels GENE, DISEASE, offsets of the
placeholders). Label "1" gives ``Relation("@GENE$", "associated_with", "@DISEASE$")``, "0" none, any
other value raises; every row carries that relation as its ``candidate`` (scored by ranking it against
none). uid ``gad/train/<line>`` (no row id in train) or ``gad/test/<index>``.

pgr: header ``FILE_ID SENTENCE GENE PHENOTYPE ... RELATION`` (test.tsv adds a manual-review
CONFIRMATION column, which is not applied: RELATION is the gold label, as the manifest's label counts
are; CONFIRMATION flags 'I' on 95 of 219 test rows). RELATION is compared case-insensitively (test.tsv
mixes TRUE/True and FALSE/False) and must be true or false. Entities: the GENE and PHENOTYPE mentions
with their offsets, checked against the sentence. One known offset error in the original train.tsv
(PMID 29179257, gene "AA" given at 21-23, which reads "ca"; the word "AA" is not in the sentence) is
kept with offsets -1. Positive rows give ``Relation(gene, "associated_with", phenotype)``, every row
carries it as its ``candidate``. Repeated
rows (15 in train, 3 in test, as in the source) are kept: the manifest's kept_rows count them. uid
``pgr/<split>/<PMID>-<line>``.

drugprot: abstracts ``PMID<TAB>title<TAB>abstract``; entities ``PMID<TAB>T<n><TAB>type<TAB>start<TAB>
end<TAB>text`` with offsets into ``title + " " + abstract``; relations ``PMID<TAB>TYPE<TAB>Arg1:T<n>
<TAB>Arg2:T<m>`` (Arg1 a CHEMICAL, Arg2 a GENE). One record per abstract (file order), uid
``drugprot/development/<PMID>``; relations ``Relation(chemical text, TYPE, gene text)`` in file order.
The development file types genes as plain GENE (the manifest's format line names GENE-Y/GENE-N, which
the training release uses); all three are accepted. Two relation lines are exact repeats; every line
is kept (the manifest's 1,608 counts them), ``RelationRecord.structure()`` collapses the repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import register
from metaprompt.tasks.readers._io import UniqueKeys, choice, read_text, require
from metaprompt.tasks.records import Entity, Record, Relation, RelationRecord

ASSOCIATION = "associated_with"
GAD_FILES = {"train": ("train.tsv", False), "test": ("test.tsv", True)}  # split: (file, has header)
PGR_FILES = {"train": "train.tsv", "test": "test.tsv"}
PGR_COLUMNS = (
    "FILE_ID", "SENTENCE", "GENE", "PHENOTYPE", "GENE_START_POSITION", "GENE_END_POSITION",
    "PHENOTYPE_START_POSITION", "PHENOTYPE_END_POSITION", "RELATION",
)  # fmt: skip
# (file name, PMID, mention, start, end) of mentions whose offsets are wrong in the original release
PGR_KNOWN_OFFSET_ERRORS = frozenset({("train.tsv", "29179257", "AA", 21, 23)})
DRUGPROT_PREFIX = "drugprot_development_"
DRUGPROT_ENTITY_TYPES = ("CHEMICAL", "GENE", "GENE-Y", "GENE-N")
DRUGPROT_RELATIONS = (
    "ACTIVATOR", "AGONIST", "AGONIST-ACTIVATOR", "AGONIST-INHIBITOR", "ANTAGONIST", "DIRECT-REGULATOR",
    "INDIRECT-DOWNREGULATOR", "INDIRECT-UPREGULATOR", "INHIBITOR", "PART-OF", "PRODUCT-OF", "SUBSTRATE",
    "SUBSTRATE_PRODUCT-OF",
)  # fmt: skip
_ARG = re.compile(r"^Arg([12]):(T\d+)$")


def iter_tsv(path: Path, columns: tuple[str, ...], header: bool) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a raw (unquoted) TSV file.

    Args:
        path: The file.
        columns: Without a header, the names of the fields in order; with one, the columns that must
            be present (others are allowed and kept).
        header: Whether the first line names the columns.
    """
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) <= int(header):
        raise DataFormatError(path, None, "no data rows")
    names = list(columns)
    start = 1
    if header:
        names = lines[0].rstrip("\r").split("\t") if lines else []
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataFormatError(path, 1, f"missing column(s) {missing}; header has {names}")
        start = 2
    for lineno, line in enumerate(lines[start - 1 :], start):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(names):
            raise DataFormatError(
                path, lineno, f"expected {len(names)} tab-separated fields {names}, found {len(fields)}"
            )
        yield lineno, dict(zip(names, fields, strict=True))


def _offset(value: str, path: Path, lineno: int, column: str) -> int:
    if not value.strip().isdigit():
        raise DataFormatError(path, lineno, f"{column} is not a non-negative integer: {value!r}")
    return int(value)


def _placeholder(sentence: str, placeholder: str, label: str, path: Path, lineno: int) -> Entity:
    if (n := sentence.count(placeholder)) != 1:
        raise DataFormatError(path, lineno, f"expected exactly one {placeholder} in the sentence, found {n}")
    start = sentence.index(placeholder)
    return Entity(start, start + len(placeholder), label, placeholder)


def read_gad_file(path: Path, split: str, header: bool) -> list[Record]:
    """One GAD file (see module docstring)."""
    columns = ("index", "sentence", "label") if header else ("sentence", "label")
    records: list[Record] = []
    ids = UniqueKeys(path, "index")
    for lineno, row in iter_tsv(path, columns, header):
        sentence = row["sentence"]
        require(sentence, path, lineno, "sentence")
        label = choice(row["label"], path, lineno, "label", ("0", "1"))
        row_id = ids.add(require(row["index"], path, lineno, "index") if header else str(lineno), lineno)
        gene = _placeholder(sentence, "@GENE$", "GENE", path, lineno)
        disease = _placeholder(sentence, "@DISEASE$", "DISEASE", path, lineno)
        candidate = Relation(gene.text, ASSOCIATION, disease.text)
        records.append(
            RelationRecord(
                uid=f"gad/{split}/{row_id}",
                origin=f"{path.name}:{lineno}",
                text=sentence,
                entities=(gene, disease),
                relations=(candidate,) if label == "1" else (),
                candidate=candidate,
            )
        )
    return records


@register("gad")
def read_gad(folder: Path) -> dict[str, list[Record]]:
    """Read gad: ``{"train": [...], "test": [...]}``, one record per row."""
    return {split: read_gad_file(Path(folder) / name, split, header) for split, (name, header) in GAD_FILES.items()}


def _pgr_mention(row: dict[str, str], kind: str, path: Path, lineno: int) -> Entity:
    sentence, mention = row["SENTENCE"], require(row[kind], path, lineno, kind)
    start = _offset(row[f"{kind}_START_POSITION"], path, lineno, f"{kind}_START_POSITION")
    end = _offset(row[f"{kind}_END_POSITION"], path, lineno, f"{kind}_END_POSITION")
    if (path.name, row["FILE_ID"], mention, start, end) in PGR_KNOWN_OFFSET_ERRORS:
        return Entity(-1, -1, kind, mention)
    if not start < end <= len(sentence):
        raise DataFormatError(
            path, lineno, f"{kind} offsets {start}-{end} outside the sentence ({len(sentence)} chars)"
        )
    if sentence[start:end] != mention:
        raise DataFormatError(
            path, lineno, f"{kind} {mention!r} does not match the sentence text {sentence[start:end]!r}"
        )
    return Entity(start, end, kind, mention)


def read_pgr_file(path: Path, split: str) -> list[Record]:
    """One PGR file (see module docstring)."""
    records: list[Record] = []
    for lineno, row in iter_tsv(path, PGR_COLUMNS, header=True):
        require(row["SENTENCE"], path, lineno, "SENTENCE")
        pmid = require(row["FILE_ID"], path, lineno, "FILE_ID")
        label = row["RELATION"].strip().lower()
        if label not in ("true", "false"):
            raise DataFormatError(path, lineno, f"unknown RELATION {row['RELATION']!r}; expected True or False")
        gene = _pgr_mention(row, "GENE", path, lineno)
        phenotype = _pgr_mention(row, "PHENOTYPE", path, lineno)
        candidate = Relation(gene.text, ASSOCIATION, phenotype.text)
        records.append(
            RelationRecord(
                uid=f"pgr/{split}/{pmid}-{lineno}",
                origin=f"{path.name}:{lineno}",
                text=row["SENTENCE"],
                entities=(gene, phenotype),
                relations=(candidate,) if label == "true" else (),
                candidate=candidate,
            )
        )
    return records


@register("pgr")
def read_pgr(folder: Path) -> dict[str, list[Record]]:
    """Read pgr: ``{"train": [...], "test": [...]}``, one record per row."""
    return {split: read_pgr_file(Path(folder) / name, split) for split, name in PGR_FILES.items()}


def _drugprot_abstracts(path: Path) -> dict[str, tuple[int, str]]:
    """PMID -> (line, title + " " + abstract), in file order."""
    abstracts: dict[str, tuple[int, str]] = {}
    for lineno, row in iter_tsv(path, ("pmid", "title", "abstract"), header=False):
        pmid = require(row["pmid"], path, lineno, "PMID")
        if pmid in abstracts:
            raise DataFormatError(path, lineno, f"duplicate PMID {pmid}")
        require(row["title"], path, lineno, "title")
        require(row["abstract"], path, lineno, "abstract")
        abstracts[pmid] = (lineno, f"{row['title']} {row['abstract']}")
    return abstracts


def _drugprot_entities(path: Path, abstracts: dict[str, tuple[int, str]]) -> dict[str, dict[str, Entity]]:
    """PMID -> entity id -> entity, offsets checked against the abstract's text."""
    entities: dict[str, dict[str, Entity]] = {pmid: {} for pmid in abstracts}
    for lineno, row in iter_tsv(path, ("pmid", "id", "type", "start", "end", "text"), header=False):
        if row["pmid"] not in abstracts:
            raise DataFormatError(path, lineno, f"PMID {row['pmid']!r} has no abstract")
        if row["type"] not in DRUGPROT_ENTITY_TYPES:
            raise DataFormatError(
                path, lineno, f"unknown entity type {row['type']!r}; expected {DRUGPROT_ENTITY_TYPES}"
            )
        text = abstracts[row["pmid"]][1]
        start, end = _offset(row["start"], path, lineno, "start"), _offset(row["end"], path, lineno, "end")
        if not start < end <= len(text):
            raise DataFormatError(path, lineno, f"offsets {start}-{end} outside the text ({len(text)} chars)")
        if text[start:end] != row["text"]:
            raise DataFormatError(
                path, lineno, f"entity text {row['text']!r} does not match the text {text[start:end]!r}"
            )
        if row["id"] in entities[row["pmid"]]:
            raise DataFormatError(path, lineno, f"duplicate entity id {row['id']} in PMID {row['pmid']}")
        entities[row["pmid"]][row["id"]] = Entity(start, end, row["type"], row["text"])
    return entities


def _drugprot_relations(path: Path, entities: dict[str, dict[str, Entity]]) -> dict[str, list[Relation]]:
    """PMID -> relations in file order (repeated lines kept)."""
    relations: dict[str, list[Relation]] = {pmid: [] for pmid in entities}
    for lineno, row in iter_tsv(path, ("pmid", "type", "arg1", "arg2"), header=False):
        pmid = row["pmid"]
        if pmid not in entities:
            raise DataFormatError(path, lineno, f"PMID {pmid!r} has no abstract")
        if row["type"] not in DRUGPROT_RELATIONS:
            raise DataFormatError(path, lineno, f"unknown relation type {row['type']!r}")
        args = []
        for n, value in ((1, row["arg1"]), (2, row["arg2"])):
            m = _ARG.match(value)
            if not m or m.group(1) != str(n):
                raise DataFormatError(path, lineno, f"argument {n} is {value!r}, expected 'Arg{n}:T<n>'")
            if m.group(2) not in entities[pmid]:
                raise DataFormatError(path, lineno, f"unknown entity id {m.group(2)} in PMID {pmid}")
            args.append(entities[pmid][m.group(2)])
        chemical, gene = args
        if chemical.label != "CHEMICAL" or not gene.label.startswith("GENE"):
            raise DataFormatError(
                path, lineno, f"expected Arg1 CHEMICAL and Arg2 GENE, found {chemical.label}, {gene.label}"
            )
        relations[pmid].append(Relation(chemical.text, row["type"], gene.text))
    return relations


@register("drugprot")
def read_drugprot(folder: Path) -> dict[str, list[Record]]:
    """Read drugprot: ``{"development": [...]}``, one record per abstract (see module docstring)."""
    folder = Path(folder)
    abstracts_path = folder / f"{DRUGPROT_PREFIX}abstracs.tsv"  # sic: the official file name
    abstracts = _drugprot_abstracts(abstracts_path)
    entities = _drugprot_entities(folder / f"{DRUGPROT_PREFIX}entities.tsv", abstracts)
    relations = _drugprot_relations(folder / f"{DRUGPROT_PREFIX}relations.tsv", entities)
    records: list[Record] = [
        RelationRecord(
            uid=f"drugprot/development/{pmid}",
            origin=f"{abstracts_path.name}:{lineno}",
            text=text,
            entities=tuple(entities[pmid].values()),
            relations=tuple(relations[pmid]),
        )
        for pmid, (lineno, text) in abstracts.items()
    ]
    return {"development": records}
