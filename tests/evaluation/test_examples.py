"""Per-example records on disk: compacting ``predictions.jsonl`` to ``.gz`` and reading either back."""

from __future__ import annotations

import json

import pytest

from metaprompt.evaluation.examples import compact_predictions, read_predictions, write_jsonl

ROWS = [
    {"uid": "rqe/test/0", "task": "rqe", "input": "long prompt text …", "prediction": "true", "stats": [1, 1]},
    {"uid": "rqe/test/1", "task": "rqe", "input": "another", "prediction": "false", "stats": [0, 1]},
]


def test_compacting_drops_the_prompt_text_and_is_byte_stable(tmp_path):
    write_jsonl(ROWS, tmp_path / "predictions.jsonl")
    packed = compact_predictions(tmp_path)
    assert packed == tmp_path / "predictions.jsonl.gz" and not (tmp_path / "predictions.jsonl").exists()
    assert read_predictions(tmp_path) == [{k: v for k, v in r.items() if k != "input"} for r in ROWS]
    first = packed.read_bytes()
    assert compact_predictions(tmp_path) == packed and packed.read_bytes() == first  # nothing left to do
    write_jsonl(ROWS, tmp_path / "predictions.jsonl")  # the same run written again: the same bytes
    assert compact_predictions(tmp_path).read_bytes() == first
    assert len(first) < len(json.dumps(ROWS))


def test_reading_a_plain_file_a_missing_one_and_a_broken_line(tmp_path):
    write_jsonl(ROWS, tmp_path / "predictions.jsonl")
    assert read_predictions(tmp_path) == ROWS
    assert compact_predictions(tmp_path / "nowhere") is None
    with pytest.raises(FileNotFoundError, match=r"nowhere: no predictions.jsonl\(.gz\)"):
        read_predictions(tmp_path / "nowhere")
    with (tmp_path / "predictions.jsonl").open("a") as f:
        f.write('{"uid": "rqe/test/2", "task"\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl, line 3: not a JSON record"):
        read_predictions(tmp_path)
