import json

import pytest

from metaprompt.evaluation import PredictionTable


def test_keeps_first_rows_per_task_in_order():
    table = PredictionTable(max_rows_per_task=2)
    kept = [table.add(task, f"in{i}", f"pred{i}", f"ref{i}", uid=f"{task}/{i}") for i, task in enumerate("aabab")]
    assert kept == [True, True, True, False, True]
    assert len(table) == 4
    assert table.data("a") == [["a", "a/0", "in0", "pred0", "ref0"], ["a", "a/1", "in1", "pred1", "ref1"]]
    assert [r["uid"] for r in table.records()] == ["a/0", "a/1", "b/2", "b/4"]
    assert PredictionTable(0).add("a", "x", "y", "z") is False
    with pytest.raises(ValueError, match="max_rows_per_task"):
        PredictionTable(-1)


def test_log_table_and_jsonl(tmp_path):
    table = PredictionTable()
    table.add("rqe", "Premise: é", "true", "false", uid="rqe/test/0")
    calls = []

    class FakeWandb:
        def log_table(self, key, columns, data):
            calls.append((key, columns, data))

    assert table.log(FakeWandb(), key="val/predictions") is True
    assert calls == [("val/predictions", list(table.columns), [["rqe", "rqe/test/0", "Premise: é", "true", "false"]])]
    assert table.log(object()) is False  # a logger without tables (CSVLogger, TensorBoard)
    path = table.write_jsonl(tmp_path / "target" / "rqe" / "predictions.jsonl", task="rqe")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {"task": "rqe", "uid": "rqe/test/0", "input": "Premise: é", "prediction": "true", "reference": "false"}
    ]
    table.reset()
    assert len(table) == 0 and table.add("rqe", "x", "y", "z")
