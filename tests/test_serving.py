"""`metaprompt predict`: rows of several tasks served together, bad lines reported with their number,
the same predictions as serving each task on its own."""

from __future__ import annotations

import json

import pytest

from metaprompt.__main__ import main
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage
from metaprompt.serving import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("serve")
    config = PipelineConfig(
        output_dir=str(out), backbone="tiny-llama", prompt_length=2, sources="gad,kqa_nli,medquad", accelerator="cpu",
        data={"root": str(data_root), "max_length": 96, "min_prompt_tokens": 16, "batch_size": 2, "max_eval_per_task": 4},
        teacher=Stage(2), distill=Stage(2),
    )  # fmt: skip
    pipe = Pipeline(config)
    for run in pipe.runs_for_sources():
        pipe.execute(run)
    return out / "distill" / "adapter"


REQUESTS = [
    {"task": "kqa_nli", "premise": "Aspirin thins the blood.", "hypothesis": "Aspirin is an anticoagulant.", "id": "a"},
    {"task": "medquad", "question": "What are the symptoms of flu?", "id": "b"},
    {"task": "gad", "text": "@GENE$ variants are linked to @DISEASE$.", "id": "c"},
    {"task": "kqa_nli", "premise": "Fever is above 38C.", "hypothesis": "The patient is febrile."},
]


def test_mixed_file_streams_in_order_and_reports_bad_lines(distilled, tmp_path, data_root):
    lines = [json.dumps(r) for r in REQUESTS[:2]]
    lines += ['{"task": "kqa_nli", "premise": "cut', json.dumps({"task": "nope", "text": "x"}), "",
              json.dumps({"task": "gad", "txt": "typo"}), json.dumps({"premise": "no task"})]  # fmt: skip
    lines += [json.dumps(r) for r in REQUESTS[2:]]
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--adapter", str(distilled), "--input", str(source), "--output", str(out), "--batch-size", "3",
            "--root", str(data_root), "--max-length", "96"]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", 9]  # input order; no id -> the line number
    assert [r["task"] for r in rows] == ["kqa_nli", "medquad", "gad", "kqa_nli"]
    assert all(isinstance(r["generated"], str) and "prediction" in r for r in rows)
    errors = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [3, 4, 6, 7]
    assert errors[0]["error"].startswith("line 3: invalid JSON")
    assert "unknown task 'nope'; this adapter serves ['gad', 'kqa_nli', 'medquad']" in errors[1]["error"]
    assert "unknown field(s) ['txt'] for a re request" in errors[2]["error"]
    assert "unknown task None" in errors[3]["error"]


def test_mixed_batches_give_the_grouped_predictions(distilled, data_root):
    predictor = Predictor(distilled, root=str(data_root), batch_size=4, max_length=96)
    mixed = predictor.predict(REQUESTS)
    grouped = {}
    for task in ("gad", "kqa_nli", "medquad"):
        rows = [r for r in REQUESTS if r["task"] == task]
        for r, out in zip(rows, predictor.predict(rows), strict=True):
            grouped[json.dumps(r)] = out
    assert [out["generated"] for out in mixed] == [grouped[json.dumps(r)]["generated"] for r in REQUESTS]
    labels = predictor.tasks["kqa_nli"].verbalizer.labels
    assert all(
        out["prediction"] in (*labels, None, "") or isinstance(out["prediction"], str)
        for out in mixed
        if out["task"] == "kqa_nli"
    )


def test_a_window_is_batched_by_output_budget_and_answered_in_input_order(distilled, data_root):
    predictor = Predictor(distilled, root=str(data_root), batch_size=2, window=6, max_length=96,
                          max_new_tokens={"nli": 3, "qa": 9, "re": 5})  # fmt: skip
    batches = []
    generate = predictor._generate

    def spy(batch):
        batches.append([task for task, _ in batch])
        return generate(batch)

    predictor._generate = spy
    requests = [REQUESTS[i % len(REQUESTS)] for i in (0, 1, 2, 0, 1, 2, 3)]  # nli qa re nli qa re | nli
    outs = predictor.predict(requests)
    assert [o["task"] for o in outs] == [r["task"] for r in requests]  # input order
    # the first window (6 rows): 2 nli, then 2 re, then 2 qa (shortest budget first); the last row on its own
    assert batches == [["kqa_nli", "kqa_nli"], ["gad", "gad"], ["medquad", "medquad"], ["kqa_nli"]]
