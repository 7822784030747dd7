"""The dataset catalogue: MANIFEST.yaml under the data root, and where that root is.

The manifest is the source of truth for each dataset's task type, role (source/target), label set
and per-split example counts; readers are checked against it (``metaprompt data stats``, tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from metaprompt.tasks.errors import DataFormatError

# The counts entry that is the number of examples (the unit a reader yields), in priority order.
_COUNT_KEYS = (
    "kept_records",
    "kept_documents",
    "kept_sentences",
    "kept_questions",
    "kept_pairs",
    "kept_rows",
    "kept_prompts",
    "kept_qa_pairs",
    "kept_abstracts",
    "kept",
    "documents_txt",
    "sentences",
    "questions",
)


@dataclass(frozen=True)
class DatasetInfo:
    """One MANIFEST.yaml entry, reduced to what the code needs.

    Attributes:
        id: Folder name under the data root.
        task_type: ``ner | re | qa | nli | summarization``.
        role: ``source`` or ``target``.
        counts: Examples per *original* split name (``train``, ``devel``, ``all``, ``test1``, ...).
        label_set: Raw ``label_set`` from the manifest (list, dict or text).
        metric: The metric papers report, as the manifest words it.
        domain: One-line description of the data.
    """

    id: str
    task_type: str
    role: str
    counts: dict[str, int]
    label_set: Any = None
    metric: str = ""
    domain: str = ""
    extra: dict = field(default_factory=dict, repr=False, compare=False)


def default_data_root() -> Path | None:
    """``$METAPROMPT_DATA``, else ``../shared/data`` beside the working directory or the repo."""
    env = os.environ.get("METAPROMPT_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        if (candidate / "MANIFEST.yaml").is_file():
            return candidate.resolve()
    return None


def resolve_root(root: str | Path | None) -> Path:
    """The data root to use: ``root`` if given, else the default; must contain MANIFEST.yaml."""
    path = Path(root).expanduser() if root else default_data_root()
    if path is None:
        raise FileNotFoundError(
            "no data root: pass --data.root DIR (or --root), or set METAPROMPT_DATA to the folder holding MANIFEST.yaml"
        )
    if not (path / "MANIFEST.yaml").is_file():
        raise FileNotFoundError(f"{path}: no MANIFEST.yaml here; is this the data root?")
    return path


def _example_count(dataset_id: str, split: str, entry: dict, path: Path) -> int:
    for key in _COUNT_KEYS:
        if isinstance(entry.get(key), int):
            return entry[key]
    raise DataFormatError(path, f"dataset {dataset_id!r} counts.{split}", f"no example count among {_COUNT_KEYS}")


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, DatasetInfo]:
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataFormatError(
            path, getattr(getattr(e, "problem_mark", None), "line", -1) + 1, f"invalid YAML: {e}"
        ) from None
    out: dict[str, DatasetInfo] = {}
    for n, d in enumerate(manifest.get("datasets") or []):
        try:
            counts = {key.split()[0]: _example_count(d["id"], key, val, path) for key, val in d["counts"].items()}
            out[d["id"]] = DatasetInfo(
                id=d["id"],
                task_type=d["task_type"],
                role=d["role"],
                counts=counts,
                label_set=d.get("label_set"),
                metric=str(d.get("metric", "")),
                domain=str(d.get("domain", "")),
                extra=d,
            )
        except KeyError as e:
            raise DataFormatError(path, f"datasets[{n}]", f"missing key {e}") from None
    return out


def load_manifest(root: str | Path | None = None) -> dict[str, DatasetInfo]:
    """All datasets of the manifest under ``root``, keyed by id, in manifest order."""
    return _load(resolve_root(root) / "MANIFEST.yaml")
