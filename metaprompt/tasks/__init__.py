"""Tasks: readers for the original dataset files, typed records, verbalizers and parsers."""

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

__all__ = [
    "DataFormatError",
    "Entity",
    "NerRecord",
    "NliRecord",
    "QaRecord",
    "Record",
    "Relation",
    "RelationRecord",
    "SummarizationRecord",
]
