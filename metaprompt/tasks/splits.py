"""Canonical train / validation / test splits from each dataset's original splits.

Rules (deterministic, documented in the README's data section):

* Official splits are kept: ``train`` -> train; ``dev``/``devel``/``validation``/``development``*
  -> validation; ``test``/``test1``/``test2`` -> test (mts_dialog's two official test sets together).
* A dataset without an official split (``all``: chia, medquad, kqa, kqa_nli, meqsum), or with a single
  split only (drugprot: development; mediqa_mas: test), is partitioned 80/10/10 into
  train/validation/test. *drugprot/mediqa_mas are sources: their lone split becomes their pool.
* A dataset with train + test but no validation (bioinfer, gad, pgr, pubmedqa, rqe) gets a validation
  split carved from train: 10% of its groups, at most 300 examples.
* mediqa_qs (validation 50 + test 100, no train) keeps test; its validation set is split 40/10 into
  train (the few-shot pool) and validation.

Partitions are by *group*, so that related examples never straddle splits: a trial (NCT id) for chia,
a source XML document for medquad, a document for bioinfer, an abstract
for pgr, an answer for kqa_nli; otherwise the example itself. The order
comes from ``random.Random("metaprompt-split-v1:<id>")`` over sorted group keys, independent of
PYTHONHASHSEED and of the order readers yield.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from metaprompt.tasks.errors import DataFormatError
from metaprompt.tasks.records import Record

CANONICAL = ("train", "validation", "test")
_OFFICIAL = {
    "train": "train",
    "dev": "validation",
    "devel": "validation",
    "validation": "validation",
    "test": "test",
    "test1": "test",
    "test2": "test",
}
OFFICIAL_SPLITS = tuple(_OFFICIAL)
"""The split names a dataset's files may carry (besides a lone file under any name)."""
_NCT = re.compile(r"NCT\d+")


def _group_key(dataset_id: str) -> Callable[[Record], str]:
    if dataset_id == "chia":
        return lambda r: (_NCT.search(r.origin) or _NCT.search(r.uid) or re.search(".*", r.uid)).group(0)
    if dataset_id == "medquad":
        return lambda r: re.split(r"[:#]", r.origin)[0]
    if dataset_id == "bioinfer":  # sentences of one document together: uid ends '<doc>.s<n>'
        return lambda r: r.uid.rsplit(".s", 1)[0]
    if dataset_id == "pgr":  # rows of one abstract together: uid is '<split>/<PMID>-<row>'
        return lambda r: r.uid.rsplit("-", 1)[0]
    if dataset_id == "kqa_nli":
        return lambda r: getattr(r, "premise", r.uid)
    return lambda r: r.uid


def partition(
    records: Sequence[Record], dataset_id: str, fractions: Sequence[float], salt: str = ""
) -> list[list[Record]]:
    """Split ``records`` by group into consecutive parts of the given fractions (last part takes the rest).

    Args:
        records: Examples, in reader order (kept within each part).
        dataset_id: Chooses the grouping rule and seeds the shuffle.
        fractions: E.g. ``(0.8, 0.1, 0.1)``; must sum to 1.
        salt: Extra seed text so different carve-outs of one dataset are independent.
    """
    key = _group_key(dataset_id)
    groups = sorted({key(r) for r in records})
    random.Random(f"metaprompt-split-v1:{dataset_id}{salt}").shuffle(groups)
    bounds, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        bounds.append(round(acc * len(groups)))
    rank = {g: sum(i >= b for b in bounds) for i, g in enumerate(groups)}
    parts: list[list[Record]] = [[] for _ in fractions]
    for r in records:
        parts[rank[key(r)]].append(r)
    return parts


def canonical_splits(dataset_id: str, original: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """Map a reader's original splits to ``{"train", "validation", "test"}`` (some may be empty)."""
    out: dict[str, list[Record]] = {s: [] for s in CANONICAL}
    names = set(original)
    if dataset_id == "mediqa_qs":
        out["train"], out["validation"] = partition(original["validation"], dataset_id, (0.8, 0.2))
        out["test"] = list(original["test"])
        return out
    if len(names) == 1:  # 'all', or a lone official split (drugprot, mediqa_mas)
        (only,) = names
        out["train"], out["validation"], out["test"] = partition(original[only], dataset_id, (0.8, 0.1, 0.1))
        return out
    for name, recs in original.items():
        if name not in _OFFICIAL:
            raise DataFormatError(
                dataset_id, None, f"unknown split {name!r}; split names are {list(_OFFICIAL)} (or one split alone)"
            )
        out[_OFFICIAL[name]].extend(recs)
    if not out["validation"] and out["train"]:
        n = len(out["train"])
        frac = min(0.1, 300 / n)
        out["train"], out["validation"] = partition(out["train"], dataset_id, (1 - frac, frac), salt=":validation")
    return out
