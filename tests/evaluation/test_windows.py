"""Test-time merge of windows (``metaprompt.evaluation.windows``), alone and through ``trainer.test``."""

from __future__ import annotations

import json

import lightning as L
import pytest
from support.long_docs import write_notes, write_squad

from metaprompt.data import MultitaskDataModule
from metaprompt.evaluation.windows import WindowOf, WindowPredictions, merge_predictions, window_uid
from metaprompt.modules import PromptTuning
from metaprompt.modules.backbone_only import BackboneOnly

pytestmark = pytest.mark.usefixtures("one_thread")


def test_qa_keeps_the_best_scoring_answered_window():
    assert merge_predictions("qa", ["a", "b", "c"], [-2.0, -0.5, -1.0]) == "b"
    assert merge_predictions("qa", ["", "b", "c"], [-0.1, -3.0, -1.0]) == "c"  # an empty answer only if all are
    assert merge_predictions("qa", ["a", "b"], [-1.0, -1.0]) == "a"  # ties: the earlier window
    assert merge_predictions("qa", ["", ""], [-1.0, -2.0]) == ""


def test_ner_and_re_take_the_deduplicated_union():
    overlap, twice = ("aspirin", "Drug"), ("MI", "Problem")
    windows = [(overlap, twice, twice), (overlap, ("heparin", "Drug"))]
    assert merge_predictions("ner", windows, [0, 0]) == tuple(sorted([overlap, twice, twice, ("heparin", "Drug")]))
    triples = [(("a", "r", "b"),), (("a", "r", "b"), ("c", "r", "d")), ()]
    assert merge_predictions("re", triples, [0, 0, 0]) == (("a", "r", "b"), ("c", "r", "d"))
    with pytest.raises(ValueError, match="not 'summarization'"):
        merge_predictions("summarization", ["x"], [0])


def test_window_rows_are_grouped_by_parent_in_window_order():
    buffer = WindowPredictions()
    for parent, index, answer, score in (("q/1", 1, "late", -0.2), ("q/0", 0, "x", -1.0), ("q/1", 0, "early", -0.9)):
        buffer.add(window_uid(parent, index), WindowOf(parent, index, 0), "qa", answer, answer, score)
    merged = buffer.merged()
    assert [(m["uid"], m["prediction"], m["text"]) for m in merged] == [("q/0", "x", "x"), ("q/1", "late", "late")]
    assert [w["uid"] for w in merged[1]["windows"]] == ["q/1#w0", "q/1#w1"]
    assert buffer.merged() == []  # emptied for the next epoch


def run_test(module, tasks, tmp_path, **data):
    dm = MultitaskDataModule(
        tasks=tasks, backbone="tiny-llama", max_length=128, batch_size=4, k_shot=0, cache_dir=str(tmp_path / "cache"),
        **data,
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    return dm, metrics, rows


def test_windowed_qa_is_scored_once_per_question_with_its_best_window(tmp_path):
    files = write_squad(tmp_path, {"train": 2, "test": 3})
    task = {"name": "covid_qa", "task_type": "qa", "format": "squad", "data_files": files}
    module = PromptTuning(
        backbone="tiny-llama", task_names=["covid_qa"], prompt_length=4, output_dir=str(tmp_path / "out"),
        evaluation={"max_new_tokens": {"qa": 4}},
    )  # fmt: skip
    dm, metrics, rows = run_test(module, [{**task, "long_inputs": {"mode": "window", "stride": 32}}], tmp_path)
    assert dm.report["covid_qa"]["test"]["records"] == 3 < dm.report["covid_qa"]["test"]["examples"]
    assert metrics["covid_qa/n_test"] == 3 and sorted(r["uid"] for r in rows) == [
        f"covid_qa/test/{i}" for i in range(3)
    ]
    for row in rows:
        windows = row["windows"]
        assert [w["uid"] for w in windows] == [f"{row['uid']}#w{k}" for k in range(len(windows))]
        assert all(w["score"] < 0 for w in windows)  # the mean log-prob of each window's answer
        answered = [w for w in windows if w["prediction"]] or windows
        assert row["prediction"] == max(answered, key=lambda w: (w["score"], -w["index"]))["prediction"]
        assert row["reference"] == dm.records[row["uid"]].answers[0]  # scored against the whole record


def test_perfect_windows_merge_to_the_whole_notes_gold(tmp_path):
    """Each window 'generates' its own target: the merged entities are the note's, so F1 is 1."""
    files = write_notes(tmp_path, {"train": 2, "test": 3})
    task = {"name": "notes_ner", "task_type": "ner", "format": "jsonl", "data_files": files, "labels": ["Drug"]}
    task["long_inputs"] = {"mode": "window", "window": 48, "stride": 12}
    module = BackboneOnly(backbone="tiny-llama", task_names=["notes_ner"], output_dir=str(tmp_path / "out"))

    def perfect(batch, rows=None):
        rows = range(len(batch["uids"])) if rows is None else rows
        return [(u, module.eval_tasks.row(u).target_text) for u in (batch["uids"][i] for i in rows)]

    module._generate_texts = perfect
    dm, metrics, rows = run_test(module, [task], tmp_path)
    assert len(dm.windows) > 3 * 2 and metrics["notes_ner/n_test"] == 3
    assert metrics["notes_ner/f1"] == 1.0
    assert all(len(r["windows"]) > 1 and r["stats"]["fp"] == r["stats"]["fn"] == 0 for r in rows)
