"""Readers: one module per original file format; each registers the datasets it reads.

A reader is a function ``read(folder: Path) -> dict[str, list[Record]]`` keyed by the dataset's
*original* split names exactly as MANIFEST.yaml's ``counts`` names them (first word: ``train``,
``devel``, ``dev``, ``validation``, ``test``, ``test1``, ``all``, ``development``, ...). Mapping to
the canonical train/validation/test splits happens in ``metaprompt.tasks.splits``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

from metaprompt.tasks.records import Record

Reader = Callable[[Path], dict[str, list[Record]]]
READERS: dict[str, Reader] = {}
# Records of the original files that a reader deliberately does not yield, with the reason, so that
# counts are reconciled with MANIFEST.yaml openly: {dataset: {split: {record: reason}}}.
EXCLUDED: dict[str, dict[str, dict[str, str]]] = {}


def register(*dataset_ids: str) -> Callable[[Reader], Reader]:
    """Register ``fn`` as the reader of each dataset id (a folder name under the data root)."""

    def deco(fn: Reader) -> Reader:
        for dataset_id in dataset_ids:
            if dataset_id in READERS:
                raise ValueError(f"dataset {dataset_id!r} already has a reader: {READERS[dataset_id].__module__}")
            READERS[dataset_id] = fn
        return fn

    return deco


def excluded(dataset_id: str) -> dict[str, dict[str, str]]:
    """Documented exclusions of ``dataset_id`` per original split (empty if none)."""
    get_reader(dataset_id)
    return EXCLUDED.get(dataset_id, {})


def get_reader(dataset_id: str) -> Reader:
    """The registered reader of ``dataset_id``; imports every reader module on first use."""
    if dataset_id not in READERS:  # not "if READERS is empty": one reader module may be imported directly
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
    if dataset_id not in READERS:
        raise KeyError(f"no reader for dataset {dataset_id!r}; known: {', '.join(sorted(READERS))}")
    return READERS[dataset_id]
