"""Reader for the CoNLL-style IOB2 TSV NER sets (the MTL-Bioinformatics-2016 conversions).

Format (MANIFEST.yaml): one ``token<TAB>tag`` line per token, tags ``B-<Type>``/``I-<Type>``/``O``,
a blank line after every sentence, files ``train.tsv``/``devel.tsv``/``test.tsv``. Each sentence
becomes one :class:`NerRecord` whose ``text`` is the tokens joined by single spaces (the original
whitespace is not in the files) and whose entities carry character offsets into that text.

Validation: a line must have exactly two tab-separated fields and a non-empty token; a tag must be
``O`` or ``B-``/``I-`` plus one of the dataset's types; an ``I-<T>`` must continue a ``B-<T>``/``I-<T>``
on the previous token. Extra blank lines are tolerated (they delimit nothing new); CRLF is accepted.
"""

from __future__ import annotations

from pathlib import Path

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.readers import Reader, register
from metaprompt.tasks.readers._io import read_text
from metaprompt.tasks.records import Entity, NerRecord, Record

SPLIT_FILES: dict[str, str] = {"train": "train.tsv", "devel": "devel.tsv", "test": "test.tsv"}

# Entity types per dataset = MANIFEST ``label_set`` without the B-/I- prefixes (the tests check the two
# agree). Kept here rather than read from the manifest so a reader needs only its own folder.
ENTITY_TYPES: dict[str, tuple[str, ...]] = {
    "bc5cdr_chem": ("Chemical",),
    "bc5cdr_disease": ("Disease",),
    "bc2gm": ("GENE",),
    "linnaeus": ("Species",),
    "anatem": ("Anatomy",),
    "bionlp09": ("Protein",),
    "bionlp11id": ("Chemical", "Organism", "Protein", "Regulon-operon"),
    "bionlp11epi": ("Protein",),
    "bionlp13cg": (
        "Amino_acid",
        "Anatomical_system",
        "Cancer",
        "Cell",
        "Cellular_component",
        "Developing_anatomical_structure",
        "Gene_or_gene_product",
        "Immaterial_anatomical_entity",
        "Multi-tissue_structure",
        "Organ",
        "Organism",
        "Organism_subdivision",
        "Organism_substance",
        "Pathological_formation",
        "Simple_chemical",
        "Tissue",
    ),
    "bionlp13pc": ("Cellular_component", "Complex", "Gene_or_gene_product", "Simple_chemical"),
    "craft": ("CHEBI", "CL", "GGP", "GO", "SO", "Taxon"),
}


def sentence_record(tokens: list[tuple[int, str, str]], dataset: str, split: str, index: int, path: Path) -> NerRecord:
    """Build one record from ``(line number, token, tag)`` triples; tags are already validated."""
    spans: list[list] = []  # [start, end, label]; an I- tag extends the last span's end
    pos = 0
    for _, token, tag in tokens:
        if tag.startswith("B-"):
            spans.append([pos, pos + len(token), tag[2:]])
        elif tag.startswith("I-"):
            spans[-1][1] = pos + len(token)
        pos += len(token) + 1  # + the joining space
    text = " ".join(token for _, token, _ in tokens)
    return NerRecord(
        uid=f"{dataset}/{split}/{index}",
        origin=f"{path.name}:{tokens[0][0]}",
        text=text,
        entities=tuple(Entity(s, e, label, text[s:e]) for s, e, label in spans),
    )


def read_split(path: Path, dataset: str, split: str, types: tuple[str, ...]) -> list[NerRecord]:
    """Parse one IOB2 TSV file into sentence records (``uid = <dataset>/<split>/<sentence index>``).

    Raises:
        DataFormatError: naming the file and line of any malformed line or tag sequence.
    """
    allowed = {"O"} | {f"{p}-{t}" for p in "BI" for t in types}
    records: list[NerRecord] = []
    sentence: list[tuple[int, str, str]] = []
    prev_tag = "O"
    # split("\n"), not splitlines(): the latter also breaks on \x85, \u2028 ... inside tokens.
    for lineno, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            if sentence:
                records.append(sentence_record(sentence, dataset, split, len(records), path))
                sentence, prev_tag = [], "O"
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataFormatError(path, lineno, f"expected 2 tab-separated fields (token, tag), found {len(fields)}")
        token, tag = fields
        if not token.strip():
            raise DataFormatError(path, lineno, "empty token")
        if tag not in allowed:
            raise DataFormatError(path, lineno, f"unknown tag {tag!r}; expected one of {sorted(allowed)}")
        if tag.startswith("I-") and prev_tag[2:] != tag[2:]:
            raise DataFormatError(path, lineno, f"tag {tag!r} does not continue an entity (previous tag {prev_tag!r})")
        sentence.append((lineno, token, tag))
        prev_tag = tag
    if sentence:  # file without the final blank line
        records.append(sentence_record(sentence, dataset, split, len(records), path))
    return records


def _make_reader(dataset: str, types: tuple[str, ...]) -> Reader:
    def read(folder: Path) -> dict[str, list[Record]]:
        folder = Path(folder)
        return {split: read_split(folder / name, dataset, split, types) for split, name in SPLIT_FILES.items()}

    read.__name__ = read.__qualname__ = f"read_{dataset}"
    read.__doc__ = f"Read {dataset}: ``train``/``devel``/``test`` sentence NerRecords (types {', '.join(types)})."
    return read


for _dataset, _types in ENTITY_TYPES.items():
    register(_dataset)(_make_reader(_dataset, _types))
