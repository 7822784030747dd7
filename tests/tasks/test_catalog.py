"""Every dataset of MANIFEST.yaml: counts equal the manifest, splits lose nothing, text round-trips."""

from __future__ import annotations

from functools import cache

import pytest

from metaprompt.tasks.catalog import default_data_root, load_manifest
from metaprompt.tasks.readers import excluded, get_reader
from metaprompt.tasks.splits import CANONICAL, canonical_splits
from metaprompt.tasks.verbalizers import get_verbalizer, label_set

ROOT = default_data_root()
IDS = list(load_manifest(ROOT)) if ROOT else []
pytestmark = pytest.mark.skipif(ROOT is None, reason="real data (../shared/data) not present")


@cache
def original(dataset_id: str):
    return get_reader(dataset_id)(ROOT / dataset_id)


def test_manifest_lists_31_datasets_21_sources_10_targets():
    manifest = load_manifest(ROOT)
    assert len(manifest) == 31
    assert sum(d.role == "source" for d in manifest.values()) == 21
    assert sum(d.role == "target" for d in manifest.values()) == 10


@pytest.mark.parametrize("dataset_id", IDS)
def test_counts_match_manifest(dataset_id):
    info = load_manifest(ROOT)[dataset_id]
    got = {split: len(recs) + len(excluded(dataset_id).get(split, {})) for split, recs in original(dataset_id).items()}
    assert got == info.counts


@pytest.mark.parametrize("dataset_id", IDS)
def test_canonical_splits_partition_without_loss(dataset_id):
    recs = original(dataset_id)
    splits = canonical_splits(dataset_id, recs)
    uids = [r.uid for s in CANONICAL for r in splits[s]]
    assert sorted(uids) == sorted(r.uid for v in recs.values() for r in v)
    assert len(set(uids)) == len(uids), "uids must be unique within a dataset"
    assert splits["test"], "every dataset needs a test split"
    again = canonical_splits(dataset_id, recs)
    assert [[r.uid for r in again[s]] for s in CANONICAL] == [[r.uid for r in splits[s]] for s in CANONICAL]


@pytest.mark.parametrize("dataset_id", IDS)
def test_every_record_round_trips(dataset_id):
    records = [r for v in original(dataset_id).values() for r in v]
    verbalizer = get_verbalizer(load_manifest(ROOT)[dataset_id].task_type, label_set(records))
    failures = [r.uid for r in records if verbalizer.parse(verbalizer.target(r), r) != r.structure()]
    assert not failures, f"{len(failures)} records do not round-trip, e.g. {failures[:3]}"
    assert all(verbalizer.target(r).strip() for r in records), "empty target"


def test_every_reader_is_found_after_one_reader_module_was_imported_directly():
    """Importing one reader module (as its tests do) must not hide the others from ``get_reader``."""
    import subprocess
    import sys

    code = (
        "import metaprompt.tasks.readers.relation_tsv\n"
        "from metaprompt.tasks.readers import get_reader\n"
        "print(get_reader('rqe').__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "metaprompt.tasks.readers.nli"
